//! Accept loops and the per-connection behaviours.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::Message;

use crate::hold::SendQueue;
use crate::tickets::LateTickets;
use crate::{Behaviour, Counters, MAX_HOLDS};

/// Most connections served at once per family; past it the listener stops
/// accepting until one ends, so a runaway client cannot exhaust descriptors.
const MAX_CONNECTIONS: usize = 256;

/// Longest accepted HTTP request head. Upgrade requests are a few hundred bytes.
const MAX_HEAD: usize = 16 * 1024;

/// How long a client may take to complete the TLS handshake or send its
/// request head (outside `tls-stall`, where waiting forever is the point).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// After answering 503, how long and how much is read before closing, so
/// that closing with unread data does not turn into a RST that could destroy
/// the response before the client reads it.
const LINGER_TIMEOUT: Duration = Duration::from_secs(1);
const LINGER_MAX: u64 = 64 * 1024;

/// Pause after a failed `accept` (e.g. EMFILE) so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

const RESPONSE_503: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const RESPONSE_200: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
/// A `101` whose accept key belongs to RFC 6455's sample key, not to any
/// key a client sends.
const RESPONSE_BAD_ACCEPT: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

/// What every connection of one family needs.
pub(crate) struct Family {
    pub(crate) v6: bool,
    pub(crate) behaviour: Behaviour,
    pub(crate) counters: Arc<Counters>,
    pub(crate) tls: Option<TlsAcceptor>,
    pub(crate) slow_upgrade: Duration,
}

impl Family {
    fn count_connection(&self) {
        self.counters.family(self.v6).connections.fetch_add(1, RELAXED);
    }

    fn count_upgrade(&self) {
        self.counters.family(self.v6).upgrades.fetch_add(1, RELAXED);
    }

    fn record_hold(&self, hold: Duration) {
        let Ok(mut holds) = self.counters.family(self.v6).holds.lock() else {
            return;
        };
        if holds.len() < MAX_HOLDS {
            holds.push(hold);
        }
    }
}

/// Counters are independent statistics with no data published through them,
/// so no ordering beyond the atomicity of each counter is needed.
const RELAXED: std::sync::atomic::Ordering = std::sync::atomic::Ordering::Relaxed;

/// Accepts and serves on `listener` until `stop` fires (or its sender is
/// gone), then aborts and awaits every connection task, closing their sockets.
pub(crate) async fn accept_loop(listener: TcpListener, family: Arc<Family>, mut stop: watch::Receiver<bool>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            // Err means the Testbed is gone; either way, stop.
            _ = stop.changed() => break,
            // Reap finished connections so the set does not grow without bound.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept(), if conns.len() < MAX_CONNECTIONS => match accepted {
                Ok((stream, peer)) => {
                    family.count_connection();
                    conns.spawn(handle(stream, peer, Arc::clone(&family)));
                }
                Err(e) => {
                    // Per-connection failures (ECONNABORTED...) and resource
                    // exhaustion alike: report, back off briefly, keep serving.
                    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
                    eprintln!("wsgate-testbed: accept on {addr}: {e}");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            },
        }
    }
    conns.shutdown().await;
}

async fn handle(stream: TcpStream, _peer: SocketAddr, family: Arc<Family>) {
    // Echoes are small request/response exchanges; do not let Nagle delay
    // them, except where that delay is the behaviour.
    if family.behaviour != Behaviour::NagleTickets {
        let _ = stream.set_nodelay(true);
    }
    if family.behaviour == Behaviour::TlsStall {
        stall(stream, &family).await;
        return;
    }
    // Taken before TLS wraps the stream; it lives as long as the stream.
    let queue = SendQueue::of(&stream);
    match &family.tls {
        Some(acceptor) => {
            // Handshake failures and timeouts are the client's business
            // (tests provoke them on purpose); the connection just ends.
            if family.behaviour == Behaviour::NagleTickets {
                let accept = acceptor.accept(LateTickets::new(stream));
                if let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await {
                    serve_http(tls, &family, &queue).await;
                }
            } else if let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                serve_http(tls, &family, &queue).await;
            }
        }
        None => serve_http(stream, &family, &queue).await,
    }
}

/// `tls-stall`: read and discard whatever arrives, never answer. Ends when
/// the client closes (or the task is aborted at shutdown).
async fn stall(mut stream: TcpStream, family: &Family) {
    let mut head = Vec::new();
    if family.tls.is_none() {
        // In plain mode the first bytes are the HTTP request itself: count
        // it, since it is an upgrade request received even if never answered.
        // EOF, a non-HTTP or an oversized head: nothing to count; the
        // discarding below sees the EOF or keeps discarding.
        if let Ok(Some(_)) = read_head(&mut stream, &mut head).await {
            family.count_upgrade();
        }
    }
    // Reading to EOF is what bounds this: the client's lifetime.
    let _ = tokio::io::copy(&mut stream, &mut tokio::io::sink()).await;
}

