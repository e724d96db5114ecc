//! One stream's traffic, counted as it passes: into the metrics, and into
//! its gateway session's totals for the access log.

use super::net::{CloseLabel, Direction, close_label};
use crate::frames::{FrameWatcher, Seen, Start};
use crate::race::CommitStage;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The traffic one way of one stream: counts its bytes and messages into
/// the metrics and the session's totals (atomics, no lock).
#[derive(Debug, Clone)]
pub(crate) struct Meter {
    pub(super) bytes: Option<Counter>,
    pub(super) messages: Option<Counter>,
    pub(super) closes: Option<Family<CloseLabel, Counter>>,
    pub(super) session: Option<Arc<SessionTraffic>>,
    pub(super) direction: Direction,
}

impl Meter {
    /// A meter for `session`'s totals alone (no metrics to count into),
    /// or for nothing.
    pub(crate) fn session_only(direction: Direction, session: Option<Arc<SessionTraffic>>) -> Meter {
        Meter {
            bytes: None,
            messages: None,
            closes: None,
            session,
            direction,
        }
    }

    /// `n` bytes went by.
    pub(crate) fn bytes(&self, n: usize) {
        let n = n as u64;
        if let Some(bytes) = &self.bytes {
            bytes.inc_by(n);
        }
        if let Some(session) = &self.session {
            session.ways[self.direction.index()]
                .bytes
                .fetch_add(n, Ordering::Relaxed);
        }
    }

