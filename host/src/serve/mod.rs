//! The gateway (`wsgate serve`): clients' WebSocket sessions, each served
//! by a fresh instance of its route's plugin.
//!
//! ```text
//!  client ─TCP/TLS─▶ listener ─ head ─▶ route ─▶ instance of the route's plugin (world `gateway`)
//!                    (rustls, SNI;    (Host +    └─ connect(...) ─▶ policy ─▶ resolve ─▶ race ─▶ upstream
//!                     bounded head;    path)
//!                     400/408/431)     404, 503
//! ```
//!
//! The host owns both sides' sockets and TLS; the plugin owns both sides'
//! WebSocket protocol. What no plugin should see the host answers itself,
//! before any instance exists:
//!
//! | what | answer |
//! |---|---|
//! | a head that does not parse, HTTP/1.1 without `Host`, several `Host`s or one naming no host | 400 |
//! | a head longer than `serve.max-head` (16 KiB), or with over 128 headers | 431 |
//! | a head (TLS included) not in within `serve.head-timeout` (10 s) | 408 |
//! | no route for the `Host` and path | 404 |
//! | `serve.max-sessions`, or the route's, reached | 503 |
//!
//! Each closes the connection. At most [`MAX_PENDING`] connections may be
//! in TLS or their head at a time; more are closed at once. A session whose
//! plugin traps or meets a limit ends alone: with a Close 1011 when the
//! plugin had answered the upgrade and is between two frames, a reset
//! otherwise. Nothing a plugin does ends the process.
//!
//! What sessions share lives in the host: the race's family memory, the
//! resolver, the TLS client roots (one [`ConnectConfig`] for all routes,
//! whose own policies replace only the policy), and the memory budget of
//! all instances together.

mod answer;
mod certs;
mod client;
mod head;
mod listener;
mod route;

use crate::connect::ConnectConfig;
use crate::error::Error;
use crate::limits::{Limits, MemoryBudget};
use crate::race::Replay;
use crate::runtime::{Plugin, Pool, Runtime};
use crate::sessions::{RequestHead, Session, SessionInfo};
use crate::settings::{
    DEFAULT_HEAD_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_HEAD, DEFAULT_MAX_SESSIONS, DEFAULT_PLUGIN_MEMORY,
    IdleTimeoutSecs, RouteSettings, Settings,
};
use answer::{close_frame, http_error};
use certs::CertFiles;
use client::{Activity, ClientStream, ClientWriter};
use head::read_head;
use route::{HostPattern, Matcher};
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// How long the host spends on a goodbye (an error answer, a Close frame)
/// to a client that does not read it.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);

/// Connections still in TLS or their request head, at most, all listeners
/// together: each holds a task, a buffer and a timer until its head timeout,
/// so their number is bounded apart from the sessions'. Beyond it a new
/// connection is closed at once.
const MAX_PENDING: usize = 1024;

/// Pool slots beyond the session limit: instances still being torn down
/// while new sessions start.
const POOL_SLACK: u32 = 16;

/// A gateway, its listeners bound and its plugins compiled, ready to
/// [`serve`](Gateway::serve).
pub struct Gateway {
    runtime: Arc<Runtime>,
    listeners: Vec<Listener>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("listeners", &self.describe())
            .finish_non_exhaustive()
    }
}

struct Listener {
    socket: TcpListener,
    address: SocketAddr,
    tls: Option<(TlsAcceptor, usize)>,
}

/// What every connection task reads: the routes and the gateway's bounds.
struct Shared {
    routes: Vec<Route>,
    max_sessions: usize,
    sessions: AtomicUsize,
    /// Connections not yet in a session (TLS, head, answer).
    pending: AtomicUsize,
    budget: Arc<MemoryBudget>,
    max_head: usize,
    head_timeout: Duration,
    verbose: bool,
}

struct Route {
    name: String,
    matcher: Matcher,
    plugin: Plugin,
    args: Vec<String>,
    config: ConnectConfig,
    limits: Limits,
    max_sessions: usize,
    sessions: AtomicUsize,
    idle_timeout: Option<Duration>,
}

