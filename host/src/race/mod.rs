//! The Happy Eyeballs race: from a host name to one committed connection.
//!
//! RFC 8305, with the HEv3 draft where it improves on it:
//!
//! - **Resolution** (§3): AAAA and A are asked in parallel. Attempts start
//!   when AAAA answers, or when A has answered and the *Resolution Delay*
//!   (50 ms) has passed; answers that come later join the race in
//!   progress. One family failing to resolve does not fail the connect.
//! - **Order** (§4): IPv6 first, then the families alternate ([`Candidates`]);
//!   an address that won recently for this host and port goes first
//!   ([`FamilyMemory`]).
//! - **Stagger** (§5): a new attempt every *Connection Attempt Delay*
//!   (250 ms), at once when one fails, at most a few in flight. When the
//!   race commits after TLS, an attempt whose TCP handshake is done gets
//!   up to one more delay for its TLS before the next attempt starts (HEv3
//!   §6.1), never more, so a stalled TLS handshake cannot hold the race.
//! - **Commit**: the first attempt to reach the commit stage wins: TCP
//!   established, TLS done, or (the `response` stage) first flight sent and
//!   a complete response head back. Under `tcp` and `tls` no byte of the
//!   plugin's goes out before the commit, and the first flight is written
//!   once, on the winner.
//! - **Cancel and park**: on commit, attempts still on their way are
//!   cancelled (the task is aborted: TLS state and TCP socket dropped);
//!   attempts that had reached the commit stage too are parked, idle and
//!   unwritten, for a grace period, so that a fallback gets one at once.
//!
//! The I/O of each attempt goes through a [`Dialer`], so that the timing
//! rules are tested with tokio's paused clock and a scripted dialer.

mod dial;
mod order;
#[cfg(test)]
mod tests;
mod transport;

pub use dial::{Dialer, NetDialer};
pub use order::{Candidates, FamilyMemory, order};
pub use transport::{Replay, Transport};

use crate::policy::Policy;
use crate::report::{EventKind, RaceLog};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// The point at which a connect commits to an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CommitStage {
    /// TCP established.
    Tcp,
    /// TLS handshake done.
    Tls,
    /// First flight sent and a response head received.
    Response,
}

impl CommitStage {
    /// The stage's name, as in the race log and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            CommitStage::Tcp => "tcp",
            CommitStage::Tls => "tls",
            CommitStage::Response => "response",
        }
    }
}

impl std::str::FromStr for CommitStage {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tcp" => Ok(CommitStage::Tcp),
            "tls" => Ok(CommitStage::Tls),
            "response" => Ok(CommitStage::Response),
            other => Err(format!("`{other}` is not a commit stage (tcp, tls or response)")),
        }
    }
}

impl fmt::Display for CommitStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How far an attempt got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AttemptStage {
    /// Started: the TCP SYN was sent.
    Started,
    /// The TCP handshake completed.
    Tcp,
    /// The TLS handshake completed.
    Tls,
    /// The first flight was written.
    FirstFlight,
    /// A response head arrived.
    Response,
}

/// One failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptFailure {
    /// The address tried.
    pub addr: SocketAddr,
    /// The last stage reached before the failure.
    pub stage: AttemptStage,
    /// What went wrong.
    pub error: String,
}

