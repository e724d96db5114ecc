//! The sans-I/O core on its own: bytes handed in, messages and output
//! bytes out, no stream anywhere.

use super::*;
use crate::config::ClientConfig;
use crate::message::CloseFrame;
use crate::testing::{cat, client_frames, frame};

/// Frames the client sent: opcode and unmasked payload.
type Sent = Vec<(OpCode, Vec<u8>)>;

fn session(config: &ClientConfig) -> Session {
    Session::new(Role::Client, &config.limits, None)
}

/// Feeds `input` to `s` in pieces of `chunk` bytes, as a driver would:
/// each piece until it is used up, up to the peer's Close. Returns the
/// messages and, after each, the frames it queued (the output is then
/// written and emptied).
fn feed(s: &mut Session, input: &[u8], chunk: usize) -> Vec<(Message, Sent)> {
    let mut got = Vec::new();
    for mut piece in input.chunks(chunk) {
        loop {
            let (used, message) = s.read(piece).unwrap();
            piece = &piece[used..];
            let Some(message) = message else {
                assert!(piece.is_empty(), "no message, yet input left");
                assert!(s.output().is_empty());
                break;
            };
            got.push((message, client_frames(s.output())));
            s.wrote(Ok(())).unwrap();
            if s.state() == State::Closed {
                return got;
            }
        }
    }
    got
}

#[test]
fn bytes_in_messages_out_any_split() {
    let e_acute = "\u{e9}".as_bytes();
    let input = cat(&[
        frame(false, 1, &[b'h', e_acute[0]]),
        frame(true, 9, b"ping"),
        frame(true, 0, &[e_acute[1], b'!']),
        frame(true, 2, &[7; 300]),
        frame(true, 10, b"pong"),
        frame(true, 8, &4000u16.to_be_bytes()),
    ]);
    let expected = vec![
        (Message::Ping(b"ping".to_vec()), vec![(OpCode::Pong, b"ping".to_vec())]),
        (Message::Text("h\u{e9}!".into()), vec![]),
        (Message::Binary(vec![7; 300]), vec![]),
        (Message::Pong(b"pong".to_vec()), vec![]),
        (
            Message::Close(Some(CloseFrame {
                code: 4000,
                reason: String::new(),
            })),
            vec![(OpCode::Close, 4000u16.to_be_bytes().to_vec())],
        ),
    ];
    for chunk in [1, 2, 3, 5, 64, input.len()] {
        let mut s = session(&ClientConfig::default());
        assert_eq!(feed(&mut s, &input, chunk), expected, "chunk {chunk}");
        assert_eq!(s.state(), State::Closed);
        assert_eq!(s.read(b"").unwrap_err().kind(), ErrorKind::AlreadyClosed);
    }
}

#[test]
fn read_stops_at_the_end_of_a_message() {
    let first = frame(true, 1, b"one");
    let input = cat(&[first.clone(), frame(true, 1, b"two")]);
    let mut s = session(&ClientConfig::default());
    assert_eq!(
        s.read(&input).unwrap(),
        (first.len(), Some(Message::Text("one".into())))
    );
    assert_eq!(
        s.read(&input[first.len()..]).unwrap(),
        (input.len() - first.len(), Some(Message::Text("two".into())))
    );
    // Nothing left, or half a header: all used, nothing out.
    assert_eq!(s.read(b"").unwrap(), (0, None));
    assert_eq!(s.read(&[0x81]).unwrap(), (1, None));
    assert_eq!(s.read(&[0x01, b'3']).unwrap(), (2, Some(Message::Text("3".into()))));
}

