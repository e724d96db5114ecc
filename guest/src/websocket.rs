//! The WebSocket session over an upgraded byte stream: messages out and in,
//! control frames, permessage-deflate, and the closing handshake (RFC 6455
//! §5-7, RFC 7692).

use std::io;
use std::time::{Duration, Instant};

use crate::config::ClientConfig;
use crate::deflate::{DeflateParams, Deflater, Inflater};
use crate::error::{Error, ErrorKind};
use crate::frame::{Decoded, FrameDecoder, FrameHeader, MAX_CONTROL_PAYLOAD, OpCode, apply_mask_at};
use crate::handshake::Response;
use crate::message::{CloseFrame, Message};
use crate::rand::MaskPool;
use crate::transport::Transport;

/// Bytes read from the stream at a time. Large enough that a big message
/// takes few reads, small enough to be cheap in a component's memory.
const READ_CHUNK: usize = 64 << 10;

/// Bytes written to the stream at a time: frames are masked into a buffer
/// of at most this size, so sending never copies a whole message.
const WRITE_CHUNK: usize = 64 << 10;

/// The most a message's buffer takes before its bytes arrive: a header may
/// announce up to the limits, and memory should follow what was received,
/// not what was announced.
const FIRST_ALLOCATION: u64 = 64 << 10;

/// The compression buffer kept between messages: a larger one (after a
/// large message) is given back rather than held for the session's life.
const KEPT_COMPRESSION_BUFFER: usize = 1 << 20;

/// RSV1, permessage-deflate's "compressed message" bit (RFC 7692 §6).
const RSV1: u8 = 0b100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Messages flow both ways.
    Open,
    /// We sent Close and wait for the peer's; we send nothing more.
    CloseSent,
    /// Both Close frames were exchanged.
    Closed,
    /// An error ended the session.
    Failed,
}

/// A data message being received, possibly over several frames.
#[derive(Debug)]
struct Partial {
    text: bool,
    /// RSV1 was set on its first frame: `data` is the decompressed output.
    compressed: bool,
    data: Vec<u8>,
    /// For text: how many bytes of `data` are known to be valid UTF-8. The
    /// rest (at most 3 bytes) is the start of a character whose remaining
    /// bytes have not arrived yet.
    validated: usize,
    fragments: usize,
    /// Payload bytes announced by its frames so far (compressed, if it is).
    wire: u64,
}

impl Partial {
    /// Validates the newly arrived text, so that invalid UTF-8 fails the
    /// message as soon as the bytes received cannot start valid text, not
    /// when the message is complete (Autobahn 6.4.*).
    fn validate(&mut self) -> Result<(), Error> {
        let fresh = self.data.get(self.validated..).unwrap_or_default();
        match simdutf8::compat::from_utf8(fresh) {
            Ok(_) => self.validated = self.data.len(),
            // `error_len` is `None` only when the input ends inside a
            // character that may still complete.
            Err(e) if e.error_len().is_none() => self.validated += e.valid_up_to(),
            Err(_) => return Err(Error::utf8("text message is not valid UTF-8")),
        }
        Ok(())
    }
}

/// The permessage-deflate state of a session that agreed to it.
#[derive(Debug)]
struct Compression {
    deflater: Deflater,
    inflater: Inflater,
    /// The compressed form of the message being sent, reused.
    buf: Vec<u8>,
}

