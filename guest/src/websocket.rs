//! The WebSocket session over an upgraded byte stream: messages out and in,
//! control frames, and the closing handshake (RFC 6455 §5-7).

use std::io::{self, Read, Write};

use crate::config::ClientConfig;
use crate::error::{Error, ErrorKind};
use crate::frame::{Decoded, FrameDecoder, FrameHeader, MAX_CONTROL_PAYLOAD, OpCode, apply_mask_at};
use crate::message::{CloseFrame, Message};
use crate::rand::MaskPool;

/// Bytes read from the stream at a time. Large enough that a big message
/// takes few reads, small enough to be cheap in a component's memory.
const READ_CHUNK: usize = 64 << 10;

/// Bytes written to the stream at a time: frames are masked into a buffer
/// of at most this size, so sending never copies a whole message.
const WRITE_CHUNK: usize = 64 << 10;

/// How many messages [`WebSocket::close`] discards while waiting for the
/// peer's Close before giving up on it.
const CLOSE_DRAIN_MESSAGES: usize = 4096;

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
    data: Vec<u8>,
    /// For text: how many bytes of `data` are known to be valid UTF-8. The
    /// rest (at most 3 bytes) is the start of a character whose remaining
    /// bytes have not arrived yet.
    validated: usize,
    fragments: usize,
}

impl Partial {
    /// Validates the newly arrived text, so that invalid UTF-8 fails the
    /// message as soon as it arrives, not when the message is complete.
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

/// A WebSocket client session over a byte stream `S` whose opening
/// handshake is done.
///
/// It is blocking: [`recv`](WebSocket::recv) reads until a message is
/// complete and [`send`](WebSocket::send) writes a whole frame. Over a
/// native `TcpStream`, bound the waiting with the stream's read timeout; a
/// read that fails (a timeout included) consumes no input, so `recv` can be
/// called again after it. The host's streams have no read timeout.
///
/// Received Pings are answered with a Pong at once and are also returned by
/// `recv` (as tungstenite does), so that an application can see them;
/// ignoring them is safe.
#[derive(Debug)]
pub struct WebSocket<S> {
    stream: S,
    max_message_size: u64,
    max_fragments: usize,
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
    masks: MaskPool,
    wbuf: Vec<u8>,
}

impl<S: Read + Write> WebSocket<S> {
    /// Wraps a stream whose handshake is done.
    ///
    /// `leftover` holds the bytes read past the handshake response (from
    /// [`read_response`](crate::handshake::read_response)); they are
    /// decoded before anything is read from `stream`.
    pub fn from_upgraded(stream: S, leftover: Vec<u8>, config: ClientConfig) -> Self {
        let rend = leftover.len();
        WebSocket {
            stream,
            max_message_size: u64::try_from(config.max_message_size).unwrap_or(u64::MAX),
            max_fragments: config.max_fragments,
            decoder: FrameDecoder::new(config.max_frame_size),
            rbuf: leftover,
            rpos: 0,
            rend,
            current: None,
            control: Vec::with_capacity(MAX_CONTROL_PAYLOAD),
            partial: None,
            state: State::Open,
            masks: MaskPool::new(),
            wbuf: Vec::new(),
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

    /// Sends a message as one frame.
    ///
    /// Sending `Message::Close` starts the closing handshake: nothing more
    /// can be sent, and `recv` returns the remaining messages up to the
    /// peer's Close. Pings and Pongs carry at most 125 bytes, close reasons
    /// 123.
    pub fn send(&mut self, message: Message) -> Result<(), Error> {
        self.check_can_send()?;
        match message {
            Message::Text(text) => self.write(OpCode::Text, text.as_bytes()),
            Message::Binary(data) => self.write(OpCode::Binary, &data),
            Message::Ping(data) => self.write_control(OpCode::Ping, &data),
            Message::Pong(data) => self.write_control(OpCode::Pong, &data),
            Message::Close(frame) => {
                let mut payload = Vec::with_capacity(MAX_CONTROL_PAYLOAD);
                if let Some(frame) = &frame {
                    frame.encode(&mut payload)?;
                }
                self.write(OpCode::Close, &payload)?;
                self.state = State::CloseSent;
                Ok(())
            }
        }
    }

    /// Closes the session: sends Close with `code` and `reason` (unless a
    /// Close was sent already), then reads until the peer's Close arrives,
    /// discarding other messages.
    ///
    /// The wait is bounded by the stream's read timeout and by a maximum
    /// number of discarded messages; an end of stream before the peer's
    /// Close is an error of kind `ConnectionClosed`.
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
        for _ in 0..CLOSE_DRAIN_MESSAGES {
            if let Message::Close(_) = self.recv()? {
                return Ok(());
            }
        }
        self.state = State::Failed;
        Err(Error::local(
            ErrorKind::Protocol,
            format!("peer sent {CLOSE_DRAIN_MESSAGES} messages after our Close without answering it"),
        ))
    }

    /// Receives the next message.
    ///
    /// Fragmented messages are reassembled; control frames between their
    /// fragments are handled and returned in between. A Ping is answered
    /// with a Pong before it is returned. When the peer's Close arrives it
    /// is answered with a Close of the same code (if we had not sent one)
    /// and returned; after it, `recv` fails with `AlreadyClosed`.
    ///
    /// A violation of the protocol by the peer sends a Close with the
    /// error's [`close_code`](Error::close_code) (best effort) and ends the
    /// session.
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
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Checks a frame header against the state of the message sequence.
    fn on_header(&mut self, header: FrameHeader) -> Result<(), Error> {
        let len = header.payload_len;
        match header.opcode {
            OpCode::Continuation => {
                let Some(partial) = &mut self.partial else {
                    return Err(Error::protocol("continuation frame without a message to continue"));
                };
                if partial.fragments >= self.max_fragments {
                    return Err(Error::capacity(format!(
                        "message in more than {} fragments (max_fragments)",
                        self.max_fragments
                    )));
                }
                partial.fragments += 1;
                check_message_size(partial.data.len() as u64, len, self.max_message_size)?;
                reserve(&mut partial.data, len);
            }
            OpCode::Text | OpCode::Binary => {
                if self.partial.is_some() {
                    return Err(Error::protocol(format!(
                        "{:?} frame inside a fragmented message",
                        header.opcode
                    )));
                }
                check_message_size(0, len, self.max_message_size)?;
                let mut data = Vec::new();
                reserve(&mut data, len);
                self.partial = Some(Partial {
                    text: header.opcode == OpCode::Text,
                    data,
                    validated: 0,
                    fragments: 1,
                });
            }
            OpCode::Close | OpCode::Ping | OpCode::Pong => self.control.clear(),
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
        partial.data.extend_from_slice(data);
        if partial.text && !data.is_empty() {
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
                    self.write(OpCode::Pong, &payload)?;
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
                    let _ = self.write(OpCode::Close, &echo);
                }
                self.state = State::Closed;
                Ok(Message::Close(frame))
            }
        }
    }