/// Why a connect failed: the host side of the WIT `connect-error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// The operator's policy does not allow the destination.
    Denied(String),
    /// The name did not resolve.
    Dns(String),
    /// Every address was tried; one entry per attempt.
    AllAttemptsFailed(Vec<AttemptFailure>),
    /// One of the operator's limits on the plugin refuses the connect now
    /// (open connections, connects per second).
    Limited(String),
    /// The connect's time bound passed.
    Timeout,
    /// TLS could not be set up on any path that reached it.
    Tls(String),
    /// The request is malformed.
    Invalid(String),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Denied(rule) => write!(f, "denied by policy: {rule}"),
            ConnectError::Dns(e) => write!(f, "{e}"),
            ConnectError::AllAttemptsFailed(failures) => {
                f.write_str("all attempts failed")?;
                for (i, a) in failures.iter().enumerate() {
                    write!(f, "{} {}: {}", if i == 0 { ":" } else { ";" }, a.addr, a.error)?;
                }
                Ok(())
            }
            ConnectError::Limited(limit) => write!(f, "over a limit: {limit}"),
            ConnectError::Timeout => f.write_str("timed out"),
            ConnectError::Tls(e) => write!(f, "TLS failed: {e}"),
            ConnectError::Invalid(e) => write!(f, "invalid request: {e}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// The race's timing and shape rules. [`RaceConfig::default`] has RFC
/// 8305's recommended values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaceConfig {
    /// Connection Attempt Delay: the time between attempt starts.
    pub attempt_delay: Duration,
    /// Resolution Delay: how long to wait for AAAA once A has answered.
    pub resolution_delay: Duration,
    /// At most this many attempts in flight at once.
    pub max_in_flight: usize,
    /// First Address Family Count: IPv6 addresses tried before the first
    /// IPv4 one.
    pub first_family_count: usize,
    /// How long attempts parked after the commit stay open for a fallback.
    pub park_grace: Duration,
    /// Bound on a TLS handshake done after a `tcp` commit.
    pub tls_timeout: Duration,
    /// Bound on a response head read at the `response` stage.
    pub max_response_head: usize,
}

/// The shortest Connection Attempt Delay allowed (RFC 8305 §5: 10 ms).
pub const MIN_ATTEMPT_DELAY: Duration = Duration::from_millis(10);
/// The longest Connection Attempt Delay allowed (RFC 8305 §5: 2 s).
pub const MAX_ATTEMPT_DELAY: Duration = Duration::from_secs(2);

impl Default for RaceConfig {
    fn default() -> Self {
        RaceConfig {
            attempt_delay: Duration::from_millis(250),
            resolution_delay: Duration::from_millis(50),
            max_in_flight: 4,
            first_family_count: 1,
            park_grace: Duration::from_secs(2),
            tls_timeout: Duration::from_secs(5),
            max_response_head: 16 * 1024,
        }
    }
}

impl RaceConfig {
    /// Checks the values, naming the first one out of range.
    pub fn validate(&self) -> Result<(), String> {
        if !(MIN_ATTEMPT_DELAY..=MAX_ATTEMPT_DELAY).contains(&self.attempt_delay) {
            return Err(format!(
                "attempt delay {} ms is outside {}..={} ms",
                self.attempt_delay.as_millis(),
                MIN_ATTEMPT_DELAY.as_millis(),
                MAX_ATTEMPT_DELAY.as_millis()
            ));
        }
        if self.resolution_delay > MAX_ATTEMPT_DELAY {
            return Err(format!(
                "resolution delay {} ms is above 2000 ms",
                self.resolution_delay.as_millis()
            ));
        }
        if !(1..=64).contains(&self.max_in_flight) {
            return Err(format!("{} attempts in flight is outside 1..=64", self.max_in_flight));
        }
        if !(1..=64).contains(&self.first_family_count) {
            return Err(format!(
                "first address family count {} is outside 1..=64",
                self.first_family_count
            ));
        }
        if self.tls_timeout.is_zero() {
            return Err("the TLS timeout must be above zero".into());
        }
        if !(256..=1024 * 1024).contains(&self.max_response_head) {
            return Err(format!(
                "response head cap {} is outside 256..=1048576 bytes",
                self.max_response_head
            ));
        }
        Ok(())
    }
}

/// What a connect is to reach and how.
#[derive(Debug, Clone)]
pub struct Target {
    /// The host as the plugin named it (for the log, errors and memory).
    pub host: String,
    /// The port.
    pub port: u16,
    /// Whether to do TLS after TCP (the dialer knows how).
    pub tls: bool,
    /// Bytes to write once on the committed connection (under `tcp` and
    /// `tls`), or on every ready attempt (under `response`).
    pub first_flight: Option<Vec<u8>>,
    /// The stage at which the race commits.
    pub commit: CommitStage,
}

/// A lookup of one address family, as the race awaits it.
pub type Lookup<T> = Pin<Box<dyn Future<Output = Result<Vec<T>, String>> + Send>>;

