//! The engine's epoch: the clock that interrupts plugins.

use crate::limits::EPOCH_TICK;
use wasmtime::Engine;

/// Advances the engine's epoch every [`EPOCH_TICK`], for as long as the
/// engine lives. Without it plugins would never be interrupted: a spinning
/// one would hold its thread for ever.
pub(super) fn start_epoch_ticker(engine: &Engine) -> std::io::Result<()> {
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