#[test]
fn sent_messages_are_output_until_written() {
    let mut s = session(&ClientConfig::default());
    s.send(Message::Text("hi".into())).unwrap();
    s.send(Message::Binary(vec![1; 70_000])).unwrap();
    s.send(Message::Ping(b"p".to_vec())).unwrap();
    assert_eq!(
        client_frames(s.output()),
        vec![
            (OpCode::Text, b"hi".to_vec()),
            (OpCode::Binary, vec![1; 70_000]),
            (OpCode::Ping, b"p".to_vec()),
        ]
    );
    s.wrote(Ok(())).unwrap();
    assert!(s.output().is_empty());
    assert_eq!(s.state(), State::Open);
    // Close: nothing more may be sent, and a Ping is no longer answered.
    s.send(Message::Close(None)).unwrap();
    assert_eq!(client_frames(s.output()), vec![(OpCode::Close, vec![])]);
    s.wrote(Ok(())).unwrap();
    assert_eq!(s.state(), State::CloseSent);
    assert_eq!(
        s.send(Message::Pong(vec![])).unwrap_err().kind(),
        ErrorKind::AlreadyClosed
    );
    let input = frame(true, 9, b"late");
    assert_eq!(
        s.read(&input).unwrap(),
        (input.len(), Some(Message::Ping(b"late".to_vec())))
    );
    assert!(s.output().is_empty());
    // The peer's Close ends the handshake; ours was sent, so no echo.
    let input = frame(true, 8, b"");
    assert_eq!(s.read(&input).unwrap(), (input.len(), Some(Message::Close(None))));
    assert!(s.output().is_empty());
    assert_eq!(s.state(), State::Closed);
}

#[test]
fn refused_sends_queue_nothing() {
    let mut s = session(&ClientConfig::default());
    assert_eq!(
        s.send(Message::Ping(vec![0; 126])).unwrap_err().kind(),
        ErrorKind::Capacity
    );
    let bad_close = Message::Close(Some(CloseFrame {
        code: 1005,
        reason: String::new(),
    }));
    assert_eq!(s.send(bad_close).unwrap_err().kind(), ErrorKind::Protocol);
    assert!(s.output().is_empty());
    assert_eq!(s.state(), State::Open);
}

#[test]
fn a_violation_queues_a_close_and_fails() {
    let mut s = session(&ClientConfig::default());
    let e = s.read(&[0x83, 0x00]).unwrap_err();
    assert_eq!(e.close_code(), Some(1002));
    let sent = client_frames(s.output());
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, OpCode::Close);
    assert_eq!(sent[0].1[..2], 1002u16.to_be_bytes());
    assert!(CloseFrame::parse(&sent[0].1).is_ok());
    assert_eq!(s.state(), State::Failed);
    assert_eq!(s.read(b"").unwrap_err().kind(), ErrorKind::AlreadyClosed);
    assert_eq!(
        s.send(Message::Text("x".into())).unwrap_err().kind(),
        ErrorKind::AlreadyClosed
    );
    // A limit is the same: 1009, from the header alone.
    let mut s = session(&ClientConfig::default().max_message_size(10));
    assert_eq!(
        s.read(&frame(true, 2, &[0; 11])[..2]).unwrap_err().close_code(),
        Some(1009)
    );
    assert_eq!(client_frames(s.output())[0].1[..2], 1009u16.to_be_bytes());
}

