//! Arbitrary bytes as the answer to a fixed upgrade request (subprotocols
//! and permessage-deflate offered), read in arbitrary splits.
//!
//! `{accept}` in the input is replaced with the right
//! `Sec-WebSocket-Accept` value, so that the checks past it are reached.
//! Asserts: no panic, the head cap holds, and an accepted response agrees
//! with what was offered.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wsgate_guest::handshake::{Request, ResponseParser, accept_key, read_response};
use wsgate_guest::{ClientConfig, DeflateConfig, Url};

const MAX_HEAD: usize = 2048;

fuzz_target!(|data: &[u8]| {
    let [split, rest @ ..] = data else { return };
    let config = ClientConfig::default()
        .subprotocol("chat")
        .subprotocol("v2.chat")
        .deflate(DeflateConfig::default().server_max_window_bits(12))
        .max_response_head(MAX_HEAD);
    let url = Url::parse("ws://fuzz.example:8080/socket?x=1").expect("url");
    let request = Request::try_new(&url, &config).expect("request");
    let accept = accept_key(request.key());
    let mut input = Vec::with_capacity(rest.len() + 32);
    let mut i = 0;
    while i < rest.len() {
        if rest[i..].starts_with(b"{accept}") {
            input.extend_from_slice(accept.as_bytes());
            i += "{accept}".len();
        } else {
            input.push(rest[i]);
            i += 1;
        }
    }

    // The whole reader path.
    if let Ok((response, leftover)) = read_response(&mut &input[..], &request, &config) {
        assert_eq!(response.status(), 101);
        if let Some(p) = response.subprotocol() {
            assert!(p == "chat" || p == "v2.chat");
        }
        if let Some(d) = response.deflate() {
            assert!(d.server_max_window_bits <= 12);
            assert!((8..=15).contains(&d.client_max_window_bits));
        }
        assert!(leftover.len() <= input.len());
    }

    // The parser fed in pieces of the chosen size: the same outcome.
    let step = usize::from(*split).max(1);
    let mut parser = ResponseParser::new(MAX_HEAD);
    for piece in input.chunks(step) {
        match parser.feed(piece) {
            Ok(Some((response, _))) => {
                let _ = response.verify(&request);
                break;
            }
            Ok(None) => {}
            Err(_) => break,
        }
    }
});
