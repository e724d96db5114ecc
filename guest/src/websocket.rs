//! The blocking WebSocket session over an upgraded byte stream: the reads,
//! the writes and the timeouts around the sans-I/O
//! [`Session`](crate::session::Session), which has the protocol (RFC 6455
//! §5-7, RFC 7692).

use std::io;
use std::time::{Duration, Instant};

use crate::config::{ClientConfig, Limits};
use crate::deflate::DeflateParams;
use crate::error::{Error, ErrorKind};
use crate::handshake::Response;
use crate::message::{CloseFrame, Message};
use crate::server::{Accept, ServerConfig};
use crate::session::{Role, Session, State, ended};
use crate::transport::{GoingAway, Transport};

#[cfg(test)]
mod tests;

/// A WebSocket session over a byte stream `S` whose opening handshake is
/// done, as the client ([`client`](crate::client),
/// [`WebSocket::from_response`]) or as the server
/// ([`accept`](crate::server::accept), [`WebSocket::from_accept`]). The
/// role decides the masking (a client masks what it sends and refuses
/// masked frames; a server sends unmasked and requires masked frames,
/// failing the session with 1002 otherwise); everything else is the same.
///
/// It is blocking: [`recv`](WebSocket::recv) reads until a message is
/// complete and [`send`](WebSocket::send) writes a whole frame to the
/// stream in one write. Bound the waiting with the [`Transport`]'s read
/// timeout: a read that times out fails with [`ErrorKind::Timeout`],
/// consumes no input, and `recv` can be called again after it.
///
/// Writes are batched: `send` of a text or binary message does not flush
/// the stream, so that messages sent in a row reach the stream's buffer
/// (the host's streams keep up to 64 KiB) and leave it together. The
/// stream is flushed before anything waits for the peer (every read, so
/// `recv`, `recv_once`, `close`, `wait_closed` and a
/// [`Poller`](crate::Poller)'s wait), after each control frame (a Ping,
/// Pong or Close, sent or answered: they are never held back), and by
/// [`flush`](WebSocket::flush). A plugin that waits otherwise (a sleep,
/// its own `wasi:io` poll) calls `flush` first. Order is kept: a flush
/// writes everything sent before it.
///
/// Received Pings are answered with a Pong at once and are also returned by
/// `recv` (as tungstenite does), so that an application can see them;
/// ignoring them is safe.
#[derive(Debug)]
pub struct WebSocket<S> {
    stream: S,
    session: Session,
    close_timeout: Duration,
    /// Received bytes; `rbuf[rpos..rend]` are not decoded yet.
    rbuf: Vec<u8>,
    rpos: usize,
    rend: usize,
    /// When the current wait of the close handshake ends.
    deadline: Option<Instant>,
    /// The subprotocol agreed in the handshake.
    subprotocol: Option<String>,
    /// Frames were written to the stream since its last flush.
    unflushed: bool,
    /// Whether the stream's [`GoingAway`] is answered with Close 1001
    /// (else it is reported).
    close_on_going_away: bool,
}

impl<S: Transport> WebSocket<S> {
    /// Wraps a stream whose handshake is done, without extensions.
    ///
    /// `leftover` holds the bytes read past the handshake response (from
    /// [`read_response`](crate::handshake::read_response)); they are
    /// decoded before anything is read from `stream`. When the request
    /// offered permessage-deflate, use [`WebSocket::from_response`], which
    /// knows whether the server accepted it.
    pub fn from_upgraded(stream: S, leftover: Vec<u8>, config: ClientConfig) -> Self {
        Self::with_extensions(stream, leftover, Role::Client, &config.limits, None)
    }

    /// Wraps a stream whose handshake produced `response` (from
    /// [`read_response`](crate::handshake::read_response)), with the
    /// extensions the server agreed to in it.
    pub fn from_response(stream: S, response: &Response, leftover: Vec<u8>, config: ClientConfig) -> Self {
        let mut ws = Self::with_extensions(stream, leftover, Role::Client, &config.limits, response.deflate());
        ws.subprotocol = response.subprotocol().map(str::to_owned);
        ws
    }