#[test]
fn a_failed_write_fails_an_open_session_only() {
    let mut s = session(&ClientConfig::default());
    s.send(Message::Text("lost".into())).unwrap();
    let e = s.wrote(Err(io::ErrorKind::BrokenPipe.into())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(s.output().is_empty());
    assert_eq!(s.state(), State::Failed);
    // A closed session stays closed: the echo of a Close is best effort.
    let mut s = session(&ClientConfig::default());
    let input = frame(true, 8, b"");
    s.read(&input).unwrap();
    assert!(!s.output().is_empty());
    assert!(s.wrote(Err(io::ErrorKind::BrokenPipe.into())).is_err());
    assert_eq!(s.state(), State::Closed);
}

#[test]
fn the_end_of_stream_says_where_the_handshake_was() {
    let mut s = session(&ClientConfig::default());
    let e = s.end_of_stream();
    assert_eq!(e.kind(), ErrorKind::ConnectionClosed);
    assert!(e.to_string().contains("without a Close frame"), "{e}");
    assert_eq!(s.state(), State::Failed);
    let mut s = session(&ClientConfig::default());
    s.send(Message::Close(None)).unwrap();
    s.wrote(Ok(())).unwrap();
    let e = s.end_of_stream();
    assert!(e.to_string().contains("before the peer answered our Close"), "{e}");
}

mod server_role {
    use super::*;
    use crate::config::Limits;
    use crate::deflate::{Deflater, Inflater, test_params};
    use crate::testing::{masked_frame, server_frames};

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn server(deflate: Option<&DeflateParams>) -> Session {
        Session::new(Role::Server, &Limits::default(), deflate)
    }

    /// Feeds all of `input`, returning the messages.
    fn read_all(s: &mut Session, input: &[u8], chunk: usize) -> Vec<Message> {
        let mut got = Vec::new();
        for mut piece in input.chunks(chunk) {
            loop {
                let (used, message) = s.read(piece).unwrap();
                piece = &piece[used..];
                match message {
                    Some(m) => got.push(m),
                    None => break,
                }
            }
        }
        got
    }

    #[test]
    fn unmasks_what_it_reads_and_sends_unmasked() {
        let e_acute = "\u{e9}".as_bytes();
        let input = cat(&[
            masked_frame(false, 0, 1, &[b'h', e_acute[0]], MASK),
            masked_frame(true, 0, 9, b"ping", [1, 2, 3, 4]),
            masked_frame(true, 0, 0, &[e_acute[1], b'!'], [9, 8, 7, 6]),
            masked_frame(true, 0, 2, &(0..=255).collect::<Vec<u8>>(), MASK),
        ]);
        for chunk in [1, 3, 7, input.len()] {
            let mut s = server(None);
            let got = read_all(&mut s, &input, chunk);
            assert_eq!(
                got,
                vec![
                    Message::Ping(b"ping".to_vec()),
                    Message::Text("h\u{e9}!".into()),
                    Message::Binary((0..=255).collect()),
                ],
                "chunk {chunk}"
            );
            // The Pong went out unmasked.
            assert_eq!(server_frames(s.output()), vec![(OpCode::Pong, 0, b"ping".to_vec())]);
            s.wrote(Ok(())).unwrap();
            s.send(Message::Text("hi".into())).unwrap();
            assert_eq!(s.output(), b"\x81\x02hi");
        }
    }

    #[test]
    fn an_unmasked_frame_fails_with_1002() {
        let mut s = server(None);
        let e = s.read(&frame(true, 1, b"hi")).unwrap_err();
        assert_eq!(e.close_code(), Some(1002));
        assert!(e.to_string().contains("unmasked"), "{e}");
        let sent = server_frames(s.output());
        assert_eq!(sent[0].0, OpCode::Close);
        assert_eq!(sent[0].2[..2], 1002u16.to_be_bytes());
        assert_eq!(s.state(), State::Failed);
    }

    #[test]
    fn deflate_in_the_server_view() {
        // The client resets its context, the server keeps its own.
        let agreed = test_params(true, false);
        let mut s = server(Some(&agreed));
        assert!(s.is_compressed());
        // What a client compresses (its own view of the parameters).
        let mut client_deflater = Deflater::new(&agreed);
        let message = "compress me, compress me, compress me".repeat(20);
        let mut z = Vec::new();
        assert!(client_deflater.compress(message.as_bytes(), &mut z).unwrap());
        let input = masked_frame(true, 0b100, 1, &z, MASK);
        assert_eq!(read_all(&mut s, &input, 5), vec![Message::Text(message.clone())]);
        // What the server sends, a client's decompressor reads.
        s.send(Message::Text(message.clone())).unwrap();
        let sent = server_frames(s.output());
        assert_eq!((sent[0].0, sent[0].1), (OpCode::Text, 0b100));
        let mut client_inflater = Inflater::new(&agreed);
        let mut out = Vec::new();
        client_inflater.inflate(&sent[0].2, &mut out, 1 << 20).unwrap();
        client_inflater.finish(&mut out, 1 << 20).unwrap();
        assert_eq!(out, message.as_bytes());
    }
}