    /// What a frame watcher saw in them.
    pub(crate) fn seen(&self, seen: Seen) {
        if seen.messages > 0 {
            if let Some(messages) = &self.messages {
                messages.inc_by(seen.messages);
            }
            if let Some(session) = &self.session {
                session.ways[self.direction.index()]
                    .messages
                    .fetch_add(seen.messages, Ordering::Relaxed);
            }
        }
        if let (Some(code), Some(closes)) = (seen.close, &self.closes) {
            // Once per stream and way: the lookup's lock is no cost.
            closes
                .get_or_create(&CloseLabel {
                    direction: self.direction.label(),
                    code: close_label(code),
                })
                .inc();
        }
        if let (Some(code), Some(session)) = (seen.close, &self.session) {
            // The first Close of the session this way: a fallback's new
            // stream does not replace it.
            let _ = session.ways[self.direction.index()].close.compare_exchange(
                NO_CLOSE,
                u32::from(code),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }
}

/// One direction of one stream, counted: its bytes, and its messages and
/// first Close as a [`FrameWatcher`] follows them.
#[derive(Debug)]
pub(crate) struct Counting {
    meter: Meter,
    watcher: FrameWatcher,
}

impl Counting {
    /// Counts into `meter` a stream whose frames begin as `start` says.
    pub(crate) fn new(meter: Meter, start: Start) -> Counting {
        Counting {
            meter,
            watcher: FrameWatcher::new(start),
        }
    }

    /// `bytes` went by: counted, and followed.
    pub(crate) fn count(&mut self, bytes: &[u8]) {
        self.meter.bytes(bytes.len());
        self.follow(bytes);
    }

    /// `bytes` went by, counted already: followed only.
    pub(crate) fn follow(&mut self, bytes: &[u8]) {
        self.meter.seen(self.watcher.feed(bytes));
    }

    /// The frame watcher, to ask where the stream is.
    pub(crate) fn watcher(&self) -> &FrameWatcher {
        &self.watcher
    }
}

/// No Close frame seen (a code is at most `u16::MAX`).
const NO_CLOSE: u32 = u32::MAX;

#[derive(Debug)]
struct Way {
    bytes: AtomicU64,
    messages: AtomicU64,
    close: AtomicU32,
}

/// One gateway session's traffic, each way, counted as it passes: what an
/// access log line reads at the session's end ([`SessionTraffic::totals`]).
#[derive(Debug)]
pub(crate) struct SessionTraffic {
    /// The session's number within the gateway process (from 1): the
    /// access log's and the race log's lines of one session share it.
    id: u64,
    ways: [Way; 4],
    /// The last upstream connection a connect committed to, and at what
    /// stage (written once per connect: a lock is no cost).
    upstream: Mutex<Option<(SocketAddr, CommitStage)>>,
}

impl SessionTraffic {
    /// Session number `id`, nothing counted yet.
    pub(crate) fn new(id: u64) -> Arc<SessionTraffic> {
        Arc::new(SessionTraffic {
            id,
            upstream: Mutex::new(None),
            ways: std::array::from_fn(|_| Way {
                bytes: AtomicU64::new(0),
                messages: AtomicU64::new(0),
                close: AtomicU32::new(NO_CLOSE),
            }),
        })
    }

    /// The session's number.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// A connect (or fallback) of the session committed to `peer` at
    /// `stage`.
    pub(crate) fn committed(&self, peer: SocketAddr, stage: CommitStage) {
        *self.upstream.lock().unwrap_or_else(|e| e.into_inner()) = Some((peer, stage));
    }

    /// The upstream the session's last connect committed to, and the stage.
    pub(crate) fn upstream(&self) -> Option<(SocketAddr, CommitStage)> {
        *self.upstream.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What was counted so far.
    pub(crate) fn totals(&self) -> TrafficTotals {
        let way = |d: Direction| {
            let way = &self.ways[d.index()];
            WayTotals {
                bytes: way.bytes.load(Ordering::Relaxed),
                messages: way.messages.load(Ordering::Relaxed),
                close: u16::try_from(way.close.load(Ordering::Relaxed)).ok(),
            }
        };
        TrafficTotals {
            from_client: way(Direction::FromClient),
            to_client: way(Direction::ToClient),
            from_upstream: way(Direction::FromUpstream),
            to_upstream: way(Direction::ToUpstream),
        }
    }
}

/// A session's traffic one way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WayTotals {
    /// Bytes (on the client's side, after the request head the host read).
    pub(crate) bytes: u64,
    /// Complete WebSocket data messages.
    pub(crate) messages: u64,
    /// The first Close frame's status code (1005 for one without).
    pub(crate) close: Option<u16>,
}

/// A session's traffic, each way ([`SessionTraffic::totals`]); the
/// upstream ways add up all of the session's upstream connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TrafficTotals {
    /// Read from the client.
    pub(crate) from_client: WayTotals,
    /// Written to the client.
    pub(crate) to_client: WayTotals,
    /// Read from upstreams.
    pub(crate) from_upstream: WayTotals,
    /// Written to upstreams.
    pub(crate) to_upstream: WayTotals,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::NetMetrics;

    #[test]
    fn traffic_adds_to_the_metrics_and_to_the_session() {
        let net = NetMetrics::new();
        let session = SessionTraffic::new(1);
        let meter = net.meter(Direction::FromUpstream, Some(session.clone()));
        meter.bytes(10);
        meter.seen(Seen {
            messages: 2,
            close: None,
        });
        meter.seen(Seen {
            messages: 1,
            close: Some(1000),
        });
        // A second stream the same way (a fallback's) keeps the first close.
        let other = net.meter(Direction::FromUpstream, Some(session.clone()));
        other.seen(Seen {
            messages: 0,
            close: Some(4321),
        });
        Meter::session_only(Direction::ToClient, Some(session.clone())).bytes(3);
        let totals = session.totals();
        assert_eq!(
            totals.from_upstream,
            WayTotals {
                bytes: 10,
                messages: 3,
                close: Some(1000)
            }
        );
        assert_eq!(totals.to_client.bytes, 3);
        assert_eq!(totals.to_upstream, WayTotals::default());
        let text = net.encode();
        for line in [
            "wsgate_bytes_total{direction=\"from-upstream\"} 10\n",
            "wsgate_messages_total{direction=\"from-upstream\"} 3\n",
            // Every direction is there from the start.
            "wsgate_messages_total{direction=\"to-client\"} 0\n",
            "wsgate_closes_total{direction=\"from-upstream\",code=\"1000\"} 1\n",
            "wsgate_closes_total{direction=\"from-upstream\",code=\"4000-4999\"} 1\n",
        ] {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
    }
}