    /// The server's session over a stream on which `accept` (from
    /// [`UpgradeRequest::accept`](crate::server::UpgradeRequest::accept))
    /// was written, with the limits of `config` and the extensions agreed
    /// in `accept`. `leftover` holds the bytes the client sent past its
    /// request head (none, from the wsgate host).
    pub fn from_accept(stream: S, accept: &Accept, leftover: Vec<u8>, config: &ServerConfig) -> Self {
        let mut ws = Self::with_extensions(stream, leftover, Role::Server, &config.limits, accept.deflate());
        ws.subprotocol = accept.subprotocol().map(str::to_owned);
        ws.close_on_going_away = config.close_on_going_away;
        ws
    }

    fn with_extensions(
        stream: S,
        leftover: Vec<u8>,
        role: Role,
        limits: &Limits,
        deflate: Option<&DeflateParams>,
    ) -> Self {
        let rend = leftover.len();
        WebSocket {
            stream,
            session: Session::new(role, limits, deflate),
            close_timeout: limits.close_timeout,
            rbuf: leftover,
            rpos: 0,
            rend,
            deadline: None,
            subprotocol: None,
            unflushed: false,
            close_on_going_away: true,
        }
    }

    /// The stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The stream, mutably (to set timeouts, say). Reading or writing it
    /// directly corrupts the session.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// The stream. Bytes received but not decoded yet are lost; frames
    /// sent and not flushed are in the stream's buffer (flush it).
    pub fn into_inner(self) -> S {
        self.stream
    }

    /// Whether messages can still be sent (no Close was sent and no error
    /// ended the session).
    pub fn can_send(&self) -> bool {
        self.session.state() == State::Open
    }

    /// Whether messages can still be received: the peer's Close has not
    /// arrived and no error ended the session.
    pub fn can_recv(&self) -> bool {
        matches!(self.session.state(), State::Open | State::CloseSent)
    }

