//! A client's connection, as the gateway holds it while a plugin serves it.
//!
//! The plugin gets the connection's two halves as `wasi:io` streams. The
//! host keeps a handle on the write half, and so on the socket, because a
//! session can end with the plugin gone (a trap, a limit): the host then
//! still owes the client an ending, a Close frame 1011 when the plugin had
//! answered the upgrade, a reset when it had not.

use super::answer::is_switching_protocols;
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

/// The read half, noting activity.
pub(crate) struct ClientReader {
    half: ReadHalf<ClientStream>,
    activity: Arc<Activity>,
}

impl AsyncRead for ClientReader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.half).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
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
    /// Where the plugin's output is: in its HTTP answer, or in frames.
    output: OutputTracker,
    /// The host took over the connection (the plugin is gone): what the
    /// plugin's side still tries to write is refused, so that nothing
    /// lands after the host's last bytes.
    taken_over: bool,
    activity: Arc<Activity>,
}

/// How many first bytes are kept to tell a `101` answer.
const START_LEN: usize = 12;

/// Follows the plugin's output far enough to know where a frame ends: its
/// HTTP answer up to the blank line, then each frame's header (2 to 14
/// bytes: the server's frames carry no mask, but a header is read as RFC
/// 6455 §5.2 has it) and payload length. The host may only add a Close
/// frame of its own between two frames.
#[derive(Debug, Default)]
struct OutputTracker {
    start: Vec<u8>,
    /// How much of `\r\n\r\n` the answer has ended with so far (4: the
    /// head is over, frames follow).
    head_end: usize,
    header: Vec<u8>,
    payload_left: u64,
}

impl OutputTracker {
    fn feed(&mut self, mut bytes: &[u8]) {
        if self.start.len() < START_LEN {
            let take = (START_LEN - self.start.len()).min(bytes.len());
            self.start.extend_from_slice(&bytes[..take]);
        }
        while let Some((&byte, rest)) = bytes.split_first() {
            if self.head_end < 4 {
                let want = b"\r\n\r\n"[self.head_end];
                self.head_end = if byte == want {
                    self.head_end + 1
                } else {
                    usize::from(byte == b'\r')
                };
                bytes = rest;
            } else if self.payload_left > 0 {
                let take = self.payload_left.min(bytes.len() as u64);
                self.payload_left -= take;
                bytes = &bytes[take as usize..];
            } else {
                self.header.push(byte);
                bytes = rest;
                if let Some(len) = payload_length(&self.header) {
                    self.payload_left = len;
                    self.header.clear();
                }
            }
        }
    }

    fn upgraded(&self) -> bool {
        is_switching_protocols(&self.start)
    }

    /// Whether the output ends with whole frames after a `101`.
    fn between_frames(&self) -> bool {
        self.upgraded() && self.head_end == 4 && self.header.is_empty() && self.payload_left == 0
    }
}

/// The payload length a complete frame header announces; `None` while the
/// header is not complete.
fn payload_length(header: &[u8]) -> Option<u64> {
    let second = *header.get(1)?;
    let masked = second & 0x80 != 0;
    let (extended, len) = match second & 0x7f {
        126 => (2, None),
        127 => (8, None),
        n => (0, Some(u64::from(n))),
    };
    let total = 2 + extended + if masked { 4 } else { 0 };
    if header.len() < total {
        return None;
    }
    Some(len.unwrap_or_else(|| {
        header[2..2 + extended]
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
    }))
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
        state.output.between_frames()
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
            if !for_host {
                state.output.feed(&buf[..n]);
            }
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
/// keeps: the reader, the shared writer, and the activity of both.
pub(crate) fn split(stream: ClientStream) -> (ClientReader, ClientWriter, Arc<Activity>) {
    let socket = stream.tcp().as_raw_fd();
    let activity = Activity::new();
    let (read, write) = tokio::io::split(stream);
    let reader = ClientReader {
        half: read,
        activity: activity.clone(),
    };
    let writer = ClientWriter {
        inner: Arc::new(Mutex::new(WriterState {
            half: write,
            socket,
            output: OutputTracker::default(),
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
            let mut t = OutputTracker::default();
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
        let mut t = OutputTracker::default();
        t.feed(&ANSWER[..20]);
        assert!(!t.between_frames());
        let mut refused = OutputTracker::default();
        refused.feed(b"HTTP/1.1 426 Upgrade Required\r\n\r\n");
        assert!(!refused.upgraded() && !refused.between_frames());
    }
}