/// The two lookups of a name: AAAA and A, each answering on its own time.
pub struct Lookups {
    /// The AAAA lookup.
    pub v6: Lookup<Ipv6Addr>,
    /// The A lookup.
    pub v4: Lookup<Ipv4Addr>,
}

impl Lookups {
    /// Lookups already answered with `ips` (IP literals, overrides).
    pub fn ready(ips: &[IpAddr]) -> Self {
        let v6: Vec<Ipv6Addr> = ips
            .iter()
            .filter_map(|ip| if let IpAddr::V6(a) = ip { Some(*a) } else { None })
            .collect();
        let v4: Vec<Ipv4Addr> = ips
            .iter()
            .filter_map(|ip| if let IpAddr::V4(a) = ip { Some(*a) } else { None })
            .collect();
        Lookups {
            v6: Box::pin(async move { Ok(v6) }),
            v4: Box::pin(async move { Ok(v4) }),
        }
    }
}

impl fmt::Debug for Lookups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Lookups")
    }
}

/// A connection the race committed to, with its first flight written.
#[derive(Debug)]
pub struct Committed<S> {
    /// The address that won.
    pub peer: SocketAddr,
    /// The stream, ready for the plugin.
    pub stream: S,
    /// Bytes already read from the stream (the response head, at the
    /// `response` stage), which the plugin must read first.
    pub prefix: Vec<u8>,
}

/// What an attempt tells the race on its way.
enum Progress {
    Tcp(SocketAddr, Instant),
    Tls(SocketAddr, Instant),
    FirstFlight(SocketAddr, Instant, usize),
    Response(SocketAddr, Instant, String),
}

/// How an attempt ended.
enum Outcome<S> {
    Ready {
        addr: SocketAddr,
        stream: S,
        prefix: Vec<u8>,
    },
    Failed {
        addr: SocketAddr,
        stage: AttemptStage,
        error: String,
        at: Instant,
    },
}

/// An attempt that reached the commit stage after the winner: kept open,
/// unwritten, until its grace period ends or a fallback takes it.
struct Parked<S> {
    addr: SocketAddr,
    slot: Arc<Mutex<Option<S>>>,
    expiry: JoinHandle<()>,
}

impl<S> Parked<S> {
    fn take(&self) -> Option<S> {
        self.slot.lock().ok()?.take()
    }
}

impl<S> Drop for Parked<S> {
    fn drop(&mut self) {
        self.expiry.abort();
        drop(self.take());
    }
}

/// One connect's race. It outlives the first commit, so that a plugin's
/// fallback goes on where the connect stopped.
pub struct Race<D: Dialer = NetDialer> {
    config: RaceConfig,
    target: Arc<Target>,
    dialer: Arc<D>,
    memory: Arc<FamilyMemory>,
    v6_lookup: Option<Lookup<Ipv6Addr>>,
    v4_lookup: Option<Lookup<Ipv4Addr>>,
    /// When each family's lookup finished (IPv6, IPv4).
    answered_at: [Option<Instant>; 2],
    resolve_errors: Vec<String>,
    found_any: bool,
    /// The operator's policy, checked on every resolved address.
    policy: Option<Arc<Policy>>,
    /// Why each address the policy refused was refused.
    denied: Vec<String>,
    candidates: Candidates,
    in_flight: JoinSet<Outcome<D::Stream>>,
    /// The address and stage reached of each attempt in flight.
    attempts: HashMap<tokio::task::Id, (SocketAddr, AttemptStage)>,
    progress_tx: mpsc::UnboundedSender<Progress>,
    progress_rx: mpsc::UnboundedReceiver<Progress>,
    parked: VecDeque<Parked<D::Stream>>,
    failures: Vec<AttemptFailure>,
    log: RaceLog,
    /// The address and start time of the attempt started last.
    last_attempt: Option<(SocketAddr, Instant)>,
    next_start: Instant,
}

impl<D: Dialer> fmt::Debug for Race<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Race")
            .field("target", &self.target)
            .field("candidates", &self.candidates)
            .field("in_flight", &self.in_flight.len())
            .field("parked", &self.parked.len())
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

