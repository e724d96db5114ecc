//! A client's connection, as the gateway holds it while a plugin serves it.
//!
//! The plugin gets the connection's two halves as `wasi:io` streams. The
//! host keeps a handle on the write half and on the socket, because a
//! session can end with the plugin gone (a trap, a limit): the host then
//! still owes the client an ending, a Close frame 1011 when the plugin had
//! answered the upgrade, a reset when it had not.

use super::answer::is_switching_protocols;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
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
#[derive(Clone)]
pub(crate) struct ClientWriter {
    inner: Arc<Mutex<WriterState>>,
}

struct WriterState {
    half: WriteHalf<ClientStream>,
    /// The first bytes the plugin wrote, enough to tell a 101.
    start: Vec<u8>,
    activity: Arc<Activity>,
}

/// How many first bytes are kept to tell a `101` answer.
const START_LEN: usize = 12;

impl ClientWriter {
    fn state(&self) -> MutexGuard<'_, WriterState> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether what was written so far began with `101 Switching
    /// Protocols`: the client now expects WebSocket frames.
    pub(crate) fn upgraded(&self) -> bool {
        is_switching_protocols(&self.state().start)
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
        let mut state = self.state();
        let state = &mut *state;
        let poll = Pin::new(&mut state.half).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll
            && n > 0
        {
            state.activity.touch();
            if state.start.len() < START_LEN {
                let take = (START_LEN - state.start.len()).min(n);
                state.start.extend_from_slice(&buf[..take]);
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

/// A second descriptor of the client's socket, to reset the connection
/// once everything else let go of it.
pub(crate) struct ResetHandle(OwnedFd);

impl ResetHandle {
    /// Makes the socket's last close send a reset (RST) rather than a FIN:
    /// `SO_LINGER` with a zero timeout. Takes effect when this handle, the
    /// socket's last descriptor, is dropped.
    #[allow(unsafe_code)]
    pub(crate) fn reset(self) {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: the descriptor is open (we own it) and `linger` is a
        // valid `struct linger` of the size passed.
        let _ = unsafe {
            libc::setsockopt(
                self.0.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&raw const linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
    }
}

/// Splits a client's stream into what the plugin gets and what the host
/// keeps: the reader, the shared writer, the socket's reset handle, and
/// the activity of both.
pub(crate) fn split(stream: ClientStream) -> io::Result<(ClientReader, ClientWriter, ResetHandle, Arc<Activity>)> {
    let reset = ResetHandle(stream.tcp().as_fd().try_clone_to_owned()?);
    let activity = Activity::new();
    let (read, write) = tokio::io::split(stream);
    let reader = ClientReader {
        half: read,
        activity: activity.clone(),
    };
    let writer = ClientWriter {
        inner: Arc::new(Mutex::new(WriterState {
            half: write,
            start: Vec::with_capacity(START_LEN),
            activity: activity.clone(),
        })),
    };
    Ok((reader, writer, reset, activity))
}
