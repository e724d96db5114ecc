use super::*;
use crate::deflate::{Deflater, Inflater};
use crate::frame::OpCode;
use crate::testing::{cat, client_frames, client_frames_rsv, frame, zframe};
use std::io::{Read, Write};

/// A scripted peer: reads come from `input`, at most `chunk` bytes at a
/// time (to split frames anywhere), with `WouldBlock` once at `stall`;
/// writes go to `output` (counted, with the flushes), or fail when
/// `broken`. A `silent` peer times out (`WouldBlock`) at the end of its
/// input instead of closing the stream.
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
    writes: usize,
    flushes: usize,
    broken: bool,
    /// The calls made, in order.
    calls: Vec<Call>,
    /// The read at this position fails once with [`GoingAway`], as a
    /// gateway session's stream does when the gateway drains.
    going_away: Option<usize>,
}

/// A call the session made on the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    Read,
    Write,
    Flush,
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
            writes: 0,
            flushes: 0,
            broken: false,
            calls: Vec::new(),
            going_away: None,
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
        self.calls.push(Call::Read);
        if self.going_away == Some(self.pos) {
            self.going_away = None;
            return Err(io::Error::other(crate::GoingAway));
        }
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
        if self.broken {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        self.writes += 1;
        self.calls.push(Call::Write);
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        if self.broken {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        self.flushes += 1;
        self.calls.push(Call::Flush);
        Ok(())
    }
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
    // 65533: a frame whose header and payload filled the write buffer the
    // session once had (64 KiB) but for one byte.
    let sizes = [0usize, 1, 125, 126, 65535, 65536, (64 << 10) - 3, 200_003];
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
    let (len, capacity) = stalled.session.partial_buffer().expect("message in progress");
    assert_eq!(len, 10);
    assert!(capacity <= crate::session::FIRST_ALLOCATION as usize, "{capacity}");
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
    WebSocket::with_extensions(
        Mock::new(input, chunk),
        Vec::new(),
        Role::Client,
        &config.limits,
        Some(&params),
    )
}

use crate::deflate::test_params as params;

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

#[test]
fn each_frame_is_one_write_and_only_control_frames_flush_at_once() {
    let input = cat(&[frame(true, 9, b"ping"), frame(true, 1, b"text")]);
    let mut ws = ws(input, 1, ClientConfig::default());
    let calls = |ws: &WebSocket<Mock>| (ws.get_ref().writes, ws.get_ref().flushes);
    // Data messages are written, not flushed; a Ping flushes.
    ws.send(Message::Text("small".into())).unwrap();
    assert_eq!(calls(&ws), (1, 0));
    // A large one is its header, then its payload from its own buffer.
    ws.send(Message::Binary(vec![9; 300_003])).unwrap();
    assert_eq!(calls(&ws), (3, 0));
    ws.send(Message::Ping(b"p".to_vec())).unwrap();
    assert_eq!(calls(&ws), (4, 1));
    // Nothing to flush before the read; the Pong answering a Ping is
    // written and flushed at once; a data message received writes nothing.
    assert_eq!(ws.recv().unwrap(), Message::Ping(b"ping".to_vec()));
    assert_eq!(calls(&ws), (5, 2));
    assert_eq!(ws.recv().unwrap(), Message::Text("text".into()));
    assert_eq!(calls(&ws), (5, 2));
    let sent = client_frames(&ws.get_ref().output);
    assert_eq!(sent.len(), 4);
    assert_eq!(sent[1], (OpCode::Binary, vec![9; 300_003]));
    // The Close of `close`, flushed, then the end of stream.
    assert_eq!(ws.close(1000, "").unwrap_err().kind(), ErrorKind::ConnectionClosed);
    assert_eq!(calls(&ws), (6, 3));
}

#[test]
fn messages_sent_in_a_row_are_flushed_once_before_the_read() {
    let echoes: Vec<Vec<u8>> = (0..32u8).map(|i| frame(true, 2, &[i; 16])).collect();
    let mut ws = ws(cat(&echoes), 1 << 16, ClientConfig::default());
    for i in 0..32u8 {
        ws.send(Message::Binary(vec![i; 16])).unwrap();
    }
    assert_eq!(ws.get_ref().flushes, 0);
    assert_eq!(ws.recv().unwrap(), Message::Binary(vec![0; 16]));
    // 32 writes, then one flush, and only then the read that waits.
    let mut expected = vec![Call::Write; 32];
    expected.extend([Call::Flush, Call::Read]);
    assert_eq!(ws.get_ref().calls, expected);
    // The rest came with that read: no more reads, no more flushes.
    for i in 1..32u8 {
        assert_eq!(ws.recv().unwrap(), Message::Binary(vec![i; 16]));
    }
    assert_eq!(ws.get_ref().calls.len(), 34);
    // In order, every one.
    let sent = client_frames(&ws.get_ref().output);
    assert_eq!(sent.len(), 32);
    for (i, (opcode, payload)) in sent.into_iter().enumerate() {
        assert_eq!((opcode, payload), (OpCode::Binary, vec![i as u8; 16]));
    }
}

