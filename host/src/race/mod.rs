//! From a list of addresses to one committed connection.
//!
//! A connect resolves a name to addresses, orders them (IPv6 first, the
//! families interleaved, RFC 8305 §4), and then tries them until one
//! reaches the *commit stage*: TCP established, or TLS done for TLS
//! targets. Only then is the plugin's first flight written, once.
//!
//! This module tries the addresses one after another. The Happy Eyeballs
//! race (staggered parallel attempts, cancel, park) replaces
//! [`Race::next`]'s loop without changing its contract: a [`Race`] hands
//! out committed connections, and is asked again on fallback.

use crate::report::{EventKind, RaceLog};
use crate::resolve::Resolved;
use rustls::pki_types::ServerName;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

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
            ConnectError::Timeout => f.write_str("timed out"),
            ConnectError::Tls(e) => write!(f, "TLS failed: {e}"),
            ConnectError::Invalid(e) => write!(f, "invalid request: {e}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// What a connect is to reach and how.
#[derive(Clone)]
pub struct Target {
    /// The host as the plugin named it (for the log and errors).
    pub host: String,
    /// The port.
    pub port: u16,
    /// TLS to do after TCP, with the name to verify.
    pub tls: Option<(TlsConnector, ServerName<'static>)>,
    /// Bytes to write once on the committed connection.
    pub first_flight: Option<Vec<u8>>,
    /// The stage at which the connect commits.
    pub commit: CommitStage,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls.is_some())
            .field("first_flight", &self.first_flight.as_ref().map(Vec::len))
            .field("commit", &self.commit)
            .finish()
    }
}

