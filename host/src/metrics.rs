//! The gateway's metrics: what the admin listener's `/metrics` shows, in
//! the OpenMetrics text format (Prometheus reads it).
//!
//! Names carry the `wsgate_` prefix and their base unit; counters end in
//! `_total`. Labels are few and bounded: a route's name (from the
//! configuration), an HTTP status the host answers with, how a session
//! ended, and fixed sets (a connect's outcome, an address family, a commit
//! stage, a direction). Nothing a client sends becomes a label.
//!
//! Two parts: [`Metrics`], the gateway's sessions, and [`NetMetrics`], the
//! connects and the traffic, which every [`ConnectConfig`] made from the
//! gateway's reports into (and `wsgate run --metrics-file` writes out).
//!
//! [`ConnectConfig`]: crate::ConnectConfig

use crate::error::LimitKind;
use crate::frames::{FrameWatcher, Seen, Start};
use crate::race::ConnectError;
use crate::report::{Event, EventKind};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// The content type of [`Metrics::encode`]'s text.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndLabel {
    route: String,
    outcome: &'static str,
}

/// How a session ended, as the `outcome` label says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The handler returned.
    Done,
    /// The handler returned an error.
    Refused,
    /// The plugin trapped.
    Trap,
    /// The plugin was stopped at one of its limits.
    Limit,
    /// The host closed a session that went quiet for its idle timeout.
    Idle,
    /// Anything else the host met (a failed instantiation, say).
    Failed,
    /// Still open when a drain's timeout passed: closed by the host.
    Cut,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Refused => "refused",
            Outcome::Trap => "trap",
            Outcome::Limit => "limit",
            Outcome::Idle => "idle",
            Outcome::Failed => "failed",
            Outcome::Cut => "cut",
        }
    }
}