impl Gateway {
    /// Checks `settings`' listeners and routes, compiles each route's
    /// plugin (keeping compiled code in `cache`, when given) and binds the
    /// listeners. Connects go through `config` (each route with its own
    /// policy, when it has one). Anything wrong stops here, in one line
    /// that names it.
    ///
    /// Binds sockets: call it within a tokio runtime.
    pub fn bind(
        settings: &Settings,
        config: ConnectConfig,
        cache: Option<&Path>,
        verbose: bool,
    ) -> Result<Gateway, Error> {
        let serve = &settings.serve;
        let max_sessions = serve.max_sessions.map_or(DEFAULT_MAX_SESSIONS, |n| n.count());
        let plans = plan_listeners(settings)?;
        // Certificates before plugins: the quick checks first.
        let mut acceptors = Vec::with_capacity(plans.len());
        for (address, certs) in plans {
            let tls = if certs.is_empty() {
                None
            } else {
                Some((certs::acceptor(&certs)?, certs.len()))
            };
            acceptors.push((address, tls));
        }
        if settings.route.is_empty() {
            return Err(Error::config(
                "no route: give a plugin, or a `[[route]]` with a `plugin`",
            ));
        }
        let route_limits: Vec<Limits> = settings.route.iter().map(|r| settings.route_limits(r)).collect();
        for limits in &route_limits {
            limits.validate()?;
        }
        let pool = Pool {
            instances: u32::try_from(max_sessions)
                .unwrap_or(u32::MAX)
                .saturating_add(POOL_SLACK),
            max_memory: route_limits.iter().map(|l| l.memory).max().unwrap_or(0),
        };
        let runtime = Arc::new(Runtime::for_gateway(cache, pool)?);
        let idle_default = serve
            .idle_timeout
            .map_or(Some(DEFAULT_IDLE_TIMEOUT), IdleTimeoutSecs::duration);
        let mut routes: Vec<Route> = Vec::with_capacity(settings.route.len());
        for (route, limits) in settings.route.iter().zip(route_limits) {
            let route = plan_route(&runtime, route, limits, &config, max_sessions, idle_default)?;
            if routes.iter().any(|r| r.name == route.name) {
                return Err(Error::config(format!("two routes are named `{}`", route.name)));
            }
            routes.push(route);
        }
        // Sockets last: nothing is bound when the configuration is wrong.
        let mut listeners = Vec::with_capacity(acceptors.len());
        for (address, tls) in acceptors {
            let socket = listener::bind(address)?;
            let address = socket.local_addr().unwrap_or(address);
            listeners.push(Listener { socket, address, tls });
        }
        let shared = Shared {
            routes,
            max_sessions,
            sessions: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            budget: MemoryBudget::new(serve.max_plugin_memory.map_or(DEFAULT_PLUGIN_MEMORY, |m| m.bytes())),
            max_head: serve.max_head.map_or(DEFAULT_MAX_HEAD, |k| k.bytes()),
            head_timeout: serve.head_timeout.map_or(DEFAULT_HEAD_TIMEOUT, |t| t.duration()),
            verbose,
        };
        Ok(Gateway {
            runtime,
            listeners,
            shared: Arc::new(shared),
        })
    }

    /// One line per listener: its address (the port the OS chose, for
    /// port 0), `ws://` or `wss://`, and the routes it serves.
    pub fn describe(&self) -> Vec<String> {
        let routes: Vec<String> = self
            .shared
            .routes
            .iter()
            .map(|r| {
                format!(
                    "{} ({}{} -> {})",
                    r.name,
                    r.matcher.host,
                    r.matcher.path,
                    r.plugin.name()
                )
            })
            .collect();
        self.listeners
            .iter()
            .map(|l| {
                let scheme = match &l.tls {
                    Some((_, 1)) => "wss://".to_owned(),
                    Some((_, n)) => format!("wss://, {n} certificates by SNI"),
                    None => "ws://".to_owned(),
                };
                format!("listening on {} ({scheme}); routes: {}", l.address, routes.join(", "))
            })
            .collect()
    }

    /// The addresses the gateway listens on, ports chosen by the OS filled
    /// in.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|l| l.address).collect()
    }

    /// Serves until `shutdown` completes, then stops accepting and ends
    /// the sessions still open.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let mut tasks = JoinSet::new();
        for listener in self.listeners {
            tasks.spawn(accept_loop(listener, self.runtime.clone(), self.shared.clone()));
        }
        shutdown.await;
        // Dropping the accept loops drops their sessions' tasks too.
        tasks.shutdown().await;
    }
}

