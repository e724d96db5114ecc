//! The race itself: a state machine over the lookups, the attempts in
//! flight and the parked ones, driven by [`Race::next`] and
//! [`Race::fallback`].

mod answers;

use super::attempt::{Outcome, Progress, attempt, handshake, write_flight};
use super::family::{Family, PerFamily};
use super::order::Endpoint;
use super::park::Parked;
use super::{
    AddressCheck, AttemptError, AttemptErrorKind, AttemptFailure, AttemptStage, Candidates, CommitStage, Committed,
    ConnectError, Dialer, EchMode, EchOffer, EchStatus, History, HistoryView, NetDialer, RaceConfig, Target,
};
use crate::report::{EventKind, RaceLog};
use crate::resolve::{Lookup, Lookups, ServiceLookup};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// One connect's race. It outlives the first commit, so that a plugin's
/// fallback goes on where the connect stopped.
pub struct Race<D: Dialer = NetDialer> {
    config: RaceConfig,
    target: Arc<Target>,
    dialer: Arc<D>,
    /// What the process learned of paths, and this race's view of it.
    history: History,
    view: HistoryView,
    /// The Connection Attempt Delay after the attempt started last: from
    /// that address's round trip where the history has one (draft §6).
    attempt_delay: Duration,
    /// De-synthesis of DNS64 answers (draft §8.2), when a NAT64 prefix
    /// is known.
    nat64: Option<crate::nat64::Nat64>,
    https_lookup: Option<ServiceLookup>,
    v6_lookup: Option<Lookup<std::net::Ipv6Addr>>,
    v4_lookup: Option<Lookup<std::net::Ipv4Addr>>,
    /// When each family's lookup finished.
    answered_at: PerFamily<Option<Instant>>,
    /// When the HTTPS lookup finished.
    services_at: Option<Instant>,
    /// When the first address (an answer or a hint) became known: the
    /// Resolution Delay counts from there (draft §4.2).
    first_address_at: Option<Instant>,
    /// The family the race prefers, whose answer it waits for.
    preferred: Family,
    resolve_errors: Vec<String>,
    found_any: bool,
    /// Checked on every resolved address before it becomes a candidate.
    check: Arc<dyn AddressCheck>,
    /// Why each address the policy refused was refused.
    denied: Vec<String>,
    candidates: Candidates,
    in_flight: JoinSet<Outcome<D::Stream>>,
    /// The address and stage reached of each attempt in flight.
    attempts: HashMap<tokio::task::Id, (SocketAddr, AttemptStage)>,
    /// Each attempt's ECH offer, sent when known (draft §6.3: TLS waits
    /// for the HTTPS answer when ECH may be used).
    ech_offers: HashMap<SocketAddr, watch::Sender<Option<EchOffer>>>,
    /// What became of ECH on each attempt whose TLS completed.
    ech_status: HashMap<SocketAddr, EchStatus>,
    /// The address dialled for each endpoint attempted (a NAT64 synthesis
    /// differs from the address the endpoint stands for).
    dialled: HashMap<SocketAddr, SocketAddr>,
    progress_tx: mpsc::UnboundedSender<Progress>,
    progress_rx: mpsc::UnboundedReceiver<Progress>,
    parked: VecDeque<Parked<D::Stream>>,
    failures: Vec<AttemptFailure>,
    log: RaceLog,
    /// The address and start time of the attempt started last.
    last_attempt: Option<(SocketAddr, Instant)>,
    /// When each attempt started, and how long its TCP handshake took
    /// (one round trip: what the commit event reports).
    started_at: HashMap<SocketAddr, Instant>,
    tcp_rtt: HashMap<SocketAddr, Duration>,
    next_start: Instant,
    /// Attempts started, and first flights written, over the whole race.
    attempts_started: usize,
    first_flights: usize,
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
    /// A race for `target`, over the addresses `lookups` will give, each
    /// dialed only if `check` allows it.
    ///
    /// A commit stage that does not apply is lowered: `tls` on a plain
    /// target is `tcp`, and `response` without a first flight (nothing to
    /// get a response to) is the stage before it.
    pub fn new(
        config: RaceConfig,
        mut target: Target,
        dialer: D,
        lookups: Lookups,
        check: Arc<dyn AddressCheck>,
        history: History,
        log: RaceLog,
    ) -> Self {
        let connected = if target.tls { CommitStage::Tls } else { CommitStage::Tcp };
        target.commit = match target.commit {
            CommitStage::Response if target.first_flight.is_none() => connected,
            CommitStage::Tls if !target.tls => CommitStage::Tcp,
            stage => stage,
        };
        let view = history.view(&target.host, target.port);
        // A family that keeps failing goes second, and its answer is not
        // the one to wait for.
        let preferred = match view.failing_family() {
            Some(Family::V6) => Family::V4,
            _ => Family::V6,
        };
        let (progress_tx, progress_rx) = mpsc::unbounded_channel();
        let candidates = Candidates::new(target.port, config.first_family_count).with_experience(view.clone());
        Race {
            config,
            candidates,
            preferred,
            target: Arc::new(target),
            dialer: Arc::new(dialer),
            history,
            view,
            attempt_delay: config.attempt_delay,
            nat64: None,
            https_lookup: Some(lookups.https),
            v6_lookup: Some(lookups.v6),
            v4_lookup: Some(lookups.v4),
            answered_at: PerFamily::default(),
            services_at: None,
            first_address_at: None,
            resolve_errors: Vec::new(),
            found_any: false,
            check,
            denied: Vec::new(),
            in_flight: JoinSet::new(),
            attempts: HashMap::new(),
            ech_offers: HashMap::new(),
            ech_status: HashMap::new(),
            dialled: HashMap::new(),
            progress_tx,
            progress_rx,
            parked: VecDeque::new(),
            failures: Vec::new(),
            log,
            last_attempt: None,
            started_at: HashMap::new(),
            tcp_rtt: HashMap::new(),
            next_start: Instant::now(),
            attempts_started: 0,
            first_flights: 0,
        }
    }

