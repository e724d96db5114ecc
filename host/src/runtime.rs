//! Loading and running plugins.
//!
//! A [`Runtime`] holds the wasmtime engine and the linker with everything a
//! plugin of the `client` world may import. [`Runtime::load`] checks and
//! compiles a plugin once; [`Runtime::run`] gives it a fresh store (its own
//! arguments, the host's stdio, its own connect state) and calls its
//! `wasi:cli/run` export.

use crate::connect::bindings::{Client, ClientPre};
use crate::connect::{self, ConnectConfig, ConnectCtx, ConnectCtxView, ConnectView};
use crate::error::{Error, ErrorKind};
use std::path::Path;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Cache, CacheConfig, Config, Engine, Store};
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

/// How to run a plugin: its arguments.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    args: Vec<String>,
}

impl RunOptions {
    /// Runs the plugin with `args` (not counting `argv[0]`, which is the
    /// plugin's name).
    pub fn new<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RunOptions {
            args: args.into_iter().map(Into::into).collect(),
        }
    }
}

/// How a plugin run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    exit_code: i32,
    instantiate_time: Duration,
    run_time: Duration,
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
}

/// The data of one plugin instance's store.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    connect: ConnectCtx,
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
        let engine = Engine::new(&config).map_err(|e| wasm_error(ErrorKind::Load, "cannot create the engine", e))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
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

    /// Runs `plugin` to completion under `config`.
    ///
    /// A plugin that exits, with any code, gives an [`Outcome`]; one that
    /// traps gives an error of kind [`ErrorKind::Trap`].
    pub async fn run(&self, plugin: &Plugin, config: ConnectConfig, options: RunOptions) -> Result<Outcome, Error> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.inherit_stdio().arg(&plugin.name).args(&options.args);
        let state = PluginState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            connect: ConnectCtx::new(config),
        };
        let mut store = Store::new(&self.engine, state);

        let started = Instant::now();
        let client: Client = plugin
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| run_error(plugin, e))?;
        let instantiate_time = started.elapsed();

        let started = Instant::now();
        let result = client.wasi_cli_run().call_run(&mut store).await;
        let run_time = started.elapsed();
        let exit_code = match result {
            Ok(Ok(())) => 0,
            Ok(Err(())) => 1,
            Err(e) => match e.downcast_ref::<I32Exit>() {
                Some(exit) => exit.0,
                None => return Err(run_error(plugin, e)),
            },
        };
        Ok(Outcome {
            exit_code,
            instantiate_time,
            run_time,
        })
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
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        return Error::new(ErrorKind::Trap, format!("`{}`: {trap}", plugin.name));
    }
    Error::new(
        ErrorKind::Trap,
        format!("`{}`: {}", plugin.name, first_line(&format!("{e:#}"))),
    )
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
