//! The race's rules, checked with tokio's paused clock and a scripted
//! dialer: every attempt's timing is set by the script, so the start and
//! commit times are exact.

use super::*;
use crate::report::{EventKind, RaceLog};
use crate::resolve::{Lookup, Lookups};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);

/// What one step of an attempt does.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// Completes after this long.
    After(Duration),
    /// Fails after this long.
    FailAfter(Duration),
    /// Never completes (a dropped SYN, a stalled handshake).
    Never,
}

impl Step {
    async fn run(self, what: &str) -> io::Result<()> {
        match self {
            Step::After(d) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
            Step::FailAfter(d) => {
                tokio::time::sleep(d).await;
                Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("{what} refused"),
                ))
            }
            Step::Never => std::future::pending().await,
        }
    }
}

/// The script of one address: its TCP and TLS steps, and when its server
/// answers a request (`None`: never).
#[derive(Clone, Copy, Debug)]
struct Plan {
    tcp: Step,
    tls: Step,
    respond_after: Option<Duration>,
    ech: EchPlan,
}

/// What a scripted server does with Encrypted Client Hello.
#[derive(Clone, Copy, Debug)]
enum EchPlan {
    /// Knows nothing of it: GREASE passes, a real configuration fails the
    /// handshake (the client cannot verify the public name's stand-in).
    Unaware,
    /// Accepts this configuration; any other gets it back as retry
    /// configurations.
    Accepts(&'static [u8]),
}

fn ok(tcp_ms: u64, tls_ms: u64) -> Plan {
    Plan {
        tcp: Step::After(Duration::from_millis(tcp_ms)),
        tls: Step::After(Duration::from_millis(tls_ms)),
        respond_after: Some(Duration::ZERO),
        ech: EchPlan::Unaware,
    }
}

const BLACKHOLE: Plan = Plan {
    tcp: Step::Never,
    tls: Step::Never,
    respond_after: None,
    ech: EchPlan::Unaware,
};

#[derive(Debug, Default)]
struct Shared {
    /// Bytes each address's server received.
    received: Mutex<HashMap<SocketAddr, Vec<u8>>>,
    /// Streams open right now.
    open: AtomicUsize,
    /// The ECH offer of every TLS handshake, in order.
    ech_offers: Mutex<Vec<(SocketAddr, EchOffer)>>,
}

#[derive(Clone)]
struct Script {
    plans: Arc<HashMap<SocketAddr, Plan>>,
    shared: Arc<Shared>,
}

impl Script {
    fn new(plans: &[(SocketAddr, Plan)]) -> Self {
        Script {
            plans: Arc::new(plans.iter().copied().collect()),
            shared: Arc::default(),
        }
    }

    /// What `addr`'s server has received, once the in-memory servers have
    /// had their turn to read.
    async fn received(&self, addr: SocketAddr) -> Vec<u8> {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        self.shared
            .received
            .lock()
            .unwrap()
            .get(&addr)
            .cloned()
            .unwrap_or_default()
    }

    fn open(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }
}

/// The client end of an in-memory connection; its server end records what
/// it receives and answers a request head after the plan's delay.
#[derive(Debug)]
struct ScriptStream {
    inner: DuplexStream,
    shared: Arc<Shared>,
}

impl Drop for ScriptStream {
    fn drop(&mut self) {
        self.shared.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl AsyncRead for ScriptStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ScriptStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

const RESPONSE: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\n\r\n";

impl Dialer for Script {
    type Stream = ScriptStream;

    async fn tcp(&self, addr: SocketAddr) -> io::Result<ScriptStream> {
        let plan = self.plans[&addr];
        plan.tcp.run("TCP").await?;
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        self.shared.open.fetch_add(1, Ordering::SeqCst);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            loop {
                let n = match server.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let head_done = {
                    let mut received = shared.received.lock().unwrap();
                    let seen = received.entry(addr).or_default();
                    seen.extend_from_slice(&buf[..n]);
                    seen.ends_with(b"\r\n\r\n")
                };
                if head_done && let Some(delay) = plan.respond_after {
                    tokio::time::sleep(delay).await;
                    let _ = server.write_all(RESPONSE).await;
                }
            }
        });
        Ok(ScriptStream {
            inner: client,
            shared: self.shared.clone(),
        })
    }

