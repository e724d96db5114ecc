//! Loading and running plugins, each in its own sandbox.
//!
//! A [`Runtime`] holds the wasmtime engine and the linker with everything a
//! plugin may import. [`Runtime::load`] checks and compiles a plugin once
//! and tells its world by what it exports: `wasi:cli/run` for a `client`
//! plugin, `wsgate:connect/handler` for a `gateway` plugin.
//! [`Runtime::run`] gives a client plugin a fresh store (its own arguments,
//! the host's stdio, its own connect state) and calls its `wasi:cli/run`
//! export; the gateway gives a gateway plugin a fresh store per session
//! and calls its `handle` export.
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

mod cache;
mod epoch;
mod errors;
mod linker;
mod pool;

use crate::connect::bindings::{Client, ClientPre};
use crate::connect::{self, ConnectConfig, ConnectCtx, ConnectCtxView, ConnectView};
use crate::error::{Error, ErrorKind, LimitKind};
use crate::limits::{CpuMeter, Limits, MemoryBudget, MemoryLimiter, Metered, human};
use crate::sessions::bindings::{Gateway, GatewayPre};
use crate::sessions::{self, Session};
use cache::CodeCache;
use epoch::start_epoch_ticker;
use errors::{memory_error, not_a_gateway, run_error, wasm_error};
use linker::{add_sandbox_to_linker, check_component_header, check_imports};
pub(crate) use pool::Pool;
pub use pool::PoolUsage;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// The most random bytes one `get-random-bytes` call may ask for.
const MAX_RANDOM_SIZE: u64 = 1 << 20;

/// The WebAssembly engine and linker, shared by every plugin of a host.
pub struct Runtime {
    engine: Engine,
    linker: Linker<PluginState>,
    /// Where compiled plugins are kept, when they are.
    cache: Option<CodeCache>,
}

/// A plugin checked and compiled, ready to run any number of times.
pub struct Plugin {
    name: String,
    pre: Pre,
    compile_time: Duration,
}

/// A plugin's world, ready to instantiate.
enum Pre {
    Client(ClientPre<PluginState>),
    Gateway(GatewayPre<PluginState>),
}

