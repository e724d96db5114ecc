//! Arbitrary bytes as a client's upgrade request, parsed whole and fed to
//! the incremental parser in pieces of a chosen size.
//!
//! `{key}` in the input is replaced with a valid `Sec-WebSocket-Key`, so
//! that the checks past it are reached. Asserts: no panic; the head cap
//! holds; both parsers agree; an accepted request has a 16-byte key and a
//! GET, and its `101` parses as a response that carries the right accept
//! key and only what was offered; a refusal is a 4xx with a well-formed
//! answer.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wsgate_guest::handshake::{ResponseParser, accept_key};
use wsgate_guest::server::{RequestParser, ServerConfig, parse_request};
use wsgate_guest::DeflateConfig;

const MAX_HEAD: usize = 2048;
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fuzz_target!(|data: &[u8]| {
    let [split, rest @ ..] = data else { return };
    let mut input = Vec::with_capacity(rest.len() + 32);
    let mut i = 0;
    while i < rest.len() {
        if rest[i..].starts_with(b"{key}") {
            input.extend_from_slice(KEY.as_bytes());
            i += "{key}".len();
        } else {
            input.push(rest[i]);
            i += 1;
        }
    }
    let config = ServerConfig::default()
        .subprotocol("chat")
        .subprotocol("v2.chat")
        .deflate(DeflateConfig::default().server_max_window_bits(12).client_max_window_bits(10));

    let whole = parse_request(&input, MAX_HEAD);
    match &whole {
        Ok(Some((request, n))) => {
            assert!(*n <= input.len() && *n <= MAX_HEAD);
            assert_eq!(request.head().method, "GET");
            assert!(request.head().minor_version >= 1);
            let answer = request.accept(&config).expect("a valid config");
            let mut parser = ResponseParser::new(4096);
            let (response, leftover) = parser.feed(answer.bytes()).expect("our 101 parses").expect("complete");
            assert!(leftover.is_empty());
            assert_eq!(response.status(), 101);
            let expected = accept_key(request.key());
            assert_eq!(response.header("sec-websocket-accept"), Some(expected.as_bytes()));
            if let Some(p) = answer.subprotocol() {
                assert!(p == "chat" || p == "v2.chat");
                assert!(request.subprotocols().iter().any(|q| q == p));
            }
            if let Some(d) = answer.deflate() {
                assert!(d.server_max_window_bits <= 12);
                assert!((8..=15).contains(&d.client_max_window_bits));
                assert!(request.extensions().next().is_some());
            }
        }
        Ok(None) => assert!(input.len() < MAX_HEAD),
        Err(refusal) => {
            assert!(matches!(refusal.status(), 400 | 426 | 431), "{refusal}");
            let response = refusal.response();
            assert!(response.starts_with(b"HTTP/1.1 4"));
            assert!(!refusal.detail().contains(['\r', '\n']));
        }
    }

    // The incremental parser, fed in pieces of the chosen size: the same
    // outcome.
    let step = usize::from(*split).max(1);
    let mut parser = RequestParser::new(MAX_HEAD);
    let mut outcome = None;
    let mut fed = 0;
    for piece in input.chunks(step) {
        fed += piece.len();
        match parser.feed(piece) {
            Ok(Some((request, leftover))) => {
                // The pieces not fed are the rest of the leftover.
                outcome = Some(Ok((request.key().to_owned(), leftover.len() + input.len() - fed)));
                break;
            }
            Ok(None) => {}
            Err(refusal) => {
                outcome = Some(Err(refusal.status()));
                break;
            }
        }
    }
    match (whole, outcome) {
        (Ok(Some((request, n))), Some(Ok((key, leftover)))) => {
            assert_eq!(request.key(), key);
            assert_eq!(n + leftover, input.len());
        }
        (Err(refusal), Some(Err(status))) => assert_eq!(refusal.status(), status),
        (Ok(None), None) => {}
        (whole, incremental) => panic!("parsers disagree: {whole:?} / {incremental:?}"),
    }
});
