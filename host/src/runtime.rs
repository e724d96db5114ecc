//! Loading and running plugins, each in its own sandbox.
//!
//! A [`Runtime`] holds the wasmtime engine and the linker with everything a
//! plugin of the `client` world may import. [`Runtime::load`] checks and
//! compiles a plugin once; [`Runtime::run`] gives it a fresh store (its own
//! arguments, the host's stdio, its own connect state) and calls its
//! `wasi:cli/run` export.
//!
//! # The sandbox
//!
//! A plugin gets the WASI interfaces of a command (arguments, stdio,
//! clocks, random, exit) and `wsgate:connect`, and nothing else:
//!
//! - no `wasi:sockets`: a plugin that imports it is refused at load, with
//!   the interface named. Everything it reaches goes through `connect`,
//!   under the operator's policy;
//! - `wasi:filesystem` is linked (Rust's standard library imports it) with
//!   no preopened directory, so every path fails to open;
//! - no environment variables, and only the arguments the operator gave;
//! - the [`Limits`] of its instance: linear memory, CPU time (epoch
//!   interruption), wall-clock time, connections, connects per second and
//!   the host's buffer per stream. A plugin over a limit traps or gets an
//!   error; the host and the other plugins go on.

use crate::connect::bindings::{Client, ClientPre};
use crate::connect::{self, ConnectConfig, ConnectCtx, ConnectCtxView, ConnectView};
use crate::error::{Error, ErrorKind};
use crate::limits::{EPOCH_TICK, Limits};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasData, Linker, ResourceTable};
use wasmtime::{Cache, CacheConfig, Config, Engine, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::cli::{WasiCli, WasiCliView as _};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView as _};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView as _};
use wasmtime_wasi::p2::bindings as wasi;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// The WebAssembly engine and linker, shared by every plugin of a host.
pub struct Runtime {
    engine: Engine,
    linker: Linker<PluginState>,
}

/// A plugin checked and compiled, ready to run any number of times.
pub struct Plugin {
    name: String,
    pre: ClientPre<PluginState>,
    compile_time: Duration,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("compile_time", &self.compile_time)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// The plugin's file name, as it is given to the plugin as `argv[0]`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long compiling the plugin took.
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }
}

/// How to run a plugin: its arguments, its limits, where its output goes.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    args: Vec<String>,
    limits: Limits,
    capture: Option<usize>,
}

impl RunOptions {
    /// Runs the plugin with `args` (not counting `argv[0]`, which is the
    /// plugin's name) under the default [`Limits`], its output going to the
    /// host's standard output and error.
    pub fn new<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RunOptions {
            args: args.into_iter().map(Into::into).collect(),
            ..RunOptions::default()
        }
    }

    /// Runs the plugin under `limits`.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Keeps the plugin's standard output and error (up to `max` bytes
    /// each; writes beyond fail) for [`Outcome::stdout`] and
    /// [`Outcome::stderr`], instead of passing them to the host's. For
    /// running several plugins side by side.
    pub fn capture_output(mut self, max: usize) -> Self {
        self.capture = Some(max);
        self
    }
}

/// How a plugin run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    exit_code: i32,
    instantiate_time: Duration,
    run_time: Duration,
    cpu_time: Duration,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Outcome {
    /// The plugin's exit status: 0 when `main` returned normally, the code
    /// it passed to `exit`, 1 when `run` returned an error.
    pub fn exit_code(&self) -> i32 {
        self.exit_code
    }

    /// How long instantiation took.
    pub fn instantiate_time(&self) -> Duration {
        self.instantiate_time
    }

    /// How long the plugin's `run` took (its connects included).
    pub fn run_time(&self) -> Duration {
        self.run_time
    }

    /// How long the plugin's own code ran, as the CPU limit counts it.
    pub fn cpu_time(&self) -> Duration {
        self.cpu_time
    }

    /// What the plugin wrote to its standard output, when
    /// [captured](RunOptions::capture_output).
    pub fn stdout(&self) -> &[u8] {
        &self.stdout
    }

    /// What the plugin wrote to its standard error, when
    /// [captured](RunOptions::capture_output).
    pub fn stderr(&self) -> &[u8] {
        &self.stderr
    }
}

/// The data of one plugin instance's store.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    connect: ConnectCtx,
    memory: MemoryLimiter,
    cpu: Arc<CpuMeter>,
}

