//! Measures what a session's plugin instance costs, step by step: the
//! store, the instantiation, the drop, and the page faults of each.
//!
//! ```text
//! cargo run --release -p wsgate-host --example instantiate -- PLUGIN.wasm [KEY=VALUE...]
//! ```
//!
//! The engine is configured as `wsgate serve` configures its own (the
//! component model, epoch interruption, and the pooling allocator as
//! `Pool::configure` sets it up); the linker holds the WASI interfaces and
//! stubs the rest of a plugin's imports (`wsgate:connect`) with traps, which
//! instantiation never calls. Each `KEY=VALUE` changes one thing:
//!
//! - `iters=N` (2000), `warmup=N` (200), `rt=ct|mt` (ct: a current-thread
//!   tokio runtime; mt: a multi-thread one, the loop in a spawned task);
//! - `live=N` (1): instances kept alive at once, the oldest dropped as a new
//!   one is made (sessions side by side take different slots);
//! - `cow=0|1` (1), `keep=BYTES` (65536), `table_keep=BYTES` (16384),
//!   `stack_keep=BYTES` (16384), `zero=0|1` (1), `stack=BYTES` (1 MiB),
//!   `batch=N` (32), `pagemap=0|1` (1), `concurrency=0|1` (0; 1 is
//!   wasmtime's default), `epoch=0|1` (1), `sync=0|1` (0), `guard=BYTES`,
//!   `reservation=BYTES`, `max_memory=BYTES` (64 MiB), `slots=N` (1000);
//! - `gap_us=N` (0): a sleep between instances, as sessions a few ms apart
//!   (the caches and TLB then hold what ran meanwhile);
//!   `spin_us=N` (0): the same gap spent spinning, the core kept busy;
//!   `thrash=BYTES` (0): bytes of a buffer written between instances, as
//!   a session's TLS and I/O would;
//! - `idle=N` (0): afterwards, keep N instances alive and report the
//!   resident memory each adds, then the pool's resident memory once they
//!   are gone.
//!
//! Each step is reported as p50, p90, p99 and max over the iterations, with
//! the minor page faults of the thread during it.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
    UpdateDeadline,
};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// One instance's state, shaped as the gateway's: WASI, a resource table
/// and a memory limiter.
struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Counts linear memory against a limit, as the gateway's limiter does.
struct Limiter {
    granted: usize,
    limit: usize,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.granted.saturating_add(desired.saturating_sub(current));
        if total > self.limit {
            return Ok(false);
        }
        self.granted = total;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

/// The options of one run, from `KEY=VALUE` arguments.
struct Options(HashMap<String, String>);

impl Options {
    fn get(&self, key: &str, default: u64) -> u64 {
        self.0
            .get(key)
            .map(|v| v.parse().unwrap_or_else(|_| panic!("`{key}={v}`: not a number")))
            .unwrap_or(default)
    }

