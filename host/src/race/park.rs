//! Attempts kept for a fallback: those that reached the commit stage after
//! the winner, held open and unwritten for a grace period.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// A parked attempt. Dropping it closes the stream, if a fallback has not
/// taken it and its grace has not ended.
pub(super) struct Parked<S> {
    addr: SocketAddr,
    slot: Arc<Mutex<Option<S>>>,
    expiry: JoinHandle<()>,
}

impl<S: Send + 'static> Parked<S> {
    /// Parks `stream` for `grace`; after it the stream is closed.
    pub(super) fn new(addr: SocketAddr, stream: S, grace: Duration) -> Self {
        let slot = Arc::new(Mutex::new(Some(stream)));
        let held = slot.clone();
        let expiry = tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            // The grace is over: close it.
            let stream = held.lock().ok().and_then(|mut s| s.take());
            drop(stream);
        });
        Parked { addr, slot, expiry }
    }
}

impl<S> Parked<S> {
    /// The address of the attempt.
    pub(super) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The stream, if it is still open.
    pub(super) fn take(&self) -> Option<S> {
        self.slot.lock().ok()?.take()
    }
}

impl<S> Drop for Parked<S> {
    fn drop(&mut self) {
        self.expiry.abort();
        drop(self.take());
    }
}