/// The most table elements a plugin instance may have, all its tables
/// together: far more than any plugin's function tables need, far less
/// than would hurt the host.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// The most random bytes one `get-random-bytes` call may ask for.
const MAX_RANDOM_SIZE: u64 = 1 << 20;

/// The most core instances, memories and tables a plugin may create: a
/// Rust plugin has a handful of each. The byte and element totals bound
/// what they hold; these bound the host's bookkeeping.
const MAX_INSTANCES: usize = 100;
const MAX_MEMORIES: usize = 100;
const MAX_TABLES: usize = 100;

/// Holds a plugin instance to its memory limit, counting all its linear
/// memories together (a component may hold several core instances, and a
/// core module several memories), and remembers a refusal so that the trap
/// that follows (Rust aborts when an allocation fails) can be told as what
/// it is.
struct MemoryLimiter {
    limit: usize,
    /// Bytes of linear memory granted so far, all memories together.
    memory: usize,
    /// Table elements granted so far, all tables together.
    table_elements: usize,
    refused: Option<usize>,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        // `memory.grow` returns -1 beyond the limit, as WebAssembly lets a
        // host do; the plugin may cope with it.
        let total = self.memory.saturating_add(desired.saturating_sub(current));
        if total > self.limit {
            self.refused = Some(self.refused.map_or(total, |d| d.max(total)));
            return Ok(false);
        }
        self.memory = total;
        Ok(true)
    }

    fn table_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.table_elements.saturating_add(desired.saturating_sub(current));
        if total > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        self.table_elements = total;
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

/// Counts the CPU time a plugin's run takes: the time its store's future
/// spends being polled (the plugin's code, and the host's work inside its
/// calls: a loop of cheap host calls is spinning too), read from the
/// polling thread's CPU clock. Waiting (on the network, or for a core on a
/// busy host) happens between polls or off the CPU, so it does not count.
///
/// The future is wrapped in [`Metered`]; the epoch callback reads the
/// clock from inside a poll, on the same thread.
#[derive(Debug)]
struct CpuMeter {
    budget: Option<Duration>,
    /// CPU time of the polls that ended.
    used: AtomicU64,
    /// The thread's CPU clock when the current poll began; `u64::MAX`
    /// between polls.
    poll_began: AtomicU64,
}

impl CpuMeter {
    const NOT_POLLING: u64 = u64::MAX;

    fn new(budget: Option<Duration>) -> Self {
        CpuMeter {
            budget,
            used: AtomicU64::new(0),
            poll_began: AtomicU64::new(Self::NOT_POLLING),
        }
    }

    /// The CPU time used so far, the current poll included.
    fn used(&self) -> Duration {
        let mut used = self.used.load(Ordering::Relaxed);
        let began = self.poll_began.load(Ordering::Relaxed);
        if began != Self::NOT_POLLING {
            used += thread_cpu_ns().saturating_sub(began);
        }
        Duration::from_nanos(used)
    }
}

/// A future whose polls are charged to a [`CpuMeter`].
struct Metered<F: Future> {
    inner: Pin<Box<F>>,
    meter: Arc<CpuMeter>,
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let began = thread_cpu_ns();
        self.meter.poll_began.store(began, Ordering::Relaxed);
        let polled = self.inner.as_mut().poll(cx);
        let spent = thread_cpu_ns().saturating_sub(began);
        self.meter.used.fetch_add(spent, Ordering::Relaxed);
        self.meter.poll_began.store(CpuMeter::NOT_POLLING, Ordering::Relaxed);
        polled
    }
}

/// The calling thread's CPU time, in nanoseconds.
#[cfg(unix)]
#[allow(unsafe_code)]
fn thread_cpu_ns() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `clock_gettime` writes a `timespec` through a pointer to one
    // that lives for the call; CLOCK_THREAD_CPUTIME_ID exists on every Unix
    // wsgate builds for. On failure `now` stays zero.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    u64::try_from(now.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(now.tv_nsec).unwrap_or(0)
}

/// Elsewhere, wall-clock time inside polls (which also counts the time the
/// OS gives the thread to others).
#[cfg(not(unix))]
fn thread_cpu_ns() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// The error an epoch callback stops a plugin with when its CPU budget is
/// spent.
#[derive(Debug)]
struct CpuExhausted(Duration);

