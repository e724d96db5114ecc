//! The faults the soak injects that need no running session: plugins that
//! trap, slow-header clients, a connection flood past the session limit.
//! (Upstream resets and vanishing clients are orders to running sessions,
//! see [`driver::Cmd`](super::driver::Cmd); the IPv6 blackhole is the
//! upstream's, see [`upstream`](super::upstream).)

use super::driver::{close_end, upgrade};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How many of a kind of fault ended how.
pub(crate) type Tally = BTreeMap<String, u64>;

/// Faults of one kind run this many at a time.
const AT_ONCE: usize = 64;

/// Runs `count` jobs, `AT_ONCE` at a time, job `i` against
/// `addrs[i % addrs.len()]`; tallies what each returned.
async fn batched<F, Fut>(addrs: &[SocketAddr], count: usize, job: F) -> Tally
where
    F: Fn(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = String>,
{
    let mut tally = Tally::new();
    let mut i = 0;
    while i < count {
        let batch = (count - i).min(AT_ONCE);
        let results = futures_util::future::join_all((i..i + batch).map(|k| job(addrs[k % addrs.len()]))).await;
        for r in results {
            *tally.entry(r).or_default() += 1;
        }
        i += batch;
    }
    tally
}

/// A session on the probe's `/trap-after-upgrade` route: the upgrade is
/// answered, then the plugin traps; the client should get Close 1011.
pub(crate) async fn traps(addrs: &[SocketAddr], count: usize) -> Tally {
    batched(addrs, count, |addr| async move {
        let mut ws = match upgrade(addr, "/trap-after-upgrade").await {
            Ok(ws) => ws,
            Err(e) => return format!("no upgrade: {e}"),
        };
        close_end(&mut ws, Duration::from_secs(20)).await.to_string()
    })
    .await
}

/// The status of an HTTP answer (`HTTP/1.1 503 ...`), or what came instead.
fn status_of(answer: &[u8]) -> String {
    let text = String::from_utf8_lossy(answer);
    match text.split_whitespace().nth(1) {
        Some(code) if text.starts_with("HTTP/1.1 ") => code.to_owned(),
        _ if answer.is_empty() => "closed without an answer".to_owned(),
        _ => "not HTTP".to_owned(),
    }
}

/// Reads a whole answer (to the end of the connection), bounded.
async fn answer(tcp: &mut TcpStream, limit: Duration) -> Result<Vec<u8>, String> {
    let mut answer = Vec::new();
    match tokio::time::timeout(limit, tcp.read_to_end(&mut answer)).await {
        Ok(Ok(_)) => Ok(answer),
        // A reset after a whole answer is still the answer.
        Ok(Err(_)) if !answer.is_empty() => Ok(answer),
        Ok(Err(e)) => Err(format!("failed: {}", e.kind())),
        Err(_) => Err(format!("no answer within {limit:?}")),
    }
}

/// `count` upgrade requests while the gateways are at their session limit:
/// each should be answered 503.
pub(crate) async fn flood(addrs: &[SocketAddr], count: usize) -> Tally {
    batched(addrs, count, |addr| async move {
        let Ok(Ok(mut tcp)) = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr)).await else {
            return "connect failed".into();
        };
        let request = format!(
            "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        if tcp.write_all(request.as_bytes()).await.is_err() {
            return "write failed".into();
        }
        match answer(&mut tcp, Duration::from_secs(20)).await {
            Ok(a) => status_of(&a),
            Err(e) => e,
        }
    })
    .await
}

/// A slow-header client's ending: the answer's status, and how long after
/// the first bytes it came.
pub(crate) struct Slow {
    pub(crate) outcome: String,
    pub(crate) after: Duration,
}

/// One slow-header client: half a request head, then nothing; the host
/// should answer 408 once its head timeout has passed.
pub(crate) async fn slow_header(addr: SocketAddr, head_timeout: Duration) -> Slow {
    let started = Instant::now();
    let outcome = async {
        let Ok(Ok(mut tcp)) = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr)).await else {
            return "connect failed".to_owned();
        };
        let part = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n");
        if tcp.write_all(part.as_bytes()).await.is_err() {
            return "write failed".into();
        }
        match answer(&mut tcp, head_timeout + Duration::from_secs(20)).await {
            Ok(a) => status_of(&a),
            Err(e) => e,
        }
    }
    .await;
    Slow {
        outcome,
        after: started.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::status_of;

    #[test]
    fn statuses_come_from_the_status_line() {
        assert_eq!(status_of(b"HTTP/1.1 503 Service Unavailable\r\n\r\n"), "503");
        assert_eq!(status_of(b"HTTP/1.1 408 Request Timeout\r\n"), "408");
        assert_eq!(status_of(b""), "closed without an answer");
        assert_eq!(status_of(b"\x88\x02\x03\xe8"), "not HTTP");
    }
}
