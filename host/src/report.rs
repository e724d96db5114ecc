//! The race log: what happened during a connect, event by event.
//!
//! Every connect keeps its events in memory (a plugin reads them with
//! `connection.report()`) and, when the operator asked for it with
//! `--race-log`, writes each one at once as a JSON line:
//!
//! ```text
//! {"connect":1,"event":"attempt","t_ms":0.412,"addr":"[::1]:8443"}
//! ```
//!
//! `t_ms` is the time since the connect began, in milliseconds with
//! microsecond precision: loopback races are decided in well under a
//! millisecond, and rounding to whole milliseconds would hide the order.

use serde::Serialize;
use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The name resolved (or was an IP literal, or was overridden).
    Resolve,
    /// An attempt to an address started.
    Attempt,
    /// An attempt's TCP handshake completed.
    Tcp,
    /// An attempt's TLS handshake completed.
    Tls,
    /// An attempt failed; `error` says why.
    Failed,
    /// An attempt was abandoned because another one won.
    Cancel,
    /// The connect committed to an attempt; `stage` says at which point.
    Commit,
    /// The plugin's first flight was written on an attempt.
    FirstFlight,
    /// A complete response head arrived on an attempt (`response` stage);
    /// `detail` holds its status line.
    Response,
    /// An attempt that reached the commit stage late was kept for fallback.
    Park,
    /// The plugin gave up a connection and asked for the next candidate.
    Fallback,
    /// The operator's policy refused a resolved address; `detail` says
    /// which rule.
    Denied,
    /// Something about Encrypted Client Hello: TLS waiting for the HTTPS
    /// answer, or a server's rejection with retry configurations.
    Ech,
}

impl EventKind {
    /// The name as it appears in the log and in `race-event.event`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Resolve => "resolve",
            EventKind::Attempt => "attempt",
            EventKind::Tcp => "tcp",
            EventKind::Tls => "tls",
            EventKind::Failed => "failed",
            EventKind::Cancel => "cancel",
            EventKind::Commit => "commit",
            EventKind::FirstFlight => "first-flight",
            EventKind::Response => "response",
            EventKind::Park => "park",
            EventKind::Fallback => "fallback",
            EventKind::Denied => "denied",
            EventKind::Ech => "ech",
        }
    }
}

impl Serialize for EventKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event of one connect.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// The number of the connect within this host process (from 1), so that
    /// the lines of several connects in one log can be told apart.
    pub connect: u64,
    /// The gateway session that made the connect (its number in the
    /// access log); none for `wsgate run`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<u64>,
    /// What happened.
    pub event: EventKind,
    /// Milliseconds since the connect began.
    pub t_ms: f64,
    /// The address concerned, where there is one.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_addr")]
    pub addr: Option<SocketAddr>,
    /// The commit stage, on `commit` events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<&'static str>,
    /// What went wrong, on `failed` events; the addresses found, on
    /// `resolve` events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The winner's address family (`ipv6` or `ipv4`), on `commit` events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<&'static str>,
    /// How long the winner's TCP handshake took (SYN to established: one
    /// round trip), in milliseconds, on `commit` events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_rtt_ms: Option<f64>,
    /// What became of Encrypted Client Hello on the winner (`accepted`,
    /// `grease`, `not offered`), on `commit` events of TLS connects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ech: Option<&'static str>,
    /// On `commit` events of a fallback: the winner is an attempt that was
    /// parked (its `detail` says so in the log).
    #[serde(skip)]
    pub parked: bool,
}

fn ser_addr<S: serde::Serializer>(addr: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
    match addr {
        Some(a) => s.collect_str(a),
        None => s.serialize_none(),
    }
}

/// A duration in milliseconds, to the microsecond.
fn ms(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

/// Where the JSON lines go: a file or standard error, shared by all
/// connects of a host.
#[derive(Clone)]
pub struct LogSink(Arc<Mutex<Box<dyn Write + Send>>>);

impl LogSink {
    /// A sink writing to `writer`.
    pub fn new(writer: impl Write + Send + 'static) -> Self {
        LogSink(Arc::new(Mutex::new(Box::new(writer))))
    }

    fn write(&self, event: &Event) {
        if let Ok(line) = serde_json::to_string(event) {
            self.write_line(&line);
        }
    }

    /// Writes `line` and a newline, at once and whole.
    pub fn write_line(&self, line: &str) {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        // One write per line, flushed at once: a log that is tailed while a
        // race runs must show each event as it happens. A failing log must
        // not fail the connect, so write errors are dropped here.
        if let Ok(mut w) = self.0.lock() {
            let _ = w.write_all(&bytes).and_then(|()| w.flush());
        }
    }
}

impl fmt::Debug for LogSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LogSink")
    }
}