impl std::fmt::Display for CpuExhausted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "used its CPU time limit of {}", human(self.0))
    }
}

impl std::error::Error for CpuExhausted {}

/// The [`HasData`] of the `wasi:io` interfaces: they work on the resource
/// table alone.
struct WasiIo;

impl HasData for WasiIo {
    type Data<'a> = &'a mut ResourceTable;
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl ConnectView for PluginState {
    fn connect(&mut self) -> ConnectCtxView<'_> {
        ConnectCtxView {
            ctx: &mut self.connect,
            table: &mut self.table,
        }
    }
}

impl Runtime {
    /// Creates the engine and the linker. Plugins are compiled on every
    /// load; see [`Runtime::with_cache`] to keep compiled code.
    pub fn new() -> Result<Self, Error> {
        Self::build(Config::new())
    }

    /// Like [`Runtime::new`], keeping compiled plugins in `dir` (an absolute
    /// path; created if missing), so that a plugin already seen loads
    /// without compiling again.
    pub fn with_cache(dir: &Path) -> Result<Self, Error> {
        if !dir.is_absolute() {
            return Err(Error::config(format!(
                "the cache directory `{}` must be an absolute path",
                dir.display()
            )));
        }
        let mut cache = CacheConfig::new();
        cache.with_directory(dir);
        let cache = Cache::new(cache).map_err(|e| {
            wasm_error(
                ErrorKind::Config,
                &format!("cannot use cache directory `{}`", dir.display()),
                e,
            )
        })?;
        let mut config = Config::new();
        config.cache(Some(cache));
        Self::build(config)
    }