#[test]
fn what_was_sent_is_flushed_before_every_wait() {
    // recv_once and the close handshake's reads flush first too, and an
    // explicit flush does what the next wait would have.
    let input = cat(&[frame(true, 1, b"a"), frame(true, 8, &1000u16.to_be_bytes())]);
    let mut ws = ws(input, 100, ClientConfig::default());
    ws.send(Message::Text("x".into())).unwrap();
    assert_eq!(ws.recv_once().unwrap(), Some(Message::Text("a".into())));
    assert_eq!(ws.get_ref().calls, [Call::Write, Call::Flush, Call::Read]);
    ws.send(Message::Text("y".into())).unwrap();
    ws.flush().unwrap();
    // Flushing again with nothing sent does nothing.
    ws.flush().unwrap();
    assert_eq!(&ws.get_ref().calls[3..], [Call::Write, Call::Flush]);
    // The peer's Close, already read: echoed and flushed at once.
    assert!(matches!(ws.recv().unwrap(), Message::Close(Some(_))));
    assert_eq!(&ws.get_ref().calls[5..], [Call::Write, Call::Flush]);
    ws.wait_closed().unwrap();
    assert_eq!(&ws.get_ref().calls[7..], [Call::Read]);
}

#[test]
fn a_flush_that_fails_ends_the_session() {
    let mut ws = ws(frame(true, 1, b"a"), 100, ClientConfig::default());
    ws.send(Message::Text("x".into())).unwrap();
    ws.get_mut().broken = true;
    assert_eq!(ws.recv().unwrap_err().kind(), ErrorKind::Io);
    assert!(!ws.can_send());
}

#[test]
fn a_pong_that_cannot_be_written_fails_the_session() {
    let mut mock = Mock::new(frame(true, 9, b"ping"), 100);
    mock.broken = true;
    let mut ws = WebSocket::from_upgraded(mock, Vec::new(), ClientConfig::default());
    assert_eq!(ws.recv().unwrap_err().kind(), ErrorKind::Io);
    assert!(!ws.can_send());
    assert_eq!(ws.recv().unwrap_err().kind(), ErrorKind::AlreadyClosed);
}

#[test]
fn a_close_is_returned_though_its_echo_cannot_be_written() {
    let mut mock = Mock::new(frame(true, 8, &1000u16.to_be_bytes()), 100);
    mock.broken = true;
    let mut ws = WebSocket::from_upgraded(mock, Vec::new(), ClientConfig::default());
    assert!(matches!(ws.recv().unwrap(), Message::Close(Some(_))));
    // Closed, not failed: the handshake is complete.
    let e = ws.recv().unwrap_err();
    assert!(e.to_string().contains("close handshake is complete"), "{e}");
    ws.wait_closed().unwrap();
    ws.close(1000, "").unwrap();
}

#[test]
fn recv_buffered_never_reads_and_recv_once_reads_once() {
    // Two messages and half of a third in the first read; the rest later.
    let third = frame(true, 1, b"third");
    let mut input = cat(&[frame(true, 1, b"one"), frame(true, 2, b"two")]);
    input.extend_from_slice(&third[..3]);
    let first_read = input.len();
    input.extend_from_slice(&third[3..]);
    let mut mock = Mock::new(input, first_read);
    mock.silent = true;
    let mut ws = WebSocket::from_upgraded(mock, Vec::new(), ClientConfig::default());
    // Nothing received yet: nothing to decode, and no read.
    assert!(!ws.has_buffered());
    assert_eq!(ws.recv_buffered().unwrap(), None);
    assert_eq!(ws.get_ref().pos, 0);
    // One read brings the first two and part of the third.
    assert_eq!(ws.recv_once().unwrap(), Some(Message::Text("one".into())));
    assert_eq!(ws.get_ref().pos, first_read);
    assert!(ws.has_buffered());
    assert_eq!(ws.recv_buffered().unwrap(), Some(Message::Binary(b"two".to_vec())));
    // The part of the third is decoded and kept, without a read.
    assert_eq!(ws.recv_buffered().unwrap(), None);
    assert!(!ws.has_buffered());
    assert_eq!(ws.get_ref().pos, first_read);
    // The next read completes it.
    assert_eq!(ws.recv_once().unwrap(), Some(Message::Text("third".into())));
    assert!(ws.can_recv());
    // A read that brings nothing new times out and leaves the session.
    assert_eq!(ws.recv_once().unwrap_err().kind(), ErrorKind::Timeout);
    assert!(ws.can_recv());
}

