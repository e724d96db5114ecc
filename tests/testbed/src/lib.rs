//! `wsgate-testbed`: a WebSocket echo server for wsgate's tests and demo,
//! with one behaviour per address family.
//!
//! The testbed binds the same port P on `[::1]` (IPv6-only) and on
//! `127.0.0.1`, and gives each family its own [`Behaviour`]. A client that
//! resolves one name to both addresses (as `localhost` does) therefore sees
//! one behaviour per family, which is what a Happy-Eyeballs style connection
//! race needs to be tested against: "IPv6 black-holed, IPv4 fine", "IPv6
//! refused", "TLS stalls on one family", and so on.
//!
//! It counts, per family, the TCP connections it accepted and the HTTP
//! upgrade requests it received, so tests can check that a client sent
//! exactly one upgrade per connection it kept.
//!
//! It also has a small DNS server ([`DnsServer`]) whose HTTPS, AAAA and A
//! answers can each be delayed, for testing a client's name resolution against real
//! DNS on loopback.
//!
//! This crate is deliberately independent of wsgate: it shares no code with
//! the thing it tests.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use wsgate_testbed::{Behaviour, Config, Testbed};
//! let testbed = Testbed::start(Config { v6: Behaviour::Blackhole, ..Config::default() }).await?;
//! // Connect to wss://localhost:{port}/ trusting testbed.ca_pem() ...
//! println!("port {}, upgrades {:?}", testbed.port(), testbed.upgrades());
//! testbed.shutdown().await;
//! # Ok(()) }
//! ```

use std::fmt;
use std::net::TcpStream as StdTcpStream;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use socket2::Socket;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

mod bind;
mod certs;
mod dns;
mod hold;
mod serve;
mod tickets;

use bind::Bound;
pub use dns::{DnsHandle, DnsRecord, DnsServer, HttpsRecord, HttpsService, spawn_dns_in_thread};

/// What one address family of the testbed does with connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Behaviour {
    /// TLS (when enabled), then a WebSocket echo: text and binary messages
    /// are sent back, pings answered, close echoed.
    Ok,
    /// SYNs are silently dropped: the listener's accept queue is kept full
    /// and never accepted from, so connects hang until the client gives up.
    Blackhole,
    /// Nothing listens, so connects are refused (RST).
    Refused,
    /// TCP is accepted, then whatever arrives is read and discarded and
    /// nothing is ever sent: the TLS handshake (or, in plain mode, the HTTP
    /// upgrade) never completes.
    TlsStall,
    /// The upgrade request is answered `503 Service Unavailable` and the
    /// connection closed.
    Upgrade503,
    /// As [`Behaviour::Ok`], but the `101` answer is delayed by
    /// [`Config::slow_upgrade`] after the upgrade request is received.
    SlowUpgrade,
    /// The upgrade request is answered `200 OK` (not an upgrade) and the
    /// connection closed.
    Upgrade200,
    /// The upgrade request is answered `101` with a `Sec-WebSocket-Accept`
    /// that does not match the request's key.
    BadAccept,
    /// As [`Behaviour::Ok`], but with Nagle's algorithm left on, as many
    /// servers have it, and over TLS 1.3 with two session tickets that
    /// leave after the client's upgrade request has arrived (the order a
    /// server slower than its client shows), right before the `101`: the
    /// `101` is a small write that waits in the send queue until the
    /// tickets are acknowledged. A client that
    /// delays that ACK (Linux does, by 40 ms or more, on a socket that has
    /// just written) waits that long for its `101`. The time each `101`
    /// waited is kept: see [`Testbed::response_holds`]. In plain mode there
    /// are no tickets, and nothing for the `101` to wait behind.
    NagleTickets,
}

impl Behaviour {
    /// Every behaviour, in the order they are documented.
    pub const ALL: [Behaviour; 9] = [
        Behaviour::Ok,
        Behaviour::Blackhole,
        Behaviour::Refused,
        Behaviour::TlsStall,
        Behaviour::Upgrade503,
        Behaviour::SlowUpgrade,
        Behaviour::Upgrade200,
        Behaviour::BadAccept,
        Behaviour::NagleTickets,
    ];

