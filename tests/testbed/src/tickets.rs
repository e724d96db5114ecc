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
//! as a write of its own; or [`TICKET_DELAY`] after the handshake, when the
//! request has not come by then. That is a server that takes up to a
//! millisecond to send its tickets. (Without the delay, a client that keeps
//! Nagle on would wait for the Finished's ACK before sending its request,
//! and the server for the request before sending the tickets that carry
//! that ACK.)

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Duration, Sleep};

/// The longest the tickets are held after the handshake.
pub(crate) const TICKET_DELAY: Duration = Duration::from_millis(1);

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
    /// When what is held goes anyway: set when the handshake ends.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<S> LateTickets<S> {
    pub(crate) fn new(inner: S) -> Self {
        LateTickets {
            inner,
            phase: Phase::Handshake { wrote: false },
            held: Vec::new(),
            sent: 0,
            deadline: None,
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
        self.deadline = None;
        self.phase = Phase::Through;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for LateTickets<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.phase == (Phase::Handshake { wrote: true }) {
            self.phase = Phase::Holding;
        }
        // The server waits for the request here: the deadline wakes it.
        if self.phase == Phase::Held && self.deadline.as_mut().is_some_and(|d| d.as_mut().poll(cx).is_ready()) {
            // A write that cannot go now is retried at the next read or
            // write; its waker is registered.
            if let Poll::Ready(Err(e)) = self.poll_release(cx) {
                return Poll::Ready(Err(e));
            }
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LateTickets<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    /// rustls hands over a flight as one vectored write: it must reach the
    /// socket as one (written record by record, Nagle would hold all but
    /// the first behind the client's delayed ACK).
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        match this.phase {
            Phase::Handshake { .. } => {
                let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
                if n > 0 {
                    this.phase = Phase::Handshake { wrote: true };
                }
                Poll::Ready(Ok(n))
            }
            Phase::Holding if this.held.len() + total <= MAX_HELD => {
                for buf in bufs {
                    this.held.extend_from_slice(buf);
                }
                Poll::Ready(Ok(total))
            }
            Phase::Holding | Phase::Held => {
                ready!(this.poll_release(cx))?;
                Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
            }
            Phase::Through => Pin::new(&mut this.inner).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The end of the handshake flushes the tickets: they stay held.
        if self.phase == Phase::Holding && !self.held.is_empty() {
            self.phase = Phase::Held;
            self.deadline = Some(Box::pin(tokio::time::sleep(TICKET_DELAY)));
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    /// A server's handshake through [`LateTickets`]: the ClientHello read,
    /// the flight written, the Finished read, the tickets written and
    /// flushed. Returns the server's side and the client's.
    async fn through_the_handshake() -> (LateTickets<DuplexStream>, DuplexStream) {
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
        (late, client)
    }

    #[tokio::test]
    async fn what_is_written_after_the_second_read_waits_for_the_next_write() {
        let (mut late, mut client) = through_the_handshake().await;
        let mut buf = [0u8; 16];

        assert_eq!(client.read(&mut buf).await.unwrap(), 6, "only the flight went");
        assert_eq!(&buf[..6], b"flight");
        late.write_all(b"101").await.unwrap();
        let mut rest = [0u8; 10];
        client.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"tickets101");
    }

    #[tokio::test(start_paused = true)]
    async fn what_is_held_goes_after_the_delay_when_the_server_waits_to_read() {
        let (mut late, mut client) = through_the_handshake().await;
        let mut buf = [0u8; 16];
        assert_eq!(client.read(&mut buf).await.unwrap(), 6, "only the flight went");

        // The server waits for the request; the client waits for the tickets.
        let server = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            let n = late.read(&mut buf).await.unwrap();
            (late, buf[..n].to_vec())
        });
        let started = tokio::time::Instant::now();
        let mut tickets = [0u8; 7];
        client.read_exact(&mut tickets).await.unwrap();
        assert_eq!(&tickets, b"tickets");
        assert_eq!(started.elapsed(), TICKET_DELAY);
        client.write_all(b"request").await.unwrap();
        let (mut late, request) = server.await.unwrap();
        assert_eq!(request, b"request");
        late.write_all(b"101").await.unwrap();
        let mut answer = [0u8; 3];
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"101");
    }
}
