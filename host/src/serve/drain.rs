//! The drain before a gateway stops: no new sessions, every plugin told
//! that the gateway is going away, a bounded wait for the sessions to end
//! by themselves, then the rest closed.

use super::Shared;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::task::JoinSet;

/// After the drain timeout, how long the connections still open have to
/// say goodbye (a Close 1001, bounded by its own timeout) before they are
/// dropped.
const CUT_GRACE: Duration = Duration::from_secs(3);

/// What a drain did: how many of the sessions open when it began ended by
/// themselves, and how many the host closed at its timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Sessions that ended within the drain timeout.
    pub ended: usize,
    /// Sessions still open at the timeout, closed by the host (with a
    /// Close 1001 where one could still be said).
    pub cut: usize,
}

impl std::fmt::Display for Drained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // One shape whatever the numbers: scripts read it.
        write!(f, "{} sessions ended by themselves, {} cut", self.ended, self.cut)
    }
}

/// Drains the gateway whose accept loops are `accepting`: each closes its
/// listener when told and ends once its connections have.
pub(super) async fn drain(shared: &Shared, mut accepting: JoinSet<()>) -> Drained {
    let open = shared.sessions.load(Ordering::Acquire);
    shared.going_away.send_replace(true);
    let timeout = shared.current().drain_timeout;
    let all_ended = tokio::time::timeout(timeout, async { while accepting.join_next().await.is_some() {} }).await;
    if all_ended.is_ok() {
        return Drained { ended: open, cut: 0 };
    }
    let cut = shared.sessions.load(Ordering::Acquire);
    shared.cut.send_replace(true);
    let _ = tokio::time::timeout(CUT_GRACE, async { while accepting.join_next().await.is_some() {} }).await;
    // What did not end in the grace is dropped: its sockets close.
    accepting.shutdown().await;
    Drained {
        ended: open.saturating_sub(cut),
        cut,
    }
}