    async fn tls(
        &self,
        addr: SocketAddr,
        stream: ScriptStream,
        ech: &EchOffer,
    ) -> io::Result<(ScriptStream, EchStatus)> {
        let plan = self.plans[&addr];
        self.shared.ech_offers.lock().unwrap().push((addr, ech.clone()));
        plan.tls.run("TLS").await?;
        let status = match (ech, plan.ech) {
            (EchOffer::Off, _) => EchStatus::NotOffered,
            (EchOffer::Grease, _) => EchStatus::Grease,
            (EchOffer::Config(_), EchPlan::Unaware) => {
                return Err(io::Error::other("ECH rejected without retry configurations"));
            }
            (EchOffer::Config(config), EchPlan::Accepts(key)) if &**config == key => EchStatus::Accepted,
            (EchOffer::Config(_), EchPlan::Accepts(key)) => {
                return Err(io::Error::other(EchRetry(Arc::from(key))));
            }
        };
        Ok((stream, status))
    }

    fn check_ech(&self, config: &[u8]) -> Result<(), String> {
        match config.strip_prefix(b"bad") {
            Some(_) => Err("no configuration with a supported version".into()),
            None => Ok(()),
        }
    }
}

fn v6(n: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, n.into())), 443)
}

fn v4(n: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, n)), 443)
}

/// Lookups answering after the given delays (`None`: the family fails).
fn lookups(v6s: &[SocketAddr], v6_after: Option<u64>, v4s: &[SocketAddr], v4_after: Option<u64>) -> Lookups {
    fn family<T: Send + 'static>(ips: Vec<T>, after: Option<u64>) -> Lookup<T> {
        Box::pin(async move {
            match after {
                Some(ms) => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok(ips)
                }
                None => Err("no such name".to_owned()),
            }
        })
    }
    let six = v6s
        .iter()
        .map(|a| match a.ip() {
            IpAddr::V6(ip) => ip,
            _ => unreachable!(),
        })
        .collect();
    let four = v4s
        .iter()
        .map(|a| match a.ip() {
            IpAddr::V4(ip) => ip,
            _ => unreachable!(),
        })
        .collect();
    Lookups {
        https: Box::pin(async { Ok(crate::resolve::ServiceAnswer::default()) }),
        v6: family(six, v6_after),
        v4: family(four, v4_after),
    }
}

const FLIGHT: &[u8] = b"GET / HTTP/1.1\r\nHost: wsgate.test\r\n\r\n";

fn target(commit: CommitStage) -> Target {
    Target {
        host: "wsgate.test".parse().unwrap(),
        port: 443,
        tls: true,
        first_flight: Some(FLIGHT.to_vec()),
        commit,
    }
}

fn race(config: RaceConfig, commit: CommitStage, script: &Script, lookups: Lookups, memory: &History) -> Race<Script> {
    Race::new(
        config,
        target(commit),
        script.clone(),
        lookups,
        Arc::new(AllowAll),
        memory.clone(),
        RaceLog::new(1, None),
    )
}

/// An address check that allows every address: these tests are about
/// timing, the policy has its own.
pub(super) struct AllowAll;

impl AddressCheck for AllowAll {
    fn check(&self, _addr: SocketAddr) -> Result<(), String> {
        Ok(())
    }
}

fn memory() -> History {
    History::new(HistoryConfig::default())
}

/// The `(t_ms, address)` of every event of `kind`.
fn events<D: Dialer>(race: &Race<D>, kind: EventKind) -> Vec<(u64, Option<SocketAddr>)> {
    race.log()
        .events()
        .iter()
        .filter(|e| e.event == kind)
        .map(|e| (e.t_ms.round() as u64, e.addr))
        .collect()
}

fn deadline(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms)
}

mod history;
mod nat64;
mod services;