    fn build(mut config: Config) -> Result<Self, Error> {
        config.wasm_component_model(true);
        // Plugins are interrupted at every epoch tick: to yield their
        // thread to other tasks, and to be stopped when their CPU time is
        // spent.
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| wasm_error(ErrorKind::Load, "cannot create the engine", e))?;
        start_epoch_ticker(&engine)
            .map_err(|e| Error::new(ErrorKind::Io, "cannot start the epoch thread").with_source(e))?;
        let mut linker = Linker::new(&engine);
        add_sandbox_to_linker(&mut linker)
            .and_then(|()| connect::add_to_linker(&mut linker))
            .map_err(|e| wasm_error(ErrorKind::Load, "cannot set up the linker", e))?;
        Ok(Runtime { engine, linker })
    }

    /// Reads, checks and compiles the plugin at `path`.
    ///
    /// A file that is not a WebAssembly component (a core module, text,
    /// random bytes) is refused with an error that says what it is.
    pub fn load(&self, path: &Path) -> Result<Plugin, Error> {
        let shown = path.display();
        let bytes = std::fs::read(path)
            .map_err(|e| Error::new(ErrorKind::Load, format!("cannot read `{shown}`")).with_source(e))?;
        check_component_header(&bytes).map_err(|why| Error::new(ErrorKind::Load, format!("`{shown}` {why}")))?;
        let started = Instant::now();
        let component = Component::from_binary(&self.engine, &bytes)
            .map_err(|e| wasm_error(ErrorKind::Load, &format!("`{shown}` is not a valid component"), e))?;
        let compile_time = started.elapsed();
        check_imports(&self.engine, &component)
            .map_err(|why| Error::new(ErrorKind::Link, format!("`{shown}` {why}")))?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(ClientPre::new)
            .map_err(|e| wasm_error(ErrorKind::Link, &format!("`{shown}` is not a wsgate client plugin"), e))?;
        let name = path
            .file_name()
            .map_or_else(|| shown.to_string(), |n| n.to_string_lossy().into_owned());
        Ok(Plugin {
            name,
            pre,
            compile_time,
        })
    }

    /// Runs `plugin` to completion under `config` and the limits of
    /// `options`.
    ///
    /// A plugin that exits, with any code, gives an [`Outcome`]; one that
    /// traps gives an error of kind [`ErrorKind::Trap`], one stopped at a
    /// limit an error of kind [`ErrorKind::Limit`].
    pub async fn run(&self, plugin: &Plugin, config: ConnectConfig, options: RunOptions) -> Result<Outcome, Error> {
        let limits = options.limits;
        limits.validate().map_err(|why| Error::new(ErrorKind::Config, why))?;
        let mut wasi = WasiCtxBuilder::new();
        // Arguments and stdio only: no environment, no preopened
        // directory, no sockets.
        wasi.arg(&plugin.name).args(&options.args);
        // A call for random bytes is done in one go on the host's thread:
        // bound it (wasmtime's own bound is 64 MiB).
        wasi.max_random_size(MAX_RANDOM_SIZE);
        let captured = options
            .capture
            .map(|max| (MemoryOutputPipe::new(max), MemoryOutputPipe::new(max)));
        match &captured {
            Some((stdout, stderr)) => {
                wasi.stdout(stdout.clone()).stderr(stderr.clone());
            }
            None => {
                wasi.inherit_stdio();
            }
        }
        let state = PluginState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            connect: ConnectCtx::with_limits(config, &limits),
            memory: MemoryLimiter {
                limit: limits.memory,
                memory: 0,
                table_elements: 0,
                refused: None,
            },
            cpu: Arc::new(CpuMeter::new(limits.cpu_time)),
        };
        let meter = state.cpu.clone();
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.memory);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|store| {
            let cpu = &store.data().cpu;
            if let Some(budget) = cpu.budget
                && cpu.used() >= budget
            {
                return Err(CpuExhausted(budget).into());
            }
            // Let the other tasks of this thread (other plugins, their
            // connects) run before going on.
            Ok(UpdateDeadline::Yield(1))
        });

        let mut times = (Duration::ZERO, Duration::ZERO);
        let call = Metered {
            inner: Box::pin(instantiate_and_run(plugin, &mut store, &mut times)),
            meter,
        };
        let result = match limits.run_time {
            Some(limit) => tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
                Err(Error::new(
                    ErrorKind::Limit,
                    format!("`{}` ran past its run-time limit of {}", plugin.name, human(limit)),
                ))
            }),
            None => call.await,
        };
        let state = store.data();
        let cpu_time = state.cpu.used();
        let exit_code = match result {
            Ok(code) => code,
            Err(e) if e.kind() == ErrorKind::Trap => {
                // A trap right after a refused `memory.grow` is the memory
                // limit, whatever the plugin did on the way (Rust aborts).
                if let Some(desired) = state.memory.refused {
                    return Err(Error::new(
                        ErrorKind::Limit,
                        format!(
                            "`{}` ran out of memory: it asked for {} of linear memory in all, its limit is {}",
                            plugin.name,
                            bytes(desired),
                            bytes(state.memory.limit)
                        ),
                    ));
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let (stdout, stderr) = captured.map_or_else(Default::default, |(out, err)| {
            (out.contents().to_vec(), err.contents().to_vec())
        });
        Ok(Outcome {
            exit_code,
            instantiate_time: times.0,
            run_time: times.1,
            cpu_time,
            stdout,
            stderr,
        })
    }
}

/// Instantiates the plugin and calls its `run`, noting how long each took.
async fn instantiate_and_run(
    plugin: &Plugin,
    store: &mut Store<PluginState>,
    times: &mut (Duration, Duration),
) -> Result<i32, Error> {
    let started = Instant::now();
    let client: Client = plugin
        .pre
        .instantiate_async(&mut *store)
        .await
        .map_err(|e| run_error(plugin, e))?;
    times.0 = started.elapsed();

    let started = Instant::now();
    let result = client.wasi_cli_run().call_run(&mut *store).await;
    times.1 = started.elapsed();
    match result {
        Ok(Ok(())) => Ok(0),
        Ok(Err(())) => Ok(1),
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(exit) => Ok(exit.0),
            None => Err(run_error(plugin, e)),
        },
    }
}

/// Adds the WASI interfaces a plugin may use: those of a command, minus
/// sockets. Compare `wasmtime_wasi::p2::add_to_linker_async`, which adds
/// them all.
fn add_sandbox_to_linker(l: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    type T = PluginState;
    wasi::io::error::add_to_linker::<T, WasiIo>(l, |t| &mut t.table)?;
    wasi::io::poll::add_to_linker::<T, WasiIo>(l, |t| &mut t.table)?;
    wasi::io::streams::add_to_linker::<T, WasiIo>(l, |t| &mut t.table)?;
    wasi::clocks::wall_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    wasi::clocks::monotonic_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    wasi::random::random::add_to_linker::<T, WasiRandom>(l, |t| t.wasi.random())?;
    wasi::random::insecure::add_to_linker::<T, WasiRandom>(l, |t| t.wasi.random())?;
    wasi::random::insecure_seed::add_to_linker::<T, WasiRandom>(l, |t| t.wasi.random())?;
    wasi::cli::exit::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::cli::environment::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::cli::stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::cli::stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::cli::stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::cli::terminal_input::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::cli::terminal_output::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::cli::terminal_stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::cli::terminal_stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::cli::terminal_stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    // With no preopened directory there is nothing to open: the interface
    // is here so that plugins built with Rust's standard library link.
    wasi::filesystem::types::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;
    wasi::filesystem::preopens::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;
    Ok(())
}