/// A byte stream to the peer: plain TCP, or TLS over TCP.
#[derive(Debug)]
pub enum Transport {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP (boxed: the TLS state is large).
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Transport {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Tcp(s) => s.is_write_vectored(),
            Transport::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// A connection the race committed to, with its first flight written.
#[derive(Debug)]
pub struct Committed {
    /// The address that won.
    pub peer: SocketAddr,
    /// The stream, ready for the plugin.
    pub transport: Transport,
}

/// Orders resolved addresses for trying: IPv6 first, then the families
/// alternate (RFC 8305 §4, First Address Family Count 1), each family in
/// the order its source gave.
pub fn order(resolved: &Resolved, port: u16) -> Vec<SocketAddr> {
    let mut v6 = resolved.v6.iter().map(|a| IpAddr::V6(*a));
    let mut v4 = resolved.v4.iter().map(|a| IpAddr::V4(*a));
    let mut out = Vec::with_capacity(resolved.len());
    loop {
        let (a, b) = (v6.next(), v4.next());
        if a.is_none() && b.is_none() {
            break;
        }
        out.extend(a.into_iter().chain(b).map(|ip| SocketAddr::new(ip, port)));
    }
    out
}

/// The shortest time an attempt is given before the next address is
/// tried, however many addresses share the connect's time.
pub const MIN_ATTEMPT_TIME: Duration = Duration::from_millis(250);

/// The state of one connect: the addresses not tried yet, the failures so
/// far, and the log. It outlives the first commit, so that a plugin's
/// fallback goes on where the connect stopped.
#[derive(Debug)]
pub struct Race {
    target: Target,
    untried: VecDeque<SocketAddr>,
    failures: Vec<AttemptFailure>,
    log: RaceLog,
}

/// How an attempt failed.
enum AttemptError {
    /// Before any byte of the plugin's went out: the next address may be
    /// tried.
    Retry(String),
    /// While the first flight was being written: the server may have part
    /// or all of it, so no other address may be sent it again.
    Final(String),
}

impl Race {
    /// A race over `addrs`, in the order to try.
    pub fn new(target: Target, addrs: Vec<SocketAddr>, log: RaceLog) -> Self {
        Race { target, untried: addrs.into(), failures: Vec::new(), log }
    }

    /// The events of this connect so far.
    pub fn log(&self) -> &RaceLog {
        &self.log
    }

    /// The target of this connect.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Records that the plugin gave up the connection to `peer` (its
    /// fallback): it counts as a failed attempt, at the last stage the host
    /// saw it reach.
    pub fn abandon(&mut self, peer: SocketAddr) {
        let stage = match (&self.target.first_flight, &self.target.tls) {
            (Some(_), _) => AttemptStage::FirstFlight,
            (None, Some(_)) => AttemptStage::Tls,
            (None, None) => AttemptStage::Tcp,
        };
        self.log.push(EventKind::Fallback, Some(peer), None, None);
        self.failures.push(AttemptFailure { addr: peer, stage, error: "given up by the plugin".into() });
    }

    /// Tries the untried addresses until one commits and takes its first
    /// flight, all by `deadline`.
    ///
    /// Each attempt gets an equal share of the time left (at least
    /// [`MIN_ATTEMPT_TIME`]), so that an address that stalls (a dropped
    /// SYN, a TLS handshake that never ends) does not use up the time of
    /// the addresses behind it. The connect times out when the deadline
    /// passes with addresses left untried; when every address was tried,
    /// the failures (timeouts included) are the answer.
    pub async fn next(&mut self, deadline: Instant) -> Result<Committed, ConnectError> {
        while let Some(addr) = self.untried.pop_front() {
            let now = Instant::now();
            if now >= deadline {
                self.untried.push_front(addr);
                return Err(ConnectError::Timeout);
            }
            let share = (deadline - now) / (self.untried.len() as u32 + 1);
            let attempt_deadline = deadline.min(now + share.max(MIN_ATTEMPT_TIME));
            self.log.push(EventKind::Attempt, Some(addr), None, None);
            let mut stage = AttemptStage::Started;
            let result = tokio::time::timeout_at(attempt_deadline, self.attempt(addr, &mut stage)).await;
            let (error, go_on) = match result {
                Ok(Ok(committed)) => return Ok(committed),
                Ok(Err(AttemptError::Retry(error))) => (error, true),
                Ok(Err(AttemptError::Final(error))) => (error, false),
                Err(_elapsed) => ("timed out".to_owned(), true),
            };
            self.log.push(EventKind::Failed, Some(addr), None, Some(error.clone()));
            self.failures.push(AttemptFailure { addr, stage, error });
            if !go_on {
                return Err(ConnectError::AllAttemptsFailed(self.failures.clone()));
            }
        }
        Err(self.exhausted())
    }

    /// One attempt, from TCP to the first flight. `stage` tracks how far it
    /// got, for the failure report.
    async fn attempt(&mut self, addr: SocketAddr, stage: &mut AttemptStage) -> Result<Committed, AttemptError> {
        let retry = |e: io::Error| AttemptError::Retry(e.to_string());
        let tcp = TcpStream::connect(addr).await.map_err(retry)?;
        // The WebSocket exchange is latency-bound: small frames must go
        // out at once.
        tcp.set_nodelay(true).map_err(retry)?;
        *stage = AttemptStage::Tcp;
        self.log.push(EventKind::Tcp, Some(addr), None, None);
        let mut transport = match &self.target.tls {
            None => Transport::Tcp(tcp),
            Some((connector, name)) => {
                let tls = connector.connect(name.clone(), tcp).await.map_err(|e| AttemptError::Retry(tls_error(&e)))?;
                *stage = AttemptStage::Tls;
                self.log.push(EventKind::Tls, Some(addr), None, None);
                Transport::Tls(Box::new(tls))
            }
        };
        self.log.push(EventKind::Commit, Some(addr), Some(self.target.commit.as_str()), None);
        if let Some(flight) = &self.target.first_flight {
            let sent = async {
                transport.write_all(flight).await?;
                transport.flush().await
            };
            sent.await.map_err(|e| AttemptError::Final(format!("writing the first flight: {e}")))?;
            *stage = AttemptStage::FirstFlight;
            self.log.push(EventKind::FirstFlight, Some(addr), None, Some(format!("{} bytes", flight.len())));
        }
        Ok(Committed { peer: addr, transport })
    }

    /// The error for a race with nothing left to try: TLS when every
    /// attempt got through TCP and failed in TLS (the path works, the
    /// server's identity does not), else the list of failures.
    fn exhausted(&self) -> ConnectError {
        let tls_only = !self.failures.is_empty()
            && self.target.tls.is_some()
            && self.failures.iter().all(|f| f.stage == AttemptStage::Tcp && f.error.starts_with("TLS:"));
        if tls_only {
            return ConnectError::Tls(self.failures[0].error.trim_start_matches("TLS: ").to_owned());
        }
        ConnectError::AllAttemptsFailed(self.failures.clone())
    }
}

fn tls_error(e: &io::Error) -> String {
    format!("TLS: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::Source;

    fn resolved(v6: &[&str], v4: &[&str]) -> Resolved {
        Resolved {
            v6: v6.iter().map(|a| a.parse().unwrap()).collect(),
            v4: v4.iter().map(|a| a.parse().unwrap()).collect(),
            source: Source::Dns,
        }
    }

    #[test]
    fn order_prefers_v6_and_interleaves() {
        let r = resolved(&["2001:db8::1", "2001:db8::2", "2001:db8::3"], &["192.0.2.1"]);
        let got: Vec<String> = order(&r, 443).iter().map(ToString::to_string).collect();
        assert_eq!(got, ["[2001:db8::1]:443", "192.0.2.1:443", "[2001:db8::2]:443", "[2001:db8::3]:443"]);
        let r = resolved(&[], &["192.0.2.1", "192.0.2.2"]);
        let got: Vec<String> = order(&r, 80).iter().map(ToString::to_string).collect();
        assert_eq!(got, ["192.0.2.1:80", "192.0.2.2:80"]);
    }

    fn plain_target(port: u16, flight: &[u8]) -> Target {
        Target {
            host: "wsgate.test".into(),
            port,
            tls: None,
            first_flight: Some(flight.to_vec()),
            commit: CommitStage::Tcp,
        }
    }

    #[tokio::test]
    async fn refused_address_is_skipped_and_first_flight_goes_once_to_the_winner() {
        use tokio::io::AsyncReadExt;
        // A port with nothing bound: take one and close it again.
        let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let good = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0; 5];
            s.read_exact(&mut buf).await.unwrap();
            buf
        });
        let log = RaceLog::new(1, None);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut race = Race::new(plain_target(good.port(), b"hello"), vec![refused, good], log);
        let committed = race.next(deadline).await.unwrap();
        assert_eq!(committed.peer, good);
        assert_eq!(server.await.unwrap(), b"hello");
        let events: Vec<_> = race.log().events().iter().map(|e| (e.event, e.addr)).collect();
        assert_eq!(
            events,
            [
                (EventKind::Attempt, Some(refused)),
                (EventKind::Failed, Some(refused)),
                (EventKind::Attempt, Some(good)),
                (EventKind::Tcp, Some(good)),
                (EventKind::Commit, Some(good)),
                (EventKind::FirstFlight, Some(good)),
            ]
        );
        // Nothing left: a fallback now reports every attempt, the one given
        // up included.
        race.abandon(good);
        match race.next(deadline).await.unwrap_err() {
            ConnectError::AllAttemptsFailed(f) => {
                assert_eq!(f.len(), 2);
                assert_eq!((f[0].addr, f[0].stage), (refused, AttemptStage::Started));
                assert_eq!((f[1].addr, f[1].stage), (good, AttemptStage::FirstFlight));
            }
            other => panic!("{other:?}"),
        }
    }

