//! The server's handshake on its own: requests as bytes and as heads, the
//! answers as bytes.

use super::*;
use crate::handshake::accept_key;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// The RFC 6455 §1.2 request, with `extra` headers.
fn request(extra: &str) -> String {
    format!(
        "GET /chat?room=1 HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nOrigin: http://example.com\r\n\
         Sec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

fn parse(text: &str) -> Result<UpgradeRequest, Refusal> {
    match parse_request(text.as_bytes(), DEFAULT_MAX_HEAD)? {
        Some((r, n)) => {
            assert_eq!(n, text.len());
            Ok(r)
        }
        None => panic!("incomplete: {text:?}"),
    }
}

/// Replaces the header line starting with `name: ` in the RFC request
/// (`None`: removes it).
fn with(name: &str, value: Option<&str>) -> String {
    let text = request("");
    let mut out = String::new();
    for line in text.split_inclusive("\r\n") {
        if line
            .to_ascii_lowercase()
            .starts_with(&format!("{}:", name.to_ascii_lowercase()))
        {
            if let Some(v) = value {
                out.push_str(&format!("{name}: {v}\r\n"));
            }
        } else {
            out.push_str(line);
        }
    }
    out
}

#[test]
fn the_rfc_request_is_accepted() {
    let r = parse(&request("Sec-WebSocket-Protocol: chat, superchat\r\n")).unwrap();
    assert_eq!(r.target(), "/chat?room=1");
    assert_eq!(r.path(), "/chat");
    assert_eq!(r.host(), "server.example.com");
    assert_eq!(r.origin(), Some("http://example.com"));
    assert_eq!(r.key(), KEY);
    assert_eq!(r.subprotocols(), ["chat", "superchat"]);
    let a = r
        .accept(&ServerConfig::default().subprotocol("superchat").subprotocol("chat"))
        .unwrap();
    // The client's preference wins among the server's.
    assert_eq!(a.subprotocol(), Some("chat"));
    assert!(a.deflate().is_none());
    let text = std::str::from_utf8(a.bytes()).unwrap();
    assert_eq!(
        text,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
    );
    // The 101 is a response our client accepts.
    let mut h = [httparse::EMPTY_HEADER; 8];
    let mut resp = httparse::Response::new(&mut h);
    assert!(resp.parse(a.bytes()).unwrap().is_complete());
    assert_eq!(resp.code, Some(101));
}

#[test]
fn tolerant_where_http_is() {
    // Case, lists, spaces, repeated list headers, bare LF.
    let text = "GET / HTTP/1.1\nhost: a\nUPGRADE: WebSocket\nconnection: keep-alive\nConnection:  upgrade \n\
                sec-websocket-key:  dGhlIHNhbXBsZSBub25jZQ== \nSec-WebSocket-Version: 13\n\
                Sec-WebSocket-Protocol: ,a,,\nSec-WebSocket-Protocol: b , a\n\n";
    let r = parse(text).unwrap();
    assert_eq!(r.subprotocols(), ["a", "b"]);
    assert_eq!(r.key(), KEY);
    // HTTP/1.1 and later; Content-Length: 0 is no body.
    assert!(parse(&request("Content-Length: 0\r\n")).is_ok());
    // No subprotocol in common: none chosen.
    let r = parse(&request("Sec-WebSocket-Protocol: x\r\n")).unwrap();
    let a = r.accept(&ServerConfig::default().subprotocol("y")).unwrap();
    assert_eq!(a.subprotocol(), None);
    assert!(
        !std::str::from_utf8(a.bytes())
            .unwrap()
            .contains("Sec-WebSocket-Protocol")
    );
}

#[track_caller]
fn refused(text: &str, status: u16, needle: &str) {
    let e = parse(text).unwrap_err();
    assert_eq!(e.status(), status, "{text:?}: {e}");
    assert!(e.detail().contains(needle), "{e} lacks {needle:?}");
    let response = String::from_utf8(e.response()).unwrap();
    assert!(response.starts_with(&format!("HTTP/1.1 {status} ")), "{response}");
    assert_eq!(
        response.contains("\r\nSec-WebSocket-Version: 13\r\n"),
        status == 426,
        "{response}"
    );
    // The refusal parses, and its length is right.
    let mut h = [httparse::EMPTY_HEADER; 8];
    let mut resp = httparse::Response::new(&mut h);
    let httparse::Status::Complete(n) = resp.parse(response.as_bytes()).unwrap() else {
        panic!("partial {response}")
    };
    let length = resp.headers.iter().find(|h| h.name == "Content-Length").unwrap();
    assert_eq!(
        std::str::from_utf8(length.value).unwrap(),
        (response.len() - n).to_string()
    );
}

#[test]
fn not_an_upgrade_is_426() {
    refused("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 426, "Upgrade: websocket");
    refused(&with("Upgrade", Some("h2c")), 426, "Upgrade: websocket");
    refused(&with("Upgrade", None), 426, "Upgrade");
    refused("POST / HTTP/1.1\r\nHost: a\r\n\r\n", 426, "Upgrade");
}

#[test]
fn a_wrong_version_is_426() {
    refused(&with("Sec-WebSocket-Version", Some("8")), 426, "\"8\" is not supported");
    refused(&with("Sec-WebSocket-Version", None), 426, "lacks Sec-WebSocket-Version");
    refused(
        &request("Sec-WebSocket-Version: 13\r\n"),
        426,
        "more than one Sec-WebSocket-Version",
    );
}

#[test]
fn a_malformed_upgrade_is_400() {
    refused(&request("").replacen("GET", "POST", 1), 400, "not \"POST\"");
    refused(&request("").replacen("HTTP/1.1", "HTTP/1.0", 1), 400, "HTTP/1.1");
    refused(&with("Connection", Some("keep-alive")), 400, "Connection: Upgrade");
    refused(&with("Connection", None), 400, "Connection: Upgrade");
    refused(&with("Host", None), 400, "lacks a Host");
    refused(&with("Host", Some("")), 400, "lacks a Host");
    refused(&request("Host: b\r\n"), 400, "more than one Host");
    refused(&with("Sec-WebSocket-Key", None), 400, "lacks Sec-WebSocket-Key");
    refused(&with("Sec-WebSocket-Key", Some("c2hvcnQ=")), 400, "16 bytes");
    refused(&with("Sec-WebSocket-Key", Some("not base64!!")), 400, "16 bytes");
    // 17 bytes.
    refused(
        &with("Sec-WebSocket-Key", Some("AAAAAAAAAAAAAAAAAAAAAAA=")),
        400,
        "16 bytes",
    );
    refused(&request(&format!("Sec-WebSocket-Key: {KEY}\r\n")), 400, "more than one");
    refused(&request("Content-Length: 5\r\n"), 400, "no body");
    refused(&request("Transfer-Encoding: chunked\r\n"), 400, "no body");
    refused(&request("Sec-WebSocket-Protocol: a b\r\n"), 400, "not a token");
    refused("GET / HTTP/1.1\r\nbad header\r\n\r\n", 400, "malformed");
    refused("\x01\x02\x03\r\n\r\n", 400, "malformed");
}

#[test]
fn heads_are_bounded_and_incremental() {
    let text = request("");
    // Incomplete: more is needed, until the cap.
    assert!(
        parse_request(&text.as_bytes()[..text.len() - 1], DEFAULT_MAX_HEAD)
            .unwrap()
            .is_none()
    );
    let e = parse_request(&text.as_bytes()[..text.len() - 1], text.len() - 1).unwrap_err();
    assert_eq!(e.status(), 431);
    let e = parse_request(text.as_bytes(), text.len() - 1).unwrap_err();
    assert_eq!(e.status(), 431);
    assert!(parse_request(text.as_bytes(), text.len()).unwrap().is_some());
    // Frames behind the head are not the head's.
    let mut bytes = text.clone().into_bytes();
    bytes.extend_from_slice(b"\x81\x82abcdXY");
    let (_, n) = parse_request(&bytes, DEFAULT_MAX_HEAD).unwrap().unwrap();
    assert_eq!(&bytes[n..], b"\x81\x82abcdXY");
    // The incremental parser: every split, and a byte at a time.
    for split in 0..=bytes.len() {
        let mut p = RequestParser::new(DEFAULT_MAX_HEAD);
        let (a, b) = bytes.split_at(split);
        let leftover = match p.feed(a).unwrap() {
            Some((_, mut leftover)) => {
                leftover.extend_from_slice(b);
                leftover
            }
            None => p.feed(b).unwrap().expect("complete").1,
        };
        assert_eq!(leftover, b"\x81\x82abcdXY", "split {split}");
    }
    let mut p = RequestParser::new(64);
    let e = bytes
        .iter()
        .find_map(|b| p.feed(std::slice::from_ref(b)).err())
        .unwrap();
    assert_eq!(e.status(), 431);
}

#[test]
fn deflate_is_answered_when_offered_and_wanted() {
    let offer =
        "Sec-WebSocket-Extensions: foo, permessage-deflate; client_max_window_bits; server_max_window_bits=10\r\n";
    let r = parse(&request(offer)).unwrap();
    let a = r
        .accept(&ServerConfig::default().deflate(DeflateConfig::default()))
        .unwrap();
    let text = std::str::from_utf8(a.bytes()).unwrap();
    assert!(
        text.contains("\r\nSec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n"),
        "{text}"
    );
    assert_eq!(a.deflate().unwrap().server_max_window_bits, 10);
    // Not wanted: not answered.
    let a = r.accept(&ServerConfig::default()).unwrap();
    assert!(a.deflate().is_none());
    assert!(!std::str::from_utf8(a.bytes()).unwrap().contains("Extensions"));
    // Not offered: not answered.
    let r = parse(&request("")).unwrap();
    assert!(
        r.accept(&ServerConfig::default().deflate(DeflateConfig::default()))
            .unwrap()
            .deflate()
            .is_none()
    );
}

#[test]
fn config_refuses_bad_headers() {
    let r = parse(&request("")).unwrap();
    let a = r
        .accept(&ServerConfig::default().header("X-Served-By", "wsgate"))
        .unwrap();
    assert!(
        std::str::from_utf8(a.bytes())
            .unwrap()
            .ends_with("\r\nX-Served-By: wsgate\r\n\r\n")
    );
    for config in [
        ServerConfig::default().header("Sec-WebSocket-Accept", "x"),
        ServerConfig::default().header("X", "a\r\nb: c"),
        ServerConfig::default().subprotocol("a b"),
        ServerConfig::default().deflate(DeflateConfig::default().server_max_window_bits(7)),
    ] {
        assert!(r.accept(&config).is_err(), "{config:?}");
    }
}

#[test]
fn refusals_are_one_line() {
    let r = Refusal::new(403, "no\r\nInjected: header");
    assert_eq!(r.detail(), "no  Injected: header");
    let text = String::from_utf8(r.response()).unwrap();
    assert!(
        text.starts_with("HTTP/1.1 403 Forbidden\r\nConnection: close\r\n"),
        "{text}"
    );
    assert!(!text.contains("\r\nInjected"));
    assert_eq!(Refusal::new(200, "x").status(), 500);
    let e = Error::from(Refusal::new(502, "upstream down"));
    assert_eq!(e.status(), Some(502));
    assert_eq!(
        e.to_string(),
        "WebSocket handshake failed: refused the upgrade request with 502 Bad Gateway: upstream down"
    );
    // The accept key is the RFC's.
    assert_eq!(accept_key(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}
