//! Following a WebSocket byte stream's frames from the outside: how many
//! data messages went by and the first Close frame's status code, for the
//! metrics and a session's totals.
//!
//! The host does not speak WebSocket (its plugins do); it only watches the
//! bytes pass. The [`FrameWatcher`] is sans-I/O: it is fed the bytes of one
//! direction of one connection in whatever pieces they come, reads each
//! frame's header (RFC 6455 §5.2, 2 to 14 bytes) and skips its payload by
//! its length, so that its cost is per frame, not per byte, and it copies
//! nothing but headers. Only the first Close frame's first two payload
//! bytes (its status code, §5.5.1) are looked at.
//!
//! A stream with an HTTP upgrade at its start is followed from after the
//! head: a request's frames once its `GET` head ended, a response's once a
//! `101` head ended. A stream whose head is anything else is not WebSocket
//! and is not followed at all.

/// Where the frames of a stream begin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// At the first byte (a client's bytes after the request head the
    /// host read).
    Frames,
    /// After an upgrade request's head (`GET ...`, up to its blank line).
    Request,
    /// After a `101 Switching Protocols` response's head.
    Response,
}

/// How long a head may be before the stream is taken not to be an
/// upgrade: well over what any server or client sends, so that a stream
/// of something else is not scanned byte by byte forever.
const MAX_HEAD: u32 = 64 * 1024;

/// The status code a Close frame without one stands for (RFC 6455 §7.1.5:
/// "No Status Rcvd").
pub(crate) const NO_STATUS: u16 = 1005;

/// What one [`FrameWatcher::feed`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Seen {
    /// Data messages completed by these bytes.
    pub(crate) messages: u64,
    /// The first Close frame's status code, when these bytes completed it.
    pub(crate) close: Option<u16>,
}

#[derive(Debug)]
enum Phase {
    /// In the HTTP head: its first bytes kept to tell what it is, and how
    /// much of `\r\n\r\n` it ends with so far.
    Head {
        start: [u8; HEAD_START],
        len: u32,
        matched: u8,
        want: Start,
    },
    /// Frames follow.
    Frames,
    /// Not WebSocket: nothing more is looked at.
    Off,
}

/// How many first bytes of a head tell an upgrade (`HTTP/1.1 101`).
const HEAD_START: usize = 12;

/// Follows one direction of a WebSocket connection (see the module).
#[derive(Debug)]
pub(crate) struct FrameWatcher {
    phase: Phase,
    /// The current frame's header, as far as it came.
    header: [u8; 14],
    header_len: u8,
    /// Payload bytes of the current frame still to skip.
    payload_left: u64,
    /// The current frame ends a data message (FIN on text, binary or
    /// continuation).
    ends_message: bool,
    /// The current frame is the first Close: its code is being read.
    close: Option<CloseRead>,
    /// The first Close frame's code, once it was complete.
    close_code: Option<u16>,
}

/// The first two payload bytes of a Close frame, as they come.
#[derive(Debug, Clone, Copy)]
struct CloseRead {
    mask: [u8; 4],
    code: [u8; 2],
    got: u8,
}

impl FrameWatcher {
    /// A watcher for a stream whose frames begin as `start` says.
    pub(crate) fn new(start: Start) -> FrameWatcher {
        let phase = match start {
            Start::Frames => Phase::Frames,
            want => Phase::Head {
                start: [0; HEAD_START],
                len: 0,
                matched: 0,
                want,
            },
        };
        FrameWatcher {
            phase,
            header: [0; 14],
            header_len: 0,
            payload_left: 0,
            ends_message: false,
            close: None,
            close_code: None,
        }
    }

    /// Whether the head is over and was an upgrade: frames follow.
    pub(crate) fn upgraded(&self) -> bool {
        matches!(self.phase, Phase::Frames)
    }

    /// Whether the bytes so far end with whole frames after the upgrade.
    pub(crate) fn between_frames(&self) -> bool {
        self.upgraded() && self.header_len == 0 && self.payload_left == 0
    }

    /// The first Close frame's status code ([`NO_STATUS`] for one without),
    /// once that frame was complete.
    #[cfg(test)]
    pub(crate) fn close_code(&self) -> Option<u16> {
        self.close_code
    }

