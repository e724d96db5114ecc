//! The runtime's errors as the operator reads them: which plugin, and the
//! limit or the trap that stopped it, in one line.

use super::{CLIENT_EXPORT, Plugin, PluginState};
use crate::error::{Error, ErrorKind, LimitKind};
use crate::limits::{CpuExhausted, bytes};

/// A client plugin given where a gateway plugin is wanted.
pub(super) fn not_a_gateway(plugin: &Plugin) -> Error {
    Error::new(
        ErrorKind::Link,
        format!(
            "`{}` is a client plugin (it exports `{CLIENT_EXPORT}`): run it with `wsgate run`",
            plugin.name
        ),
    )
}

/// A trap right after a refused `memory.grow` is the memory limit, whatever
/// the plugin did on the way (Rust aborts): says so.
pub(super) fn memory_error(plugin: &Plugin, state: &PluginState, e: Error) -> Error {
    if e.kind() != ErrorKind::Trap {
        return e;
    }
    if let Some(budget) = state.memory.spent_budget() {
        return Error::limit_hit(
            LimitKind::PluginMemory,
            format!(
                "`{}` ran out of memory: the gateway's plugin memory ({}, all instances together) is in use",
                plugin.name,
                bytes(budget.limit())
            ),
        );
    }
    match state.memory.refused() {
        Some(desired) => Error::limit_hit(
            LimitKind::Memory,
            format!(
                "`{}` ran out of memory: it asked for {} of linear memory in all, its limit is {}",
                plugin.name,
                bytes(desired),
                bytes(state.memory.limit())
            ),
        ),
        None => e,
    }
}

/// The first line of a wasmtime error, with the error itself as the cause.
pub(super) fn wasm_error(kind: ErrorKind, what: &str, e: wasmtime::Error) -> Error {
    Error::new(kind, format!("{what}: {}", first_line(&format!("{e:#}")))).with_stated_source(e)
}

/// An error out of a running plugin: a trap names its cause; anything else
/// (a host error, an instantiation failure) its first line.
pub(super) fn run_error(plugin: &Plugin, e: wasmtime::Error) -> Error {
    if let Some(cpu) = e.downcast_ref::<CpuExhausted>() {
        let message = format!("`{}` {cpu}", plugin.name);
        return Error::limit_hit(LimitKind::CpuTime, message).with_stated_source(e);
    }
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        let message = format!("`{}`: {trap}", plugin.name);
        return Error::new(ErrorKind::Trap, message).with_stated_source(e);
    }
    // A host function's error (a write beyond the budget, say) comes
    // wrapped in the wasm backtrace: the cause is what the operator needs.
    let text = if e.downcast_ref::<wasmtime::WasmBacktrace>().is_some() {
        e.root_cause().to_string()
    } else {
        format!("{e:#}")
    };
    Error::new(ErrorKind::Trap, format!("`{}`: {}", plugin.name, first_line(&text))).with_stated_source(e)
}

/// The first line of `s` (a wasmtime error spans several).
fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}
