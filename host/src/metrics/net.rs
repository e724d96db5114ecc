//! The connects' and the traffic's metrics: [`NetMetrics`], which every
//! [`ConnectConfig`](crate::ConnectConfig) made from a gateway's (or a
//! `wsgate run`'s) reports into.

use super::KindLabel;
use super::OutcomeLabel;
use super::traffic::{Meter, SessionTraffic};
use crate::error::LimitKind;
use crate::race::ConnectError;
use crate::report::{Event, EventKind};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::sync::Arc;
use std::time::Duration;

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

    pub(super) fn label(self) -> &'static str {
        match self {
            Direction::FromClient => "from-client",
            Direction::ToClient => "to-client",
            Direction::FromUpstream => "from-upstream",
            Direction::ToUpstream => "to-upstream",
        }
    }

    pub(super) fn index(self) -> usize {
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
pub(super) struct CloseLabel {
    pub(super) direction: &'static str,
    pub(super) code: &'static str,
}

/// A Close frame's status code as a label: the codes RFC 6455 and IANA's
/// registry define (1000 to 1015) as themselves, the rest as their range,
/// so that the label has a small fixed set of values whatever a peer sends.
pub(super) fn close_label(code: u16) -> &'static str {
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
    limits: Family<KindLabel, Counter>,
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
        let limits = Family::<KindLabel, Counter>::default();
        registry.register(
            "limits_hit",
            "Plugins held to one of their limits, by the limit: stopped at memory, max-plugin-memory, cpu-time or run-time; a connect refused at connections or connects-per-second",
            limits.clone(),
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
                limits,
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

    /// A plugin was held to `limit`.
    pub(crate) fn limit_hit(&self, limit: LimitKind) {
        self.inner
            .limits
            .get_or_create(&KindLabel { kind: limit.as_str() })
            .inc();
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
        // An address is denied for its class: the label says which.
        for denied in events.iter().filter(|e| e.event == EventKind::Denied) {
            let kind = denied.addr.map_or("address", crate::policy::address_class);
            inner.denials.get_or_create(&KindLabel { kind }).inc();
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

    /// The metrics' text without the `# EOF` line, after `text`: for a
    /// registry that shows them with its own.
    pub(super) fn encode_into(&self, text: &mut String) {
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(text, &self.inner.registry);
    }

    /// The metrics alone, in the OpenMetrics text format.
    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.inner.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            "wsgate_connect_denials_total{kind=\"loopback\"} 2\n",
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
    fn close_codes_are_a_fixed_set_of_labels() {
        assert_eq!(close_label(1000), "1000");
        assert_eq!(close_label(1015), "1015");
        assert_eq!(close_label(1016), "other");
        assert_eq!(close_label(3001), "3000-3999");
        assert_eq!(close_label(0), "other");
        assert_eq!(close_label(u16::MAX), "other");
    }

    fn event(kind: EventKind, t_ms: f64, addr: &str) -> Event {
        Event {
            connect: 1,
            session: None,
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
}