/// The listeners' addresses and certificates, checked.
fn plan_listeners(settings: &Settings) -> Result<Vec<(SocketAddr, Vec<CertFiles>)>, Error> {
    if settings.listener.is_empty() {
        return Err(Error::config(
            "no listener: give `--listen ADDR`, or a `[[listener]]` with an `address`",
        ));
    }
    let mut plans: Vec<(SocketAddr, Vec<CertFiles>)> = Vec::new();
    for (i, listener) in settings.listener.iter().enumerate() {
        let Some(address) = listener.address else {
            return Err(Error::config(format!("listener {} has no `address`", i + 1)));
        };
        let address = address.0;
        if plans.iter().any(|(a, _)| *a == address) && address.port() != 0 {
            return Err(Error::config(format!("two listeners on {address}")));
        }
        let mut certs = Vec::with_capacity(listener.tls.len());
        for cert in &listener.tls {
            let (Some(cert), Some(key)) = (&cert.cert, &cert.key) else {
                return Err(Error::config(format!(
                    "listener {address}: a `tls` entry needs both `cert` and `key`"
                )));
            };
            certs.push(CertFiles {
                cert: cert.clone(),
                key: key.clone(),
            });
        }
        plans.push((address, certs));
    }
    Ok(plans)
}

/// A route, checked, its plugin compiled.
fn plan_route(
    runtime: &Runtime,
    route: &RouteSettings,
    limits: Limits,
    config: &ConnectConfig,
    max_sessions: usize,
    idle_default: Option<Duration>,
) -> Result<Route, Error> {
    let Some(path) = &route.plugin else {
        let name = route.name.as_deref().unwrap_or("(unnamed)");
        return Err(Error::config(format!("route `{name}` names no `plugin`")));
    };
    let default_name = path
        .file_stem()
        .map_or_else(|| path.display().to_string(), |s| s.to_string_lossy().into_owned());
    let name = route.name.clone().unwrap_or(default_name);
    let host = match &route.host {
        Some(text) => HostPattern::parse(text).map_err(|e| Error::config(format!("route `{name}`: `host`: {e}")))?,
        None => HostPattern::Any,
    };
    let prefix = route.path.clone().unwrap_or_else(|| "/".to_owned());
    if !prefix.starts_with('/') {
        return Err(Error::config(format!(
            "route `{name}`: `path` must start with `/`, not `{prefix}`"
        )));
    }
    let plugin = runtime.load(path)?;
    plugin.check_gateway()?;
    let config = match &route.policy {
        Some(policy) => config.with_policy(policy.policy()),
        None => config.clone(),
    };
    Ok(Route {
        name,
        matcher: Matcher { host, path: prefix },
        plugin,
        args: route.args.clone(),
        config,
        limits,
        max_sessions: route.max_sessions.map_or(max_sessions, |n| n.count()),
        sessions: AtomicUsize::new(0),
        idle_timeout: route.idle_timeout.map_or(idle_default, IdleTimeoutSecs::duration),
    })
}

/// Accepts connections on one listener, a task each, until dropped.
async fn accept_loop(listener: Listener, runtime: Arc<Runtime>, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.socket.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let peer = unmapped(peer);
                    let Some(pending) = Pending::take(&shared) else {
                        // Dropped: closed at once.
                        continue;
                    };
                    let tls = listener.tls.as_ref().map(|(acceptor, _)| acceptor.clone());
                    connections.spawn(connection(tcp, peer, tls, runtime.clone(), shared.clone(), pending));
                }
                Err(e) => {
                    // Out of descriptors, most likely: say so, and let
                    // sessions end before trying again.
                    eprintln!("wsgate: cannot accept on {}: {e}", listener.address);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            // Reap finished connections, so the set holds only live ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// An IPv4 client of a dual-stack `[::]` listener as what it is:
/// `127.0.0.1:P`, not `[::ffff:127.0.0.1]:P`, for the plugin and the logs.
fn unmapped(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        v4 => v4,
    }
}

/// A connection's place among those not yet in a session, given back when
/// dropped.
struct Pending(Arc<Shared>);