    /// Races over NAT64 (draft §8): AAAA answers within the prefix stand
    /// for the IPv4 address they embed (the policy, the sorting and the
    /// history see that), and, with `synthesize` (no IPv4 route), IPv4
    /// addresses are dialled through the prefix.
    pub fn with_nat64(mut self, nat64: crate::nat64::Nat64, synthesize: bool) -> Self {
        if synthesize {
            let through = nat64;
            self.candidates = self
                .candidates
                .with_synthesis(move |v4| through.synthesize_if_needed(v4));
        }
        self.nat64 = Some(nat64);
        self
    }

    /// Prefers IPv4: for a host whose only default route is IPv4's (draft
    /// §4.2), unless the history puts IPv4 second.
    pub fn prefer_ipv4(mut self) -> Self {
        if self.view.failing_family() != Some(Family::V4) {
            self.preferred = Family::V4;
            self.candidates = self.candidates.preferring(Family::V4);
        }
        self
    }

    /// How long the TCP handshake to `addr` took, if an attempt to it got
    /// that far.
    pub fn tcp_rtt(&self, addr: SocketAddr) -> Option<Duration> {
        self.tcp_rtt.get(&addr).copied()
    }

    /// The events of this connect so far.
    pub fn log(&self) -> &RaceLog {
        &self.log
    }

    /// The target of this connect (its commit stage as applied).
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// How many attempts the race has started so far.
    pub fn attempts_started(&self) -> usize {
        self.attempts_started
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
            if let Some(answer) = poll_now(&mut self.https_lookup) {
                self.on_services(answer);
            }
            if let Some(answer) = poll_now(&mut self.v6_lookup) {
                self.on_answer(Family::V6, answer.map(|v| v.into_iter().map(IpAddr::V6).collect()));
            }
            if let Some(answer) = poll_now(&mut self.v4_lookup) {
                self.on_answer(Family::V4, answer.map(|v| v.into_iter().map(IpAddr::V4).collect()));
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
                answer = answer(&mut self.https_lookup) => self.on_services(answer),
                answer = answer(&mut self.v6_lookup) => {
                    let addrs = answer.map(|v| v.into_iter().map(IpAddr::V6).collect());
                    self.on_answer(Family::V6, addrs);
                }
                answer = answer(&mut self.v4_lookup) => {
                    let addrs = answer.map(|v| v.into_iter().map(IpAddr::V4).collect());
                    self.on_answer(Family::V4, addrs);
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
            error: AttemptError::new(AttemptErrorKind::GivenUp, "given up by the plugin"),
        });
        while let Some(parked) = self.parked.pop_front() {
            let addr = parked.addr();
            if let Some(stream) = parked.take() {
                let rtt = self.tcp_rtt.get(&addr).copied();
                let ech = self.ech_status.get(&addr).map(|s| s.as_str());
                self.log.push_parked_commit(addr, self.target.commit.as_str(), rtt, ech);
                return self.finish(addr, stream, Vec::new()).await;
            }
        }
        self.next(deadline).await
    }

