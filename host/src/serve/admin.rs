//! The admin listener (`[admin] listen`): what operators' tools ask a
//! running gateway, over plain HTTP/1.1, one request a connection.
//!
//! | path | answer |
//! |---|---|
//! | `/metrics` | 200, every metric in the OpenMetrics text format |
//! | `/healthz` | 200 while the process serves at all |
//! | `/readyz` | 200 while it takes new sessions: its listeners bound, its plugins compiled, not draining; 503 once it drains |
//! | `POST /reload` | the configuration read anew and put in force for new sessions (as SIGHUP does): 200 with the routes, or 422 with why it was refused |
//!
//! Anything else is 404, a method other than `GET` (or `HEAD`; `POST` for
//! `/reload`) 405. It shares no limit with the clients' listeners: a
//! gateway at its session limit still answers its probes. It has no
//! authentication: keep it where only operators reach it.

use super::Shared;
use super::answer::{TEXT, answer_and_close, http_response};
use super::head::read_head;
use crate::metrics::CONTENT_TYPE;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The largest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// How long a request and its answer may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// The least time an answer has to be written, after a long reload.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// Admin connections answered at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 64;

/// Answers the admin listener's connections until dropped.
pub(super) async fn admin_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept(), if connections.len() < MAX_CONNECTIONS => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(answer(stream, shared.clone()));
                }
                // Out of descriptors, most likely: let connections end first.
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Reads one request and answers it, all within [`EXCHANGE_TIMEOUT`]
/// (but for a reload, which compiles plugins).
async fn answer(mut stream: TcpStream, shared: Arc<Shared>) {
    let deadline = Instant::now() + EXCHANGE_TIMEOUT;
    let Ok((head, _)) = read_head(&mut stream, MAX_HEAD, EXCHANGE_TIMEOUT).await else {
        return;
    };
    let (code, reason, content_type, body) = match (head.method.as_str(), head.path()) {
        ("POST", "/reload") => reload(&shared).await,
        (_, "/reload") => (405, "Method Not Allowed", TEXT, "only POST\n".into()),
        (method, path) => respond(method, path, &shared),
    };
    let mut answer = http_response(code, reason, content_type, &body);
    if head.method == "HEAD" {
        answer.truncate(answer.len() - body.len());
    }
    let left = deadline.saturating_duration_since(Instant::now()).max(ANSWER_TIMEOUT);
    answer_and_close(&mut stream, &answer, left).await;
}

/// A reload's answer: 200 and the routes now in force, or 422 and why the
/// configuration was refused.
async fn reload(shared: &Arc<Shared>) -> (u16, &'static str, &'static str, String) {
    match super::reload::reload(shared).await {
        Ok(routes) => (200, "OK", TEXT, format!("reloaded; routes: {routes}\n")),
        Err(e) => (422, "Unprocessable Content", TEXT, format!("reload refused: {e}\n")),
    }
}

/// The status, its reason, the content type and the body for `method` on
/// `path`.
fn respond(method: &str, path: &str, shared: &Shared) -> (u16, &'static str, &'static str, String) {
    if method != "GET" && method != "HEAD" {
        return (405, "Method Not Allowed", TEXT, "only GET\n".into());
    }
    match path {
        "/metrics" => (200, "OK", CONTENT_TYPE, shared.metrics_text()),
        "/healthz" => (200, "OK", TEXT, "ok\n".into()),
        "/readyz" if shared.draining() => (503, "Service Unavailable", TEXT, "draining\n".into()),
        "/readyz" => (200, "OK", TEXT, "ready\n".into()),
        _ => (
            404,
            "Not Found",
            TEXT,
            "no such endpoint: /metrics, /healthz, /readyz\n".into(),
        ),
    }
}