    /// The name used on the command line and in the JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Behaviour::Ok => "ok",
            Behaviour::Blackhole => "blackhole",
            Behaviour::Refused => "refused",
            Behaviour::TlsStall => "tls-stall",
            Behaviour::Upgrade503 => "upgrade-503",
            Behaviour::SlowUpgrade => "slow-upgrade",
            Behaviour::Upgrade200 => "upgrade-200",
            Behaviour::BadAccept => "bad-accept",
            Behaviour::NagleTickets => "nagle-tickets",
        }
    }
}

impl fmt::Display for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Behaviour {
    type Err = ParseBehaviourError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Behaviour::ALL
            .into_iter()
            .find(|b| b.as_str() == s)
            .ok_or_else(|| ParseBehaviourError(s.to_owned()))
    }
}

/// The error of parsing an unknown [`Behaviour`] name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseBehaviourError(String);

impl fmt::Display for ParseBehaviourError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown behaviour `{}` (expected one of:", self.0)?;
        for (i, b) in Behaviour::ALL.iter().enumerate() {
            write!(f, "{}{b}", if i == 0 { " " } else { ", " })?;
        }
        f.write_str(")")
    }
}

impl std::error::Error for ParseBehaviourError {}

/// How to run a [`Testbed`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Behaviour of `[::1]:port`.
    pub v6: Behaviour,
    /// Behaviour of `127.0.0.1:port`.
    pub v4: Behaviour,
    /// Serve `wss://` (true) or plain `ws://` (false).
    pub tls: bool,
    /// The port for both families; 0 picks one free on both.
    pub port: u16,
    /// Where to write `ca.pem` (and the leaf's `cert.pem` and `key.pem`).
    pub cert_dir: Option<PathBuf>,
    /// How long [`Behaviour::SlowUpgrade`] waits before answering `101`.
    pub slow_upgrade: Duration,
}

impl Default for Config {
    /// `ok` on both families, TLS, a picked port, no files, 300 ms slow upgrade.
    fn default() -> Self {
        Config {
            v6: Behaviour::Ok,
            v4: Behaviour::Ok,
            tls: true,
            port: 0,
            cert_dir: None,
            slow_upgrade: Duration::from_millis(300),
        }
    }
}

/// A per-family snapshot of one counter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// On `[::1]`.
    pub v6: u64,
    /// On `127.0.0.1`.
    pub v4: u64,
}

/// The live counters of one family.
#[derive(Debug, Default)]
struct FamilyCounters {
    connections: AtomicU64,
    upgrades: AtomicU64,
    /// How long each `101` of [`Behaviour::NagleTickets`] waited, oldest
    /// first, at most [`MAX_HOLDS`] of them.
    holds: Mutex<Vec<Duration>>,
}

/// The most response holds kept per family: a long-running testbed keeps
/// the first ones and drops the rest rather than grow without bound.
pub(crate) const MAX_HOLDS: usize = 4096;

/// The live counters of both families, shared with the serving tasks.
#[derive(Debug, Default)]
struct Counters {
    v6: FamilyCounters,
    v4: FamilyCounters,
}

impl Counters {
    fn family(&self, v6: bool) -> &FamilyCounters {
        if v6 { &self.v6 } else { &self.v4 }
    }

    fn snapshot(&self, pick: impl Fn(&FamilyCounters) -> &AtomicU64) -> Counts {
        Counts {
            v6: pick(&self.v6).load(Ordering::Relaxed),
            v4: pick(&self.v4).load(Ordering::Relaxed),
        }
    }

    fn upgrades(&self) -> Counts {
        self.snapshot(|f| &f.upgrades)
    }

    fn connections(&self) -> Counts {
        self.snapshot(|f| &f.connections)
    }

    fn response_holds(&self) -> Holds {
        let read = |f: &FamilyCounters| f.holds.lock().map(|h| h.clone()).unwrap_or_default();
        Holds {
            v6: read(&self.v6),
            v4: read(&self.v4),
        }
    }
}

/// How long the `101` answers of [`Behaviour::NagleTickets`] waited in the
/// server's send queue, per family, oldest first: from the moment the
/// answer was written to the moment the kernel had sent all of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Holds {
    /// On `[::1]`.
    pub v6: Vec<Duration>,
    /// On `127.0.0.1`.
    pub v4: Vec<Duration>,
}