impl Pending {
    fn take(shared: &Arc<Shared>) -> Option<Pending> {
        take_place(&shared.pending, MAX_PENDING).then(|| Pending(shared.clone()))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A session's place in the gateway's and its route's counts, given back
/// when dropped.
struct Ticket<'a> {
    gateway: &'a AtomicUsize,
    route: &'a AtomicUsize,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.gateway.fetch_sub(1, Ordering::AcqRel);
        self.route.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Takes a place under `max` in `count`, if there is one.
fn take_place(count: &AtomicUsize, max: usize) -> bool {
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
        .is_ok()
}

impl Shared {
    fn admit<'a>(&'a self, route: &'a Route) -> Option<Ticket<'a>> {
        if !take_place(&self.sessions, self.max_sessions) {
            return None;
        }
        if !take_place(&route.sessions, route.max_sessions) {
            self.sessions.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Ticket {
            gateway: &self.sessions,
            route: &route.sessions,
        })
    }
}

/// How a session ended.
enum Ending {
    /// The handler returned.
    Done,
    /// The handler returned an error.
    Refused(String),
    /// The plugin trapped or was stopped at a limit.
    Failed(Error),
    /// Nothing moved on the client's connection for the idle timeout.
    Idle(Duration),
}

/// One client connection, from TLS to the end of its session.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    runtime: Arc<Runtime>,
    shared: Arc<Shared>,
    pending: Pending,
) {
    // WebSocket frames are small and latency-bound.
    let _ = tcp.set_nodelay(true);
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + shared.head_timeout;
    let (mut stream, server_name) = match tls {
        Some(acceptor) => match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => {
                let name = tls.get_ref().1.server_name().map(str::to_owned);
                (ClientStream::Tls(Box::new(tls)), name)
            }
            // No HTTP to answer in: a failed or stalled handshake is
            // dropped.
            _ => return,
        },
        None => (ClientStream::Plain(tcp), None),
    };
    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
    let (head, early) = match read_head(&mut stream, shared.max_head, remaining).await {
        Ok(read) => read,
        Err(e) => {
            if let Some((code, reason)) = e.status() {
                let detail = match &e {
                    head::HeadError::Malformed(why) => format!("malformed request head: {why}"),
                    head::HeadError::TooLarge => format!("the request head is over {} bytes", shared.max_head),
                    _ => "the request head did not arrive in time".to_owned(),
                };
                refuse(&mut stream, code, reason, &detail).await;
            }
            return;
        }
    };
    if head.minor_version == 1 && head.header("host").is_none() {
        return refuse(
            &mut stream,
            400,
            "Bad Request",
            "an HTTP/1.1 request needs a Host header",
        )
        .await;
    }
    // One Host, that names a host: with two, the route and the plugin (or
    // its upstream) could each take a different one (RFC 9112 §3.2).
    let hosts = head
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("host"))
        .count();
    let host = head.host();
    if hosts > 1 || (hosts == 1 && host.is_none()) {
        return refuse(
            &mut stream,
            400,
            "Bad Request",
            "the request needs one valid Host header",
        )
        .await;
    }
    let Some(index) = route::find(shared.routes.iter().map(|r| &r.matcher), host.as_deref(), head.path()) else {
        let detail = format!("no route for {}{}", host.as_deref().unwrap_or(""), head.path());
        return refuse(&mut stream, 404, "Not Found", &detail).await;
    };
    let route = &shared.routes[index];
    let Some(_ticket) = shared.admit(route) else {
        return refuse(
            &mut stream,
            503,
            "Service Unavailable",
            "the gateway is at its session limit",
        )
        .await;
    };
    // A session now: counted as one, no longer as pending.
    drop(pending);
    let (reader, writer, reset, activity) = match client::split(stream) {
        Ok(parts) => parts,
        Err(_) => return,
    };
    let info = SessionInfo {
        client: peer,
        server_name,
        route: route.name.clone(),
        head: RequestHead {
            method: head.method,
            target: head.target,
            minor_version: head.minor_version,
            headers: head.headers,
        },
    };
    // The bytes read after the head come first.
    let input = Box::new(Replay::new(early, reader));
    let session = Session::new(info, input, Box::new(writer.for_plugin()), route.limits.stream_buffer);
    let mut instantiated = None;
    let ending = {
        let serve = runtime.serve_session(
            &route.plugin,
            route.config.clone(),
            &route.args,
            &route.limits,
            shared.budget.clone(),
            session,
            &mut instantiated,
        );
        tokio::select! {
            result = serve => match result {
                Ok(Ok(())) => Ending::Done,
                Ok(Err(why)) => Ending::Refused(why),
                Err(e) => Ending::Failed(e),
            },
            idle = idle_for(&activity, route.idle_timeout) => Ending::Idle(idle),
        }
    };
    // The instance is gone: its streams with it. The host ends the
    // connection.
    let times = Times { started, instantiated };
    finish(ending, writer, reset, peer, route, times, shared.verbose).await;
}