/// A WebSocket client session over a byte stream `S` whose opening
/// handshake is done.
///
/// It is blocking: [`recv`](WebSocket::recv) reads until a message is
/// complete and [`send`](WebSocket::send) writes a whole frame. Bound the
/// waiting with the [`Transport`]'s read timeout: a read that times out
/// fails with [`ErrorKind::Timeout`], consumes no input, and `recv` can be
/// called again after it.
///
/// Received Pings are answered with a Pong at once and are also returned by
/// `recv` (as tungstenite does), so that an application can see them;
/// ignoring them is safe.
#[derive(Debug)]
pub struct WebSocket<S> {
    stream: S,
    max_message_size: u64,
    max_fragments: usize,
    close_timeout: Duration,
    decoder: FrameDecoder,
    /// Received bytes; `rbuf[rpos..rend]` are not decoded yet.
    rbuf: Vec<u8>,
    rpos: usize,
    rend: usize,
    /// The frame whose payload is arriving.
    current: Option<FrameHeader>,
    /// The payload of the control frame being received (at most 125 bytes).
    control: Vec<u8>,
    partial: Option<Partial>,
    state: State,
    /// When the current wait of the close handshake ends.
    deadline: Option<Instant>,
    masks: MaskPool,
    wbuf: Vec<u8>,
    deflate: Option<Box<Compression>>,
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
        Self::with_extensions(stream, leftover, config, None)
    }

    /// Wraps a stream whose handshake produced `response` (from
    /// [`read_response`](crate::handshake::read_response)), with the
    /// extensions the server agreed to in it.
    pub fn from_response(stream: S, response: &Response, leftover: Vec<u8>, config: ClientConfig) -> Self {
        Self::with_extensions(stream, leftover, config, response.deflate())
    }

    fn with_extensions(stream: S, leftover: Vec<u8>, config: ClientConfig, deflate: Option<&DeflateParams>) -> Self {
        let rend = leftover.len();
        let mut decoder = FrameDecoder::new(config.max_frame_size);
        if deflate.is_some() {
            decoder.allow_rsv(RSV1);
        }
        WebSocket {
            stream,
            max_message_size: u64::try_from(config.max_message_size).unwrap_or(u64::MAX),
            max_fragments: config.max_fragments,
            close_timeout: config.close_timeout,
            decoder,
            rbuf: leftover,
            rpos: 0,
            rend,
            current: None,
            control: Vec::with_capacity(MAX_CONTROL_PAYLOAD),
            partial: None,
            state: State::Open,
            deadline: None,
            masks: MaskPool::new(),
            wbuf: Vec::new(),
            deflate: deflate.map(|params| {
                Box::new(Compression {
                    deflater: Deflater::new(params),
                    inflater: Inflater::new(params),
                    buf: Vec::new(),
                })
            }),
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

    /// The stream. Bytes received but not decoded yet are lost.
    pub fn into_inner(self) -> S {
        self.stream
    }

    /// Whether messages can still be sent (no Close was sent and no error
    /// ended the session).
    pub fn can_send(&self) -> bool {
        self.state == State::Open
    }

    /// Whether permessage-deflate is in use.
    pub fn is_compressed(&self) -> bool {
        self.deflate.is_some()
    }

    /// Sends a message as one frame (compressed under permessage-deflate).
    ///
    /// Sending `Message::Close` starts the closing handshake: nothing more
    /// can be sent, and `recv` returns the remaining messages up to the
    /// peer's Close. Pings and Pongs carry at most 125 bytes, close reasons
    /// 123; close codes must be valid
    /// ([`is_valid_close_code`](crate::is_valid_close_code)). A message
    /// refused for these reasons is not sent and the session stays open.
    pub fn send(&mut self, message: Message) -> Result<(), Error> {
        self.check_can_send()?;
        match message {
            Message::Text(text) => self.write_data(OpCode::Text, text.as_bytes()),
            Message::Binary(data) => self.write_data(OpCode::Binary, &data),
            Message::Ping(data) => self.write_control(OpCode::Ping, &data),
            Message::Pong(data) => self.write_control(OpCode::Pong, &data),
            Message::Close(frame) => {
                let mut payload = Vec::with_capacity(MAX_CONTROL_PAYLOAD);
                if let Some(frame) = &frame {
                    frame.encode(&mut payload)?;
                }
                self.write(OpCode::Close, 0, &payload)?;
                self.state = State::CloseSent;
                Ok(())
            }
        }
    }

    /// Closes the session: sends Close with `code` and `reason` (unless a
    /// Close was sent already), then reads until the peer's Close arrives,
    /// discarding other messages.
    ///
    /// The wait is bounded by [`ClientConfig::close_timeout`] (default
    /// 5 s), whatever the stream's own read timeout, which is restored
    /// afterwards. When it passes, the error is of kind
    /// [`ErrorKind::Timeout`] and the session stays closing: `close` may be
    /// called again to wait longer, or the session dropped. An end of
    /// stream before the peer's Close is an error of kind
    /// `ConnectionClosed`. After the peer's Close, `close` returns `Ok` at
    /// once.
    pub fn close(&mut self, code: u16, reason: &str) -> Result<(), Error> {
        match self.state {
            State::Open => self.send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.to_owned(),
            })))?,
            State::CloseSent => {}
            State::Closed => return Ok(()),
            State::Failed => {
                return Err(Error::already_closed("an earlier error ended the WebSocket"));
            }
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

    /// Waits for the server to close the connection, at most
    /// [`ClientConfig::close_timeout`], discarding whatever it still sends.
    ///
    /// RFC 6455 §7.1.1 has the server close the TCP connection first, and
    /// a client wait for that: call this after the close handshake (or
    /// after an error that sent a Close) before dropping the session, where
    /// it matters to the server (the Autobahn testsuite notes a client that
    /// drops first). `Ok` once the stream ended (or the peer reset it); an
    /// error of kind [`ErrorKind::Timeout`] when it did not in time. Before
    /// the close handshake it fails without reading.
    pub fn wait_closed(&mut self) -> Result<(), Error> {
        if matches!(self.state, State::Open | State::CloseSent) {
            return Err(Error::local(
                ErrorKind::Protocol,
                "the close handshake is not done: call close first",
            ));
        }
        let timeout = self.close_timeout;
        self.within_close_timeout(|ws| {
            ws.rbuf.resize(READ_CHUNK, 0);
            ws.rpos = 0;
            ws.rend = 0;
            loop {
                ws.arm_deadline()?;
                match ws.stream.read(&mut ws.rbuf) {
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
        match self.state {
            State::Open | State::CloseSent => {}
            State::Closed => return Err(Error::already_closed("the close handshake is complete")),
            State::Failed => {
                return Err(Error::already_closed("an earlier error ended the WebSocket"));
            }
        }
        // Each pass decodes input or reads more (or returns), so the loop
        // ends with the stream or the message limits.
        loop {
            let start = self.rpos;
            let decoded = self.decoder.decode(&self.rbuf[start..self.rend]);
            let (used, step) = match decoded {
                Ok((used, Decoded::NeedMore)) => (used, None),
                Ok((used, Decoded::Header(h))) => (used, Some(Ok(h))),
                Ok((used, Decoded::Payload { data, end })) => (used, Some(Err((data.len(), end)))),
                Err(e) => return Err(self.fail(e)),
            };
            self.rpos += used;
            let done = match step {
                None => {
                    self.fill()?;
                    continue;
                }
                Some(Ok(header)) => self.on_header(header).map(|()| None),
                Some(Err((len, end))) => self.on_payload(start, len, end),
            };
            match done {
                Ok(Some(message)) => return Ok(message),
                Ok(None) => {}
                Err(e) => return Err(self.fail(e)),
            }
        }
    }

    /// Reads more input once all of it was decoded.
    fn fill(&mut self) -> Result<(), Error> {
        if self.rbuf.len() != READ_CHUNK {
            // The leftover of the handshake may have any size; from now on
            // the buffer has one.
            self.rbuf.resize(READ_CHUNK, 0);
            self.rbuf.shrink_to(READ_CHUNK);
        }
        loop {
            self.arm_deadline()?;
            match self.stream.read(&mut self.rbuf) {
                Ok(0) => {
                    let was = self.state;
                    self.state = State::Failed;
                    return Err(Error::connection_closed(if was == State::CloseSent {
                        "connection closed before the peer answered our Close"
                    } else {
                        "connection closed without a Close frame"
                    }));
                }
                Ok(n) => {
                    self.rpos = 0;
                    self.rend = n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Nothing was consumed: the session stays usable, and a
                // caller whose read timed out can call `recv` again.
                Err(e) => return Err(Error::from_read(e)),
            }
        }
    }

    /// Checks a frame header against the state of the message sequence.
    fn on_header(&mut self, header: FrameHeader) -> Result<(), Error> {
        let len = header.payload_len;
        // The decoder lets RSV1 through only under permessage-deflate,
        // which defines it for the first frame of a data message alone
        // (RFC 7692 §6.1).
        let compressed = header.rsv & RSV1 != 0;
        match header.opcode {
            OpCode::Continuation => {
                let Some(partial) = &mut self.partial else {
                    return Err(Error::protocol("continuation frame without a message to continue"));
                };
                if compressed {
                    return Err(Error::protocol("RSV1 set on a continuation frame"));
                }
                if partial.fragments >= self.max_fragments {
                    return Err(Error::capacity(format!(
                        "message in more than {} fragments (max_fragments)",
                        self.max_fragments
                    )));
                }
                partial.fragments += 1;
                check_message_size(partial.wire, len, self.max_message_size)?;
                partial.wire += len;
            }
            OpCode::Text | OpCode::Binary => {
                if self.partial.is_some() {
                    return Err(Error::protocol(format!(
                        "{:?} frame inside a fragmented message",
                        header.opcode
                    )));
                }
                check_message_size(0, len, self.max_message_size)?;
                // An uncompressed final frame's size is the message's;
                // otherwise the buffer grows as the data comes.
                let first = if compressed { 0 } else { len.min(FIRST_ALLOCATION) };
                self.partial = Some(Partial {
                    text: header.opcode == OpCode::Text,
                    compressed,
                    data: Vec::with_capacity(usize::try_from(first).unwrap_or(0)),
                    validated: 0,
                    fragments: 1,
                    wire: len,
                });
            }
            OpCode::Close | OpCode::Ping | OpCode::Pong => {
                if compressed {
                    return Err(Error::protocol(format!("RSV1 set on a {:?} frame", header.opcode)));
                }
                self.control.clear();
            }
        }
        self.current = Some(header);
        Ok(())
    }

    /// Takes `len` payload bytes at `rbuf[start..]`; returns a message if
    /// they complete one.
    fn on_payload(&mut self, start: usize, len: usize, end: bool) -> Result<Option<Message>, Error> {
        let Some(header) = self.current else {
            return Err(Error::protocol("payload without a frame header"));
        };
        let data = &self.rbuf[start..start + len];
        if header.opcode.is_control() {
            self.control.extend_from_slice(data);
            if !end {
                return Ok(None);
            }
            self.current = None;
            return self.on_control(header.opcode).map(Some);
        }
        let Some(partial) = &mut self.partial else {
            return Err(Error::protocol("payload without a message"));
        };
        let max = usize::try_from(self.max_message_size).unwrap_or(usize::MAX);
        if partial.compressed {
            let Some(z) = &mut self.deflate else {
                return Err(Error::protocol("compressed message without permessage-deflate"));
            };
            z.inflater.inflate(data, &mut partial.data, max)?;
            if end && header.fin {
                z.inflater.finish(&mut partial.data, max)?;
            }
        } else {
            // Within the limits checked on the header: this frame's end
            // when it ends the message, the message limit otherwise.
            let rest = usize::try_from(self.decoder.payload_remaining()).unwrap_or(usize::MAX);
            let bound = if header.fin {
                partial.data.len().saturating_add(len).saturating_add(rest)
            } else {
                max
            };
            grow(&mut partial.data, len, bound);
            partial.data.extend_from_slice(data);
        }
        if partial.text && partial.validated < partial.data.len() {
            partial.validate()?;
        }
        if !end {
            return Ok(None);
        }
        self.current = None;
        if !header.fin {
            return Ok(None);
        }
        let Some(partial) = self.partial.take() else {
            return Ok(None);
        };
        if partial.text {
            // `validate` fails fast on bad bytes; this catches a message
            // ending inside a character. The second pass over the bytes is
            // the price of converting without `unsafe`.
            String::from_utf8(partial.data)
                .map(|text| Some(Message::Text(text)))
                .map_err(|_| Error::utf8("text message ends inside a UTF-8 character"))
        } else {
            Ok(Some(Message::Binary(partial.data)))
        }
    }

    fn on_control(&mut self, opcode: OpCode) -> Result<Message, Error> {
        let payload = self.control.clone();
        match opcode {
            OpCode::Ping => {
                // After our Close we send nothing, Pongs included (§5.5.1).
                if self.state == State::Open {
                    self.write(OpCode::Pong, 0, &payload)?;
                }
                Ok(Message::Ping(payload))
            }
            OpCode::Pong => Ok(Message::Pong(payload)),
            _ => {
                let frame = CloseFrame::parse(&payload)?;
                if self.state == State::Open {
                    // Echo the code (§5.5.1); the reason is the peer's and
                    // is not sent back. If the echo cannot be written, the
                    // peer has likely gone already: its Close is still the
                    // answer to give the caller.
                    let echo = match &frame {
                        Some(f) => f.code.to_be_bytes().to_vec(),
                        None => Vec::new(),
                    };
                    let _ = self.write(OpCode::Close, 0, &echo);
                }
                self.state = State::Closed;
                Ok(Message::Close(frame))
            }
        }
    }

    /// Ends the session after `err`: sends a Close with its code if it has
    /// one and no Close was sent yet (best effort, and without waiting for
    /// the peer's: the session is over either way), and returns `err`.
    fn fail(&mut self, err: Error) -> Error {
        if let Some(code) = err.close_code()
            && self.state == State::Open
        {
            let mut payload = code.to_be_bytes().to_vec();
            // The error's words, cut to fit, tell the peer what was wrong.
            let detail = err.to_string();
            let mut cut = detail.len().min(crate::message::MAX_CLOSE_REASON);
            while !detail.is_char_boundary(cut) {
                cut -= 1;
            }
            payload.extend_from_slice(&detail.as_bytes()[..cut]);
            let _ = self.write(OpCode::Close, 0, &payload);
        }
        self.state = State::Failed;
        err
    }

    fn check_can_send(&self) -> Result<(), Error> {
        match self.state {
            State::Open => Ok(()),
            State::CloseSent | State::Closed => Err(Error::already_closed("a Close was sent already")),
            State::Failed => Err(Error::already_closed("an earlier error ended the WebSocket")),
        }
    }

    fn write_control(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), Error> {
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(Error::local(
                ErrorKind::Capacity,
                format!("{opcode:?} of {} bytes exceeds 125", payload.len()),
            ));
        }
        self.write(opcode, 0, payload)
    }

    /// Writes a data message: compressed (RSV1) when permessage-deflate
    /// was agreed and the compressor can honour the agreed window.
    fn write_data(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), Error> {
        let Some(z) = &mut self.deflate else {
            return self.write(opcode, 0, payload);
        };
        let mut buf = std::mem::take(&mut z.buf);
        let result = match z.deflater.compress(payload, &mut buf) {
            Ok(true) => self.write(opcode, RSV1, &buf),
            Ok(false) => self.write(opcode, 0, payload),
            // The compressor's state is unknown now, and with it what the
            // peer's decompressor expects next.
            Err(e) => {
                self.state = State::Failed;
                Err(e)
            }
        };
        if let Some(z) = &mut self.deflate {
            buf.clear();
            buf.shrink_to(KEPT_COMPRESSION_BUFFER);
            z.buf = buf;
        }
        result
    }

    /// Writes one final, masked frame. A failed write may have sent part of
    /// the frame, after which the stream cannot carry frames: the session
    /// is failed.
    fn write(&mut self, opcode: OpCode, rsv: u8, payload: &[u8]) -> Result<(), Error> {
        let result = self.write_frame(opcode, rsv, payload);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    fn write_frame(&mut self, opcode: OpCode, rsv: u8, payload: &[u8]) -> Result<(), Error> {
        let mask = self.masks.next()?;
        let header = FrameHeader {
            fin: true,
            rsv,
            opcode,
            mask: Some(mask),
            payload_len: payload.len() as u64,
        };
        let mut head = [0; FrameHeader::MAX_SIZE];
        let head_len = header.encode(&mut head);
        self.wbuf.clear();
        self.wbuf.extend_from_slice(&head[..head_len]);
        // The payload is masked a piece at a time into the write buffer: the
        // caller's message stays untouched and no copy of it is made. The
        // first piece shares the buffer with the header, so small frames
        // take one write.
        let mut offset = 0;
        loop {
            let room = WRITE_CHUNK - self.wbuf.len();
            let piece = &payload[offset..payload.len().min(offset + room)];
            let at = self.wbuf.len();
            self.wbuf.extend_from_slice(piece);
            apply_mask_at(&mut self.wbuf[at..], mask, offset);
            offset += piece.len();
            self.stream.write_all(&self.wbuf)?;
            self.wbuf.clear();
            if offset == payload.len() {
                break;
            }
        }
        self.stream.flush()?;
        Ok(())
    }
}

fn check_message_size(have: u64, more: u64, max: u64) -> Result<(), Error> {
    if have.saturating_add(more) > max {
        return Err(Error::capacity(format!(
            "message of more than {max} bytes (max_message_size)"
        )));
    }
    Ok(())
}

/// Makes room for `incoming` more bytes in `data`: doubling, so that a
/// message arriving in many pieces costs few copies, but never past
/// `bound` (what the limits let the message reach) unless the bytes need it.
fn grow(data: &mut Vec<u8>, incoming: usize, bound: usize) {
    let needed = data.len().saturating_add(incoming);
    if needed <= data.capacity() {
        return;
    }
    let target = data.capacity().saturating_mul(2).min(bound).max(needed);
    data.reserve_exact(target - data.len());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::apply_mask;
    use std::io::{Read, Write};

    /// A scripted peer: reads come from `input`, at most `chunk` bytes at a
    /// time (to split frames anywhere), with `WouldBlock` once at `stall`;
    /// writes go to `output`. A `silent` peer times out (`WouldBlock`) at
    /// the end of its input instead of closing the stream.
    struct Mock {
        input: Vec<u8>,
        pos: usize,
        chunk: usize,
        stall: Option<usize>,
        silent: bool,
        timeout: Option<Duration>,
        /// Every timeout set, in order.
        timeouts: Vec<Option<Duration>>,
        output: Vec<u8>,
    }

    impl Mock {
        fn new(input: Vec<u8>, chunk: usize) -> Mock {
            Mock {
                input,
                pos: 0,
                chunk,
                stall: None,
                silent: false,
                timeout: None,
                timeouts: Vec::new(),
                output: Vec::new(),
            }
        }
    }

    impl Transport for Mock {
        fn read_timeout(&self) -> io::Result<Option<Duration>> {
            Ok(self.timeout)
        }

        fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
            assert_ne!(timeout, Some(Duration::ZERO));
            self.timeout = timeout;
            self.timeouts.push(timeout);
            Ok(())
        }
    }

    impl Read for Mock {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.stall == Some(self.pos) || (self.silent && self.pos == self.input.len()) {
                self.stall = None;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut n = self.chunk.min(buf.len()).min(self.input.len() - self.pos);
            if let Some(stall) = self.stall {
                n = n.min(stall - self.pos);
            }
            buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    impl Write for Mock {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A server frame (unmasked).
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![u8::from(fin) << 7 | opcode];
        match payload.len() {
            n @ 0..=125 => v.push(n as u8),
            n @ 126..=65535 => {
                v.push(126);
                v.extend((n as u16).to_be_bytes());
            }
            n => {
                v.push(127);
                v.extend((n as u64).to_be_bytes());
            }
        }
        v.extend_from_slice(payload);
        v
    }

    /// Decodes the client's frames from `bytes`, checking each is masked.
    fn client_frames(mut bytes: &[u8]) -> Vec<(OpCode, Vec<u8>)> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let (h, n) = FrameHeader::decode(bytes).unwrap().expect("whole header");
            assert!(h.fin);
            let len = h.payload_len as usize;
            let mut payload = bytes[n..n + len].to_vec();
            apply_mask(&mut payload, h.mask.expect("client frames are masked"));
            out.push((h.opcode, payload));
            bytes = &bytes[n + len..];
        }
        out
    }

    fn ws(input: Vec<u8>, chunk: usize, config: ClientConfig) -> WebSocket<Mock> {
        WebSocket::from_upgraded(Mock::new(input, chunk), Vec::new(), config)
    }

    #[test]
    fn leftover_is_decoded_first() {
        let mut leftover = frame(true, 1, b"first");
        leftover.extend(frame(true, 2, b"sec"));
        let stream = Mock::new(frame(true, 1, b"third"), 100);
        let mut ws = WebSocket::from_upgraded(stream, leftover, ClientConfig::default());
        assert_eq!(ws.recv().unwrap(), Message::Text("first".into()));
        assert_eq!(ws.recv().unwrap(), Message::Binary(b"sec".to_vec()));
        assert_eq!(ws.recv().unwrap(), Message::Text("third".into()));
    }

    #[test]
    fn any_split_of_a_session() {
        let mut input = Vec::new();
        input.extend(frame(false, 1, "h\u{e9}".as_bytes().split_at(2).0)); // "h" + half of é
        input.extend(frame(true, 9, b"ping"));
        input.extend(frame(false, 0, &"h\u{e9}".as_bytes()[2..]));
        input.extend(frame(true, 0, b"llo"));
        input.extend(frame(true, 2, &[]));
        input.extend(frame(true, 2, &[5; 70000]));
        input.extend(frame(true, 10, b"pong"));
        input.extend(frame(true, 8, &1000u16.to_be_bytes()));
        let expected = vec![
            Message::Ping(b"ping".to_vec()),
            Message::Text("h\u{e9}llo".into()),
            Message::Binary(vec![]),
            Message::Binary(vec![5; 70000]),
            Message::Pong(b"pong".to_vec()),
            Message::Close(Some(CloseFrame {
                code: 1000,
                reason: String::new(),
            })),
        ];
        for chunk in (1..40).chain([1000, 65536, 1 << 20]) {
            let mut ws = ws(input.clone(), chunk, ClientConfig::default());
            let got: Vec<Message> = (0..expected.len()).map(|_| ws.recv().unwrap()).collect();
            assert_eq!(got, expected, "chunk {chunk}");
            assert_eq!(ws.recv().unwrap_err().kind(), ErrorKind::AlreadyClosed);
            assert_eq!(
                client_frames(&ws.get_ref().output),
                vec![
                    (OpCode::Pong, b"ping".to_vec()),
                    (OpCode::Close, 1000u16.to_be_bytes().to_vec())
                ],
            );
        }
    }

    /// Runs `input` through a session and checks it fails with `code`, sends
    /// a Close with that code, and is closed afterwards.
    #[track_caller]
    fn violation(input: Vec<u8>, config: ClientConfig, code: u16) {
        for chunk in [1, 7, 1 << 20] {
            let mut ws = ws(input.clone(), chunk, config.clone());
            let err = loop {
                match ws.recv() {
                    Ok(Message::Close(_)) => panic!("closed normally"),
                    Ok(_) => continue,
                    Err(e) => break e,
                }
            };
            assert_eq!(err.close_code(), Some(code), "{err}");
            let sent = client_frames(&ws.get_ref().output);
            let (op, payload) = sent.last().expect("a Close was sent");
            assert_eq!(*op, OpCode::Close);
            assert_eq!(payload[..2], code.to_be_bytes());
            assert!(payload.len() <= 125);
            assert!(CloseFrame::parse(payload).is_ok());
            assert_eq!(ws.recv().unwrap_err().kind(), ErrorKind::AlreadyClosed);
            assert_eq!(
                ws.send(Message::Text("x".into())).unwrap_err().kind(),
                ErrorKind::AlreadyClosed
            );
        }
    }

    fn cat(frames: &[Vec<u8>]) -> Vec<u8> {
        frames.concat()
    }

    #[test]
    fn protocol_violations() {
        let d = ClientConfig::default;
        // Frame level.
        violation(vec![0xC1, 0x00], d(), 1002); // RSV1
        violation(vec![0x83, 0x00], d(), 1002); // reserved opcode
        violation(vec![0x81, 0x81, 1, 2, 3, 4, 5], d(), 1002); // masked
        violation(frame(false, 9, b""), d(), 1002); // fragmented ping
        violation(frame(true, 9, &[0; 126]), d(), 1002); // ping over 125
        // Sequence.
        violation(frame(true, 0, b"x"), d(), 1002); // continuation without start
        violation(cat(&[frame(false, 1, b"a"), frame(true, 2, b"b")]), d(), 1002); // new start inside
        // Close payloads.
        violation(frame(true, 8, &[3]), d(), 1002);
        violation(frame(true, 8, &1005u16.to_be_bytes()), d(), 1002);
        violation(frame(true, 8, &999u16.to_be_bytes()), d(), 1002);
        violation(frame(true, 8, &[3, 0xe8, 0xff]), d(), 1007);
        // UTF-8.
        violation(frame(true, 1, b"ok\xff"), d(), 1007);
        violation(frame(true, 1, b"\xe2\x82"), d(), 1007); // ends inside a character
        violation(cat(&[frame(false, 1, b"\xe2\x82"), frame(true, 0, b"")]), d(), 1007);
        // Limits.
        violation(frame(true, 2, &[0; 101]), d().max_frame_size(100), 1009);
        violation(
            cat(&[frame(false, 2, &[0; 60]), frame(true, 0, &[0; 41])]),
            d().max_message_size(100),
            1009,
        );
        violation(
            cat(&[
                frame(false, 2, b""),
                frame(false, 0, b""),
                frame(false, 0, b""),
                frame(true, 0, b""),
            ]),
            d().max_fragments(3),
            1009,
        );
    }

    #[test]
    fn limits_are_inclusive() {
        let input = cat(&[
            frame(false, 2, &[0; 60]),
            frame(false, 0, &[0; 40]),
            frame(true, 0, b""),
        ]);
        let config = ClientConfig::default()
            .max_message_size(100)
            .max_fragments(3)
            .max_frame_size(60);
        let mut ws = ws(input, 1 << 20, config);
        assert_eq!(ws.recv().unwrap(), Message::Binary(vec![0; 100]));
    }

    #[test]
    fn invalid_utf8_fails_before_the_message_ends() {
        // The first fragment is bad; the rest never arrives. The error must
        // come from the first fragment alone, not from the end of stream.
        let mut ws = ws(frame(false, 1, b"ab\xc0\xaf"), 1 << 20, ClientConfig::default());
        assert_eq!(ws.recv().unwrap_err().close_code(), Some(1007));
    }

    #[test]
    fn peer_close_is_echoed() {
        let mut payload = 4000u16.to_be_bytes().to_vec();
        payload.extend(b"bye");
        let mut ws = ws(frame(true, 8, &payload), 1 << 20, ClientConfig::default());
        assert_eq!(
            ws.recv().unwrap(),
            Message::Close(Some(CloseFrame {
                code: 4000,
                reason: "bye".into()
            }))
        );
        assert_eq!(
            client_frames(&ws.get_ref().output),
            vec![(OpCode::Close, 4000u16.to_be_bytes().to_vec())]
        );
        assert_eq!(ws.recv().unwrap_err().kind(), ErrorKind::AlreadyClosed);
        assert_eq!(
            ws.send(Message::Text("x".into())).unwrap_err().kind(),
            ErrorKind::AlreadyClosed
        );
        // An empty Close is answered with an empty one.
        let mut ws2 = super::tests::ws(frame(true, 8, b""), 1 << 20, ClientConfig::default());
        assert_eq!(ws2.recv().unwrap(), Message::Close(None));
        assert_eq!(client_frames(&ws2.get_ref().output), vec![(OpCode::Close, vec![])]);
    }

    #[test]
    fn close_waits_for_the_peer() {
        let input = cat(&[
            frame(true, 1, b"late"),
            frame(true, 9, b"p"),
            frame(true, 8, &1000u16.to_be_bytes()),
        ]);
        let mut ws = ws(input, 3, ClientConfig::default());
        ws.close(1000, "done").unwrap();
        let mut expected = 1000u16.to_be_bytes().to_vec();
        expected.extend(b"done");
        // The Ping that came after our Close is not answered.
        assert_eq!(client_frames(&ws.get_ref().output), vec![(OpCode::Close, expected)]);
        assert_eq!(
            ws.send(Message::Text("x".into())).unwrap_err().kind(),
            ErrorKind::AlreadyClosed
        );
        ws.close(1000, "").unwrap();
    }

    #[test]
    fn close_without_answer() {
        let mut ws = ws(Vec::new(), 1, ClientConfig::default());
        let e = ws.close(1000, "").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionClosed);
        assert!(!e.is_path_failure());
    }

    #[test]
    fn send_after_close_fails() {
        let mut ws = ws(Vec::new(), 1, ClientConfig::default());
        ws.send(Message::Close(None)).unwrap();
        assert!(!ws.can_send());
        assert_eq!(
            ws.send(Message::Binary(vec![1])).unwrap_err().kind(),
            ErrorKind::AlreadyClosed
        );
        assert_eq!(client_frames(&ws.get_ref().output), vec![(OpCode::Close, vec![])]);
    }

    #[test]
    fn eof_mid_session() {
        let mut ws = ws(frame(true, 1, b"hello")[..4].to_vec(), 1 << 20, ClientConfig::default());
        let e = ws.recv().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionClosed);
        assert!(!e.is_path_failure());
        assert_eq!(ws.recv().unwrap_err().kind(), ErrorKind::AlreadyClosed);
    }

    #[test]
    fn read_errors_are_resumable() {
        let input = frame(true, 1, b"hello");
        for stall in 0..input.len() {
            let mut mock = Mock::new(input.clone(), 2);
            mock.stall = Some(stall);
            let mut ws = WebSocket::from_upgraded(mock, Vec::new(), ClientConfig::default());
            let e = ws.recv().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Timeout);
            assert_eq!(ws.recv().unwrap(), Message::Text("hello".into()), "stall {stall}");
        }
    }

    #[test]
    fn sent_frames_are_masked_and_whole() {
        let mut ws = ws(Vec::new(), 1, ClientConfig::default());
        let sizes = [0usize, 1, 125, 126, 65535, 65536, WRITE_CHUNK - 3, 200_003];
        let mut expected = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let data: Vec<u8> = (0..n).map(|j| (j * 7 + i) as u8).collect();
            ws.send(Message::Binary(data.clone())).unwrap();
            expected.push((OpCode::Binary, data));
        }
        ws.send(Message::Text("t\u{e9}xt".into())).unwrap();
        expected.push((OpCode::Text, "t\u{e9}xt".as_bytes().to_vec()));
        ws.send(Message::Ping(vec![1; 125])).unwrap();
        expected.push((OpCode::Ping, vec![1; 125]));
        ws.send(Message::Pong(vec![])).unwrap();
        expected.push((OpCode::Pong, vec![]));
        assert_eq!(client_frames(&ws.get_ref().output), expected);
        // Masks differ from frame to frame.
        let out = &ws.get_ref().output;
        assert_ne!(out[2..6], out[6 + 4..6 + 8]);
    }

    #[test]
    fn refused_sends_leave_the_session_open() {
        let mut ws = ws(Vec::new(), 1, ClientConfig::default());
        let e = ws.send(Message::Ping(vec![0; 126])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Capacity);
        assert_eq!(e.close_code(), None);
        let e = ws
            .send(Message::Close(Some(CloseFrame {
                code: 1006,
                reason: String::new(),
            })))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol);
        let e = ws.close(1000, &"x".repeat(124)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Capacity);
        assert!(ws.can_send());
        assert!(ws.get_ref().output.is_empty());
        ws.send(Message::Text("still open".into())).unwrap();
    }

    #[test]
    fn close_timeout_bounds_the_wait() {
        let mut mock = Mock::new(Vec::new(), 100);
        mock.silent = true;
        mock.timeout = Some(Duration::from_secs(7));
        let mut ws = WebSocket::from_upgraded(mock, Vec::new(), ClientConfig::default());
        let e = ws.close(1000, "").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        assert!(e.to_string().contains("did not answer our Close"), "{e}");
        let timeouts = &ws.get_ref().timeouts;
        // Bounded by what is left of the 5 s, then the caller's 7 s back.
        assert!(timeouts.len() >= 2, "{timeouts:?}");
        for t in &timeouts[..timeouts.len() - 1] {
            assert!(t.is_some_and(|t| t <= Duration::from_secs(5)), "{timeouts:?}");
        }
        assert_eq!(ws.get_ref().timeout, Some(Duration::from_secs(7)));
        assert_eq!(
            client_frames(&ws.get_ref().output),
            vec![(OpCode::Close, 1000u16.to_be_bytes().to_vec())]
        );
        // Still closing: nothing more is sent, and close may wait again.
        assert!(!ws.can_send());
        assert_eq!(ws.close(1000, "").unwrap_err().kind(), ErrorKind::Timeout);
        assert_eq!(client_frames(&ws.get_ref().output).len(), 1);

        // A zero timeout does not read at all, but a Close already received
        // still completes the handshake.
        let mut mock = Mock::new(Vec::new(), 100);
        mock.silent = true;
        let config = ClientConfig::default().close_timeout(Duration::ZERO);
        let mut ws = WebSocket::from_upgraded(mock, Vec::new(), config.clone());
        assert_eq!(ws.close(1000, "").unwrap_err().kind(), ErrorKind::Timeout);
        assert_eq!(ws.get_ref().timeout, None);
        let leftover = frame(true, 8, &1000u16.to_be_bytes());
        let mut ws = WebSocket::from_upgraded(Mock::new(Vec::new(), 1), leftover, config);
        ws.close(1000, "").unwrap();
    }

    #[test]
    fn wait_closed_waits_for_the_end_of_stream() {
        let mut s = ws(frame(true, 8, &1000u16.to_be_bytes()), 1, ClientConfig::default());
        assert_eq!(s.wait_closed().unwrap_err().kind(), ErrorKind::Protocol);
        assert!(matches!(s.recv().unwrap(), Message::Close(_)));
        s.wait_closed().unwrap();
        // A server that keeps the connection open: a timeout.
        let mut mock = Mock::new(cat(&[frame(true, 8, b""), b"junk".to_vec()]), 1);
        mock.silent = true;
        let mut s = WebSocket::from_upgraded(mock, Vec::new(), ClientConfig::default());
        assert!(matches!(s.recv().unwrap(), Message::Close(None)));
        assert_eq!(s.wait_closed().unwrap_err().kind(), ErrorKind::Timeout);
        assert_eq!(s.get_ref().timeout, None);
        // After a protocol error, which sent a Close.
        let mut s = ws(vec![0x83, 0x00], 1 << 20, ClientConfig::default());
        assert_eq!(s.recv().unwrap_err().close_code(), Some(1002));
        s.wait_closed().unwrap();
    }

    #[test]
    fn unassigned_close_codes_are_refused() {
        for code in [1004u16, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 2000, 2999, 5000] {
            violation(frame(true, 8, &code.to_be_bytes()), ClientConfig::default(), 1002);
            let mut s = ws(Vec::new(), 1, ClientConfig::default());
            assert_eq!(s.close(code, "").unwrap_err().kind(), ErrorKind::Protocol, "{code}");
            assert!(s.can_send());
        }
    }

    #[test]
    fn memory_follows_the_data_not_the_header() {
        // A header announcing 16 MiB, then a few bytes and a stall.
        let mut input = vec![0x82, 127];
        input.extend((16u64 << 20).to_be_bytes());
        input.extend([1; 10]);
        let mut mock = Mock::new(input, 1 << 20);
        mock.silent = true;
        let mut stalled = WebSocket::from_upgraded(mock, Vec::new(), ClientConfig::default());
        assert_eq!(stalled.recv().unwrap_err().kind(), ErrorKind::Timeout);
        let partial = stalled.partial.as_ref().expect("message in progress");
        assert_eq!(partial.data.len(), 10);
        assert!(partial.data.capacity() <= FIRST_ALLOCATION as usize);
        // Fragments: growth stays within the message limit.
        let config = ClientConfig::default().max_message_size(100_000);
        let mut frames = Vec::new();
        for _ in 0..10 {
            frames.push(frame(false, if frames.is_empty() { 2 } else { 0 }, &[3; 9000]));
        }
        frames.push(frame(true, 0, &[3; 9000]));
        let mut s = ws(cat(&frames), 5000, config);
        let Message::Binary(data) = s.recv().unwrap() else {
            panic!("binary expected")
        };
        assert_eq!(data.len(), 99_000);
        assert!(data.capacity() <= 100_000, "{}", data.capacity());
    }

    /// A session with permessage-deflate agreed, and the compressor a
    /// server with the same parameters would use.
    fn deflate_ws(input: Vec<u8>, chunk: usize, params: DeflateParams, config: ClientConfig) -> WebSocket<Mock> {
        WebSocket::with_extensions(Mock::new(input, chunk), Vec::new(), config, Some(&params))
    }

    use crate::deflate::test_params as params;

    /// A server frame with RSV1 set (a compressed message's first frame).
    fn zframe(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = frame(fin, opcode, payload);
        f[0] |= 0x40;
        f
    }

    /// The client's frames with their RSV bits, checking each is masked.
    fn client_frames_rsv(mut bytes: &[u8]) -> Vec<(OpCode, u8, Vec<u8>)> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let (h, n) = FrameHeader::decode(bytes).unwrap().expect("whole header");
            let len = h.payload_len as usize;
            let mut payload = bytes[n..n + len].to_vec();
            apply_mask(&mut payload, h.mask.expect("client frames are masked"));
            out.push((h.opcode, h.rsv, payload));
            bytes = &bytes[n + len..];
        }
        out
    }

    #[test]
    fn deflate_session_any_split() {
        for (client_nct, server_nct) in [(false, false), (true, true)] {
            let p = params(client_nct, server_nct);
            // The server's compressor: its no-context-takeover is ours
            // seen from the other side.
            let mut server = Deflater::new(&DeflateParams {
                client_no_context_takeover: server_nct,
                ..p
            });
            let texts = ["Hello", "Hello", "", "h\u{e9}llo w\u{f6}rld, h\u{e9}llo w\u{f6}rld"];
            let mut input = Vec::new();
            let mut expected = Vec::new();
            for t in texts {
                let mut z = Vec::new();
                assert!(server.compress(t.as_bytes(), &mut z).unwrap());
                input.extend(zframe(true, 1, &z));
                expected.push(Message::Text(t.into()));
            }
            // A compressed message in three frames, a Ping between them.
            let big: Vec<u8> = (0..20_000u32).map(|i| (i % 7) as u8).collect();
            let mut z = Vec::new();
            assert!(server.compress(&big, &mut z).unwrap());
            let (a, rest) = z.split_at(z.len() / 3);
            let (b, c) = rest.split_at(rest.len() / 2);
            input.extend(zframe(false, 2, a));
            input.extend(frame(true, 9, b"mid"));
            input.extend(frame(false, 0, b));
            input.extend(frame(true, 0, c));
            expected.push(Message::Ping(b"mid".to_vec()));
            expected.push(Message::Binary(big));
            // An uncompressed message is fine too (RFC 7692 §6).
            input.extend(frame(true, 1, b"plain"));
            expected.push(Message::Text("plain".into()));
            for chunk in (1..20).chain([1000, 1 << 20]) {
                let mut ws = deflate_ws(input.clone(), chunk, p, ClientConfig::default());
                assert!(ws.is_compressed());
                let got: Vec<Message> = (0..expected.len()).map(|_| ws.recv().unwrap()).collect();
                assert_eq!(got, expected, "chunk {chunk}");
            }
        }
    }

    #[test]
    fn deflate_sends_compressed_messages() {
        for client_nct in [false, true] {
            let p = params(client_nct, false);
            let mut ws = deflate_ws(Vec::new(), 1, p, ClientConfig::default());
            let msgs = ["Hello", "Hello", ""];
            for m in msgs {
                ws.send(Message::Text(m.into())).unwrap();
            }
            ws.send(Message::Ping(b"p".to_vec())).unwrap();
            let frames = client_frames_rsv(&ws.get_ref().output);
            assert_eq!(frames.len(), 4);
            // The server's decompressor: the client's context setting.
            let mut server = Inflater::new(&DeflateParams {
                server_no_context_takeover: client_nct,
                ..p
            });
            for (m, (op, rsv, payload)) in msgs.iter().zip(&frames) {
                assert_eq!((*op, *rsv), (OpCode::Text, 0b100));
                let mut out = Vec::new();
                server.inflate(payload, &mut out, 1 << 20).unwrap();
                server.finish(&mut out, 1 << 20).unwrap();
                assert_eq!(out, m.as_bytes());
            }
            // RFC 7692 §7.2.3.1 and §7.2.3.2: "Hello", then with context
            // takeover a back-reference to it.
            assert_eq!(frames[0].2, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
            if !client_nct {
                assert_eq!(frames[1].2, [0xf2, 0x00, 0x11, 0x00, 0x00]);
            }
            // Control frames are never compressed.
            assert_eq!(frames[3], (OpCode::Ping, 0, b"p".to_vec()));
        }
        // A window the compressor cannot honour: long messages go as they are.
        let p = DeflateParams {
            client_max_window_bits: 8,
            ..params(false, false)
        };
        let mut ws = deflate_ws(Vec::new(), 1, p, ClientConfig::default());
        ws.send(Message::Binary(vec![5; 300])).unwrap();
        ws.send(Message::Binary(vec![5; 200])).unwrap();
        let frames = client_frames_rsv(&ws.get_ref().output);
        assert_eq!((frames[0].1, frames[0].2.len()), (0, 300));
        assert_eq!(frames[1].1, 0b100);
    }

    #[test]
    fn deflate_violations() {
        let p = params(false, false);
        let mut server = Deflater::new(&p);
        let mut z = Vec::new();
        server.compress(b"abc", &mut z).unwrap();
        let check = |input: Vec<u8>, config: ClientConfig, code: u16| {
            for chunk in [1, 1 << 20] {
                let mut ws = deflate_ws(input.clone(), chunk, p, config.clone());
                let err = loop {
                    match ws.recv() {
                        Ok(_) => continue,
                        Err(e) => break e,
                    }
                };
                assert_eq!(err.close_code(), Some(code), "{err}");
                let sent = client_frames(&ws.get_ref().output);
                assert_eq!(sent.last().unwrap().1[..2], code.to_be_bytes());
            }
        };
        // RSV1 on a continuation, on control frames; RSV2 and RSV3.
        check(
            cat(&[zframe(false, 1, &z), zframe(true, 0, b"")]),
            ClientConfig::default(),
            1002,
        );
        check(zframe(true, 9, b""), ClientConfig::default(), 1002);
        check(zframe(true, 8, b""), ClientConfig::default(), 1002);
        check(vec![0xA1, 0x00], ClientConfig::default(), 1002);
        check(vec![0x91, 0x00], ClientConfig::default(), 1002);
        // Corrupt compressed data.
        check(zframe(true, 2, &[0xff, 0xff, 0xff]), ClientConfig::default(), 1002);
        // Invalid UTF-8 after decompression.
        server.compress(b"ok\xff", &mut z).unwrap();
        check(zframe(true, 1, &z), ClientConfig::default(), 1007);
        // A bomb: 1 MiB of zeros in about a kilobyte, limit 64 KiB.
        let mut bomb_server = Deflater::new(&p);
        bomb_server.compress(&vec![0; 1 << 20], &mut z).unwrap();
        assert!(z.len() < 4096);
        check(
            zframe(true, 2, &z),
            ClientConfig::default().max_message_size(64 << 10),
            1009,
        );
        // Not negotiated: RSV1 is a protocol error.
        violation(zframe(true, 1, &z), ClientConfig::default(), 1002);
    }
}