    /// Whether every lookup has answered.
    fn dns_done(&self) -> bool {
        self.https_lookup.is_none() && self.v6_lookup.is_none() && self.v4_lookup.is_none()
    }

    /// When attempts may start (draft §4.2): once some address is known
    /// and both the preferred family's answer and the HTTPS answer are in
    /// (empty or failed counts as in; a hint of the preferred family
    /// counts as its answer), or the Resolution Delay after the first
    /// address, whichever comes first. `None`: no address yet.
    fn gate(&self) -> Option<Instant> {
        let first = self.first_address_at?;
        let delayed = first + self.config.resolution_delay;
        let Some(services) = self.services_at else {
            return Some(delayed);
        };
        let family = match self.answered_at.get(self.preferred) {
            Some(at) => *at,
            None if self.candidates.hinted(self.preferred) => services,
            None => return Some(delayed),
        };
        Some(first.max(family).max(services).min(delayed))
    }

    fn start_due(&mut self, now: Instant) {
        let gate_open = self.gate().is_some_and(|at| now >= at);
        if gate_open
            && self.in_flight.len() < self.config.max_in_flight
            && now >= self.next_start
            && let Some(endpoint) = self.candidates.pick()
        {
            let addr = endpoint.addr;
            self.attempt_delay = self.view.attempt_delay(addr.ip(), self.config.attempt_delay);
            self.spawn_attempt(endpoint, now);
            self.last_attempt = Some((addr, now));
            self.next_start = now + self.attempt_delay;
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

    /// The ECH offer for the endpoint `addr` stands for, or `None` while
    /// it depends on an HTTPS answer not in yet.
    fn ech_offer(&self, addr: SocketAddr) -> Option<EchOffer> {
        if !self.target.tls {
            return Some(EchOffer::Off);
        }
        match self.config.ech {
            EchMode::Off => Some(EchOffer::Off),
            EchMode::Grease => Some(EchOffer::Grease),
            EchMode::On if !self.candidates.has_services() => None,
            // No extension where there is no configuration: ECH, GREASE
            // included, makes a handshake TLS 1.3 only, and a TLS 1.2
            // server must still be reached.
            EchMode::On => Some(match self.candidates.endpoint(addr).and_then(|e| e.ech) {
                Some(config) => EchOffer::Config(config),
                None => EchOffer::Off,
            }),
        }
    }

    fn spawn_attempt(&mut self, endpoint: Endpoint, now: Instant) {
        let addr = endpoint.addr;
        let mut notes = Vec::new();
        if let Some(via) = endpoint.via {
            notes.push(format!("via {via}"));
        }
        if endpoint.hint {
            notes.push("address hint".to_owned());
        }
        if self.attempts_started == 0 && self.view.explore() {
            // Draft §5.3: now and then a race ignores what was learned, so
            // that a repaired path is found again.
            notes.push("exploring: this race ignores the history".to_owned());
        }
        if self.attempt_delay != self.config.attempt_delay {
            notes.push(format!(
                "next attempt in {} ms (from its round trip)",
                self.attempt_delay.as_millis()
            ));
        }
        let detail = (!notes.is_empty()).then(|| notes.join(", "));
        self.log.push_at(now, EventKind::Attempt, Some(addr), None, detail);
        self.started_at.insert(addr, now);
        self.dialled.insert(addr, endpoint.dial());
        self.attempts_started += 1;
        let (offer_tx, offer_rx) = watch::channel(self.ech_offer(addr));
        self.ech_offers.insert(addr, offer_tx);
        let task = attempt(
            self.dialer.clone(),
            self.target.clone(),
            endpoint,
            self.config.max_response_head,
            self.progress_tx.clone(),
            offer_rx,
        );
        let handle = self.in_flight.spawn(task);
        self.attempts.insert(handle.id(), (addr, AttemptStage::Started));
    }

    fn on_progress(&mut self, progress: Progress) {
        let (addr, stage) = match progress {
            Progress::Tcp(addr, at) => {
                self.log.push_at(at, EventKind::Tcp, Some(addr), None, None);
                if let Some(started) = self.started_at.get(&addr) {
                    let rtt = at.saturating_duration_since(*started);
                    self.tcp_rtt.insert(addr, rtt);
                    self.history
                        .record_success(&self.target.host, self.target.port, addr, rtt);
                }
                // HEv3 §6.1: TCP is up and TLS has begun; give it up to one
                // more attempt delay before starting the next attempt, but
                // never more, so a stalled handshake cannot hold the race.
                if self.target.commit >= CommitStage::Tls
                    && self.target.tls
                    && let Some((latest, start)) = self.last_attempt
                    && latest == addr
                {
                    let extended = (at + self.attempt_delay).min(start + 2 * self.attempt_delay);
                    self.next_start = self.next_start.max(extended);
                }
                (addr, AttemptStage::Tcp)
            }
            Progress::AwaitingEch(addr, at) => {
                let detail = "waiting for the HTTPS answer before TLS: it may carry an ECH configuration";
                self.log
                    .push_at(at, EventKind::Ech, Some(addr), None, Some(detail.into()));
                return;
            }
            Progress::EchRetry(addr, at) => {
                let detail = "rejected: a new connection tries the server's retry configurations";
                self.log
                    .push_at(at, EventKind::Ech, Some(addr), None, Some(detail.into()));
                return;
            }
            Progress::Tls(addr, at, ech) => {
                self.ech_status.insert(addr, ech);
                let detail = (ech != EchStatus::NotOffered).then(|| format!("ECH {}", ech.as_str()));
                self.log.push_at(at, EventKind::Tls, Some(addr), None, detail);
                (addr, AttemptStage::Tls)
            }
            Progress::FirstFlight(addr, at, len) => {
                self.first_flights += 1;
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

    /// Handles an attempt that ended: a failure is recorded (and the next
    /// attempt may start at once); a ready one is returned.
    fn on_joined(
        &mut self,
        joined: Result<(tokio::task::Id, Outcome<D::Stream>), tokio::task::JoinError>,
    ) -> Option<(SocketAddr, D::Stream, Vec<u8>)> {
        match joined {
            Ok((id, Outcome::Ready { addr, stream, prefix })) => {
                self.attempts.remove(&id);
                self.ech_offers.remove(&addr);
                Some((addr, stream, prefix))
            }
            Ok((id, Outcome::Failed { addr, stage, error, at })) => {
                self.attempts.remove(&id);
                self.ech_offers.remove(&addr);
                self.record_failure(addr, stage, error, at);
                None
            }
            Err(e) => {
                let (addr, stage) = self.attempts.remove(&e.id())?;
                self.record_failure(addr, stage, AttemptError::io("attempt ended", e), Instant::now());
                None
            }
        }
    }

    fn record_failure(&mut self, addr: SocketAddr, stage: AttemptStage, error: AttemptError, at: Instant) {
        self.log
            .push_at(at, EventKind::Failed, Some(addr), None, Some(error.to_string()));
        // Only the transport's failures say something about the path.
        if stage == AttemptStage::Started {
            self.history.record_failure(&self.target.host, self.target.port, addr);
        }
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
        let detail = (stage == CommitStage::Response).then(|| format!("{} first flights sent", self.first_flights));
        let rtt = self.tcp_rtt.get(&addr).copied();
        let ech = self.ech_status.get(&addr).map(|s| s.as_str());
        self.log.push_commit(addr, stage.as_str(), detail, rtt, ech);
        self.settle_others(stage != CommitStage::Response).await;

        let stream = if stage == CommitStage::Tcp && self.target.tls {
            let bound = deadline.min(Instant::now() + self.config.tls_timeout);
            let offer = match self.ech_offer(addr) {
                Some(offer) => offer,
                None => {
                    // Draft §6.3: TLS waits for the HTTPS answer.
                    self.log.push(
                        EventKind::Ech,
                        Some(addr),
                        None,
                        Some("waiting for the HTTPS answer before TLS".into()),
                    );
                    if let Some(lookup) = self.https_lookup.as_mut()
                        && let Ok(answer) = tokio::time::timeout_at(bound, lookup).await
                    {
                        self.on_services(answer);
                    }
                    self.ech_offer(addr).unwrap_or(EchOffer::Off)
                }
            };
            let dial = self.dialled.get(&addr).copied().unwrap_or(addr);
            let progress = self.progress_tx.clone();
            let done =
                tokio::time::timeout_at(bound, handshake(&*self.dialer, dial, stream, offer, addr, &progress)).await;
            while let Ok(progress) = self.progress_rx.try_recv() {
                self.on_progress(progress);
            }
            match done {
                Ok(Ok((stream, ech))) => {
                    let detail = (ech != EchStatus::NotOffered).then(|| format!("ECH {}", ech.as_str()));
                    self.ech_status.insert(addr, ech);
                    self.log.push(EventKind::Tls, Some(addr), None, detail);
                    stream
                }
                Ok(Err(e)) => {
                    self.record_failure(addr, AttemptStage::Tcp, e, Instant::now());
                    return Ok(None);
                }
                Err(_) => {
                    let error = AttemptError::new(AttemptErrorKind::Timeout, "TLS handshake timed out");
                    self.record_failure(addr, AttemptStage::Tcp, error, Instant::now());
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
            if let Err(e) = write_flight(&mut stream, flight).await {
                // Part of the first flight may have reached the server:
                // sending it on another path would send it twice.
                let stage = if self.target.tls {
                    AttemptStage::Tls
                } else {
                    AttemptStage::Tcp
                };
                self.record_failure(addr, stage, e, Instant::now());
                return Err(ConnectError::AllAttemptsFailed(self.failures.clone()));
            }
            self.first_flights += 1;
            self.dialer.awaiting_reply(&stream);
            self.log.push(
                EventKind::FirstFlight,
                Some(addr),
                None,
                Some(format!("{} bytes", flight.len())),
            );
        }
        Ok(Committed {
            peer: self.dialled.get(&addr).copied().unwrap_or(addr),
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
                    if let Some((addr, stage)) = self.attempts.remove(&e.id()) {
                        // Its TCP was not done when the race was decided:
                        // its round trip is at least that long.
                        if stage == AttemptStage::Started
                            && let Some(started) = self.started_at.get(&addr)
                        {
                            self.history.record_slow(addr, started.elapsed());
                        }
                        self.log.push(EventKind::Cancel, Some(addr), None, None);
                        // Cancelled, not failed: a fallback may try it again.
                        self.candidates.put_back(addr);
                    }
                }
            }
        }
        self.attempts.clear();
        self.ech_offers.clear();
    }

    fn park(&mut self, addr: SocketAddr, stream: D::Stream) {
        let grace = self.config.park_grace;
        self.log.push(
            EventKind::Park,
            Some(addr),
            None,
            Some(format!("{} ms", grace.as_millis())),
        );
        self.parked.push_back(Parked::new(addr, stream, grace));
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
                .all(|f| f.stage == AttemptStage::Tcp && f.error.kind() == AttemptErrorKind::Tls);
        if tls_only {
            return ConnectError::Tls(self.failures[0].error.cause().to_owned());
        }
        ConnectError::AllAttemptsFailed(self.failures.clone())
    }
}

/// A lookup as a future that never ends once answered (its `select!`
/// branch is then simply idle).
async fn answer<R>(lookup: &mut Option<Pin<Box<dyn Future<Output = R> + Send>>>) -> R {
    match lookup {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

/// The answer of a lookup if it is already there, without waiting.
fn poll_now<R>(lookup: &mut Option<Pin<Box<dyn Future<Output = R> + Send>>>) -> Option<R> {
    let future = lookup.as_mut()?;
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(answer) => Some(answer),
        std::task::Poll::Pending => None,
    }
}