impl<D: Dialer> Race<D> {
    /// A race for `target`, over the addresses `lookups` will give.
    ///
    /// A commit stage that does not apply is lowered: `tls` on a plain
    /// target is `tcp`, and `response` without a first flight (nothing to
    /// get a response to) is the stage before it.
    ///
    /// The race dials every address `lookups` gives: add the operator's
    /// policy with [`with_policy`](Self::with_policy), as `connect` does.
    pub fn new(
        config: RaceConfig,
        mut target: Target,
        dialer: D,
        lookups: Lookups,
        memory: Arc<FamilyMemory>,
        log: RaceLog,
    ) -> Self {
        let connected = if target.tls { CommitStage::Tls } else { CommitStage::Tcp };
        target.commit = match target.commit {
            CommitStage::Response if target.first_flight.is_none() => connected,
            CommitStage::Tls if !target.tls => CommitStage::Tcp,
            stage => stage,
        };
        let remembered = memory.get(&target.host, target.port);
        let (progress_tx, progress_rx) = mpsc::unbounded_channel();
        Race {
            config,
            candidates: Candidates::new(config.first_family_count, remembered),
            target: Arc::new(target),
            dialer: Arc::new(dialer),
            memory,
            v6_lookup: Some(lookups.v6),
            v4_lookup: Some(lookups.v4),
            answered_at: [None, None],
            resolve_errors: Vec::new(),
            found_any: false,
            policy: None,
            denied: Vec::new(),
            in_flight: JoinSet::new(),
            attempts: HashMap::new(),
            progress_tx,
            progress_rx,
            parked: VecDeque::new(),
            failures: Vec::new(),
            log,
            last_attempt: None,
            next_start: Instant::now(),
        }
    }

    /// Checks every resolved address against `policy` before it becomes a
    /// candidate: an address the policy refuses is never dialed, and a
    /// race whose every address is refused fails with
    /// [`ConnectError::Denied`].
    pub fn with_policy(mut self, policy: Arc<Policy>) -> Self {
        self.policy = Some(policy);
        self
    }

    /// The events of this connect so far.
    pub fn log(&self) -> &RaceLog {
        &self.log
    }