/// What a plugin of each world exports, for the operator's messages.
const CLIENT_EXPORT: &str = "wasi:cli/run";
const GATEWAY_EXPORT: &str = "wsgate:connect/handler";

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
pub(crate) struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    connect: ConnectCtx,
    memory: MemoryLimiter,
    cpu: Arc<CpuMeter>,
    /// Set while the instance is being made: its startup code is not
    /// interrupted to let other tasks run (see [`Runtime::store`]).
    instantiating: bool,
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
        Self::build(Config::new(), None)
    }

    /// A runtime for a gateway: instances come from a pool of `pool`'s
    /// size with copy-on-write memory images, so that one per session is
    /// cheap; compiled plugins are kept in `cache`, when given.
    pub(crate) fn for_gateway(cache: Option<&Path>, pool: Pool) -> Result<Self, Error> {
        let cache = cache.map(open_cache).transpose()?;
        let mut config = Config::new();
        pool.configure(&mut config);
        Self::build(config, cache)
    }

    /// What the instance pool holds now; `None` for a runtime without one
    /// (a [`Runtime::new`]'s).
    pub(crate) fn pool_usage(&self) -> Option<PoolUsage> {
        pool::usage(&self.engine)
    }

    /// Like [`Runtime::new`], keeping compiled plugins in `dir` (an absolute
    /// path; created if missing), so that a plugin already seen loads
    /// without compiling again.
    pub fn with_cache(dir: &Path) -> Result<Self, Error> {
        Self::build(Config::new(), Some(open_cache(dir)?))
    }

    fn build(mut config: Config, cache: Option<CodeCache>) -> Result<Self, Error> {
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
            .and_then(|()| sessions::add_to_linker(&mut linker, |state: &mut PluginState| &mut state.table))
            .map_err(|e| wasm_error(ErrorKind::Load, "cannot set up the linker", e))?;
        Ok(Runtime { engine, linker, cache })
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
        let compile = || Component::from_binary(&self.engine, &bytes);
        let component = match &self.cache {
            Some(cache) => cache.load(&self.engine, &bytes, compile),
            None => compile(),
        }
        .map_err(|e| wasm_error(ErrorKind::Load, &format!("`{shown}` is not a valid component"), e))?;
        let compile_time = started.elapsed();
        check_imports(&self.engine, &component)
            .map_err(|why| Error::new(ErrorKind::Link, format!("`{shown}` {why}")))?;
        let exports: Vec<String> = component
            .component_type()
            .exports(&self.engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let exports_one = |interface: &str| exports.iter().any(|name| name.starts_with(&format!("{interface}@")));
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| wasm_error(ErrorKind::Link, &format!("`{shown}` is not a wsgate plugin"), e))?;
        let pre = if exports_one(GATEWAY_EXPORT) {
            GatewayPre::new(instance_pre)
                .map(Pre::Gateway)
                .map_err(|e| wasm_error(ErrorKind::Link, &format!("`{shown}` is not a wsgate gateway plugin"), e))?
        } else if exports_one(CLIENT_EXPORT) {
            ClientPre::new(instance_pre)
                .map(Pre::Client)
                .map_err(|e| wasm_error(ErrorKind::Link, &format!("`{shown}` is not a wsgate client plugin"), e))?
        } else {
            return Err(Error::new(
                ErrorKind::Link,
                format!(
                    "`{shown}` exports neither `{CLIENT_EXPORT}` (a client plugin, for `wsgate run`) nor \
                     `{GATEWAY_EXPORT}` (a gateway plugin, for `wsgate serve`)"
                ),
            ));
        };
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
        let Pre::Client(pre) = &plugin.pre else {
            return Err(Error::new(
                ErrorKind::Link,
                format!(
                    "`{}` is a gateway plugin (it exports `{GATEWAY_EXPORT}`): serve it with `wsgate serve`",
                    plugin.name
                ),
            ));
        };
        let limits = options.limits;
        limits.validate()?;
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
        let memory = MemoryLimiter::new(limits.memory);
        // A limit that stops the run is counted with its connects.
        let metrics = config.metrics().cloned();
        let mut store = self.store(wasi.build(), config, &limits, memory);
        let meter = store.data().cpu.clone();

        let mut times = (Duration::ZERO, Duration::ZERO);
        let call = Metered::new(instantiate_and_run(plugin, pre, &mut store, &mut times), meter);
        let result = bounded(plugin, limits.run_time, call).await;
        let state = store.data();
        let cpu_time = state.cpu.used();
        let exit_code = result.map_err(|e| memory_error(plugin, state, e)).inspect_err(|e| {
            if let (Some(metrics), Some(limit)) = (&metrics, e.limit()) {
                metrics.limit_hit(limit);
            }
        })?;
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

impl Runtime {
    /// A store for one instance: its WASI context, its connect state under
    /// `limits`, its memory limiter, its CPU meter and epoch callback.
    fn store(
        &self,
        wasi: WasiCtx,
        config: ConnectConfig,
        limits: &Limits,
        memory: MemoryLimiter,
    ) -> Store<PluginState> {
        let state = PluginState {
            wasi,
            table: ResourceTable::new(),
            connect: ConnectCtx::with_limits(config, limits),
            memory,
            cpu: Arc::new(CpuMeter::new(limits.cpu_time)),
            instantiating: false,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.memory);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|store| {
            if let Some(exhausted) = store.data().cpu.exhausted() {
                return Err(exhausted.into());
            }
            // Instantiation runs wasmtime's startup code (element segments),
            // tens of microseconds: a tick that falls in it would put the
            // session's start behind other tasks' TLS handshakes.
            if store.data().instantiating {
                return Ok(UpdateDeadline::Continue(1));
            }
            // Let the other tasks of this thread (other plugins, their
            // connects) run before going on.
            Ok(UpdateDeadline::Yield(1))
        });
        store
    }

    /// Serves one session with a fresh instance of `plugin`, a gateway
    /// plugin, under `limits` (and `budget`, the gateway's memory shared by
    /// all sessions): instantiates it and calls its `handle`.
    ///
    /// `Ok(Err(why))` is a handler that returned an error; `Err` a plugin
    /// that trapped or was stopped at a limit. `instantiated` is set to how
    /// long instantiation took, once it is done.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn serve_session(
        &self,
        plugin: &Plugin,
        config: ConnectConfig,
        args: &[String],
        limits: &Limits,
        budget: Arc<MemoryBudget>,
        session: Session,
        instantiated: &mut Option<Duration>,
    ) -> Result<Result<(), String>, Error> {
        let Pre::Gateway(pre) = &plugin.pre else {
            return Err(not_a_gateway(plugin));
        };
        let mut wasi = WasiCtxBuilder::new();
        wasi.arg(&plugin.name).args(args);
        if crate::log::json() {
            // Every line on standard error is JSON: the plugin's too.
            wasi.stderr(crate::log::PluginLines {
                session: config.session_number(),
                route: session.route().into(),
            });
        } else {
            wasi.inherit_stderr();
        }
        wasi.max_random_size(MAX_RANDOM_SIZE);
        let memory = MemoryLimiter::with_budget(limits.memory, budget);
        let mut store = self.store(wasi.build(), config, limits, memory);
        let meter = store.data().cpu.clone();
        let call = Metered::new(
            instantiate_and_handle(plugin, pre, &mut store, session, instantiated),
            meter,
        );
        let result = bounded(plugin, limits.run_time, call).await;
        result.map_err(|e| memory_error(plugin, store.data(), e))
    }
}

