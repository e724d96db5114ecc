//! What a plugin may import: the WASI interfaces of a command, minus
//! sockets, and `wsgate:connect`.

use super::PluginState;
use wasmtime::Engine;
use wasmtime::component::{Component, HasData, Linker, ResourceTable};
use wasmtime_wasi::cli::{WasiCli, WasiCliView as _};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView as _};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView as _};
use wasmtime_wasi::p2::bindings as wasi;
use wasmtime_wasi::random::WasiRandom;

/// The [`HasData`] of the `wasi:io` interfaces: they work on the resource
/// table alone.
struct WasiIo;

impl HasData for WasiIo {
    type Data<'a> = &'a mut ResourceTable;
}

/// Adds the WASI interfaces a plugin may use: those of a command, minus
/// sockets. Compare `wasmtime_wasi::p2::add_to_linker_async`, which adds
/// them all.
pub(super) fn add_sandbox_to_linker(l: &mut Linker<PluginState>) -> wasmtime::Result<()> {
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
pub(super) fn check_imports(engine: &Engine, component: &Component) -> Result<(), String> {
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

/// Tells a component from a core module from anything else by the header,
/// so the operator learns what the file is rather than a parser's message.
pub(super) fn check_component_header(bytes: &[u8]) -> Result<(), &'static str> {
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
