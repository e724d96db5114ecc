//! The session tickets of [`Behaviour::NagleTickets`](crate::Behaviour::NagleTickets),
//! sent once the client's request is in.
//!
//! A TLS 1.3 server sends its session tickets once it has the client's
//! Finished. Whether they reach the client before or after the client's
//! upgrade request depends on how quickly each side runs: when they come
//! after it, the client has nothing more to send, their ACK is delayed, and
//! a small `101` waits for that ACK under Nagle's algorithm. rustls behind
//! tokio-rustls is quick enough that its tickets often come first, and the
//! request carries their ACK. [`LateTickets`] makes the slow order certain:
//! it holds what the server writes after reading the client's Finished (the
//! tickets) until the server writes again (the `101`), and sends it then,
//! as a write of its own.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most bytes held back: two tickets are a few hundred bytes. Past it,
/// what is held is sent and the rest goes straight through.
const MAX_HELD: usize = 16 * 1024;

/// Where the server is in its handshake, as its reads and writes show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Before the server's first flight (`wrote`: it has been written).
    Handshake { wrote: bool },
    /// The server read after its flight (the client's Finished): what it
    /// writes now is held.
    Holding,
    /// The handshake ended with bytes held: they go before the next write.
    Held,
    /// Everything goes straight through.
    Through,
}

/// A server-side transport under TLS that holds the server's session
/// tickets back until its next write (see the module's documentation).
pub(crate) struct LateTickets<S> {
    inner: S,
    phase: Phase,
    held: Vec<u8>,
    /// How much of `held` has been sent.
    sent: usize,
}

impl<S> LateTickets<S> {
    pub(crate) fn new(inner: S) -> Self {
        LateTickets {
            inner,
            phase: Phase::Handshake { wrote: false },
            held: Vec::new(),
            sent: 0,
        }
    }
}

impl<S: AsyncWrite + Unpin> LateTickets<S> {
    /// Sends what is held, then lets everything through.
    fn poll_release(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Each round sends at least one byte or returns.
        while self.sent < self.held.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.held = Vec::new();
        self.phase = Phase::Through;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LateTickets<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.phase == (Phase::Handshake { wrote: true }) {
            self.phase = Phase::Holding;
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LateTickets<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match this.phase {
            Phase::Handshake { .. } => {
                let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
                if n > 0 {
                    this.phase = Phase::Handshake { wrote: true };
                }
                Poll::Ready(Ok(n))
            }
            Phase::Holding if this.held.len() + buf.len() <= MAX_HELD => {
                this.held.extend_from_slice(buf);
                Poll::Ready(Ok(buf.len()))
            }
            Phase::Holding | Phase::Held => {
                ready!(this.poll_release(cx))?;
                Pin::new(&mut this.inner).poll_write(cx, buf)
            }
            Phase::Through => Pin::new(&mut this.inner).poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The end of the handshake flushes the tickets: they stay held.
        if self.phase == Phase::Holding && !self.held.is_empty() {
            self.phase = Phase::Held;
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_release(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn what_is_written_after_the_second_read_waits_for_the_next_write() {
        let (server, mut client) = tokio::io::duplex(1024);
        let mut late = LateTickets::new(server);
        let mut buf = [0u8; 16];

        client.write_all(b"hello").await.unwrap();
        assert_eq!(late.read(&mut buf).await.unwrap(), 5);
        late.write_all(b"flight").await.unwrap();
        client.write_all(b"finished").await.unwrap();
        assert_eq!(late.read(&mut buf).await.unwrap(), 8);
        late.write_all(b"tickets").await.unwrap();
        late.flush().await.unwrap();

        assert_eq!(client.read(&mut buf).await.unwrap(), 6, "only the flight went");
        assert_eq!(&buf[..6], b"flight");
        late.write_all(b"101").await.unwrap();
        let mut rest = [0u8; 10];
        client.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"tickets101");
    }
}