/// Every metric of a gateway, registered once; cheap to update from any
/// task (atomics).
pub(crate) struct Metrics {
    registry: Registry,
    sessions_active: Family<RouteLabel, Gauge>,
    sessions: Family<RouteLabel, Counter>,
    ended: Family<EndLabel, Counter>,
    answers: Family<StatusLabel, Counter>,
    limits: Family<KindLabel, Counter>,
    instantiation: Histogram,
    reloads: Family<OutcomeLabel, Counter>,
    net: NetMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// The metrics of a gateway with `routes`: each route's session
    /// counters start at 0, so that a dashboard sees them before the first
    /// session. `net` is where the gateway's connects and traffic are
    /// counted: shown with the rest.
    pub(crate) fn new<'a>(routes: impl IntoIterator<Item = &'a str>, net: NetMetrics) -> Metrics {
        let mut registry = Registry::with_prefix("wsgate");
        let sessions_active = Family::<RouteLabel, Gauge>::default();
        registry.register(
            "sessions_active",
            "Sessions open now, by route",
            sessions_active.clone(),
        );
        let sessions = Family::<RouteLabel, Counter>::default();
        registry.register("sessions", "Sessions started, by route", sessions.clone());
        let ended = Family::<EndLabel, Counter>::default();
        registry.register(
            "sessions_ended",
            "Sessions ended, by route and how they ended (done, refused, trap, limit, idle, failed, cut)",
            ended.clone(),
        );
        let answers = Family::<StatusLabel, Counter>::default();
        registry.register(
            "host_answers",
            "Requests the host answered itself, without a plugin, by HTTP status",
            answers.clone(),
        );
        let limits = Family::<KindLabel, Counter>::default();
        registry.register(
            "limits_hit",
            "Plugins stopped at one of their limits, by the limit (memory, max-plugin-memory, cpu-time, run-time)",
            limits.clone(),
        );
        // 5 µs to about 20 ms.
        let instantiation = Histogram::new(exponential_buckets(5e-6, 2.0, 12));
        registry.register_with_unit(
            "instantiation",
            "Time to make a session's plugin instance",
            Unit::Seconds,
            instantiation.clone(),
        );
        let reloads = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "reloads",
            "Configuration reloads (SIGHUP, POST /reload), by outcome (ok, refused)",
            reloads.clone(),
        );
        for route in routes {
            let label = RouteLabel {
                route: route.to_owned(),
            };
            let _ = sessions_active.get_or_create(&label);
            let _ = sessions.get_or_create(&label);
        }
        Metrics {
            registry,
            sessions_active,
            sessions,
            ended,
            answers,
            limits,
            instantiation,
            reloads,
            net,
        }
    }

    /// Where the client sides of sessions count their traffic.
    pub(crate) fn net(&self) -> &NetMetrics {
        &self.net
    }

    /// A reload was put in force (`true`) or refused.
    pub(crate) fn reloaded(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "refused" };
        self.reloads.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// A route a reload brought: its session counters start at 0.
    pub(crate) fn add_route(&self, route: &str) {
        let label = RouteLabel {
            route: route.to_owned(),
        };
        let _ = self.sessions_active.get_or_create(&label);
        let _ = self.sessions.get_or_create(&label);
    }

    /// A session of `route` started.
    pub(crate) fn session_started(&self, route: &str) {
        let label = RouteLabel {
            route: route.to_owned(),
        };
        self.sessions.get_or_create(&label).inc();
    }

    /// `route` has `open` sessions now: read from the gateway's own count
    /// of them (the places its session limit hands out) when the metrics
    /// are read, rather than kept a second time.
    pub(crate) fn set_active(&self, route: &str, open: usize) {
        self.sessions_active
            .get_or_create(&RouteLabel {
                route: route.to_owned(),
            })
            .set(i64::try_from(open).unwrap_or(i64::MAX));
    }

    /// A session of `route` ended so.
    pub(crate) fn session_ended(&self, route: &str, outcome: Outcome) {
        self.ended
            .get_or_create(&EndLabel {
                route: route.to_owned(),
                outcome: outcome.label(),
            })
            .inc();
    }

    /// A plugin was stopped at `limit`.
    pub(crate) fn limit_hit(&self, limit: LimitKind) {
        self.limits.get_or_create(&KindLabel { kind: limit.as_str() }).inc();
    }

    /// The host answered a request with `status` itself.
    pub(crate) fn answered(&self, status: u16) {
        self.answers.get_or_create(&StatusLabel { status }).inc();
    }

    /// A session's instance took `took` to make.
    pub(crate) fn instantiated(&self, took: Duration) {
        self.instantiation.observe(took.as_secs_f64());
    }

    /// Every metric, in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut text, &self.registry);
        let _ = prometheus_client::encoding::text::encode_registry(&mut text, &self.net.inner.registry);
        let _ = prometheus_client::encoding::text::encode_eof(&mut text);
        text
    }
}

/// Which way bytes go, as the `direction` label says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Read from a gateway session's client.
    FromClient,
    /// Written to a gateway session's client.
    ToClient,
    /// Read from an upstream connection.
    FromUpstream,
    /// Written to an upstream connection.
    ToUpstream,
}

impl Direction {
    const ALL: [Direction; 4] = [
        Direction::FromClient,
        Direction::ToClient,
        Direction::FromUpstream,
        Direction::ToUpstream,
    ];

    fn label(self) -> &'static str {
        match self {
            Direction::FromClient => "from-client",
            Direction::ToClient => "to-client",
            Direction::FromUpstream => "from-upstream",
            Direction::ToUpstream => "to-upstream",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How a connect (or a fallback) ended, as the `outcome` label says it:
/// `ok` or the WIT `connect-error` case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConnectOutcome {
    /// A committed connection.
    Ok,
    /// The policy refused the destination.
    Denied,
    /// The name did not resolve.
    Dns,
    /// Every address was tried and failed.
    AllAttemptsFailed,
    /// The connect's time bound passed.
    Timeout,
    /// TLS failed on every path that reached it.
    Tls,
    /// The request was malformed.
    Invalid,
    /// The instance's connection limits refused it.
    Limited,
}

impl ConnectOutcome {
    /// The outcome of a connect that ended with `result`.
    pub(crate) fn of<T>(result: &Result<T, ConnectError>) -> ConnectOutcome {
        match result {
            Ok(_) => ConnectOutcome::Ok,
            Err(e) => ConnectOutcome::of_error(e),
        }
    }