/// The events of one connect, kept in order.
#[derive(Debug, Clone)]
pub struct RaceLog {
    connect: u64,
    session: Option<u64>,
    start: Instant,
    events: Vec<Event>,
    sink: Option<LogSink>,
}

impl RaceLog {
    /// Starts the log of connect number `connect`, with the clock at zero now.
    pub fn new(connect: u64, sink: Option<LogSink>) -> Self {
        RaceLog {
            connect,
            session: None,
            start: Instant::now(),
            events: Vec::new(),
            sink,
        }
    }

    /// The log of a connect that gateway session number `session` made:
    /// its events say so.
    pub fn in_session(mut self, session: Option<u64>) -> Self {
        self.session = session;
        self
    }

    /// Time since the connect began.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Records an event that happens now and writes it to the sink, if any.
    pub fn push(
        &mut self,
        event: EventKind,
        addr: Option<SocketAddr>,
        stage: Option<&'static str>,
        detail: Option<String>,
    ) {
        self.push_at(Instant::now(), event, addr, stage, detail);
    }

    /// Records the commit to `addr` at `stage`, with its family, the TCP
    /// round trip its attempt measured and what became of ECH.
    pub fn push_commit(
        &mut self,
        addr: SocketAddr,
        stage: &'static str,
        detail: Option<String>,
        tcp_rtt: Option<Duration>,
        ech: Option<&'static str>,
    ) {
        let event = Event {
            family: Some(if addr.is_ipv6() { "ipv6" } else { "ipv4" }),
            tcp_rtt_ms: tcp_rtt.map(ms),
            ech,
            ..self.event_at(Instant::now(), EventKind::Commit, Some(addr), Some(stage), detail)
        };
        self.record(event);
    }

    /// Records a fallback's commit to `addr`, an attempt that was parked
    /// at `stage`: as [`push_commit`](Self::push_commit) with the detail
    /// `parked`, and marked so.
    pub fn push_parked_commit(
        &mut self,
        addr: SocketAddr,
        stage: &'static str,
        tcp_rtt: Option<Duration>,
        ech: Option<&'static str>,
    ) {
        self.push_commit(addr, stage, Some("parked".into()), tcp_rtt, ech);
        if let Some(last) = self.events.last_mut() {
            last.parked = true;
        }
    }

    /// Records an event that happened at `at` (an attempt's progress is
    /// stamped where it happened, not where the race got to it).
    pub fn push_at(
        &mut self,
        at: Instant,
        event: EventKind,
        addr: Option<SocketAddr>,
        stage: Option<&'static str>,
        detail: Option<String>,
    ) {
        let event = self.event_at(at, event, addr, stage, detail);
        self.record(event);
    }

    fn event_at(
        &self,
        at: Instant,
        event: EventKind,
        addr: Option<SocketAddr>,
        stage: Option<&'static str>,
        detail: Option<String>,
    ) -> Event {
        Event {
            connect: self.connect,
            session: self.session,
            event,
            t_ms: ms(at.saturating_duration_since(self.start)),
            addr,
            stage,
            detail,
            family: None,
            tcp_rtt_ms: None,
            ech: None,
            parked: false,
        }
    }

    /// Keeps `event` and writes it to the sink, if any.
    fn record(&mut self, event: Event) {
        if let Some(sink) = &self.sink {
            sink.write(&event);
        }
        self.events.push(event);
    }

    /// The events so far, in order.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The number of this connect within the host process.
    pub fn connect_id(&self) -> u64 {
        self.connect
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn events_are_json_lines_with_elapsed_time() {
        let out = Shared::default();
        let mut log = RaceLog::new(7, Some(LogSink::new(out.clone())));
        let addr: SocketAddr = "[::1]:443".parse().unwrap();
        log.push(EventKind::Attempt, Some(addr), None, None);
        tokio::time::advance(Duration::from_micros(1500)).await;
        log.push(EventKind::Commit, Some(addr), Some("tls"), None);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "attempt");
        assert_eq!(lines[0]["addr"], "[::1]:443");
        assert_eq!(lines[0]["t_ms"], 0.0);
        assert_eq!(lines[1]["event"], "commit");
        assert_eq!(lines[1]["stage"], "tls");
        assert_eq!(lines[1]["t_ms"], 1.5);
        assert_eq!(lines[1]["connect"], 7);
        assert!(lines[0].get("detail").is_none());
        assert_eq!(log.events().len(), 2);
    }
}
