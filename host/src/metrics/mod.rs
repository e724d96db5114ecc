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

mod net;
mod traffic;

pub(crate) use net::{ConnectOutcome, Direction, NetMetrics, Step};
pub(crate) use traffic::{Counting, Meter, SessionTraffic};

use crate::error::LimitKind;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
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
pub(super) struct KindLabel {
    pub(super) kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct OutcomeLabel {
    pub(super) outcome: &'static str,
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
    /// The label's value.
    pub(crate) fn label(self) -> &'static str {
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
        self.net.limit_hit(limit);
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
        self.net.encode_into(&mut text);
        let _ = prometheus_client::encoding::text::encode_eof(&mut text);
        text
    }
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
}