    /// The outcome of a connect that failed with `error`.
    pub(crate) fn of_error(error: &ConnectError) -> ConnectOutcome {
        match error {
            ConnectError::Denied(_) => ConnectOutcome::Denied,
            ConnectError::Dns(_) => ConnectOutcome::Dns,
            ConnectError::AllAttemptsFailed(_) => ConnectOutcome::AllAttemptsFailed,
            ConnectError::Timeout => ConnectOutcome::Timeout,
            ConnectError::Tls(_) => ConnectOutcome::Tls,
            ConnectError::Invalid(_) => ConnectOutcome::Invalid,
        }
    }

    fn label(self) -> &'static str {
        match self {
            ConnectOutcome::Ok => "ok",
            ConnectOutcome::Denied => "denied",
            ConnectOutcome::Dns => "dns",
            ConnectOutcome::AllAttemptsFailed => "all-attempts-failed",
            ConnectOutcome::Timeout => "timeout",
            ConnectOutcome::Tls => "tls",
            ConnectOutcome::Invalid => "invalid",
            ConnectOutcome::Limited => "limited",
        }
    }
}

/// Which part of a connect a race report covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// The plugin's `connect`.
    Connect,
    /// One `fallback` of a connection.
    Fallback,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommitLabel {
    family: &'static str,
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FamilyLabel {
    family: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CloseLabel {
    direction: &'static str,
    code: &'static str,
}

/// A Close frame's status code as a label: the codes RFC 6455 and IANA's
/// registry define (1000 to 1015) as themselves, the rest as their range,
/// so that the label has a small fixed set of values whatever a peer sends.
fn close_label(code: u16) -> &'static str {
    const REGISTERED: [&str; 16] = [
        "1000", "1001", "1002", "1003", "1004", "1005", "1006", "1007", "1008", "1009", "1010", "1011", "1012", "1013",
        "1014", "1015",
    ];
    match code {
        1000..=1015 => REGISTERED[usize::from(code - 1000)],
        3000..=3999 => "3000-3999",
        4000..=4999 => "4000-4999",
        _ => "other",
    }
}

type Histograms = Family<FamilyLabel, Histogram, fn() -> Histogram>;

/// Connect times: 0.5 ms (loopback) to about 8 s (the default connect
/// timeout is 10 s).
fn connect_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

/// The metrics of connects and of sessions' traffic: what the race's events
/// say of each connect, and the bytes and messages each way.
///
/// Cheap to clone (the clones count into the same metrics); cheap to update
/// from any task: the traffic counters are resolved once, so a read or a
/// write adds to an atomic and takes no lock.
#[derive(Clone)]
pub(crate) struct NetMetrics {
    inner: Arc<NetInner>,
}

struct NetInner {
    registry: Registry,
    connects: Family<OutcomeLabel, Counter>,
    commits: Family<CommitLabel, Counter>,
    duration: Histograms,
    to_commit: Histograms,
    attempts: Histogram,
    fallbacks: Family<OutcomeLabel, Counter>,
    parked: Counter,
    duplicate_flights: Counter,
    denials: Family<KindLabel, Counter>,
    bytes: [Counter; 4],
    messages: [Counter; 4],
    closes: Family<CloseLabel, Counter>,
}

impl std::fmt::Debug for NetMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetMetrics").finish_non_exhaustive()
    }
}

impl Default for NetMetrics {
    fn default() -> Self {
        NetMetrics::new()
    }
}

