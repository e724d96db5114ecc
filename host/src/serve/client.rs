//! A client's connection, as the gateway holds it while a plugin serves it.
//!
//! The plugin gets the connection's two halves as `wasi:io` streams. The
//! host keeps a handle on the write half, and so on the socket, because a
//! session can end with the plugin gone (a trap, a limit): the host then
//! still owes the client an ending, a Close frame 1011 when the plugin had
//! answered the upgrade, a reset when it had not.
//!
//! Both halves count what passes (bytes, and WebSocket messages and the
//! first Close as a frame watcher follows them) into the gateway's metrics
//! and the session's totals: the client's bytes from the end of the request
//! head the host read, the plugin's from its answer's head.

use crate::frames::Start;
use crate::metrics::{Counting, Direction, NetMetrics, SessionTraffic};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// The client's byte stream: plain TCP (`ws://`) or TLS over it (`wss://`).
pub(crate) enum ClientStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl ClientStream {
    fn tcp(&self) -> &TcpStream {
        match self {
            ClientStream::Plain(tcp) => tcp,
            ClientStream::Tls(tls) => tls.get_ref().0,
        }
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// When bytes last moved either way on the client's connection.
#[derive(Debug)]
pub(crate) struct Activity {
    start: Instant,
    /// Milliseconds after `start`.
    last: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Arc<Activity> {
        Arc::new(Activity {
            start: Instant::now(),
            last: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last.store(ms, Ordering::Relaxed);
    }

    /// How long since bytes last moved.
    pub(crate) fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// The read half, noting activity and counting what the client sends.
pub(crate) struct ClientReader {
    half: ReadHalf<ClientStream>,
    activity: Arc<Activity>,
    input: Counting,
}

impl AsyncRead for ClientReader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.half).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
            this.input.count(&buf.filled()[before..]);
        }
        poll
    }
}

/// The write half, shared between the plugin's output stream and the host.
pub(crate) struct ClientWriter {
    inner: Arc<Mutex<WriterState>>,
    /// The host's handle, which still writes once the host took over.
    for_host: bool,
}

struct WriterState {
    half: WriteHalf<ClientStream>,
    /// The socket under `half`, open as long as `half` is: to reset the
    /// connection without a second descriptor per session.
    socket: RawFd,
    /// Where the output is, in the plugin's HTTP answer or in frames (the
    /// host may only add a Close frame of its own between two frames), and
    /// what it counted to.
    output: Counting,
    /// The host took over the connection (the plugin is gone): what the
    /// plugin's side still tries to write is refused, so that nothing
    /// lands after the host's last bytes.
    taken_over: bool,
    activity: Arc<Activity>,
}

impl ClientWriter {
    fn state(&self) -> MutexGuard<'_, WriterState> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The handle the plugin's output stream writes through.
    pub(crate) fn for_plugin(&self) -> ClientWriter {
        ClientWriter {
            inner: self.inner.clone(),
            for_host: false,
        }
    }

    /// Whether the plugin answered `101 Switching Protocols` and its
    /// output ends between two frames: the host may add a Close frame.
    /// Also takes the connection over from the plugin's side, which writes
    /// nothing more.
    pub(crate) fn take_over(&self) -> bool {
        let mut state = self.state();
        state.taken_over = true;
        state.output.watcher().between_frames()
    }

    /// Makes the socket's last close send a reset (RST) rather than a FIN:
    /// `SO_LINGER` with a zero timeout. Takes effect when the last handle
    /// of the connection (this writer, the plugin's halves) is dropped.
    #[allow(unsafe_code)]
    pub(crate) fn reset(self) {
        let state = self.state();
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: the descriptor is open while `state.half` is, which the
        // lock holds; `linger` is a valid `struct linger` of the size passed.
        let _ = unsafe {
            libc::setsockopt(
                state.socket,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&raw const linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
    }

    /// Writes `bytes` and shuts the write side down, bounded by `timeout`
    /// (a client that reads nothing does not hold the host).
    pub(crate) async fn finish(&mut self, bytes: &[u8], timeout: Duration) {
        let _ = tokio::time::timeout(timeout, async {
            self.write_all(bytes).await?;
            self.shutdown().await
        })
        .await;
    }
}

impl AsyncWrite for ClientWriter {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let for_host = self.for_host;
        let mut state = self.state();
        let state = &mut *state;
        if state.taken_over && !for_host {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let poll = Pin::new(&mut state.half).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll
            && n > 0
        {
            state.activity.touch();
            // The host's own writes (a Close, after taking over between
            // two frames) are followed too: the client got them.
            state.output.count(&buf[..n]);
        }
        poll
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.state().half).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.state().half).poll_shutdown(cx)
    }
}

/// Splits a client's stream into what the plugin gets and what the host
/// keeps: the reader, the shared writer, and the activity of both. `early`
/// is what the host read after the request head (the plugin reads it
/// first); the traffic is counted into `net` and `traffic`.
pub(crate) fn split(
    stream: ClientStream,
    early: &[u8],
    net: &NetMetrics,
    traffic: &Arc<SessionTraffic>,
) -> (ClientReader, ClientWriter, Arc<Activity>) {
    let socket = stream.tcp().as_raw_fd();
    let activity = Activity::new();
    let (read, write) = tokio::io::split(stream);
    let mut input = Counting::new(net.meter(Direction::FromClient, Some(traffic.clone())), Start::Frames);
    input.count(early);
    let reader = ClientReader {
        half: read,
        activity: activity.clone(),
        input,
    };
    let output = Counting::new(net.meter(Direction::ToClient, Some(traffic.clone())), Start::Response);
    let writer = ClientWriter {
        inner: Arc::new(Mutex::new(WriterState {
            half: write,
            socket,
            output,
            taken_over: false,
            activity: activity.clone(),
        })),
        for_host: true,
    };
    (reader, writer, activity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::FrameWatcher;

    const ANSWER: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";

    #[test]
    fn frames_are_followed_whatever_the_pieces() {
        let mut frames = ANSWER.to_vec();
        frames.extend_from_slice(b"\x81\x05hello");
        frames.extend_from_slice(&[0x82, 126, 0x01, 0x00]);
        frames.extend_from_slice(&[7; 256]);
        frames.extend_from_slice(&[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        frames.extend_from_slice(&[9; 65536]);
        for piece in [1, 3, 7, 100, frames.len()] {
            let mut t = FrameWatcher::new(Start::Response);
            for chunk in frames.chunks(piece) {
                t.feed(chunk);
            }
            assert!(t.between_frames(), "pieces of {piece}");
            // Half a frame is not a boundary.
            t.feed(b"\x81\x05hel");
            assert!(!t.between_frames());
            t.feed(b"lo");
            assert!(t.between_frames());
            t.feed(b"\x82");
            assert!(!t.between_frames());
        }
    }

    #[test]
    fn no_boundary_before_the_upgrade_or_without_one() {
        let mut t = FrameWatcher::new(Start::Response);
        t.feed(&ANSWER[..20]);
        assert!(!t.between_frames());
        let mut refused = FrameWatcher::new(Start::Response);
        refused.feed(b"HTTP/1.1 426 Upgrade Required\r\n\r\n");
        assert!(!refused.upgraded() && !refused.between_frames());
    }
}