/// Everything after TLS (if any) for the HTTP-speaking behaviours.
async fn serve_http<S>(mut stream: S, family: &Family, queue: &SendQueue)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, read_head(&mut stream, &mut buf)).await {
        Ok(Ok(Some(_))) => family.count_upgrade(),
        // Closed before a full head, oversized, or too slow: nothing to answer.
        Ok(Ok(None)) | Ok(Err(_)) | Err(_) => return,
    }

    let canned = match family.behaviour {
        Behaviour::Upgrade503 => RESPONSE_503,
        Behaviour::Upgrade200 => RESPONSE_200,
        Behaviour::BadAccept => RESPONSE_BAD_ACCEPT,
        Behaviour::SlowUpgrade => {
            // The request has been received and counted; the 101 waits.
            tokio::time::sleep(family.slow_upgrade).await;
            return echo(Prefixed::new(buf, stream), None).await;
        }
        Behaviour::Ok => return echo(Prefixed::new(buf, stream), None).await,
        Behaviour::NagleTickets => return echo(Prefixed::new(buf, stream), Some((queue, family))).await,
        // Handled before TLS, or never accepted at all.
        Behaviour::TlsStall | Behaviour::Blackhole | Behaviour::Refused => return,
    };
    if stream.write_all(canned).await.is_err() || stream.shutdown().await.is_err() {
        return;
    }
    // Read what the client still sends, bounded, so that closing does not
    // reset the connection under the answer.
    let mut rest = (&mut stream).take(LINGER_MAX);
    let _ = tokio::time::timeout(LINGER_TIMEOUT, tokio::io::copy(&mut rest, &mut tokio::io::sink())).await;
}

/// Completes the WebSocket handshake on a stream whose request head is
/// still to be read from its prefix, then echoes until the client leaves.
/// With `hold`, first records how long the `101` waited to be sent.
async fn echo<S>(stream: Prefixed<S>, hold: Option<(&SendQueue, &Family)>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Ok(Ok(mut ws)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio_tungstenite::accept_async(stream)).await else {
        // tungstenite has already answered a malformed request with an error status.
        return;
    };
    // tungstenite wrote and flushed the `101` before returning: it is in
    // the kernel's send queue, held there while Nagle waits for an ACK.
    if let Some((queue, family)) = hold
        && let Some(held) = queue.wait_sent().await
    {
        family.record_hold(held);
    }
    // Bounded by the client: ends on its close, EOF or any protocol error.
    while let Some(Ok(message)) = ws.next().await {
        match message {
            Message::Text(_) | Message::Binary(_) => {
                if ws.send(message).await.is_err() {
                    break;
                }
            }
            // tungstenite queues the pong and the close reply itself and
            // flushes them on the next poll; a close then ends the stream.
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_) => {}
        }
    }
}

/// Reads from `stream` into `buf` until it holds a complete HTTP request head
/// (bytes read past the head stay in `buf` too).
///
/// Returns `Ok(Some(head_len))` for a head whose first line looks like an
/// HTTP request line, `Ok(None)` on EOF before that or for a head that is not
/// HTTP, and `InvalidData` once [`MAX_HEAD`] bytes hold no complete head.
async fn read_head<S>(stream: &mut S, buf: &mut Vec<u8>) -> io::Result<Option<usize>>
where
    S: AsyncRead + Unpin,
{
    let mut searched = 0;
    // Each round reads at least one byte, so MAX_HEAD bounds the rounds.
    loop {
        if let Some(end) = find_head_end(buf, searched) {
            return Ok(is_request_line(&buf[..end]).then_some(end));
        }
        if buf.len() >= MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "request head too large"));
        }
        // A terminator may straddle two reads: search again from 3 bytes back.
        searched = buf.len().saturating_sub(3);
        buf.reserve(MAX_HEAD - buf.len());
        let mut limited = (&mut *stream).take((MAX_HEAD - buf.len()) as u64);
        if limited.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}

/// The index just past the first `\r\n\r\n` at or after `from`.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| from + i + 4)
}

/// Whether a head starts with `METHOD SP TARGET SP HTTP/x.y`.
fn is_request_line(head: &[u8]) -> bool {
    let line_end = head.windows(2).position(|w| w == b"\r\n").unwrap_or(head.len());
    let mut parts = head[..line_end].split(|&b| b == b' ');
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some(method), Some(target), Some(version), None)
            if !method.is_empty()
                && method.iter().all(u8::is_ascii_uppercase)
                && !target.is_empty()
                && version.starts_with(b"HTTP/")
    )
}

/// A stream that first yields bytes already read from it, so that tungstenite
/// can parse a request head the testbed has read (and counted) itself.
struct Prefixed<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    fn new(prefix: Vec<u8>, inner: S) -> Self {
        Prefixed { prefix, pos: 0, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.prefix.len() {
            let n = buf.remaining().min(this.prefix.len() - this.pos);
            buf.put_slice(&this.prefix[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                // Done with it; free the memory for the connection's lifetime.
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_end_found_across_offsets() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nxx", 0), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\n", 14), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n", 0), None);
        assert_eq!(find_head_end(b"ab", 10), None);
    }

    #[test]
    fn request_line_recognised() {
        assert!(is_request_line(b"GET /chat HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!is_request_line(b"\x16\x03\x01 garbage\r\n\r\n"));
        assert!(!is_request_line(b"GET /\r\n\r\n"));
        assert!(!is_request_line(b"GET / HTTP/1.1 extra\r\n\r\n"));
    }

    #[tokio::test]
    async fn read_head_keeps_bytes_past_the_head() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            client.write_all(b"GET / HTTP/1.1\r\nHost: a\r").await.unwrap();
            client.write_all(b"\n\r\nEXTRA").await.unwrap();
            client
        });
        let mut buf = Vec::new();
        let got = read_head(&mut server, &mut buf).await.unwrap();
        let head_len = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".len();
        assert_eq!(got, Some(head_len));
        assert!(buf.len() >= head_len);
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn read_head_rejects_oversized_heads() {
        let (mut client, mut server) = tokio::io::duplex(MAX_HEAD * 2);
        client.write_all(&vec![b'a'; MAX_HEAD + 10]).await.unwrap();
        let mut buf = Vec::new();
        let err = read_head(&mut server, &mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn prefixed_yields_prefix_then_inner() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b"world").await.unwrap();
        drop(client);
        let mut stream = Prefixed::new(b"hello ".to_vec(), server);
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }
}