impl NetMetrics {
    /// Every connect and traffic metric, at zero.
    pub(crate) fn new() -> NetMetrics {
        let mut registry = Registry::with_prefix("wsgate");
        let connects = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "connects",
            "Upstream connects, by outcome (ok, denied, dns, all-attempts-failed, timeout, tls, invalid, limited)",
            connects.clone(),
        );
        let commits = Family::<CommitLabel, Counter>::default();
        registry.register(
            "connect_commits",
            "Races won, connects' and fallbacks', by the winner's family (ipv6, ipv4) and the commit stage (tcp, tls, response)",
            commits.clone(),
        );
        let duration: Histograms = Family::new_with_constructor(connect_buckets);
        registry.register_with_unit(
            "connect_duration",
            "Time from a connect (or fallback) to its committed connection, first flight written, by the winner's family",
            Unit::Seconds,
            duration.clone(),
        );
        let to_commit: Histograms = Family::new_with_constructor(connect_buckets);
        registry.register_with_unit(
            "connect_time_to_commit",
            "Time from a connect (or fallback) to the race's commit, by the winner's family",
            Unit::Seconds,
            to_commit.clone(),
        );
        let attempts = Histogram::new([1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0]);
        registry.register(
            "connect_attempts",
            "Attempts a connect started (its fallbacks' not counted)",
            attempts.clone(),
        );
        let fallbacks = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "connect_fallbacks",
            "Connections a plugin gave up for the next candidate, by how the fallback ended",
            fallbacks.clone(),
        );
        let parked = Counter::default();
        registry.register(
            "connect_parked_used",
            "Fallbacks handed an attempt that was parked when the race committed",
            parked.clone(),
        );
        let duplicate_flights = Counter::default();
        registry.register(
            "connect_duplicate_first_flights",
            "First flights sent beyond one per connect or fallback (the response commit stage sends one on every ready attempt)",
            duplicate_flights.clone(),
        );
        let denials = Family::<KindLabel, Counter>::default();
        registry.register(
            "connect_denials",
            "Destinations the policy refused, by what was checked (name: the host and port before DNS; address: a resolved address)",
            denials.clone(),
        );
        let bytes_family = Family::<DirectionLabel, Counter>::default();
        registry.register(
            "bytes",
            "Bytes through sessions' client connections and connects' upstream connections, by direction",
            bytes_family.clone(),
        );
        let messages_family = Family::<DirectionLabel, Counter>::default();
        registry.register(
            "messages",
            "WebSocket data messages (complete, by their last frame) through the same, by direction",
            messages_family.clone(),
        );
        let closes = Family::<CloseLabel, Counter>::default();
        registry.register(
            "closes",
            "WebSocket Close frames (the first each way of each connection), by direction and status code (1000 to 1015; 1005: none; 3000-3999, 4000-4999, other)",
            closes.clone(),
        );
        let resolve = |family: &Family<DirectionLabel, Counter>| {
            Direction::ALL.map(|d| family.get_or_create(&DirectionLabel { direction: d.label() }).clone())
        };
        let bytes = resolve(&bytes_family);
        let messages = resolve(&messages_family);
        NetMetrics {
            inner: Arc::new(NetInner {
                registry,
                connects,
                commits,
                duration,
                to_commit,
                attempts,
                fallbacks,
                parked,
                duplicate_flights,
                denials,
                bytes,
                messages,
                closes,
            }),
        }
    }

    /// A connect that ended before any race: refused by the instance's
    /// limits, malformed, its name denied by the policy, its lookups failed
    /// or timed out.
    pub(crate) fn before_race(&self, outcome: ConnectOutcome) {
        let inner = &self.inner;
        inner
            .connects
            .get_or_create(&OutcomeLabel {
                outcome: outcome.label(),
            })
            .inc();
        if outcome == ConnectOutcome::Denied {
            inner.denials.get_or_create(&KindLabel { kind: "name" }).inc();
        }
    }

    /// A connect's race (or a fallback's) ended with `outcome`, after
    /// `events` (this step's own events, from the race's log) and
    /// `elapsed` since the connect began.
    pub(crate) fn race(&self, step: Step, events: &[Event], elapsed: Duration, outcome: ConnectOutcome) {
        let inner = &self.inner;
        let label = OutcomeLabel {
            outcome: outcome.label(),
        };
        match step {
            Step::Connect => inner.connects.get_or_create(&label).inc(),
            Step::Fallback => inner.fallbacks.get_or_create(&label).inc(),
        };
        let count = |kind: EventKind| events.iter().filter(|e| e.event == kind).count() as u64;
        if step == Step::Connect {
            inner.attempts.observe(count(EventKind::Attempt) as f64);
        }
        let denied = count(EventKind::Denied);
        if denied > 0 {
            inner
                .denials
                .get_or_create(&KindLabel { kind: "address" })
                .inc_by(denied);
        }
        let extra = count(EventKind::FirstFlight).saturating_sub(1);
        if extra > 0 {
            inner.duplicate_flights.inc_by(extra);
        }
        if outcome != ConnectOutcome::Ok {
            return;
        }
        // The last commit is the winner: an earlier one (a `tcp` commit
        // whose TLS then failed) was given up.
        let Some(commit) = events.iter().rev().find(|e| e.event == EventKind::Commit) else {
            return;
        };
        let (Some(family), Some(stage)) = (commit.family, commit.stage) else {
            return;
        };
        inner.commits.get_or_create(&CommitLabel { family, stage }).inc();
        if commit.parked {
            inner.parked.inc();
        }
        // A fallback's times run from the fallback (its first event).
        let start_ms = match step {
            Step::Connect => 0.0,
            Step::Fallback => events.first().map_or(0.0, |e| e.t_ms),
        };
        let seconds = |ms: f64| (ms - start_ms).max(0.0) / 1000.0;
        let label = FamilyLabel { family };
        inner.to_commit.get_or_create(&label).observe(seconds(commit.t_ms));
        inner
            .duration
            .get_or_create(&label)
            .observe(seconds(elapsed.as_secs_f64() * 1000.0));
    }

    /// A meter for one direction of one stream, counting into these
    /// metrics and into `session`'s totals, when there is one.
    pub(crate) fn meter(&self, direction: Direction, session: Option<Arc<SessionTraffic>>) -> Meter {
        Meter {
            bytes: Some(self.inner.bytes[direction.index()].clone()),
            messages: Some(self.inner.messages[direction.index()].clone()),
            closes: Some(self.inner.closes.clone()),
            session,
            direction,
        }
    }

    /// The metrics alone, in the OpenMetrics text format.
    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.inner.registry);
        text
    }
}