    /// Follows `bytes`, the next of the stream.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) -> Seen {
        let mut seen = Seen::default();
        if let Phase::Head { .. } = self.phase {
            bytes = self.head(bytes);
        }
        if !matches!(self.phase, Phase::Frames) {
            return seen;
        }
        // Each turn takes a header piece or a payload piece: bounded by
        // the frames in `bytes`, and by its length.
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let take = usize::try_from(self.payload_left).map_or(bytes.len(), |left| left.min(bytes.len()));
                if let Some(close) = &mut self.close {
                    for &byte in bytes[..take].iter().take(usize::from(2 - close.got)) {
                        let i = usize::from(close.got);
                        close.code[i] = byte ^ close.mask[i];
                        close.got += 1;
                    }
                }
                self.payload_left -= take as u64;
                bytes = &bytes[take..];
                if self.payload_left == 0 {
                    self.frame_done(&mut seen);
                }
                continue;
            }
            let have = usize::from(self.header_len);
            let want = header_len(&self.header[..have]);
            let take = (want - have).min(bytes.len());
            self.header[have..have + take].copy_from_slice(&bytes[..take]);
            self.header_len += take as u8;
            bytes = &bytes[take..];
            let have = usize::from(self.header_len);
            if have == header_len(&self.header[..have]) {
                self.frame_start();
                if self.payload_left == 0 {
                    self.frame_done(&mut seen);
                }
            }
        }
        seen
    }

    /// Follows the head in `bytes`; what comes after it.
    fn head<'a>(&mut self, bytes: &'a [u8]) -> &'a [u8] {
        let Phase::Head {
            start,
            len,
            matched,
            want,
        } = &mut self.phase
        else {
            return bytes;
        };
        for (i, &byte) in bytes.iter().enumerate() {
            if let Some(slot) = start.get_mut(*len as usize) {
                *slot = byte;
            }
            *len += 1;
            let wanted = b"\r\n\r\n"[usize::from(*matched)];
            *matched = if byte == wanted {
                *matched + 1
            } else {
                u8::from(byte == b'\r')
            };
            let kept = &start[..(*len as usize).min(HEAD_START)];
            let fits = match want {
                Start::Request => b"GET ".starts_with(kept) || kept.starts_with(b"GET "),
                _ => {
                    b"HTTP/1.1 101".starts_with(kept)
                        || b"HTTP/1.0 101".starts_with(kept)
                        || kept.starts_with(b"HTTP/1.1 101")
                        || kept.starts_with(b"HTTP/1.0 101")
                }
            };
            if !fits || *len > MAX_HEAD {
                self.phase = Phase::Off;
                return &[];
            }
            if *matched == 4 {
                let upgrade = match want {
                    Start::Request => kept.starts_with(b"GET "),
                    _ => kept.len() == HEAD_START,
                };
                self.phase = if upgrade { Phase::Frames } else { Phase::Off };
                return &bytes[i + 1..];
            }
        }
        &[]
    }

    /// A frame's header is complete: what the frame is.
    fn frame_start(&mut self) {
        let header = &self.header[..usize::from(self.header_len)];
        let (first, second) = (header[0], header[1]);
        let opcode = first & 0x0f;
        let fin = first & 0x80 != 0;
        let masked = second & 0x80 != 0;
        let extended = match second & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        self.payload_left = match second & 0x7f {
            n @ 0..=125 => u64::from(n),
            _ => header[2..2 + extended]
                .iter()
                .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
        };
        self.ends_message = fin && opcode <= 2;
        self.close = None;
        if opcode == 8 && self.close_code.is_none() {
            let mut mask = [0; 4];
            if masked {
                mask.copy_from_slice(&header[2 + extended..6 + extended]);
            }
            self.close = Some(CloseRead {
                mask,
                code: [0; 2],
                got: 0,
            });
        }
    }

    /// The current frame's last byte went by.
    fn frame_done(&mut self, seen: &mut Seen) {
        if self.ends_message {
            seen.messages += 1;
        }
        if let Some(close) = self.close.take() {
            // A Close with no code (or, against §5.5.1, one byte of it)
            // carries no status.
            let code = if close.got == 2 {
                u16::from_be_bytes(close.code)
            } else {
                NO_STATUS
            };
            self.close_code = Some(code);
            seen.close = Some(code);
        }
        self.header_len = 0;
        self.ends_message = false;
    }
}