    /// The subprotocol the handshake agreed on, if any.
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }

    /// Whether permessage-deflate is in use.
    pub fn is_compressed(&self) -> bool {
        self.session.is_compressed()
    }

    /// Whether bytes were received that are not decoded yet: then
    /// [`recv_buffered`](WebSocket::recv_buffered) has work to do without
    /// reading.
    pub fn has_buffered(&self) -> bool {
        self.rpos < self.rend
    }

    /// Sends a message as one frame (compressed under permessage-deflate).
    ///
    /// Sending `Message::Close` starts the closing handshake: nothing more
    /// can be sent, and `recv` returns the remaining messages up to the
    /// peer's Close. Pings and Pongs carry at most 125 bytes, close reasons
    /// 123; close codes must be valid
    /// ([`is_valid_close_code`](crate::is_valid_close_code)). A message
    /// refused for these reasons is not sent and the session stays open.
    ///
    /// A text or binary message is written to the stream and not flushed
    /// (see the batching of [`WebSocket`]): it leaves with the
    /// next flush, at the latest before the next wait for the peer. A
    /// control frame is flushed at once, with everything sent before it.
    pub fn send(&mut self, message: Message) -> Result<(), Error> {
        let urgent = matches!(message, Message::Ping(_) | Message::Pong(_) | Message::Close(_));
        let payload = self.session.send_split(message)?;
        self.write_frames(payload.as_deref(), urgent)
    }

    /// Flushes the stream: every frame sent so far is handed on (for the
    /// host's streams: to the host, which writes it without further
    /// waiting). Without anything sent since the last flush, it does
    /// nothing. A flush that fails ends the session, as a failed write
    /// does.
    pub fn flush(&mut self) -> Result<(), Error> {
        if !self.unflushed {
            return Ok(());
        }
        self.unflushed = false;
        let flushed = self.stream.flush();
        self.session.wrote(flushed)
    }

    /// Closes the session: sends Close with `code` and `reason` (unless a
    /// Close was sent already), then reads until the peer's Close arrives,
    /// discarding other messages.
    ///
    /// The wait is bounded by [`Limits::close_timeout`] (default
    /// 5 s), whatever the stream's own read timeout, which is restored
    /// afterwards. When it passes, the error is of kind
    /// [`ErrorKind::Timeout`] and the session stays closing: `close` may be
    /// called again to wait longer, or the session dropped. An end of
    /// stream before the peer's Close is an error of kind
    /// `ConnectionClosed`. After the peer's Close, `close` returns `Ok` at
    /// once.
    pub fn close(&mut self, code: u16, reason: &str) -> Result<(), Error> {
        match self.session.state() {
            State::Open => self.send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.to_owned(),
            })))?,
            State::CloseSent => {}
            State::Closed => return Ok(()),
            State::Failed => return Err(ended()),
        }
        let timeout = self.close_timeout;
        self.within_close_timeout(|ws| {
            loop {
                match ws.recv() {
                    Ok(Message::Close(_)) => return Ok(()),
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::Timeout => {
                        return Err(Error::timeout(
                            format!("the peer did not answer our Close within {timeout:?}"),
                            None,
                        ));
                    }
                    Err(e) => return Err(e),
                }
            }
        })
    }

    /// Waits for the peer to close the connection, at most
    /// [`Limits::close_timeout`], discarding whatever it still sends.
    ///
    /// RFC 6455 §7.1.1 has the server close the TCP connection first, and
    /// a client wait for that: call this after the close handshake (or
    /// after an error that sent a Close) before dropping the session, where
    /// it matters to the server (the Autobahn testsuite notes a client that
    /// drops first). `Ok` once the stream ended (or the peer reset it); an
    /// error of kind [`ErrorKind::Timeout`] when it did not in time. Before
    /// the close handshake it fails without reading. A server does not need
    /// it: it closes the connection first, by dropping the session.
    pub fn wait_closed(&mut self) -> Result<(), Error> {
        if matches!(self.session.state(), State::Open | State::CloseSent) {
            return Err(Error::local(
                ErrorKind::Protocol,
                "the close handshake is not done: call close first",
            ));
        }
        let timeout = self.close_timeout;
        self.flush()?;
        self.within_close_timeout(|ws| {
            ws.rpos = 0;
            ws.rend = 0;
            loop {
                ws.arm_deadline()?;
                match ws.stream.read_chunk(&mut ws.rbuf) {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                        ) =>
                    {
                        return Ok(());
                    }
                    Err(e) => {
                        return Err(match Error::from_read(e) {
                            e if e.kind() == ErrorKind::Timeout => Error::timeout(
                                format!("the server did not close the connection within {timeout:?}"),
                                None,
                            ),
                            e => e,
                        });
                    }
                }
            }
        })
    }

    /// Runs `wait` with reads bounded by the close timeout, restoring the
    /// stream's read timeout afterwards.
    fn within_close_timeout(&mut self, wait: impl FnOnce(&mut Self) -> Result<(), Error>) -> Result<(), Error> {
        let previous = self.stream.read_timeout()?;
        // A timeout too large for the clock is no bound at all.
        self.deadline = Instant::now().checked_add(self.close_timeout);
        let result = wait(self);
        self.deadline = None;
        let restored = self.stream.set_read_timeout(previous);
        result?;
        Ok(restored?)
    }

    /// Before a read in the close handshake: bounds it by what is left of
    /// the close timeout, or fails if nothing is.
    fn arm_deadline(&mut self) -> Result<(), Error> {
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::timeout("close timeout", None));
            }
            self.stream.set_read_timeout(Some(left))?;
        }
        Ok(())
    }

    /// Receives the next message.
    ///
    /// Fragmented messages are reassembled (and decompressed); control
    /// frames between their fragments are handled and returned in between.
    /// A Ping is answered with a Pong before it is returned. When the
    /// peer's Close arrives it is answered with a Close of the same code
    /// (if we had not sent one) and returned; after it, `recv` fails with
    /// `AlreadyClosed`.
    ///
    /// A violation of the protocol by the peer sends a Close with the
    /// error's [`close_code`](Error::close_code) (best effort, without
    /// waiting for the peer) and ends the session. A read that times out
    /// (the [`Transport`]'s read timeout) fails with
    /// [`ErrorKind::Timeout`] and leaves the session as it was.
    pub fn recv(&mut self) -> Result<Message, Error> {
        // Each pass decodes input or reads more (or returns), so the loop
        // ends with the stream or the message limits.
        loop {
            if let Some(message) = self.recv_buffered()? {
                return Ok(message);
            }
            self.fill()?;
        }
    }

    /// Decodes the bytes received already and returns the message they
    /// complete, if any, without reading from the stream: `Ok(None)` when
    /// they end inside a message (they are then all decoded, and kept as
    /// its beginning). Answers Pings and Closes, and fails on violations,
    /// as [`recv`](WebSocket::recv) does.
    ///
    /// With [`recv_once`](WebSocket::recv_once), the pieces of an event loop
    /// over several sessions that never waits on a stream that has nothing
    /// to read (see `select` in the wasm32 build).
    pub fn recv_buffered(&mut self) -> Result<Option<Message>, Error> {
        match self.session.read(&self.rbuf[self.rpos..self.rend]) {
            Ok((used, None)) => {
                self.rpos += used;
                Ok(None)
            }
            Ok((used, Some(message))) => {
                self.rpos += used;
                // A Pong that cannot be written fails the session; the
                // echo of a Close is best effort, the peer having likely
                // gone already: its Close is still the answer to give the
                // caller.
                match (self.write_out(true), message) {
                    (Ok(()), message) | (Err(_), message @ Message::Close(_)) => Ok(Some(message)),
                    (Err(e), _) => Err(e),
                }
            }
            Err(e) => {
                // The Close that reports a violation is best effort.
                let _ = self.write_out(true);
                Err(e)
            }
        }
    }

    /// Returns the next message if the bytes received already complete one;
    /// otherwise reads the stream once (one read, which waits only until
    /// some bytes are there) and returns the message those complete, if
    /// any. When the stream is known to be readable (its pollable is ready),
    /// this does not wait.
    pub fn recv_once(&mut self) -> Result<Option<Message>, Error> {
        if let Some(message) = self.recv_buffered()? {
            return Ok(Some(message));
        }
        self.fill()?;
        self.recv_buffered()
    }

    /// Reads more input once all of it was decoded, after flushing what
    /// was sent: the peer may be waiting for it.
    fn fill(&mut self) -> Result<(), Error> {
        debug_assert_eq!(self.rpos, self.rend, "a read before the input was decoded");
        self.flush()?;
        // The stream may replace the buffer (see `Transport::read_chunk`).
        self.rpos = 0;
        self.rend = 0;
        loop {
            self.arm_deadline()?;
            match self.stream.read_chunk(&mut self.rbuf) {
                Ok(0) => return Err(self.session.end_of_stream()),
                Ok(n) => {
                    self.rend = n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Nothing was read: the caller decodes nothing and reads
                // again (a `recv`), or waits again (a poller).
                Err(e) if GoingAway::is(&e) => return self.going_away(),
                // Nothing was consumed: the session stays usable, and a
                // caller whose read timed out can call `recv` again.
                Err(e) => return Err(Error::from_read(e)),
            }
        }
    }

    /// The gateway is going away: Close 1001 unless the plugin handles it,
    /// once, while the session is open; nothing when it is closing already.
    fn going_away(&mut self) -> Result<(), Error> {
        if self.session.state() != State::Open {
            return Ok(());
        }
        if !self.close_on_going_away {
            return Err(Error::going_away());
        }
        self.send(Message::Close(Some(CloseFrame {
            code: 1001,
            reason: "going away".to_owned(),
        })))
    }

    /// Writes what the session queued (a message, a Pong, a Close) with one
    /// `write_all`, so that a frame reaches the stream in one piece; flushes
    /// when `urgent` (a control frame).
    fn write_out(&mut self, urgent: bool) -> Result<(), Error> {
        self.write_frames(None, urgent)
    }

    /// [`write_out`](WebSocket::write_out), then the payload the last
    /// frame's header announced, when the session left it out (a large
    /// message, written from its own buffer).
    fn write_frames(&mut self, payload: Option<&[u8]>, urgent: bool) -> Result<(), Error> {
        let out = self.session.output();
        if out.is_empty() {
            return Ok(());
        }
        let written = self
            .stream
            .write_all(out)
            .and_then(|()| payload.map_or(Ok(()), |p| self.stream.write_all(p)));
        self.session.wrote(written)?;
        self.unflushed = true;
        if urgent { self.flush() } else { Ok(()) }
    }
}