impl Plugin {
    /// Refuses a plugin that is not of the `gateway` world, naming what it
    /// is instead.
    pub(crate) fn check_gateway(&self) -> Result<(), Error> {
        match self.pre {
            Pre::Gateway(_) => Ok(()),
            Pre::Client(_) => Err(not_a_gateway(self)),
        }
    }
}

/// `call`, stopped at `run_time` if it has one.
async fn bounded<T>(
    plugin: &Plugin,
    run_time: Option<Duration>,
    call: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match run_time {
        Some(limit) => tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
            Err(Error::limit_hit(
                LimitKind::RunTime,
                format!("`{}` ran past its run-time limit of {}", plugin.name, human(limit)),
            ))
        }),
        None => call.await,
    }
}

/// The cache of compiled plugins in `dir`, an absolute path (created if
/// missing).
fn open_cache(dir: &Path) -> Result<CodeCache, Error> {
    if !dir.is_absolute() {
        return Err(Error::config(format!(
            "the cache directory `{}` must be an absolute path",
            dir.display()
        )));
    }
    CodeCache::open(dir).map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!("cannot use cache directory `{}`", dir.display()),
        )
        .with_source(e)
    })
}

/// Makes an instance with `make`, its startup code not interrupted to
/// yield (see [`Runtime::store`]'s epoch callback).
async fn uninterrupted<T>(
    store: &mut Store<PluginState>,
    make: impl AsyncFnOnce(&mut Store<PluginState>) -> wasmtime::Result<T>,
) -> wasmtime::Result<T> {
    store.data_mut().instantiating = true;
    let made = make(&mut *store).await;
    store.data_mut().instantiating = false;
    made
}

/// Instantiates a gateway plugin and calls its `handle` with `session`.
async fn instantiate_and_handle(
    plugin: &Plugin,
    pre: &GatewayPre<PluginState>,
    store: &mut Store<PluginState>,
    session: Session,
    instantiated: &mut Option<Duration>,
) -> Result<Result<(), String>, Error> {
    let started = Instant::now();
    let gateway: Gateway = uninterrupted(store, async |store| pre.instantiate_async(store).await)
        .await
        .map_err(|e| run_error(plugin, e))?;
    *instantiated = Some(started.elapsed());
    let session = store
        .data_mut()
        .table
        .push(session)
        .map_err(|e| Error::new(ErrorKind::Trap, format!("`{}`: {e}", plugin.name)))?;
    gateway
        .wsgate_connect_handler()
        .call_handle(&mut *store, session)
        .await
        .map_err(|e| run_error(plugin, e))
}

/// Instantiates the plugin and calls its `run`, noting how long each took.
async fn instantiate_and_run(
    plugin: &Plugin,
    pre: &ClientPre<PluginState>,
    store: &mut Store<PluginState>,
    times: &mut (Duration, Duration),
) -> Result<i32, Error> {
    let started = Instant::now();
    let client: Client = uninterrupted(store, async |store| pre.instantiate_async(store).await)
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