/// The whole length of the header that begins with `header`: 2 until its
/// second byte is known.
fn header_len(header: &[u8]) -> usize {
    let Some(&second) = header.get(1) else {
        return 2;
    };
    let extended = match second & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + extended + if second & 0x80 != 0 { 4 } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};

    fn bytes(frames: Vec<Frame>, mask: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, mut frame) in frames.into_iter().enumerate() {
            if mask {
                frame.header_mut().mask = Some([0x37, 0xfa, 0x21 ^ i as u8, 0x3d]);
            }
            frame.format(&mut out).unwrap();
        }
        out
    }

    /// Three messages: one text frame, a binary one of 300 bytes (a 2-byte
    /// length), a fragmented one of 70 000 (an 8-byte length) with a Ping
    /// between its fragments; then a Close 4001 and a frame after it.
    fn session() -> Vec<Frame> {
        vec![
            Frame::message("hello", OpCode::Data(Data::Text), true),
            Frame::message(vec![7u8; 300], OpCode::Data(Data::Binary), true),
            Frame::message(vec![1u8; 1000], OpCode::Data(Data::Binary), false),
            Frame::ping(b"p".to_vec()),
            Frame::message(vec![2u8; 70_000], OpCode::Data(Data::Continue), true),
            Frame::pong(Vec::new()),
            Frame::close(Some(CloseFrame {
                code: CloseCode::from(4001),
                reason: "bye".into(),
            })),
            Frame::close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            })),
        ]
    }

    /// Feeds `data` cut at `cut`, returning what was seen in all.
    fn feed_cut(watcher: &mut FrameWatcher, data: &[u8], cut: usize) -> Seen {
        let mut total = Seen::default();
        for piece in [&data[..cut], &data[cut..]] {
            let seen = watcher.feed(piece);
            total.messages += seen.messages;
            if seen.close.is_some() {
                assert!(total.close.is_none(), "the close code is told once");
                total.close = seen.close;
            }
        }
        total
    }

    #[test]
    fn messages_and_the_first_close_are_seen_at_every_cut() {
        for mask in [false, true] {
            let data = bytes(session(), mask);
            for cut in 0..=data.len() {
                let mut w = FrameWatcher::new(Start::Frames);
                let seen = feed_cut(&mut w, &data, cut);
                assert_eq!(seen.messages, 3, "cut {cut}, masked {mask}");
                assert_eq!(seen.close, Some(4001), "cut {cut}, masked {mask}");
                assert_eq!(w.close_code(), Some(4001));
                assert!(w.between_frames());
            }
            // And one byte at a time.
            let mut w = FrameWatcher::new(Start::Frames);
            let messages: u64 = data.iter().map(|b| w.feed(std::slice::from_ref(b)).messages).sum();
            assert_eq!((messages, w.close_code()), (3, Some(4001)));
        }
    }

    #[test]
    fn byte_by_byte_counts_each_message_when_its_last_byte_passes() {
        let data = bytes(session()[..2].to_vec(), true);
        let mut w = FrameWatcher::new(Start::Frames);
        let counts: Vec<u64> = data.iter().map(|b| w.feed(std::slice::from_ref(b)).messages).collect();
        // "hello" masked: a 6-byte header and 5 bytes of payload.
        assert_eq!(counts.iter().sum::<u64>(), 2);
        assert_eq!(counts[10], 1);
        assert_eq!(counts[data.len() - 1], 1);
    }

    #[test]
    fn a_close_without_a_code_is_no_status() {
        let data = bytes(vec![Frame::close(None)], true);
        let mut w = FrameWatcher::new(Start::Frames);
        assert_eq!(w.feed(&data).close, Some(NO_STATUS));
    }

    const REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n";
    const RESPONSE: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";

    #[test]
    fn frames_are_followed_from_the_end_of_an_upgrade_head() {
        for (start, head, mask) in [(Start::Request, REQUEST, true), (Start::Response, RESPONSE, false)] {
            let mut data = head.to_vec();
            data.extend(bytes(session(), mask));
            for cut in 0..=data.len() {
                let mut w = FrameWatcher::new(start);
                let seen = feed_cut(&mut w, &data, cut);
                assert_eq!((seen.messages, seen.close), (3, Some(4001)), "{start:?} cut {cut}");
            }
        }
    }

    #[test]
    fn a_stream_that_is_not_an_upgrade_is_not_followed() {
        let frames = bytes(session(), false);
        for (start, head) in [
            (Start::Response, &b"HTTP/1.1 503 Service Unavailable\r\n\r\n"[..]),
            (Start::Response, b"SSH-2.0-OpenSSH\r\n\r\n"),
            (Start::Request, b"POST / HTTP/1.1\r\n\r\n"),
        ] {
            let mut data = head.to_vec();
            data.extend_from_slice(&frames);
            let mut w = FrameWatcher::new(start);
            assert_eq!(w.feed(&data), Seen::default(), "{head:?}");
            assert!(!w.upgraded());
        }
        // Nor is a head that never ends.
        let mut w = FrameWatcher::new(Start::Request);
        w.feed(b"GET / HTTP/1.1\r\n");
        for _ in 0..70 {
            w.feed(&[b'a'; 1024]);
        }
        assert!(matches!(w.phase, Phase::Off));
    }
}