    /// Ends the session after `err`: sends a Close with its code if it has
    /// one and no Close was sent yet (best effort: the session is over
    /// either way), and returns `err`.
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
            let _ = self.write(OpCode::Close, &payload);
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
        self.write(opcode, payload)
    }

    /// Writes one final, masked frame. A failed write may have sent part of
    /// the frame, after which the stream cannot carry frames: the session
    /// is failed.
    fn write(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), Error> {
        let result = self.write_frame(opcode, payload);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    fn write_frame(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), Error> {
        let mask = self.masks.next()?;
        let header = FrameHeader {
            fin: true,
            rsv: 0,
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

/// Reserves room for a frame's payload. The frame and message limits were
/// checked, so the size is bounded; reserving it at once spares the copies
/// of growing a large message step by step.
fn reserve(data: &mut Vec<u8>, len: u64) {
    data.reserve(usize::try_from(len).unwrap_or(0));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::apply_mask;

    /// A scripted peer: reads come from `input`, at most `chunk` bytes at a
    /// time (to split frames anywhere), with `WouldBlock` once at `stall`;
    /// writes go to `output`.
    struct Mock {
        input: Vec<u8>,
        pos: usize,
        chunk: usize,
        stall: Option<usize>,
        output: Vec<u8>,
    }

    impl Mock {
        fn new(input: Vec<u8>, chunk: usize) -> Mock {
            Mock {
                input,
                pos: 0,
                chunk,
                stall: None,
                output: Vec::new(),
            }
        }
    }

    impl Read for Mock {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.stall == Some(self.pos) {
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
            assert_eq!(e.kind(), ErrorKind::Io);
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
}