/// A running testbed. Stop it with [`Testbed::shutdown`]; dropping it also
/// stops it (its tasks are aborted and its sockets closed).
pub struct Testbed {
    port: u16,
    ca_pem: String,
    ca_path: Option<PathBuf>,
    counters: Arc<Counters>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Sockets held but not served: blackhole listeners and the connections
    /// filling their queues, and the bound-only sockets of `refused`.
    held: Held,
}

/// Sockets kept open for as long as the testbed runs: owned, never used,
/// closed when the testbed is dropped.
#[derive(Default)]
struct Held {
    listeners: Vec<std::net::TcpListener>,
    fillers: Vec<StdTcpStream>,
    reserved: Vec<Socket>,
}

impl fmt::Debug for Testbed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Testbed")
            .field("port", &self.port)
            .field("ca_path", &self.ca_path)
            .field("upgrades", &self.upgrades())
            .field("connections", &self.connections())
            .finish_non_exhaustive()
    }
}

impl Testbed {
    /// Generates the certificates, binds both families and starts serving.
    ///
    /// Must be called within a tokio runtime with its IO and time drivers
    /// enabled (the serving tasks are spawned on it). When it returns, every
    /// listener is ready and every blackhole queue is full.
    pub async fn start(config: Config) -> anyhow::Result<Testbed> {
        // An error rather than tokio's panic when polled by another executor.
        tokio::runtime::Handle::try_current().context("Testbed::start must be called within a tokio runtime")?;
        let pki = certs::Pki::generate()?;
        let ca_path = match &config.cert_dir {
            Some(dir) => Some(pki.write_to(dir)?),
            None => None,
        };
        let tls = if config.tls {
            Some(tokio_rustls::TlsAcceptor::from(pki.server_config()?))
        } else {
            None
        };

        let (port, v6_bound, v4_bound) = bind::bind_pair(config.v6, config.v4, config.port)?;
        let counters = Arc::new(Counters::default());
        let (stop, _) = watch::channel(false);
        let mut testbed = Testbed {
            port,
            ca_pem: pki.ca_pem,
            ca_path,
            counters,
            stop,
            tasks: Vec::new(),
            held: Held::default(),
        };

        // From here on an early return drops `testbed`, which aborts what
        // was already spawned and closes what was already bound.
        for (v6, bound, behaviour) in [(true, v6_bound, config.v6), (false, v4_bound, config.v4)] {
            match bound {
                Bound::Serving(std_listener) => {
                    let listener = tokio::net::TcpListener::from_std(std_listener)
                        .context("registering a listener with the tokio runtime")?;
                    let family = Arc::new(serve::Family {
                        v6,
                        behaviour,
                        counters: Arc::clone(&testbed.counters),
                        tls: tls.clone(),
                        slow_upgrade: config.slow_upgrade,
                    });
                    let stop = testbed.stop.subscribe();
                    testbed
                        .tasks
                        .push(tokio::spawn(serve::accept_loop(listener, family, stop)));
                }
                Bound::Blackhole(listener) => {
                    let fillers = bind::fill_accept_queue(bind::loopback(v6, port)).await?;
                    testbed.held.listeners.push(listener);
                    testbed.held.fillers.extend(fillers);
                }
                Bound::Reserved(socket) => testbed.held.reserved.push(socket),
            }
        }
        Ok(testbed)
    }

    /// The port both families are bound on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA certificate (PEM) that signed the server's certificate.
    ///
    /// Generated in plain mode too, although nothing presents it there.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Where `ca.pem` was written, if [`Config::cert_dir`] was given.
    pub fn ca_path(&self) -> Option<&Path> {
        self.ca_path.as_deref()
    }

    /// HTTP request heads received, per family: every upgrade request,
    /// whatever the answer (including none, for plain-mode `tls-stall`).
    /// Counted before any answer is written.
    pub fn upgrades(&self) -> Counts {
        self.counters.upgrades()
    }

    /// TCP connections accepted, per family. A connection is counted when
    /// the testbed accepts it, which can trail the client's connect
    /// completing; the testbed's own blackhole fillers are never accepted.
    pub fn connections(&self) -> Counts {
        self.counters.connections()
    }