/// Refuses a plugin that imports `wasi:sockets` by name, before the linker
/// would refuse it with a generic message: a plugin reaches the network
/// through `wsgate:connect` only.
fn check_imports(engine: &Engine, component: &Component) -> Result<(), String> {
    let ty = component.component_type();
    let mut imports = ty.imports(engine).map(|(name, _)| name);
    match imports.find(|name| name.starts_with("wasi:sockets/")) {
        Some(name) => Err(format!(
            "imports `{name}`: plugins get no sockets of their own, they reach the network through \
             `wsgate:connect/types` under the operator's policy"
        )),
        None => Ok(()),
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`], for as long as the
/// engine lives. Without it plugins would never be interrupted: a spinning
/// one would hold its thread for ever.
fn start_epoch_ticker(engine: &Engine) -> std::io::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("wsgate-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map(drop)
}

/// A duration as an operator writes it: `1500 ms`, `3 s`, `1 h`.
fn human(d: Duration) -> String {
    if d.subsec_millis() != 0 || d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d.as_secs().is_multiple_of(3600) {
        format!("{} h", d.as_secs() / 3600)
    } else {
        format!("{} s", d.as_secs())
    }
}

/// A size as an operator writes it: `64 MiB`, `300 KiB`, `100 bytes`.
fn bytes(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

/// Tells a component from a core module from anything else by the header,
/// so the operator learns what the file is rather than a parser's message.
fn check_component_header(bytes: &[u8]) -> Result<(), &'static str> {
    const MAGIC: &[u8; 4] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err("is not WebAssembly (no `\\0asm` header): a plugin is a component built for wasm32-wasip2");
    }
    // Bytes 4..8 hold the version and the layer: 1.0 layer 0 is a core
    // module, layer 1 a component.
    match bytes[6..8] {
        [0, 0] => Err("is a core WebAssembly module, not a component: build the plugin for wasm32-wasip2"),
        [1, 0] => Ok(()),
        _ => Err("has an unknown WebAssembly version or layer"),
    }
}

/// The first line of a wasmtime error, with the error itself as the cause.
fn wasm_error(kind: ErrorKind, what: &str, e: wasmtime::Error) -> Error {
    Error::new(kind, format!("{what}: {}", first_line(&format!("{e:#}"))))
}

/// An error out of a running plugin: a trap names its cause; anything else
/// (a host error, an instantiation failure) its first line.
fn run_error(plugin: &Plugin, e: wasmtime::Error) -> Error {
    if let Some(cpu) = e.downcast_ref::<CpuExhausted>() {
        return Error::new(ErrorKind::Limit, format!("`{}` {cpu}", plugin.name));
    }
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        return Error::new(ErrorKind::Trap, format!("`{}`: {trap}", plugin.name));
    }
    // A host function's error (a write beyond the budget, say) comes
    // wrapped in the wasm backtrace: the cause is what the operator needs.
    let text = if e.downcast_ref::<wasmtime::WasmBacktrace>().is_some() {
        e.root_cause().to_string()
    } else {
        format!("{e:#}")
    };
    Error::new(ErrorKind::Trap, format!("`{}`: {}", plugin.name, first_line(&text)))
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_told_apart() {
        assert!(check_component_header(b"\0asm\x0d\0\x01\0").is_ok());
        assert!(
            check_component_header(b"\0asm\x01\0\0\0")
                .unwrap_err()
                .contains("core WebAssembly module")
        );
        assert!(
            check_component_header(b"\x7fELF\x02\x01\x01\0")
                .unwrap_err()
                .contains("not WebAssembly")
        );
        assert!(check_component_header(b"\0as").unwrap_err().contains("not WebAssembly"));
    }
}
