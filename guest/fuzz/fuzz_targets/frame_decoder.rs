//! Arbitrary server bytes, in arbitrary splits, through a whole session
//! (frame decoder, reassembly, UTF-8, close handshake and, when the first
//! byte asks, permessage-deflate), with small limits.
//!
//! Asserts: no panic, and nothing larger than the limits comes out; the
//! allocation bound itself is libFuzzer's (`-malloc_limit_mb`).

#![no_main]

use std::io::{self, Read, Write};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use wsgate_guest::handshake::{Request, accept_key, read_response};
use wsgate_guest::{ClientConfig, DeflateConfig, Message, Transport, Url, WebSocket};

const MAX_FRAME: usize = 4 << 10;
const MAX_MESSAGE: usize = 16 << 10;
const MAX_FRAGMENTS: usize = 16;

/// The server: reads come from the input in pieces whose sizes the input
/// chooses; a zero-length piece is a timeout. Writes are dropped.
struct Peer<'a> {
    input: &'a [u8],
    splits: &'a [u8],
    step: usize,
}

impl Read for Peer<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self
            .splits
            .get(self.step % self.splits.len().max(1))
            .copied()
            .unwrap_or(255);
        self.step += 1;
        if size == 0 && !self.input.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = usize::from(size).max(1).min(buf.len()).min(self.input.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input = &self.input[n..];
        Ok(n)
    }
}

impl Write for Peer<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for Peer<'_> {
    fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(None)
    }

    fn set_read_timeout(&mut self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let [mode, nsplits, rest @ ..] = data else { return };
    let nsplits = usize::from(*nsplits % 16).min(rest.len());
    let (splits, input) = rest.split_at(nsplits);
    let mut config = ClientConfig::default()
        .max_frame_size(MAX_FRAME)
        .max_message_size(MAX_MESSAGE)
        .max_fragments(MAX_FRAGMENTS)
        .close_timeout(Duration::from_millis(1));
    let peer = Peer { input, splits, step: 0 };
    let mut ws = if mode & 1 == 0 {
        WebSocket::from_upgraded(peer, Vec::new(), config)
    } else {
        // Compression agreed, with the parameters the mode's bits choose.
        config = config.deflate(DeflateConfig::default());
        let url = Url::parse("ws://fuzz.example/").expect("url");
        let request = Request::try_new(&url, &config).expect("request");
        let mut extension = String::from("permessage-deflate");
        if mode & 2 != 0 {
            extension.push_str("; server_no_context_takeover");
        }
        if mode & 4 != 0 {
            extension.push_str("; client_no_context_takeover");
        }
        if mode & 8 != 0 {
            extension.push_str("; client_max_window_bits=9");
        }
        let head = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Extensions: {extension}\r\n\r\n",
            accept_key(request.key())
        );
        let (response, leftover) = read_response(&mut head.as_bytes(), &request, &config).expect("response");
        WebSocket::from_response(peer, &response, leftover, config)
    };
    // Each call consumes input or fails; the input is finite.
    for i in 0..10_000 {
        match ws.recv() {
            Ok(message) => {
                match &message {
                    Message::Text(t) => assert!(t.len() <= MAX_MESSAGE),
                    Message::Binary(b) => assert!(b.len() <= MAX_MESSAGE),
                    Message::Ping(p) | Message::Pong(p) => assert!(p.len() <= 125),
                    Message::Close(_) => {}
                }
                // Echo now and then, to run the send path (and the
                // compressor) in between.
                if i % 3 == 0 && ws.can_send() {
                    let _ = ws.send(message);
                }
            }
            Err(e) if e.kind() == wsgate_guest::ErrorKind::Timeout => {}
            Err(_) => break,
        }
    }
    let _ = ws.close(1000, "done");
    let _ = ws.wait_closed();
});