    /// How long each `101` of a [`Behaviour::NagleTickets`] family waited
    /// before the kernel sent it (Linux only: elsewhere none are kept).
    /// Under Nagle's algorithm a small write waits while anything sent is
    /// unacknowledged, so a hold of tens of milliseconds is a client's
    /// delayed ACK (Linux delays one by 40 ms at least, give or take a
    /// timer tick); an answer sent at once is held for microseconds.
    pub fn response_holds(&self) -> Holds {
        self.counters.response_holds()
    }

    /// Stops accepting, closes every connection and listener, and returns
    /// once all of the testbed's tasks have finished.
    pub async fn shutdown(mut self) {
        // A send error only means no task is listening any more.
        let _ = self.stop.send(true);
        for task in std::mem::take(&mut self.tasks) {
            // Accept loops only end by the signal and never panic on input;
            // a JoinError here could only be a cancellation from elsewhere.
            let _ = task.await;
        }
        // Dropping `self` closes the held sockets.
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        // Aborting an accept loop drops its JoinSet, which aborts the
        // connection tasks in turn, closing their sockets.
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A [`Testbed`] running on its own runtime in a background thread, for
/// synchronous tests. Stops on [`TestbedHandle::stop`] or on drop.
pub struct TestbedHandle {
    port: u16,
    ca_pem: String,
    ca_path: Option<PathBuf>,
    counters: Arc<Counters>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl fmt::Debug for TestbedHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestbedHandle")
            .field("port", &self.port)
            .field("ca_path", &self.ca_path)
            .field("upgrades", &self.upgrades())
            .field("connections", &self.connections())
            .finish_non_exhaustive()
    }
}

/// What the background thread hands back once its testbed is up.
struct Ready {
    port: u16,
    ca_pem: String,
    ca_path: Option<PathBuf>,
    counters: Arc<Counters>,
}

/// Starts a [`Testbed`] on a new current-thread tokio runtime in a
/// background thread, and returns once it is ready (or failed to start).
///
/// May be called from anywhere, inside a tokio runtime or not.
pub fn spawn_in_thread(config: Config) -> anyhow::Result<TestbedHandle> {
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<anyhow::Result<Ready>>(1);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("wsgate-testbed".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = ready_tx.send(Err(anyhow::Error::new(e).context("building the tokio runtime")));
                    return;
                }
            };
            runtime.block_on(async move {
                let testbed = match Testbed::start(config).await {
                    Ok(testbed) => testbed,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let ready = Ready {
                    port: testbed.port,
                    ca_pem: testbed.ca_pem.clone(),
                    ca_path: testbed.ca_path.clone(),
                    counters: Arc::clone(&testbed.counters),
                };
                if ready_tx.send(Ok(ready)).is_ok() {
                    // Either a stop request or the handle being dropped
                    // (sender gone) ends the wait.
                    let _ = stop_rx.await;
                }
                testbed.shutdown().await;
            });
        })
        .context("spawning the testbed thread")?;

    match ready_rx.recv() {
        Ok(Ok(ready)) => Ok(TestbedHandle {
            port: ready.port,
            ca_pem: ready.ca_pem,
            ca_path: ready.ca_path,
            counters: ready.counters,
            stop: Some(stop_tx),
            thread: Some(thread),
        }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            // The thread ended without a word: it panicked.
            let _ = thread.join();
            anyhow::bail!("the testbed thread exited before it was ready")
        }
    }
}

impl TestbedHandle {
    /// See [`Testbed::port`].
    pub fn port(&self) -> u16 {
        self.port
    }

    /// See [`Testbed::ca_pem`].
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// See [`Testbed::ca_path`].
    pub fn ca_path(&self) -> Option<&Path> {
        self.ca_path.as_deref()
    }

    /// See [`Testbed::upgrades`].
    pub fn upgrades(&self) -> Counts {
        self.counters.upgrades()
    }

    /// See [`Testbed::connections`].
    pub fn connections(&self) -> Counts {
        self.counters.connections()
    }

    /// See [`Testbed::response_holds`].
    pub fn response_holds(&self) -> Holds {
        self.counters.response_holds()
    }

    /// Shuts the testbed down and waits for its thread to end.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // A panic in the testbed thread has already been reported on
            // stderr; re-raising it here (maybe inside a drop) helps no one.
            let _ = thread.join();
        }
    }
}

impl Drop for TestbedHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