    fn flag(&self, key: &str, default: bool) -> bool {
        self.get(key, u64::from(default)) != 0
    }
}

/// The engine, configured as the gateway's with the options' changes.
fn engine(o: &Options) -> Engine {
    let slots = u32::try_from(o.get("slots", 1000)).expect("slots fits u32");
    let mut pooling = PoolingAllocationConfig::new();
    pooling
        .total_component_instances(slots)
        .total_core_instances(slots.saturating_mul(8))
        .total_memories(slots.saturating_mul(2))
        .total_tables(slots.saturating_mul(4))
        .total_stacks(slots)
        .max_core_instances_per_component(32)
        .max_memories_per_component(4)
        .max_tables_per_component(8)
        .max_memory_size(o.get("max_memory", 64 << 20) as usize)
        .linear_memory_keep_resident(o.get("keep", 64 << 10) as usize)
        .table_keep_resident(o.get("table_keep", 16 << 10) as usize)
        .async_stack_keep_resident(o.get("stack_keep", 16 << 10) as usize)
        .decommit_batch_size(o.get("batch", 32) as usize)
        .pagemap_scan(if o.flag("pagemap", true) {
            Enabled::Auto
        } else {
            Enabled::No
        });
    let mut config = Config::new();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    config.memory_init_cow(o.flag("cow", true));
    config.async_stack_zeroing(o.flag("zero", true));
    config.async_stack_size(o.get("stack", 1 << 20) as usize);
    if let Some(guard) = o.0.get("guard") {
        config.memory_guard_size(guard.parse().expect("guard=BYTES"));
    }
    if let Some(reservation) = o.0.get("reservation") {
        config.memory_reservation(reservation.parse().expect("reservation=BYTES"));
    }
    config.wasm_component_model(true);
    config.concurrency_support(o.flag("concurrency", false));
    config.epoch_interruption(o.flag("epoch", true));
    Engine::new(&config).expect("an engine")
}

/// Resources of WASI that `wsgate:connect` interfaces take by `use`: they
/// are WASI's own, not to be defined again.
const WASI_RESOURCES: [&str; 4] = ["input-stream", "output-stream", "pollable", "error"];

/// Defines the `wsgate:*` imports of `component` as functions that fail
/// and resources of the host's: instantiation calls none of them.
/// (`Linker::define_unknown_imports_as_traps` would also define the newer
/// WASI versions the plugin names, next to the ones WASI's linker matches
/// by semver, with resources of their own that then do not match.)
fn stub_gateway_imports(engine: &Engine, component: &Component, linker: &mut Linker<State>) {
    use wasmtime::component::ResourceType;
    use wasmtime::component::types::ComponentItem;
    struct Stub;
    for (name, item) in component.component_type().imports(engine) {
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        if !name.starts_with("wsgate:") {
            continue;
        }
        let mut at = linker.instance(name).expect("a new instance");
        for (export, item) in instance.exports(engine) {
            match item.ty {
                ComponentItem::ComponentFunc(_) => at
                    .func_new(export, |_, _, _, _| wasmtime::bail!("stubbed"))
                    .expect("a stub"),
                ComponentItem::Resource(_) if !WASI_RESOURCES.contains(&export) => at
                    .resource(export, ResourceType::host::<Stub>(), |_, _| Ok(()))
                    .expect("a stub resource"),
                _ => {}
            }
        }
    }
}

/// Epoch deadlines reached, all stores together: each is guest code that
/// ran (instantiation runs none unless the component has a start function).
static DEADLINES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A store as the gateway makes one for a session; `sync` for a synchronous
/// instantiation, which cannot yield at a deadline.
fn store(engine: &Engine, sync: bool) -> Store<State> {
    let mut wasi = WasiCtxBuilder::new();
    wasi.arg("plugin.wasm").inherit_stderr();
    wasi.max_random_size(1 << 20);
    let state = State {
        wasi: wasi.build(),
        table: ResourceTable::new(),
        limiter: Limiter {
            granted: 0,
            limit: 64 << 20,
        },
    };
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limiter);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        DEADLINES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(if sync {
            UpdateDeadline::Continue(1)
        } else {
            UpdateDeadline::Yield(1)
        })
    });
    store
}

/// Minor page faults of this thread so far.
fn minor_faults() -> i64 {
    // SAFETY: `getrusage` writes one `rusage` into the zeroed one given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `RUSAGE_THREAD` is Linux's, which this runs on.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    usage.ru_minflt
}

/// Resident bytes of this process.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// One step's figures over all iterations.
#[derive(Default)]
struct Step {
    times: Vec<Duration>,
    faults: Vec<i64>,
}

impl Step {
    fn add(&mut self, time: Duration, faults: i64) {
        self.times.push(time);
        self.faults.push(faults);
    }

    fn report(&mut self, name: &str) {
        if self.times.is_empty() {
            return;
        }
        self.times.sort();
        self.faults.sort();
        let at = |q: f64, n: usize| ((n as f64 - 1.0) * q).round() as usize;
        let n = self.times.len();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let mean_faults = self.faults.iter().sum::<i64>() as f64 / n as f64;
        println!(
            "{name:<12} p50 {:7.1} µs  p90 {:7.1}  p99 {:7.1}  max {:8.1}  faults p50 {:3} p99 {:3} mean {:5.1}",
            us(self.times[at(0.5, n)]),
            us(self.times[at(0.9, n)]),
            us(self.times[at(0.99, n)]),
            us(self.times[n - 1]),
            self.faults[at(0.5, n)],
            self.faults[at(0.99, n)],
            mean_faults,
        );
    }
}