#[tokio::test(start_paused = true)]
async fn attempts_are_staggered_interleaved_and_capped() {
    let script = Script::new(&[
        (v6(1), BLACKHOLE),
        (v6(2), BLACKHOLE),
        (v6(3), BLACKHOLE),
        (v4(1), BLACKHOLE),
        (v4(2), BLACKHOLE),
    ]);
    let config = RaceConfig::default();
    let mut r = race(
        config,
        CommitStage::Tls,
        &script,
        lookups(&[v6(1), v6(2), v6(3)], Some(0), &[v4(1), v4(2)], Some(0)),
        &memory(),
    );
    assert!(matches!(r.next(deadline(3000)).await, Err(ConnectError::Timeout)));
    // 250 ms apart, IPv6 first then alternating, at most 4 in flight.
    assert_eq!(
        events(&r, EventKind::Attempt),
        [
            (0, Some(v6(1))),
            (250, Some(v4(1))),
            (500, Some(v6(2))),
            (750, Some(v4(2)))
        ]
    );
    // At the deadline every attempt is cancelled and its socket dropped.
    assert_eq!(events(&r, EventKind::Cancel).len(), 4);
    assert!(events(&r, EventKind::Cancel).iter().all(|(t, _)| *t == 3000));
    assert_eq!(script.open(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_failed_attempt_starts_the_next_at_once() {
    let refused = Plan {
        tcp: Step::FailAfter(20 * MS),
        ..BLACKHOLE
    };
    let script = Script::new(&[(v6(1), refused), (v4(1), ok(5, 5))]);
    let mut r = race(
        RaceConfig::default(),
        CommitStage::Tls,
        &script,
        lookups(&[v6(1)], Some(0), &[v4(1)], Some(0)),
        &memory(),
    );
    let c = r.next(deadline(10_000)).await.unwrap();
    assert_eq!(c.peer, v4(1));
    assert_eq!(events(&r, EventKind::Attempt), [(0, Some(v6(1))), (20, Some(v4(1)))]);
    assert_eq!(events(&r, EventKind::Failed), [(20, Some(v6(1)))]);
    assert_eq!(events(&r, EventKind::Commit), [(30, Some(v4(1)))]);
}

#[tokio::test(start_paused = true)]
async fn resolution_delay_waits_for_aaaa_then_late_answers_join() {
    // A at 10 ms, AAAA at 100 ms: the race starts on A after the 50 ms
    // Resolution Delay, and IPv6 joins when it answers.
    let script = Script::new(&[(v6(1), BLACKHOLE), (v4(1), BLACKHOLE), (v4(2), BLACKHOLE)]);
    let mut r = race(
        RaceConfig::default(),
        CommitStage::Tls,
        &script,
        lookups(&[v6(1)], Some(100), &[v4(1), v4(2)], Some(10)),
        &memory(),
    );
    assert!(r.next(deadline(1000)).await.is_err());
    assert_eq!(
        events(&r, EventKind::Resolve).iter().map(|e| e.0).collect::<Vec<_>>(),
        [10, 100]
    );
    assert_eq!(
        events(&r, EventKind::Attempt),
        [(60, Some(v4(1))), (310, Some(v6(1))), (560, Some(v4(2)))]
    );

    // AAAA inside the Resolution Delay: the race starts on it at once.
    let mut r = race(
        RaceConfig::default(),
        CommitStage::Tls,
        &script,
        lookups(&[v6(1)], Some(40), &[v4(1)], Some(10)),
        &memory(),
    );
    assert!(r.next(deadline(300)).await.is_err());
    assert_eq!(events(&r, EventKind::Attempt), [(40, Some(v6(1))), (290, Some(v4(1)))]);
}

#[tokio::test(start_paused = true)]
async fn one_family_failing_to_resolve_does_not_fail_the_connect() {
    let script = Script::new(&[(v4(1), ok(1, 1))]);
    let mut r = race(
        RaceConfig::default(),
        CommitStage::Tls,
        &script,
        lookups(&[], None, &[v4(1)], Some(5)),
        &memory(),
    );
    assert_eq!(r.next(deadline(1000)).await.unwrap().peer, v4(1));
    // AAAA failed at once, so A is not held back by the Resolution Delay.
    assert_eq!(events(&r, EventKind::Attempt), [(5, Some(v4(1)))]);

    let mut r = race(
        RaceConfig::default(),
        CommitStage::Tls,
        &script,
        lookups(&[], None, &[], None),
        &memory(),
    );
    assert!(matches!(r.next(deadline(1000)).await, Err(ConnectError::Dns(e)) if e.contains("no such name")));
}

#[tokio::test(start_paused = true)]
async fn the_cap_on_attempts_in_flight_holds() {
    let script = Script::new(&[
        (v6(1), BLACKHOLE),
        (v6(2), BLACKHOLE),
        (v4(1), BLACKHOLE),
        (v4(2), BLACKHOLE),
    ]);
    let config = RaceConfig {
        max_in_flight: 2,
        ..RaceConfig::default()
    };
    let mut r = race(
        config,
        CommitStage::Tls,
        &script,
        lookups(&[v6(1), v6(2)], Some(0), &[v4(1), v4(2)], Some(0)),
        &memory(),
    );
    assert!(matches!(r.next(deadline(2000)).await, Err(ConnectError::Timeout)));
    assert_eq!(events(&r, EventKind::Attempt), [(0, Some(v6(1))), (250, Some(v4(1)))]);
}

#[tokio::test(start_paused = true)]
async fn commit_at_tls_skips_a_stalled_handshake_and_sends_one_first_flight() {
    // IPv6: TCP up at 10 ms, TLS never. IPv4: fine.
    let stall = Plan {
        tcp: Step::After(10 * MS),
        tls: Step::Never,
        respond_after: Some(Duration::ZERO),
        ech: EchPlan::Unaware,
    };
    let script = Script::new(&[(v6(1), stall), (v4(1), ok(10, 10))]);
    let mut r = race(
        RaceConfig::default(),
        CommitStage::Tls,
        &script,
        lookups(&[v6(1)], Some(0), &[v4(1)], Some(0)),
        &memory(),
    );
    let c = r.next(deadline(10_000)).await.unwrap();
    assert_eq!(c.peer, v4(1));
    // HEv3: IPv6's TCP at 10 ms gives its TLS one attempt delay, so IPv4
    // starts at 260 ms, not 250 ms; it commits after its TLS.
    assert_eq!(events(&r, EventKind::Attempt), [(0, Some(v6(1))), (260, Some(v4(1)))]);
    assert_eq!(events(&r, EventKind::Commit), [(280, Some(v4(1)))]);
    assert_eq!(events(&r, EventKind::Cancel), [(280, Some(v6(1)))]);
    // One first flight, on the winner; nothing on the loser.
    assert_eq!(script.received(v4(1)).await, FLIGHT);
    assert_eq!(script.received(v6(1)).await, b"");
    drop(c);
    tokio::task::yield_now().await;
    assert_eq!(script.open(), 0, "the cancelled attempt's stream is closed");
}

#[tokio::test(start_paused = true)]
async fn the_tls_extension_is_bounded_by_one_attempt_delay() {
    // TCP at 240 ms: the next attempt waits until min(240 + 250, 0 + 500).
    let stall = Plan {
        tcp: Step::After(240 * MS),
        tls: Step::Never,
        respond_after: None,
        ech: EchPlan::Unaware,
    };
    let script = Script::new(&[(v6(1), stall), (v4(1), ok(1, 1))]);
    let mut r = race(
        RaceConfig::default(),
        CommitStage::Tls,
        &script,
        lookups(&[v6(1)], Some(0), &[v4(1)], Some(0)),
        &memory(),
    );
    assert_eq!(r.next(deadline(10_000)).await.unwrap().peer, v4(1));
    assert_eq!(events(&r, EventKind::Attempt), [(0, Some(v6(1))), (490, Some(v4(1)))]);
}

#[tokio::test(start_paused = true)]
async fn commit_at_tcp_takes_the_first_tcp_and_waits_on_its_tls() {
    let stall = Plan {
        tcp: Step::After(10 * MS),
        tls: Step::Never,
        respond_after: Some(Duration::ZERO),
        ech: EchPlan::Unaware,
    };
    let script = Script::new(&[(v6(1), stall), (v4(1), ok(10, 10))]);
    let config = RaceConfig {
        tls_timeout: Duration::from_secs(1),
        ..RaceConfig::default()
    };
    let mut r = race(
        config,
        CommitStage::Tcp,
        &script,
        lookups(&[v6(1)], Some(0), &[v4(1)], Some(0)),
        &memory(),
    );
    let c = r.next(deadline(10_000)).await.unwrap();
    // IPv6 won at TCP (10 ms); its TLS then stalled until the TLS timeout,
    // and only then did the race go on to IPv4: the contrast with `tls`.
    assert_eq!(events(&r, EventKind::Commit), [(10, Some(v6(1))), (1020, Some(v4(1)))]);
    assert_eq!(events(&r, EventKind::Tls), [(1030, Some(v4(1)))]);
    assert_eq!(events(&r, EventKind::Failed), [(1010, Some(v6(1)))]);
    assert_eq!(events(&r, EventKind::Attempt), [(0, Some(v6(1))), (1010, Some(v4(1)))]);
    assert_eq!(c.peer, v4(1));
    assert_eq!(
        script.received(v6(1)).await,
        b"",
        "no first flight before the commit's TLS"
    );
    assert_eq!(script.received(v4(1)).await, FLIGHT);
}

#[tokio::test(start_paused = true)]
async fn commit_at_response_sends_every_ready_attempt_a_first_flight() {
    // Both ready quickly; IPv4's server answers sooner.
    let slow = Plan {
        respond_after: Some(300 * MS),
        ..ok(1, 1)
    };
    let fast = Plan {
        respond_after: Some(50 * MS),
        ..ok(1, 1)
    };
    let script = Script::new(&[(v6(1), slow), (v4(1), fast)]);
    let config = RaceConfig {
        attempt_delay: 10 * MS,
        ..RaceConfig::default()
    };
    let mut r = race(
        config,
        CommitStage::Response,
        &script,
        lookups(&[v6(1)], Some(0), &[v4(1)], Some(0)),
        &memory(),
    );
    let c = r.next(deadline(10_000)).await.unwrap();
    assert_eq!(c.peer, v4(1));
    assert_eq!(c.prefix, RESPONSE, "the response head goes to the plugin");
    assert_eq!(events(&r, EventKind::FirstFlight).len(), 2, "the duplicate is visible");
    assert_eq!(script.received(v6(1)).await, FLIGHT);
    assert_eq!(script.received(v4(1)).await, FLIGHT);
    // IPv6's TCP at 1 ms holds IPv4's start to 11 ms (HEv3 applies to the
    // TLS before a response too); IPv4 is ready at 13 and answered at 63.
    assert_eq!(events(&r, EventKind::Attempt), [(0, Some(v6(1))), (11, Some(v4(1)))]);
    assert_eq!(events(&r, EventKind::Commit), [(63, Some(v4(1)))]);
    let commit = r.log().events().iter().find(|e| e.event == EventKind::Commit).unwrap();
    assert_eq!(commit.detail.as_deref(), Some("2 first flights sent"));
    assert_eq!(events(&r, EventKind::Cancel), [(63, Some(v6(1)))]);
}

#[tokio::test(start_paused = true)]
async fn an_attempt_ready_with_the_winner_is_parked_and_fallback_takes_it() {
    // IPv6 ready at 300 ms (slow TLS). Its TCP at 10 ms holds the next
    // attempt until 260 ms (HEv3); IPv4 starts then and is ready at 300.
    let script = Script::new(&[(v6(1), ok(10, 290)), (v4(1), ok(20, 20))]);
    let config = RaceConfig {
        attempt_delay: 250 * MS,
        ..RaceConfig::default()
    };
    let mut r = race(
        config,
        CommitStage::Tls,
        &script,
        lookups(&[v6(1)], Some(0), &[v4(1)], Some(0)),
        &memory(),
    );
    let first = r.next(deadline(10_000)).await.unwrap();
    let parked = events(&r, EventKind::Park);
    assert_eq!(parked.len(), 1);
    assert_ne!(parked[0].1, Some(first.peer));
    let other = parked[0].1.unwrap();
    assert_eq!(script.received(other).await, b"", "parked idle and unwritten");
    // The plugin gives the first up: the parked one is handed over at
    // once, without a new attempt, and gets the first flight.
    drop(first);
    let attempts_before = events(&r, EventKind::Attempt).len();
    let second = r.fallback(v4(1), deadline(10_000)).await.unwrap();
    assert_eq!(second.peer, other);
    assert_eq!(events(&r, EventKind::Attempt).len(), attempts_before);
    assert_eq!(script.received(other).await, FLIGHT);
    // Its commit says it was parked (the metrics count it so); the
    // first one's does not.
    let commits: Vec<bool> = r
        .log()
        .events()
        .iter()
        .filter(|e| e.event == EventKind::Commit)
        .map(|e| e.parked)
        .collect();
    assert_eq!(commits, [false, true]);
}

#[tokio::test(start_paused = true)]
async fn a_parked_attempt_is_closed_after_its_grace() {
    let script = Script::new(&[(v6(1), ok(10, 290)), (v4(1), ok(20, 20))]);
    let config = RaceConfig {
        park_grace: Duration::from_secs(2),
        ..RaceConfig::default()
    };
    let mut r = race(
        config,
        CommitStage::Tls,
        &script,
        lookups(&[v6(1)], Some(0), &[v4(1)], Some(0)),
        &memory(),
    );
    let first = r.next(deadline(10_000)).await.unwrap();
    assert_eq!(script.open(), 2);
    tokio::time::sleep(Duration::from_millis(2001)).await;
    assert_eq!(script.open(), 1, "only the committed stream is left");
    drop(first);
    assert_eq!(script.open(), 0);
}

#[tokio::test(start_paused = true)]
async fn fallback_without_a_parked_attempt_races_the_rest() {
    let script = Script::new(&[(v6(1), ok(1, 1)), (v4(1), ok(1, 1))]);
    let mut r = race(
        RaceConfig::default(),
        CommitStage::Tls,
        &script,
        lookups(&[v6(1)], Some(0), &[v4(1)], Some(0)),
        &memory(),
    );
    let first = r.next(deadline(10_000)).await.unwrap();
    assert_eq!(first.peer, v6(1));
    drop(first);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = r.fallback(v6(1), deadline(10_000)).await.unwrap();
    assert_eq!(second.peer, v4(1));
    // The next address starts at once on fallback, not an attempt delay later.
    assert_eq!(events(&r, EventKind::Attempt), [(0, Some(v6(1))), (1002, Some(v4(1)))]);
    assert_eq!(events(&r, EventKind::Fallback), [(1002, Some(v6(1)))]);
    // Nothing left: the error lists every attempt, the one given up too.
    drop(second);
    match r.fallback(v4(1), deadline(10_000)).await {
        Err(ConnectError::AllAttemptsFailed(f)) => {
            assert_eq!(
                f.iter().map(|f| (f.addr, f.stage)).collect::<Vec<_>>(),
                [(v6(1), AttemptStage::FirstFlight), (v4(1), AttemptStage::FirstFlight)]
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn the_winner_is_remembered_and_tried_first_next_time() {
    let script = Script::new(&[(v6(1), BLACKHOLE), (v4(1), ok(1, 1))]);
    let memory = memory();
    let mut r = race(
        RaceConfig::default(),
        CommitStage::Tls,
        &script,
        lookups(&[v6(1)], Some(0), &[v4(1)], Some(0)),
        &memory,
    );
    assert_eq!(r.next(deadline(10_000)).await.unwrap().peer, v4(1));
    assert_eq!(events(&r, EventKind::Commit), [(252, Some(v4(1)))]);
    // Second connect: IPv4 first, no wait on the broken IPv6.
    let mut r = race(
        RaceConfig::default(),
        CommitStage::Tls,
        &script,
        lookups(&[v6(1)], Some(0), &[v4(1)], Some(0)),
        &memory,
    );
    assert_eq!(r.next(deadline(10_000)).await.unwrap().peer, v4(1));
    assert_eq!(events(&r, EventKind::Attempt), [(0, Some(v4(1)))]);
    assert_eq!(events(&r, EventKind::Commit), [(2, Some(v4(1)))]);
}

#[tokio::test(start_paused = true)]
async fn the_memory_holds_the_start_for_the_remembered_family() {
    // IPv4 won before; now AAAA answers first (at 5 ms) and A at 30 ms:
    // the race waits for A (up to the Resolution Delay) and starts there.
    let script = Script::new(&[(v6(1), BLACKHOLE), (v4(1), ok(1, 1))]);
    let memory = memory();
    let host = "wsgate.test".parse().unwrap();
    memory.record_failure(&host, 443, v6(1));
    memory.record_failure(&host, 443, v6(1));
    memory.record_success(&host, 443, v4(1), MS);
    let mut r = race(
        RaceConfig::default(),
        CommitStage::Tls,
        &script,
        lookups(&[v6(1)], Some(5), &[v4(1)], Some(30)),
        &memory,
    );
    assert_eq!(r.next(deadline(10_000)).await.unwrap().peer, v4(1));
    assert_eq!(events(&r, EventKind::Attempt), [(30, Some(v4(1)))]);
}

#[tokio::test(start_paused = true)]
async fn the_overall_timeout_bounds_the_connect() {
    let script = Script::new(&[(v6(1), BLACKHOLE), (v4(1), BLACKHOLE)]);
    let mut r = race(
        RaceConfig::default(),
        CommitStage::Tls,
        &script,
        lookups(&[v6(1)], Some(0), &[v4(1)], Some(0)),
        &memory(),
    );
    let started = Instant::now();
    assert!(matches!(
        r.next(started + Duration::from_secs(10)).await,
        Err(ConnectError::Timeout)
    ));
    assert_eq!(started.elapsed(), Duration::from_secs(10));
}

#[test]
fn config_values_out_of_range_are_named() {
    let bad = |c: RaceConfig| c.validate().unwrap_err();
    let base = RaceConfig::default();
    assert!(
        bad(RaceConfig {
            attempt_delay: 9 * MS,
            ..base
        })
        .contains("attempt delay 9 ms")
    );
    assert!(
        bad(RaceConfig {
            attempt_delay: 2001 * MS,
            ..base
        })
        .contains("attempt delay 2001 ms")
    );
    assert!(
        bad(RaceConfig {
            max_in_flight: 0,
            ..base
        })
        .contains("attempts in flight")
    );
    assert!(
        RaceConfig {
            attempt_delay: 10 * MS,
            ..base
        }
        .validate()
        .is_ok()
    );
    assert!(
        RaceConfig {
            attempt_delay: 2000 * MS,
            ..base
        }
        .validate()
        .is_ok()
    );
}

/// The commit event says which family won and how long its TCP handshake
/// took, measured from its own attempt's start (HEv3's and the primer's
/// "log the winning family with its RTT"), whichever stage commits.
#[tokio::test(start_paused = true)]
async fn the_commit_names_the_winners_family_and_tcp_round_trip() {
    for (commit, winner, rtt) in [(CommitStage::Tls, v4(1), 40.0), (CommitStage::Tcp, v6(1), 100.0)] {
        // IPv6 connects in 100 ms but its TLS never ends; IPv4 starts later
        // and connects in 40 ms.
        let stalled_tls = Plan {
            tls: Step::Never,
            ..ok(100, 0)
        };
        let script = Script::new(&[(v6(1), stalled_tls), (v4(1), ok(40, 5))]);
        let mut r = race(
            RaceConfig::default(),
            commit,
            &script,
            lookups(&[v6(1)], Some(0), &[v4(1)], Some(0)),
            &memory(),
        );
        let _ = r.next(deadline(10_000)).await;
        let commit_event = r.log().events().iter().find(|e| e.event == EventKind::Commit).unwrap();
        assert_eq!(commit_event.addr, Some(winner), "{commit:?}");
        let family = if winner.is_ipv6() { "ipv6" } else { "ipv4" };
        assert_eq!(commit_event.family, Some(family), "{commit:?}");
        assert_eq!(commit_event.tcp_rtt_ms, Some(rtt), "{commit:?}");
        assert_eq!(r.tcp_rtt(winner), Some(Duration::from_millis(rtt as u64)));
        // The other events carry neither.
        assert!(
            r.log()
                .events()
                .iter()
                .filter(|e| e.event != EventKind::Commit)
                .all(|e| e.family.is_none() && e.tcp_rtt_ms.is_none())
        );
    }
}