/// Tells the client how its session ended, as far as it can still be told,
/// and says so to the operator when it was not a plain end.
async fn finish(
    ending: Ending,
    mut writer: ClientWriter,
    reset: client::ResetHandle,
    peer: SocketAddr,
    route: &Route,
    times: Times,
    verbose: bool,
) {
    // Whether a Close frame can still be said: after a 101, between two
    // of the plugin's frames. The plugin's side writes nothing from here.
    let can_close = writer.take_over();
    let what = match &ending {
        Ending::Done => None,
        Ending::Refused(why) => Some(format!("the handler returned an error: {why}")),
        Ending::Failed(e) => Some(e.to_string()),
        Ending::Idle(idle) => Some(format!("closed after {} s without traffic", idle.as_secs())),
    };
    match (&ending, can_close) {
        (Ending::Done | Ending::Refused(_), _) => writer.finish(&[], GOODBYE_TIMEOUT).await,
        (Ending::Failed(_), true) => {
            writer
                .finish(&close_frame(1011, "plugin failed"), GOODBYE_TIMEOUT)
                .await
        }
        (Ending::Idle(_), true) => writer.finish(&close_frame(1001, "idle timeout"), GOODBYE_TIMEOUT).await,
        // The client is still waiting for an answer to its upgrade, or is
        // in the middle of a frame that will never end: reset.
        (Ending::Failed(_) | Ending::Idle(_), false) => reset.reset(),
    }
    match what {
        Some(what) => eprintln!("wsgate: session from {peer} on route `{}`: {what}", route.name),
        None if verbose => eprintln!(
            "wsgate: session from {peer} on route `{}` ended after {:.1} ms (instantiate {:.3} ms)",
            route.name,
            ms(times.started.elapsed()),
            times.instantiated.map_or(0.0, ms),
        ),
        None => {}
    }
}

/// When a session started, and how long its instantiation took.
struct Times {
    started: Instant,
    instantiated: Option<Duration>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Completes once nothing moved for `timeout`, with how long that was;
/// never without a timeout.
async fn idle_for(activity: &Activity, timeout: Option<Duration>) -> Duration {
    let Some(timeout) = timeout else {
        return std::future::pending().await;
    };
    loop {
        let idle = activity.idle();
        if idle >= timeout {
            return idle;
        }
        tokio::time::sleep(timeout - idle).await;
    }
}

/// Answers with an HTTP error and closes.
///
/// Then it reads what the client still sends (the rest of an oversized
/// head, a pipelined request), up to [`DRAIN_LIMIT`] bytes within the
/// goodbye's time: closing a socket with unread input makes the kernel
/// send a reset, and a client that gets one may drop the answer unread.
async fn refuse(stream: &mut ClientStream, code: u16, reason: &str, detail: &str) {
    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, async {
        stream.write_all(&http_error(code, reason, detail)).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < DRAIN_LIMIT {
            match stream.read(&mut sink).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// The most a refused client's remaining input is read before closing.
const DRAIN_LIMIT: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_ipv4_clients_are_shown_as_ipv4() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:4000".parse().unwrap();
        assert_eq!(unmapped(mapped), "127.0.0.1:4000".parse::<SocketAddr>().unwrap());
        let v6: SocketAddr = "[::1]:4000".parse().unwrap();
        assert_eq!(unmapped(v6), v6);
    }

    #[test]
    fn places_are_taken_up_to_the_bound_and_given_back() {
        let count = AtomicUsize::new(0);
        assert!(take_place(&count, 2));
        assert!(take_place(&count, 2));
        assert!(!take_place(&count, 2));
        count.fetch_sub(1, Ordering::AcqRel);
        assert!(take_place(&count, 2));
    }
}