#[test]
fn a_server_session_over_a_stream() {
    use crate::server::{ServerConfig, parse_request};
    use crate::testing::{masked_frame, server_frames};
    let request = "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
                   Sec-WebSocket-Protocol: chat\r\n\r\n";
    let (request, _) = parse_request(request.as_bytes(), 1 << 14).unwrap().unwrap();
    let config = ServerConfig::default().subprotocol("chat");
    let accept = request.accept(&config).unwrap();
    let input = cat(&[
        masked_frame(true, 0, 1, b"hi", [1, 2, 3, 4]),
        masked_frame(true, 0, 8, &1000u16.to_be_bytes(), [5, 6, 7, 8]),
    ]);
    let mut ws = WebSocket::from_accept(Mock::new(input, 3), &accept, Vec::new(), &config);
    assert_eq!(ws.subprotocol(), Some("chat"));
    assert_eq!(ws.recv().unwrap(), Message::Text("hi".into()));
    ws.send(Message::Text("hi".into())).unwrap();
    assert!(matches!(ws.recv().unwrap(), Message::Close(Some(f)) if f.code == 1000));
    assert!(!ws.can_recv());
    let sent = server_frames(&ws.get_ref().output);
    assert_eq!(
        sent,
        vec![
            (OpCode::Text, 0, b"hi".to_vec()),
            (OpCode::Close, 0, 1000u16.to_be_bytes().to_vec())
        ]
    );
}

/// A server session over a stream that says, after the client's first
/// message, that the gateway is going away; the client answers Close
/// 1001 after that.
fn draining_session(config: &crate::server::ServerConfig) -> WebSocket<Mock> {
    use crate::server::parse_request;
    use crate::testing::masked_frame;
    let request = "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let (request, _) = parse_request(request.as_bytes(), 1 << 14).unwrap().unwrap();
    let accept = request.accept(config).unwrap();
    let hi = masked_frame(true, 0, 1, b"hi", [1, 2, 3, 4]);
    let at = hi.len();
    let input = cat(&[hi, masked_frame(true, 0, 8, &1001u16.to_be_bytes(), [5, 6, 7, 8])]);
    // Reads end at the frames' boundary, where the drain is said.
    let mut mock = Mock::new(input, at);
    mock.going_away = Some(at);
    WebSocket::from_accept(mock, &accept, Vec::new(), config)
}

#[test]
fn a_session_closes_with_1001_when_the_gateway_goes_away() {
    use crate::testing::server_frames;
    let mut ws = draining_session(&crate::server::ServerConfig::default());
    assert_eq!(ws.recv().unwrap(), Message::Text("hi".into()));
    // The drain is not an error: the SDK closes, and the client's answer
    // is what `recv` returns.
    assert!(matches!(ws.recv().unwrap(), Message::Close(Some(f)) if f.code == 1001));
    assert!(!ws.can_recv());
    let mut close = 1001u16.to_be_bytes().to_vec();
    close.extend(b"going away");
    assert_eq!(server_frames(&ws.get_ref().output), vec![(OpCode::Close, 0, close)]);
}

#[test]
fn a_plugin_that_handles_the_drain_is_told_once_and_stays_open() {
    use crate::testing::server_frames;
    let config = crate::server::ServerConfig::default().close_on_going_away(false);
    let mut ws = draining_session(&config);
    assert_eq!(ws.recv().unwrap(), Message::Text("hi".into()));
    assert_eq!(ws.recv().unwrap_err().kind(), ErrorKind::GoingAway);
    // Nothing was sent, and the session goes on.
    assert!(ws.get_ref().output.is_empty());
    assert!(ws.can_send());
    ws.send(Message::Text("last words".into())).unwrap();
    assert!(matches!(ws.recv().unwrap(), Message::Close(Some(f)) if f.code == 1001));
    let sent = server_frames(&ws.get_ref().output);
    assert_eq!(sent[0], (OpCode::Text, 0, b"last words".to_vec()));
    assert_eq!(sent[1].0, OpCode::Close);
}