/// The traffic one way of one stream: counts its bytes and messages into
/// the metrics and the session's totals (atomics, no lock).
#[derive(Debug, Clone)]
pub(crate) struct Meter {
    bytes: Option<Counter>,
    messages: Option<Counter>,
    closes: Option<Family<CloseLabel, Counter>>,
    session: Option<Arc<SessionTraffic>>,
    direction: Direction,
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
    ways: [Way; 4],
}

impl SessionTraffic {
    /// Nothing counted yet.
    pub(crate) fn new() -> Arc<SessionTraffic> {
        Arc::new(SessionTraffic {
            ways: std::array::from_fn(|_| Way {
                bytes: AtomicU64::new(0),
                messages: AtomicU64::new(0),
                close: AtomicU32::new(NO_CLOSE),
            }),
        })
    }

    /// What was counted so far.
    #[allow(dead_code, reason = "for the access log line at a session's end")]
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
#[allow(dead_code, reason = "for the access log line at a session's end")]
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
#[allow(dead_code, reason = "for the access log line at a session's end")]
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

    #[test]
    fn counters_are_named_and_labelled_as_openmetrics_has_them() {
        let m = Metrics::new(["echo"], NetMetrics::new());
        let text = m.encode();
        // Every route is there before its first session.
        assert!(text.contains("wsgate_sessions_total{route=\"echo\"} 0\n"), "{text}");
        assert!(text.contains("wsgate_sessions_active{route=\"echo\"} 0\n"), "{text}");
        m.session_started("echo");
        m.session_started("echo");
        m.session_ended("echo", Outcome::Trap);
        m.set_active("echo", 1);
        m.answered(404);
        m.limit_hit(LimitKind::CpuTime);
        m.instantiated(Duration::from_micros(30));
        let text = m.encode();
        assert!(text.contains("wsgate_sessions_total{route=\"echo\"} 2\n"), "{text}");
        assert!(text.contains("wsgate_sessions_active{route=\"echo\"} 1\n"), "{text}");
        assert!(
            text.contains("wsgate_sessions_ended_total{route=\"echo\",outcome=\"trap\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("wsgate_host_answers_total{status=\"404\"} 1\n"), "{text}");
        assert!(
            text.contains("wsgate_limits_hit_total{kind=\"cpu-time\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("wsgate_instantiation_seconds_count 1\n"), "{text}");
        assert!(
            text.contains("# TYPE wsgate_instantiation_seconds histogram\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    fn event(kind: EventKind, t_ms: f64, addr: &str) -> Event {
        Event {
            connect: 1,
            event: kind,
            t_ms,
            addr: Some(addr.parse().unwrap()),
            stage: None,
            detail: None,
            family: None,
            tcp_rtt_ms: None,
            ech: None,
            parked: false,
        }
    }

    fn commit(t_ms: f64, addr: &str, stage: &'static str, parked: bool) -> Event {
        let family = if addr.starts_with('[') { "ipv6" } else { "ipv4" };
        Event {
            stage: Some(stage),
            family: Some(family),
            parked,
            ..event(EventKind::Commit, t_ms, addr)
        }
    }

    #[test]
    fn a_race_is_counted_from_its_events() {
        let net = NetMetrics::new();
        let (v6, v4) = ("[::1]:443", "127.0.0.1:443");
        // Under `response`: two attempts, a first flight on each, IPv4 wins
        // at 4 ms; 5 ms in all.
        let events = [
            event(EventKind::Attempt, 0.0, v6),
            event(EventKind::Attempt, 1.0, v4),
            event(EventKind::FirstFlight, 2.0, v6),
            event(EventKind::FirstFlight, 3.0, v4),
            commit(4.0, v4, "response", false),
        ];
        net.race(Step::Connect, &events, Duration::from_millis(5), ConnectOutcome::Ok);
        // A fallback at 100 ms to an attempt parked at `tls`, 1 ms later.
        let fallback = [
            event(EventKind::Fallback, 100.0, v4),
            commit(101.0, v6, "tls", true),
            event(EventKind::FirstFlight, 101.5, v6),
        ];
        net.race(
            Step::Fallback,
            &fallback,
            Duration::from_millis(102),
            ConnectOutcome::Ok,
        );
        // Every address denied; a name denied; a limit.
        let denied = [event(EventKind::Denied, 0.0, v6), event(EventKind::Denied, 0.0, v4)];
        net.race(Step::Connect, &denied, Duration::from_millis(1), ConnectOutcome::Denied);
        net.before_race(ConnectOutcome::Denied);
        net.before_race(ConnectOutcome::Limited);
        let text = net.encode();
        for line in [
            "wsgate_connects_total{outcome=\"ok\"} 1\n",
            "wsgate_connects_total{outcome=\"denied\"} 2\n",
            "wsgate_connects_total{outcome=\"limited\"} 1\n",
            "wsgate_connect_commits_total{family=\"ipv4\",stage=\"response\"} 1\n",
            "wsgate_connect_commits_total{family=\"ipv6\",stage=\"tls\"} 1\n",
            "wsgate_connect_fallbacks_total{outcome=\"ok\"} 1\n",
            "wsgate_connect_parked_used_total 1\n",
            "wsgate_connect_duplicate_first_flights_total 1\n",
            "wsgate_connect_denials_total{kind=\"address\"} 2\n",
            "wsgate_connect_denials_total{kind=\"name\"} 1\n",
            // The connects' attempts: 2, then 0 (all denied).
            "wsgate_connect_attempts_count 2\n",
            "wsgate_connect_attempts_sum 2.0\n",
            "wsgate_connect_time_to_commit_seconds_sum{family=\"ipv4\"} 0.004\n",
            "wsgate_connect_duration_seconds_sum{family=\"ipv4\"} 0.005\n",
            // The fallback's times run from the fallback.
            "wsgate_connect_time_to_commit_seconds_sum{family=\"ipv6\"} 0.001\n",
            "wsgate_connect_duration_seconds_sum{family=\"ipv6\"} 0.002\n",
            "# UNIT wsgate_connect_duration_seconds seconds\n",
        ] {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn traffic_adds_to_the_metrics_and_to_the_session() {
        let net = NetMetrics::new();
        let session = SessionTraffic::new();
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

    #[test]
    fn close_codes_are_a_fixed_set_of_labels() {
        assert_eq!(close_label(1000), "1000");
        assert_eq!(close_label(1015), "1015");
        assert_eq!(close_label(1016), "other");
        assert_eq!(close_label(3001), "3000-3999");
        assert_eq!(close_label(0), "other");
        assert_eq!(close_label(u16::MAX), "other");
    }
}
