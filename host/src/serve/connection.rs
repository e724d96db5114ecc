//! A client connection's life in the gateway: accepted, TLS, its request
//! head, a route and a place among the sessions, the plugin's instance,
//! and the host's goodbye.

use super::answer::{answer_and_close, close_frame, http_error};
use super::client::{self, Activity, ClientStream, ClientWriter};
use super::generation::Route;
use super::head::{self, read_head};
use super::route;
use super::{Listener, Shared};
use crate::error::{Error, ErrorKind};
use crate::metrics::{Outcome, SessionTraffic};
use crate::race::Replay;
use crate::runtime::Runtime;
use crate::sessions::{RequestHead, Session, SessionInfo};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// How long the host spends on a goodbye (an error answer, a Close frame)
/// to a client that does not read it.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);

/// Connections still in TLS or their request head, at most, all listeners
/// together: each holds a task, a buffer and a timer until its head timeout,
/// so their number is bounded apart from the sessions'. Beyond it a new
/// connection is closed at once.
pub(super) const MAX_PENDING: usize = 1024;

/// Accepts connections on one listener, a task each, until dropped.
pub(super) async fn accept_loop(listener: Listener, runtime: Arc<Runtime>, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    let mut going_away = shared.going_away.subscribe();
    loop {
        tokio::select! {
            // The drain: no more connections; those taken end first.
            () = signalled(&mut going_away) => break,
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
                    tracing::error!("cannot accept on {}: {e}", listener.address);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            // Reap finished connections, so the set holds only live ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Completes once `signal` is true (never if its sender is gone first).
async fn signalled(signal: &mut watch::Receiver<bool>) {
    if signal.wait_for(|on| *on).await.is_err() {
        std::future::pending::<()>().await;
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
    /// Still open when the drain's timeout passed.
    Cut,
}

impl Ending {
    /// How the metrics name this ending.
    fn outcome(&self) -> Outcome {
        match self {
            Ending::Done => Outcome::Done,
            Ending::Refused(_) => Outcome::Refused,
            Ending::Failed(e) => match e.kind() {
                ErrorKind::Trap => Outcome::Trap,
                ErrorKind::Limit => Outcome::Limit,
                _ => Outcome::Failed,
            },
            Ending::Idle(_) => Outcome::Idle,
            Ending::Cut => Outcome::Cut,
        }
    }
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
    // The configuration in force now serves this connection to its end.
    let generation = shared.current();
    let deadline = tokio::time::Instant::now() + generation.head_timeout;
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
    let (head, early) = match read_head(&mut stream, generation.max_head, remaining).await {
        Ok(read) => read,
        Err(e) => {
            if let Some((code, reason)) = e.status() {
                let detail = match &e {
                    head::HeadError::Malformed(why) => format!("malformed request head: {why}"),
                    head::HeadError::TooLarge => format!("the request head is over {} bytes", generation.max_head),
                    _ => "the request head did not arrive in time".to_owned(),
                };
                refuse(&shared, &mut stream, code, reason, &detail).await;
            }
            return;
        }
    };
    if head.minor_version == 1 && head.header("host").is_none() {
        return refuse(
            &shared,
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
            &shared,
            &mut stream,
            400,
            "Bad Request",
            "the request needs one valid Host header",
        )
        .await;
    }
    let Some(index) = route::find(
        generation.routes.iter().map(|r| &r.matcher),
        host.as_deref(),
        head.path(),
    ) else {
        let detail = format!("no route for {}{}", host.as_deref().unwrap_or(""), head.path());
        return refuse(&shared, &mut stream, 404, "Not Found", &detail).await;
    };
    let route = &generation.routes[index];
    if shared.draining() {
        return refuse(
            &shared,
            &mut stream,
            503,
            "Service Unavailable",
            "the gateway is draining",
        )
        .await;
    }
    let Some(_ticket) = shared.admit(route) else {
        return refuse(
            &shared,
            &mut stream,
            503,
            "Service Unavailable",
            "the gateway is at its session limit",
        )
        .await;
    };
    // A session now: counted as one, no longer as pending.
    drop(pending);
    shared.metrics.session_started(&route.name);
    let traffic = SessionTraffic::new(shared.next_session.fetch_add(1, Ordering::Relaxed) + 1);
    let (reader, writer, activity) = client::split(stream, &early, shared.metrics.net(), &traffic);
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
    let session = Session::new(
        info,
        input,
        Box::new(writer.for_plugin()),
        route.limits.stream_buffer,
        shared.going_away.subscribe(),
    );
    let mut cut = shared.cut.subscribe();
    let mut instantiated = None;
    let ending = {
        let serve = runtime.serve_session(
            &route.plugin,
            route.config.for_session(traffic.clone()),
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
            () = signalled(&mut cut) => Ending::Cut,
        }
    };
    // The instance is gone: its streams with it. The host ends the
    // connection.
    if let Some(took) = instantiated {
        shared.metrics.instantiated(took);
    }
    let outcome = ending.outcome();
    shared.metrics.session_ended(&route.name, outcome);
    if let Ending::Failed(e) = &ending
        && let Some(limit) = e.limit()
    {
        shared.metrics.limit_hit(limit);
    }
    let times = Times { started, instantiated };
    finish(ending, writer, peer, route, times, shared.verbose).await;
    // After the host's own goodbye, which counts too.
    if generation.access_log {
        access_line(&traffic, route, peer, outcome, started.elapsed());
    }
}

/// The access log's line of a session that ended: `-` for what it did not
/// have (no upstream, no Close).
fn access_line(traffic: &SessionTraffic, route: &Route, client: SocketAddr, outcome: Outcome, took: Duration) {
    let totals = traffic.totals();
    let (upstream, stage) = match traffic.upstream() {
        Some((peer, stage)) => (peer.to_string(), stage.as_str()),
        None => ("-".to_owned(), "-"),
    };
    let code = |close: Option<u16>| close.map_or_else(|| "-".to_owned(), |c| c.to_string());
    tracing::info!(
        target: crate::log::ACCESS,
        session = traffic.id(),
        route = %route.name,
        client = %client,
        upstream = %upstream,
        stage,
        outcome = outcome.label(),
        duration_ms = format_args!("{:.1}", ms(took)),
        bytes_in = totals.from_client.bytes,
        bytes_out = totals.to_client.bytes,
        messages_in = totals.from_client.messages,
        messages_out = totals.to_client.messages,
        close_in = %code(totals.from_client.close),
        close_out = %code(totals.to_client.close),
        upstream_bytes_in = totals.from_upstream.bytes,
        upstream_bytes_out = totals.to_upstream.bytes,
        "session ended"
    );
}

/// Tells the client how its session ended, as far as it can still be told,
/// and says so to the operator when it was not a plain end.
async fn finish(
    ending: Ending,
    mut writer: ClientWriter,
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
        // Counted in the drain's own line.
        Ending::Cut => None,
    };
    match (&ending, can_close) {
        (Ending::Done | Ending::Refused(_), _) => writer.finish(&[], GOODBYE_TIMEOUT).await,
        (Ending::Failed(_), true) => {
            writer
                .finish(&close_frame(1011, "plugin failed"), GOODBYE_TIMEOUT)
                .await
        }
        (Ending::Idle(_), true) => writer.finish(&close_frame(1001, "idle timeout"), GOODBYE_TIMEOUT).await,
        (Ending::Cut, true) => writer.finish(&close_frame(1001, "going away"), GOODBYE_TIMEOUT).await,
        // The client is still waiting for an answer to its upgrade, or is
        // in the middle of a frame that will never end: reset.
        (Ending::Failed(_) | Ending::Idle(_) | Ending::Cut, false) => writer.reset(),
    }
    match what {
        Some(what) => tracing::error!("session from {peer} on route `{}`: {what}", route.name),
        None if verbose => tracing::info!(
            "session from {peer} on route `{}` ended after {:.1} ms (instantiate {:.3} ms)",
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

/// Answers with an HTTP error and closes, the client's remaining input
/// read first (see [`answer_and_close`]).
async fn refuse(shared: &Shared, stream: &mut ClientStream, code: u16, reason: &str, detail: &str) {
    shared.metrics.answered(code);
    answer_and_close(stream, &http_error(code, reason, detail), GOODBYE_TIMEOUT).await;
}

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