    /// The target of this connect (its commit stage as applied).
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Races until an attempt commits and takes its first flight, by
    /// `deadline`.
    ///
    /// When the deadline passes with attempts in flight or addresses left,
    /// the connect timed out; when every address was tried and failed,
    /// the failures are the answer.
    pub async fn next(&mut self, deadline: Instant) -> Result<Committed<D::Stream>, ConnectError> {
        self.next_start = Instant::now();
        loop {
            let now = Instant::now();
            if now >= deadline {
                self.settle_others(false).await;
                return Err(ConnectError::Timeout);
            }
            // Answers already there (literals, overrides) all join before
            // an attempt starts, so that the first pick sees every family.
            if let Some(answer) = poll_now(&mut self.v6_lookup) {
                self.on_answer(0, answer.map(|v| v.into_iter().map(IpAddr::V6).collect()));
            }
            if let Some(answer) = poll_now(&mut self.v4_lookup) {
                self.on_answer(1, answer.map(|v| v.into_iter().map(IpAddr::V4).collect()));
            }
            // Read the clock again: an answer just taken is stamped after
            // `now`, and the gate it opens must count as open.
            let now = Instant::now();
            self.start_due(now);
            if self.in_flight.is_empty() && self.candidates.is_empty() && self.dns_done() {
                return Err(self.exhausted());
            }
            let wake = self.wake_time(now, deadline);
            tokio::select! {
                biased;
                answer = answer(&mut self.v6_lookup) => {
                    let addrs = answer.map(|v| v.into_iter().map(IpAddr::V6).collect());
                    self.on_answer(0, addrs);
                }
                answer = answer(&mut self.v4_lookup) => {
                    let addrs = answer.map(|v| v.into_iter().map(IpAddr::V4).collect());
                    self.on_answer(1, addrs);
                }
                Some(progress) = self.progress_rx.recv() => self.on_progress(progress),
                Some(joined) = self.in_flight.join_next_with_id(), if !self.in_flight.is_empty() => {
                    if let Some((addr, stream, prefix)) = self.on_joined(joined)
                        && let Some(committed) = self.commit(addr, stream, prefix, deadline).await?
                    {
                        return Ok(committed);
                    }
                }
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// Gives up the committed connection to `peer` (the plugin's fallback)
    /// and returns the next candidate: a parked attempt at once if one is
    /// still open, else whatever the race, resumed, commits to next.
    pub async fn fallback(
        &mut self,
        peer: SocketAddr,
        deadline: Instant,
    ) -> Result<Committed<D::Stream>, ConnectError> {
        let stage = match (&self.target.first_flight, self.target.tls) {
            (Some(_), _) => AttemptStage::FirstFlight,
            (None, true) => AttemptStage::Tls,
            (None, false) => AttemptStage::Tcp,
        };
        self.log.push(EventKind::Fallback, Some(peer), None, None);
        self.failures.push(AttemptFailure {
            addr: peer,
            stage,
            error: "given up by the plugin".into(),
        });
        while let Some(parked) = self.parked.pop_front() {
            let addr = parked.addr;
            if let Some(stream) = parked.take() {
                self.log.push(
                    EventKind::Commit,
                    Some(addr),
                    Some(self.target.commit.as_str()),
                    Some("parked".into()),
                );
                return self.finish(addr, stream, Vec::new()).await;
            }
        }
        self.next(deadline).await
    }

    /// Whether both lookups have answered.
    fn dns_done(&self) -> bool {
        self.v6_lookup.is_none() && self.v4_lookup.is_none()
    }

    /// The family whose answer is worth waiting for: the remembered
    /// winner's, else IPv6 (0 for IPv6, 1 for IPv4).
    fn awaited_family(&self) -> usize {
        match self.candidates.remembered() {
            Some(addr) if addr.is_ipv4() => 1,
            _ => 0,
        }
    }

    /// When attempts may start: once the awaited family answered, or the
    /// Resolution Delay after the other did. `None`: not before an answer.
    fn gate(&self) -> Option<Instant> {
        let awaited = self.awaited_family();
        if let Some(at) = self.answered_at[awaited] {
            return Some(at);
        }
        self.answered_at[1 - awaited].map(|at| at + self.config.resolution_delay)
    }

    fn start_due(&mut self, now: Instant) {
        let gate_open = self.gate().is_some_and(|at| now >= at);
        if gate_open
            && self.in_flight.len() < self.config.max_in_flight
            && now >= self.next_start
            && let Some(addr) = self.candidates.pick()
        {
            self.spawn_attempt(addr, now);
            self.last_attempt = Some((addr, now));
            self.next_start = now + self.config.attempt_delay;
        }
    }

    /// The next moment the race has something to do by itself.
    fn wake_time(&self, now: Instant, deadline: Instant) -> Instant {
        let mut wake = deadline;
        match self.gate() {
            Some(gate) if gate > now => wake = wake.min(gate),
            Some(_) if !self.candidates.is_empty() && self.in_flight.len() < self.config.max_in_flight => {
                wake = wake.min(self.next_start.max(now));
            }
            _ => {}
        }
        wake
    }

    fn spawn_attempt(&mut self, addr: SocketAddr, now: Instant) {
        self.log.push_at(now, EventKind::Attempt, Some(addr), None, None);
        let task = attempt(
            self.dialer.clone(),
            self.target.clone(),
            addr,
            self.config.max_response_head,
            self.progress_tx.clone(),
        );
        let handle = self.in_flight.spawn(task);
        self.attempts.insert(handle.id(), (addr, AttemptStage::Started));
    }

    fn on_progress(&mut self, progress: Progress) {
        let (addr, stage) = match progress {
            Progress::Tcp(addr, at) => {
                self.log.push_at(at, EventKind::Tcp, Some(addr), None, None);
                // HEv3 §6.1: TCP is up and TLS has begun; give it up to one
                // more attempt delay before starting the next attempt, but
                // never more, so a stalled handshake cannot hold the race.
                if self.target.commit >= CommitStage::Tls
                    && self.target.tls
                    && let Some((latest, start)) = self.last_attempt
                    && latest == addr
                {
                    let extended = (at + self.config.attempt_delay).min(start + 2 * self.config.attempt_delay);
                    self.next_start = self.next_start.max(extended);
                }
                (addr, AttemptStage::Tcp)
            }
            Progress::Tls(addr, at) => {
                self.log.push_at(at, EventKind::Tls, Some(addr), None, None);
                (addr, AttemptStage::Tls)
            }
            Progress::FirstFlight(addr, at, len) => {
                self.log.push_at(
                    at,
                    EventKind::FirstFlight,
                    Some(addr),
                    None,
                    Some(format!("{len} bytes")),
                );
                (addr, AttemptStage::FirstFlight)
            }
            Progress::Response(addr, at, status) => {
                self.log
                    .push_at(at, EventKind::Response, Some(addr), None, Some(status));
                (addr, AttemptStage::Response)
            }
        };
        if let Some(entry) = self.attempts.values_mut().find(|(a, _)| *a == addr) {
            entry.1 = entry.1.max(stage);
        }
    }

    fn on_answer(&mut self, family: usize, answer: Result<Vec<IpAddr>, String>) {
        let now = Instant::now();
        self.answered_at[family] = Some(now);
        let kind = if family == 0 { "AAAA" } else { "A" };
        if family == 0 {
            self.v6_lookup = None
        } else {
            self.v4_lookup = None
        }
        let detail = match answer {
            Ok(ips) if ips.is_empty() => format!("{kind}: no address"),
            Ok(mut ips) => {
                // After DNS, on every address: a name the policy allows may
                // still resolve somewhere it does not (127.0.0.1, a
                // metadata service, a private network).
                if let Some(policy) = &self.policy {
                    let port = self.target.port;
                    ips.retain(|ip| match policy.check_addr(SocketAddr::new(*ip, port)) {
                        Ok(()) => true,
                        Err(denied) => {
                            self.log.push_at(
                                now,
                                EventKind::Denied,
                                Some(SocketAddr::new(*ip, port)),
                                None,
                                Some(denied.to_string()),
                            );
                            self.denied.push(denied.to_string());
                            false
                        }
                    });
                    if ips.is_empty() {
                        self.log.push_at(
                            now,
                            EventKind::Resolve,
                            None,
                            None,
                            Some(format!("{kind}: every address denied")),
                        );
                        return;
                    }
                }
                self.found_any = true;
                let listed: Vec<String> = ips.iter().map(ToString::to_string).collect();
                self.candidates
                    .extend(ips.into_iter().map(|ip| SocketAddr::new(ip, self.target.port)));
                format!("{kind}: {}", listed.join(", "))
            }
            Err(e) => {
                self.resolve_errors.push(format!("{kind}: {e}"));
                format!("{kind} failed: {e}")
            }
        };
        self.log.push_at(now, EventKind::Resolve, None, None, Some(detail));
    }

    /// Handles an attempt that ended: a failure is recorded (and the next
    /// attempt may start at once); a ready one is returned.
    fn on_joined(
        &mut self,
        joined: Result<(tokio::task::Id, Outcome<D::Stream>), tokio::task::JoinError>,
    ) -> Option<(SocketAddr, D::Stream, Vec<u8>)> {
        match joined {
            Ok((id, Outcome::Ready { addr, stream, prefix })) => {
                self.attempts.remove(&id);
                Some((addr, stream, prefix))
            }
            Ok((id, Outcome::Failed { addr, stage, error, at })) => {
                self.attempts.remove(&id);
                self.record_failure(addr, stage, error, at);
                None
            }
            Err(e) => {
                let (addr, stage) = self.attempts.remove(&e.id())?;
                self.record_failure(addr, stage, format!("attempt ended: {e}"), Instant::now());
                None
            }
        }
    }

    fn record_failure(&mut self, addr: SocketAddr, stage: AttemptStage, error: String, at: Instant) {
        self.log
            .push_at(at, EventKind::Failed, Some(addr), None, Some(error.clone()));
        self.failures.push(AttemptFailure { addr, stage, error });
        // RFC 8305 §5: when an attempt fails, the next one starts at once.
        self.next_start = self.next_start.min(at);
    }

    /// Commits to the attempt to `addr`: cancels or parks the others, then
    /// finishes the winner (TLS if the commit was at TCP, first flight).
    /// `Ok(None)` when the winner failed before any byte of the plugin's
    /// was sent, so the race goes on.
    async fn commit(
        &mut self,
        addr: SocketAddr,
        stream: D::Stream,
        prefix: Vec<u8>,
        deadline: Instant,
    ) -> Result<Option<Committed<D::Stream>>, ConnectError> {
        let stage = self.target.commit;
        let detail = (stage == CommitStage::Response).then(|| format!("{} first flights sent", self.first_flights()));
        self.log
            .push(EventKind::Commit, Some(addr), Some(stage.as_str()), detail);
        self.settle_others(stage != CommitStage::Response).await;

        let stream = if stage == CommitStage::Tcp && self.target.tls {
            let bound = deadline.min(Instant::now() + self.config.tls_timeout);
            match tokio::time::timeout_at(bound, self.dialer.tls(addr, stream)).await {
                Ok(Ok(stream)) => {
                    self.log.push(EventKind::Tls, Some(addr), None, None);
                    stream
                }
                Ok(Err(e)) => {
                    self.record_failure(addr, AttemptStage::Tcp, e.to_string(), Instant::now());
                    return Ok(None);
                }
                Err(_) => {
                    self.record_failure(
                        addr,
                        AttemptStage::Tcp,
                        "TLS handshake timed out".into(),
                        Instant::now(),
                    );
                    return Ok(None);
                }
            }
        } else {
            stream
        };
        self.finish(addr, stream, prefix).await.map(Some)
    }

    /// The first flight on the committed stream (not at the `response`
    /// stage: it went out already), and the memory of the winner.
    async fn finish(
        &mut self,
        addr: SocketAddr,
        mut stream: D::Stream,
        prefix: Vec<u8>,
    ) -> Result<Committed<D::Stream>, ConnectError> {
        if self.target.commit != CommitStage::Response
            && let Some(flight) = &self.target.first_flight
        {
            let written = async {
                stream.write_all(flight).await?;
                stream.flush().await
            };
            if let Err(e) = written.await {
                // Part of the first flight may have reached the server:
                // sending it on another path would send it twice.
                let stage = if self.target.tls {
                    AttemptStage::Tls
                } else {
                    AttemptStage::Tcp
                };
                self.record_failure(addr, stage, format!("writing the first flight: {e}"), Instant::now());
                return Err(ConnectError::AllAttemptsFailed(self.failures.clone()));
            }
            self.log.push(
                EventKind::FirstFlight,
                Some(addr),
                None,
                Some(format!("{} bytes", flight.len())),
            );
        }
        self.memory.remember(&self.target.host, self.target.port, addr);
        Ok(Committed {
            peer: addr,
            stream,
            prefix,
        })
    }

    /// Cancels every attempt in flight and waits until each is gone (its
    /// socket closed). With `park`, attempts that turn out to have reached
    /// the commit stage already are parked instead.
    async fn settle_others(&mut self, park: bool) {
        self.in_flight.abort_all();
        while let Some(joined) = self.in_flight.join_next_with_id().await {
            match joined {
                Ok((id, Outcome::Ready { addr, stream, .. })) => {
                    self.attempts.remove(&id);
                    if park {
                        self.park(addr, stream);
                    } else {
                        self.log.push(EventKind::Cancel, Some(addr), None, None);
                        self.candidates.put_back(addr);
                    }
                }
                Ok((id, Outcome::Failed { addr, stage, error, at })) => {
                    self.attempts.remove(&id);
                    self.record_failure(addr, stage, error, at);
                }
                Err(e) => {
                    if let Some((addr, _)) = self.attempts.remove(&e.id()) {
                        self.log.push(EventKind::Cancel, Some(addr), None, None);
                        // Cancelled, not failed: a fallback may try it again.
                        self.candidates.put_back(addr);
                    }
                }
            }
        }
        self.attempts.clear();
    }

    fn park(&mut self, addr: SocketAddr, stream: D::Stream) {
        let grace = self.config.park_grace;
        self.log.push(
            EventKind::Park,
            Some(addr),
            None,
            Some(format!("{} ms", grace.as_millis())),
        );
        let slot = Arc::new(Mutex::new(Some(stream)));
        let held = slot.clone();
        let expiry = tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            // The grace is over: close it.
            let stream = held.lock().ok().and_then(|mut s| s.take());
            drop(stream);
        });
        self.parked.push_back(Parked { addr, slot, expiry });
    }

    fn first_flights(&self) -> usize {
        self.log
            .events()
            .iter()
            .filter(|e| e.event == EventKind::FirstFlight)
            .count()
    }

    /// The error for a race with nothing left to try.
    fn exhausted(&self) -> ConnectError {
        if !self.found_any && self.failures.is_empty() {
            if let Some(denied) = self.denied.first() {
                return ConnectError::Denied(denied.clone());
            }
            let why = if self.resolve_errors.is_empty() {
                "no address".to_owned()
            } else {
                self.resolve_errors.join("; ")
            };
            return ConnectError::Dns(format!("cannot resolve `{}`: {why}", self.target.host));
        }
        // The path works but the server's identity does not: TLS.
        let tls_only = !self.failures.is_empty()
            && self.target.tls
            && self
                .failures
                .iter()
                .all(|f| f.stage == AttemptStage::Tcp && f.error.starts_with("TLS:"));
        if tls_only {
            return ConnectError::Tls(self.failures[0].error.trim_start_matches("TLS: ").to_owned());
        }
        ConnectError::AllAttemptsFailed(self.failures.clone())
    }
}

/// A family's lookup as a future that never ends once answered (its
/// `select!` branch is then simply idle).
async fn answer<T>(lookup: &mut Option<Lookup<T>>) -> Result<Vec<T>, String> {
    match lookup {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

/// The answer of a lookup if it is already there, without waiting.
fn poll_now<T>(lookup: &mut Option<Lookup<T>>) -> Option<Result<Vec<T>, String>> {
    let future = lookup.as_mut()?;
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(answer) => Some(answer),
        std::task::Poll::Pending => None,
    }
}

/// One attempt, up to the commit stage.
async fn attempt<D: Dialer>(
    dialer: Arc<D>,
    target: Arc<Target>,
    addr: SocketAddr,
    max_head: usize,
    progress: mpsc::UnboundedSender<Progress>,
) -> Outcome<D::Stream> {
    let mut stage = AttemptStage::Started;
    let failed = |stage, error: String| Outcome::Failed {
        addr,
        stage,
        error,
        at: Instant::now(),
    };
    let mut stream = match dialer.tcp(addr).await {
        Ok(s) => s,
        Err(e) => return failed(stage, e.to_string()),
    };
    stage = AttemptStage::Tcp;
    let _ = progress.send(Progress::Tcp(addr, Instant::now()));
    if target.tls && target.commit >= CommitStage::Tls {
        stream = match dialer.tls(addr, stream).await {
            Ok(s) => s,
            Err(e) => return failed(stage, e.to_string()),
        };
        stage = AttemptStage::Tls;
        let _ = progress.send(Progress::Tls(addr, Instant::now()));
    }
    let mut prefix = Vec::new();
    if target.commit == CommitStage::Response {
        if let Some(flight) = &target.first_flight {
            let written = async {
                stream.write_all(flight).await?;
                stream.flush().await
            };
            if let Err(e) = written.await {
                return failed(stage, format!("writing the first flight: {e}"));
            }
            stage = AttemptStage::FirstFlight;
            let _ = progress.send(Progress::FirstFlight(addr, Instant::now(), flight.len()));
        }
        match read_head(&mut stream, max_head).await {
            Ok((head, status)) => {
                prefix = head;
                let _ = progress.send(Progress::Response(addr, Instant::now(), status));
            }
            Err(e) => return failed(stage, e.to_string()),
        }
    }
    Outcome::Ready { addr, stream, prefix }
}

/// Reads until a complete HTTP response head (`\r\n\r\n`) has arrived,
/// at most `max` bytes, and returns every byte read (the head and whatever
/// followed it in the same reads) with the status line.
async fn read_head<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, max: usize) -> io::Result<(Vec<u8>, String)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before a complete response head",
            ));
        }
        // Look for the end of the head only where it can be: in the new
        // bytes and the three before them.
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            let head_end = from + end + 4;
            let status = String::from_utf8_lossy(&buf[..head_end])
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned();
            return Ok((buf, status));
        }
        if buf.len() > max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("response head over {max} bytes"),
            ));
        }
    }
}