/// Runs the loop, returning the steps' figures.
async fn run(engine: Engine, pre: wasmtime::component::InstancePre<State>, o: &Options) -> (Step, Step, Step, Step) {
    let (iters, warmup, live) = (
        o.get("iters", 2000),
        o.get("warmup", 200),
        o.get("live", 1).max(1) as usize,
    );
    let sync = o.flag("sync", false);
    let (mut new, mut inst, mut drop_, mut total) =
        (Step::default(), Step::default(), Step::default(), Step::default());
    let spin = Duration::from_micros(o.get("spin_us", 0));
    let (gap, mut thrash) = (
        Duration::from_micros(o.get("gap_us", 0)),
        vec![0u8; o.get("thrash", 0) as usize],
    );
    let mut alive: VecDeque<Store<State>> = VecDeque::with_capacity(live);
    for i in 0..warmup + iters {
        let measured = i >= warmup;
        if !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
        let spin_start = Instant::now();
        while spin_start.elapsed() < spin {
            std::hint::spin_loop();
        }
        for (j, byte) in thrash.iter_mut().enumerate().step_by(64) {
            *byte = byte.wrapping_add(j as u8);
        }
        std::hint::black_box(&thrash);
        // Make room first, as the gateway does: a session's slot is given
        // back before the next session past the limit takes one.
        if alive.len() >= live {
            let old = alive.pop_front().expect("one alive");
            let (f0, t0) = (minor_faults(), Instant::now());
            drop(old);
            if measured {
                drop_.add(t0.elapsed(), minor_faults() - f0);
            }
        }
        let (f0, t0) = (minor_faults(), Instant::now());
        let mut s = store(&engine, sync);
        let (f1, t1) = (minor_faults(), Instant::now());
        let _instance = if sync {
            pre.instantiate(&mut s)
        } else {
            pre.instantiate_async(&mut s).await
        }
        .expect("instantiates");
        let (f2, t2) = (minor_faults(), Instant::now());
        if measured {
            new.add(t1 - t0, f1 - f0);
            inst.add(t2 - t1, f2 - f1);
            total.add(t2 - t0, f2 - f0);
        }
        alive.push_back(s);
    }
    drop(alive);
    (new, inst, drop_, total)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(plugin) = args.next() else {
        eprintln!("usage: instantiate PLUGIN.wasm [KEY=VALUE...]");
        std::process::exit(2);
    };
    let options = Options(
        args.filter_map(|a| a.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect(),
    );
    let engine = engine(&options);
    let component = Component::from_file(&engine, &plugin).expect("a component");
    let mut linker: Linker<State> = Linker::new(&engine);
    if options.flag("sync", false) {
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).expect("WASI links");
    } else {
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("WASI links");
    }
    stub_gateway_imports(&engine, &component, &mut linker);
    let pre = linker.instantiate_pre(&component).expect("instantiate_pre");

    // An epoch thread as the gateway's, so that deadlines are live.
    let weak = engine.weak();
    std::thread::spawn(move || {
        while let Some(engine) = weak.upgrade() {
            engine.increment_epoch();
            drop(engine);
            std::thread::sleep(Duration::from_millis(10));
        }
    });

    let rt = match options.0.get("rt").map(String::as_str) {
        Some("mt") => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
        _ => tokio::runtime::Builder::new_current_thread().enable_all().build(),
    }
    .expect("a tokio runtime");
    let (mut new, mut inst, mut drop_, mut total) = rt.block_on({
        let (engine, pre) = (engine.clone(), pre.clone());
        let options = Options(options.0.clone());
        async move {
            tokio::spawn(async move { run(engine, pre, &options).await })
                .await
                .expect("the loop ends")
        }
    });
    println!("{plugin} {:?}", std::env::args().skip(2).collect::<Vec<_>>());
    new.report("store");
    inst.report("instantiate");
    drop_.report("drop");
    total.report("store+inst");
    println!(
        "epoch deadlines reached: {}",
        DEADLINES.load(std::sync::atomic::Ordering::Relaxed)
    );

    let idle = options.get("idle", 0) as usize;
    if idle > 0 {
        rt.block_on(async {
            let before = rss();
            let mut stores = Vec::with_capacity(idle);
            for _ in 0..idle {
                let mut s = store(&engine, false);
                let _instance = pre.instantiate_async(&mut s).await.expect("instantiates");
                stores.push(s);
            }
            let during = rss();
            drop(stores);
            let after = rss();
            let metrics = engine.pooling_allocator_metrics().expect("a pool");
            println!(
                "idle: {} KiB resident per live instance; after drop {} KiB per slot freed \
                 (pool: memories {} KiB, stacks {} KiB kept)",
                during.saturating_sub(before) / 1024 / idle as u64,
                after.saturating_sub(before) / 1024 / idle as u64,
                metrics.unused_memory_bytes_resident() / 1024,
                metrics.unused_stack_bytes_resident().unwrap_or(0) / 1024,
            );
        });
    }
}
