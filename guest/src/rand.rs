//! Randomness for handshake keys and frame masks.

use crate::error::Error;

/// Fills `buf` from the platform's entropy source (`getrandom`: the
/// `getrandom` system call natively, `wasi:random` in a component).
pub(crate) fn fill(buf: &mut [u8]) -> Result<(), Error> {
    getrandom::fill(buf).map_err(|e| Error::from(std::io::Error::other(format!("no randomness available: {e}"))))
}

/// Fills `buf` with a value that is random when the platform allows and
/// unique in any case.
///
/// Used for `Sec-WebSocket-Key` only, whose role is a nonce proving that the
/// server read this very request (RFC 6455 §1.3); it is not a secret. A
/// platform without entropy should not make the handshake impossible, so on
/// failure the key is derived from the clock and a process-wide counter.
pub(crate) fn fill_nonce(buf: &mut [u8; 16]) {
    if getrandom::fill(buf).is_ok() {
        return;
    }
    use sha1::{Digest, Sha1};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let digest = Sha1::new()
        .chain_update(n.to_le_bytes())
        .chain_update(t.to_le_bytes())
        .chain_update((buf.as_ptr() as usize).to_le_bytes())
        .finalize();
    buf.copy_from_slice(&digest[..16]);
}

/// Masking keys, drawn from the entropy source in batches.
///
/// Every client frame needs a fresh unpredictable key (RFC 6455 §5.3). One
/// call to the entropy source per frame is a system call (or a host call in
/// a component) per frame; a batch of 64 keys makes it one per 64 frames.
pub(crate) struct MaskPool {
    pool: [u8; 256],
    used: usize,
}

impl MaskPool {
    pub(crate) fn new() -> MaskPool {
        MaskPool {
            pool: [0; 256],
            used: 256,
        }
    }

    /// The next masking key.
    pub(crate) fn next(&mut self) -> Result<[u8; 4], Error> {
        if self.used + 4 > self.pool.len() {
            fill(&mut self.pool)?;
            self.used = 0;
        }
        let mut key = [0; 4];
        key.copy_from_slice(&self.pool[self.used..self.used + 4]);
        self.used += 4;
        Ok(key)
    }
}

impl std::fmt::Debug for MaskPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The keys are not shown: masking relies on their being unknown.
        f.write_str("MaskPool")
    }
}