    // Real sockets, so the real clock: only lower bounds on time are
    // asserted, which a busy machine cannot break.
    #[tokio::test]
    async fn a_stalled_address_gets_its_share_of_the_time_and_the_next_is_tried() {
        // A listener that never accepts, with a full queue, is a blackhole
        // for TLS: TCP completes (the kernel accepts), TLS never answers.
        let stall = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stalled = stall.local_addr().unwrap();
        let good_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let good = good_listener.local_addr().unwrap();
        let roots = crate::tls::TrustRoots { system: false, ca_files: Vec::new() };
        let connector = crate::tls::TlsClient::new(&roots).unwrap().connector(&[]);
        let target = Target {
            host: "wsgate.test".into(),
            port: 0,
            tls: Some((connector, crate::tls::TlsClient::server_name("wsgate.test").unwrap())),
            first_flight: None,
            commit: CommitStage::Tls,
        };
        let started = Instant::now();
        let mut race = Race::new(target, vec![stalled, good], RaceLog::new(1, None));
        // The second address's TLS stalls too (nobody answers it): both time
        // out, each after its share of the second.
        let err = race.next(started + Duration::from_secs(1)).await.unwrap_err();
        match err {
            ConnectError::AllAttemptsFailed(f) => {
                assert_eq!(f.len(), 2);
                assert_eq!(f[0].addr, stalled);
                assert_eq!((f[0].stage, f[0].error.as_str()), (AttemptStage::Tcp, "timed out"));
                assert_eq!(f[1].addr, good);
            }
            other => panic!("{other:?}"),
        }
        let attempts: Vec<f64> = race.log().events().iter().filter(|e| e.event == EventKind::Attempt).map(|e| e.t_ms).collect();
        assert_eq!(attempts.len(), 2);
        assert!(attempts[1] >= 500.0, "the first address gets half of the second: {attempts:?}");
        drop((stall, good_listener));
    }
}
