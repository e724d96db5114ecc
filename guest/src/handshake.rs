//! The client's opening handshake (RFC 6455 §4.1): the upgrade request, and
//! the incremental reading and checking of the server's response. The
//! server's side is [`server`](crate::server).

use std::io::Read;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::{Digest, Sha1};

use crate::config::{ClientConfig, is_token};
use crate::deflate::{DeflateConfig, DeflateParams, negotiate};
use crate::error::Error;
use crate::url::Url;

/// The GUID of RFC 6455 §1.3, appended to the key to compute the accept
/// value.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The `Sec-WebSocket-Accept` value a server must answer to `key`:
/// base64(SHA-1(key + GUID)).
pub fn accept_key(key: &str) -> String {
    let digest = Sha1::new()
        .chain_update(key.as_bytes())
        .chain_update(GUID.as_bytes())
        .finalize();
    BASE64.encode(digest)
}

/// An upgrade request, ready to be written.
#[derive(Clone, Debug)]
pub struct Request {
    bytes: Vec<u8>,
    key: String,
    subprotocols: Vec<String>,
    deflate: Option<DeflateConfig>,
}

impl Request {
    /// Builds the `GET` upgrade request for `url` with a fresh random
    /// `Sec-WebSocket-Key`, the headers and subprotocols of `config`.
    ///
    /// Headers that `config` refused are not in the request; use
    /// [`Request::try_new`] to have them reported instead.
    pub fn new(url: &Url, config: &ClientConfig) -> Request {
        let mut nonce = [0u8; 16];
        crate::rand::fill_nonce(&mut nonce);
        let key = BASE64.encode(nonce);

        let mut head = String::with_capacity(256);
        // `String` as a buffer: every part is already checked ASCII or
        // field-value text, so no escaping is needed here.
        let mut line = |name: &str, value: &str| {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        };
        line("Host", &url.host_header());
        line("Upgrade", "websocket");
        line("Connection", "Upgrade");
        line("Sec-WebSocket-Key", &key);
        line("Sec-WebSocket-Version", "13");
        if !config.subprotocols.is_empty() {
            line("Sec-WebSocket-Protocol", &config.subprotocols.join(", "));
        }
        if let Some(deflate) = &config.deflate {
            line("Sec-WebSocket-Extensions", &deflate.offer());
        }
        for (name, value) in &config.headers {
            line(name, value);
        }
        let mut bytes = Vec::with_capacity(head.len() + url.resource().len() + 20);
        bytes.extend_from_slice(b"GET ");
        bytes.extend_from_slice(url.resource().as_bytes());
        bytes.extend_from_slice(b" HTTP/1.1\r\n");
        bytes.extend_from_slice(head.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        Request {
            bytes,
            key,
            subprotocols: config.subprotocols.clone(),
            deflate: config.deflate.clone(),
        }
    }

    /// Like [`Request::new`], but fails if `config` refused a header or
    /// subprotocol (see [`ClientConfig::validate`]).
    pub fn try_new(url: &Url, config: &ClientConfig) -> Result<Request, Error> {
        config.validate()?;
        Ok(Request::new(url, config))
    }

    /// The whole request: request line, headers and the empty line.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The `Sec-WebSocket-Key` sent.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The subprotocols offered, most preferred first.
    pub fn subprotocols(&self) -> &[String] {
        &self.subprotocols
    }
}

/// A parsed handshake response head.
#[derive(Clone, Debug)]
pub struct Response {
    status: u16,
    reason: String,
    headers: Vec<(String, Vec<u8>)>,
    subprotocol: Option<String>,
    http11: bool,
    deflate: Option<DeflateParams>,
}

impl Response {
    /// The HTTP status code (101 for a successful upgrade).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The reason phrase of the status line.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The headers, in order, with names as the server wrote them.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// The value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.values(name).next()
    }

    /// The subprotocol the server chose (`Sec-WebSocket-Protocol`), if any.
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }

    /// The permessage-deflate parameters the server agreed to, if it
    /// accepted the extension. Set by [`read_response`] (not by
    /// [`ResponseParser`], which does not know the request).
    pub fn deflate(&self) -> Option<&DeflateParams> {
        self.deflate.as_ref()
    }

    fn values<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a [u8]> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Checks that this response accepts `request` (RFC 6455 §4.1, the
    /// client's checks of the server's handshake, and RFC 7692's of the
    /// permessage-deflate answer).
    pub fn verify(&self, request: &Request) -> Result<(), Error> {
        self.check(request).map(drop)
    }

    /// [`Response::verify`], returning the agreed extension parameters.
    fn check(&self, request: &Request) -> Result<Option<DeflateParams>, Error> {
        if self.status != 101 {
            return Err(Error::http_status(self.status, &self.reason));
        }
        if !self.http11 {
            return Err(Error::handshake("101 response is not HTTP/1.1"));
        }
        if !self
            .values("upgrade")
            .any(|v| trim(v).eq_ignore_ascii_case(b"websocket"))
        {
            return Err(Error::handshake("response lacks \"Upgrade: websocket\""));
        }
        // `Connection` is a token list (`Connection: keep-alive, Upgrade`).
        if !self.values("connection").any(|v| {
            v.split(|&b| b == b',')
                .any(|t| trim(t).eq_ignore_ascii_case(b"upgrade"))
        }) {
            return Err(Error::handshake("response lacks \"Connection: upgrade\""));
        }
        let expected = accept_key(request.key());
        let mut accepts = self.values("sec-websocket-accept");
        match (accepts.next(), accepts.next()) {
            (Some(v), None) if trim(v) == expected.as_bytes() => {}
            (None, _) => return Err(Error::handshake("response lacks Sec-WebSocket-Accept")),
            _ => return Err(Error::handshake("wrong Sec-WebSocket-Accept")),
        }
        // Only an extension that was offered may be chosen; its frames
        // would otherwise set RSV bits this client must reject.
        let deflate = negotiate(request.deflate.as_ref(), self.values("sec-websocket-extensions"))?;
        let mut protocols = self.values("sec-websocket-protocol");
        if let (Some(_), Some(_)) = (protocols.next(), protocols.next()) {
            return Err(Error::handshake("more than one Sec-WebSocket-Protocol in response"));
        }
        if let Some(chosen) = self.header("sec-websocket-protocol") {
            let chosen = String::from_utf8_lossy(trim(chosen));
            if request.subprotocols.is_empty() {
                return Err(Error::handshake(format!(
                    "server chose subprotocol {chosen:?}, none was offered"
                )));
            }
            if !request.subprotocols.iter().any(|p| *p == chosen) {
                return Err(Error::handshake(format!(
                    "server chose subprotocol {chosen:?}, which was not offered"
                )));
            }
        }
        Ok(deflate)
    }
}

pub(crate) fn trim(v: &[u8]) -> &[u8] {
    v.trim_ascii()
}

/// An incremental reader of a response head.
///
/// Fed bytes as they arrive, in pieces of any size. Finding the end of the
/// head is a scan that resumes where it stopped, so a head arriving a byte
/// at a time costs linear, not quadratic, time; only the complete head is
/// given to `httparse`. The head is held to a maximum size.
#[derive(Debug)]
pub struct ResponseParser {
    head: HeadBuffer,
}

impl ResponseParser {
    /// A parser accepting heads of at most `max_head` bytes.
    pub fn new(max_head: usize) -> ResponseParser {
        ResponseParser {
            head: HeadBuffer::new(max_head),
        }
    }

    /// Whether any byte was fed yet.
    pub fn is_empty(&self) -> bool {
        self.head.is_empty()
    }

    /// Feeds the next bytes. Returns the response once its head is complete,
    /// with the bytes that followed the head (the first frames of the
    /// session), or `None` if more bytes are needed.
    ///
    /// The response is parsed, not checked; see [`Response::verify`].
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<(Response, Vec<u8>)>, Error> {
        match self.head.feed(data) {
            Ok(Some((head, leftover))) => Ok(Some((parse_head(&head)?, leftover))),
            Ok(None) => Ok(None),
            Err(max) => Err(Error::handshake(format!("response head exceeds {max} bytes"))),
        }
    }
}

/// A complete head and the bytes that came after it.
pub(crate) type HeadAndRest = (Vec<u8>, Vec<u8>);

/// The bytes of an HTTP head as they arrive, up to its empty line: the part
/// the response's and the request's parsers share.
#[derive(Debug)]
pub(crate) struct HeadBuffer {
    buf: Vec<u8>,
    /// How far `buf` has been searched for the end of the head.
    scanned: usize,
    max_head: usize,
}

impl HeadBuffer {
    pub(crate) fn new(max_head: usize) -> HeadBuffer {
        HeadBuffer {
            buf: Vec::new(),
            scanned: 0,
            max_head,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Feeds the next bytes: the whole head and the bytes past it once its
    /// empty line arrived, `Ok(None)` while it has not, and `Err(max)` once
    /// the head is longer than `max` bytes.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Result<Option<HeadAndRest>, usize> {
        // Take no more than fits under the cap, so that the buffer stays
        // bounded whatever the caller feeds; the rest is either leftover
        // (if the head ends within the part taken) or proof of an
        // oversized head.
        let room = self.max_head.saturating_sub(self.buf.len());
        let take = data.len().min(room);
        self.buf.extend_from_slice(&data[..take]);
        match self.find_end() {
            Some(end) => {
                let mut leftover = Vec::with_capacity(self.buf.len() - end + data.len() - take);
                leftover.extend_from_slice(&self.buf[end..]);
                leftover.extend_from_slice(&data[take..]);
                let mut head = std::mem::take(&mut self.buf);
                head.truncate(end);
                self.scanned = 0;
                Ok(Some((head, leftover)))
            }
            None if self.buf.len() >= self.max_head => Err(self.max_head),
            None => Ok(None),
        }
    }

    /// The end of the head (just past its empty line), if it arrived. Lines
    /// end in CRLF or, as `httparse` tolerates, a bare LF.
    fn find_end(&mut self) -> Option<usize> {
        let (end, scanned) = find_head_end(&self.buf, self.scanned);
        self.scanned = scanned;
        end
    }
}

/// Searches `buf` from `from` for the end of a head (just past its empty
/// line). Without one, also returns where to resume once more bytes came.
pub(crate) fn find_head_end(buf: &[u8], from: usize) -> (Option<usize>, usize) {
    let mut i = from;
    while i < buf.len() {
        if buf[i] == b'\n' {
            match (buf.get(i + 1), buf.get(i + 2)) {
                (Some(b'\n'), _) => return (Some(i + 2), i),
                (Some(b'\r'), Some(b'\n')) => return (Some(i + 3), i),
                // Not enough bytes yet to tell: resume at this LF.
                (None, _) | (Some(b'\r'), None) => return (None, i),
                _ => {}
            }
        }
        i += 1;
    }
    (None, buf.len())
}

fn parse_head(head: &[u8]) -> Result<Response, Error> {
    // As many header slots as the head has lines: never too few, and
    // bounded by the head's size cap.
    let lines = head.iter().filter(|&&b| b == b'\n').count();
    let mut slots = vec![httparse::EMPTY_HEADER; lines];
    let mut parsed = httparse::Response::new(&mut slots);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(Error::handshake("malformed response head"));
        }
        Err(e) => return Err(Error::handshake(format!("malformed response head: {e}"))),
    }
    let (Some(status), Some(version)) = (parsed.code, parsed.version) else {
        return Err(Error::handshake("malformed response head"));
    };
    let headers: Vec<(String, Vec<u8>)> = parsed
        .headers
        .iter()
        .map(|h| (h.name.to_owned(), h.value.to_vec()))
        .collect();
    let subprotocol = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-protocol"))
        .and_then(|(_, v)| std::str::from_utf8(trim(v)).ok())
        .filter(|v| is_token(v))
        .map(str::to_owned);
    Ok(Response {
        status,
        reason: parsed.reason.unwrap_or("").to_owned(),
        headers,
        subprotocol,
        http11: version == 1,
        deflate: None,
    })
}

/// Reads the handshake response to `request` from `reader` and checks it.
///
/// Returns the response and the bytes read past its head: frames the server
/// sent right behind the `101` arrive in the same read, and must be handed
/// to [`WebSocket::from_upgraded`](crate::WebSocket::from_upgraded).
///
/// An end of stream before the head is complete is an error of kind
/// [`ConnectionClosed`](crate::ErrorKind::ConnectionClosed).
/// [`Error::is_path_failure`] counts it as a failure of the path only when
/// no byte of the response had arrived.
pub fn read_response<R: Read>(
    reader: &mut R,
    request: &Request,
    config: &ClientConfig,
) -> Result<(Response, Vec<u8>), Error> {
    let mut parser = ResponseParser::new(config.max_response_head);
    let mut chunk = [0u8; 4096];
    // Each pass reads at least one byte or returns, and the parser fails
    // past `max_response_head` bytes, so the loop is bounded.
    loop {
        let n = match reader.read(&mut chunk) {
            // Only a close before any byte of an answer is a failure of
            // the path: once the server began to answer, it had the request,
            // and trying another path would send the upgrade twice.
            Ok(0) if parser.is_empty() => {
                return Err(Error::closed_before_response(
                    "connection closed before any handshake response",
                ));
            }
            Ok(0) => {
                return Err(Error::connection_closed(
                    "connection closed in the middle of the handshake response",
                ));
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::from_read(e)),
        };
        if let Some((mut response, leftover)) = parser.feed(&chunk[..n])? {
            response.deflate = response.check(request)?;
            return Ok((response, leftover));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn rfc_accept_example() {
        // RFC 6455 §1.3.
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    fn request(config: &ClientConfig) -> Request {
        Request::new(&Url::parse("ws://example.com:8080/chat?x=1").unwrap(), config)
    }

    #[test]
    fn request_bytes() {
        let config = ClientConfig::default()
            .header("Origin", "http://example.com")
            .subprotocol("chat")
            .subprotocol("superchat");
        let r = request(&config);
        let text = std::str::from_utf8(r.bytes()).unwrap();
        assert!(text.starts_with("GET /chat?x=1 HTTP/1.1\r\nHost: example.com:8080\r\n"));
        assert!(text.contains("\r\nUpgrade: websocket\r\n"));
        assert!(text.contains("\r\nConnection: Upgrade\r\n"));
        assert!(text.contains(&format!("\r\nSec-WebSocket-Key: {}\r\n", r.key())));
        assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"));
        assert!(text.contains("\r\nSec-WebSocket-Protocol: chat, superchat\r\n"));
        assert!(text.contains("\r\nOrigin: http://example.com\r\n"));
        assert!(text.ends_with("\r\n\r\n") && !text.ends_with("\r\n\r\n\r\n"));
        assert_eq!(BASE64.decode(r.key()).unwrap().len(), 16);
        assert_ne!(r.key(), request(&config).key(), "keys must be fresh");
        // The request parses as HTTP.
        let mut h = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut h);
        assert_eq!(
            req.parse(r.bytes()).unwrap(),
            httparse::Status::Complete(r.bytes().len())
        );
    }

    fn ok_response(r: &Request, extra: &str) -> String {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Accept: {}\r\n{extra}\r\n",
            accept_key(r.key())
        )
    }

    fn read(r: &Request, config: &ClientConfig, bytes: &[u8]) -> Result<(Response, Vec<u8>), Error> {
        read_response(&mut &bytes[..], r, config)
    }

    #[test]
    fn accepts_valid_response_and_keeps_leftover() {
        let config = ClientConfig::default();
        let r = request(&config);
        let mut bytes = ok_response(&r, "").into_bytes();
        bytes.extend_from_slice(b"\x81\x02hi");
        let (resp, leftover) = read(&r, &config, &bytes).unwrap();
        assert_eq!(resp.status(), 101);
        assert_eq!(leftover, b"\x81\x02hi");
        assert_eq!(resp.subprotocol(), None);
    }

    #[test]
    fn parser_every_split() {
        let config = ClientConfig::default();
        let r = request(&config);
        let mut bytes = ok_response(&r, "").into_bytes();
        bytes.extend_from_slice(b"rest");
        for split in 0..=bytes.len() {
            let mut p = ResponseParser::new(16 << 10);
            let (a, b) = bytes.split_at(split);
            let leftover = match p.feed(a).unwrap() {
                Some((resp, mut leftover)) => {
                    resp.verify(&r).unwrap();
                    // The head ended within `a`; `b` was never fed.
                    leftover.extend_from_slice(b);
                    leftover
                }
                None => {
                    let (resp, leftover) = p.feed(b).unwrap().expect("complete");
                    resp.verify(&r).unwrap();
                    leftover
                }
            };
            assert_eq!(leftover, b"rest", "split {split}");
        }
        // A byte at a time.
        let mut p = ResponseParser::new(16 << 10);
        let mut done = None;
        for (i, b) in bytes.iter().enumerate() {
            if let Some(d) = p.feed(std::slice::from_ref(b)).unwrap() {
                done = Some((i, d));
                break;
            }
        }
        let (i, _) = done.unwrap();
        assert_eq!(i, bytes.len() - 5);
    }

    #[test]
    fn bare_lf_head() {
        let config = ClientConfig::default();
        let r = request(&config);
        let text = ok_response(&r, "").replace("\r\n", "\n");
        let (_, leftover) = read(&r, &config, text.as_bytes()).unwrap();
        assert!(leftover.is_empty());
    }

    #[test]
    fn head_cap() {
        let config = ClientConfig::default().max_response_head(256);
        let r = request(&config);
        let big = ok_response(&r, &format!("X-Pad: {}\r\n", "a".repeat(300)));
        let e = read(&r, &config, big.as_bytes()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Handshake);
        assert!(e.to_string().contains("exceeds 256 bytes"), "{e}");
        // An endless head without an empty line stops at the cap too.
        let mut endless = std::io::repeat(b'a');
        let e = read_response(&mut endless, &r, &config).unwrap_err();
        assert!(e.to_string().contains("exceeds"), "{e}");
        // Exactly at the cap is fine.
        let exact = ok_response(&r, "");
        let config = ClientConfig::default().max_response_head(exact.len());
        read(&r, &config, exact.as_bytes()).unwrap();
    }

    #[test]
    fn rejects_bad_responses() {
        let config = ClientConfig::default().subprotocol("chat");
        let r = request(&config);
        let key = accept_key(r.key());
        let cases: &[(String, &str)] = &[
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".into(),
                "server answered 200 OK instead of 101 Switching Protocols",
            ),
            (
                format!("HTTP/1.1 101 X\r\nConnection: upgrade\r\nSec-WebSocket-Accept: {key}\r\n\r\n"),
                "Upgrade: websocket",
            ),
            (
                format!("HTTP/1.1 101 X\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {key}\r\n\r\n"),
                "Connection: upgrade",
            ),
            (
                "HTTP/1.1 101 X\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n".into(),
                "lacks Sec-WebSocket-Accept",
            ),
            (
                "HTTP/1.1 101 X\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Accept: nope\r\n\r\n"
                    .into(),
                "wrong Sec-WebSocket-Accept",
            ),
            (
                format!(
                    "HTTP/1.1 101 X\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Accept: {key}\r\nSec-WebSocket-Protocol: other\r\n\r\n"
                ),
                "not offered",
            ),
            (
                format!(
                    "HTTP/1.1 101 X\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Accept: {key}\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
                ),
                "extension",
            ),
            (
                format!(
                    "HTTP/1.0 101 X\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Accept: {key}\r\n\r\n"
                ),
                "HTTP/1.1",
            ),
            ("garbage\r\n\r\n".into(), "malformed"),
        ];
        for (text, needle) in cases {
            let e = read(&r, &config, text.as_bytes()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Handshake, "{text}");
            assert!(e.to_string().contains(needle), "{e} lacks {needle}");
        }
        let e = read(&r, &config, b"HTTP/1.1 200 OK\r\n\r\n").unwrap_err();
        assert_eq!(e.status(), Some(200));

        // A subprotocol the client did not offer at all.
        let plain = ClientConfig::default();
        let r2 = request(&plain);
        let text = ok_response(&r2, "Sec-WebSocket-Protocol: chat\r\n");
        let e = read(&r2, &plain, text.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("none was offered"), "{e}");
    }

    #[test]
    fn deflate_negotiation() {
        let config = ClientConfig::default().deflate(crate::DeflateConfig::default().server_no_context_takeover(true));
        let r = request(&config);
        let text = std::str::from_utf8(r.bytes()).unwrap();
        assert!(
            text.contains(
                "\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_max_window_bits\r\n"
            ),
            "{text}"
        );
        let answer = ok_response(
            &r,
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_max_window_bits=10\r\n",
        );
        let (resp, _) = read(&r, &config, answer.as_bytes()).unwrap();
        let p = resp.deflate().expect("agreed");
        assert!(p.server_no_context_takeover && !p.client_no_context_takeover);
        assert_eq!((p.client_max_window_bits, p.server_max_window_bits), (10, 15));
        // Declined: no header, no compression.
        let (resp, _) = read(&r, &config, ok_response(&r, "").as_bytes()).unwrap();
        assert!(resp.deflate().is_none());
        // A request the server ignored fails the handshake.
        let e = read(
            &r,
            &config,
            ok_response(&r, "Sec-WebSocket-Extensions: permessage-deflate\r\n").as_bytes(),
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Handshake);
        // A bad window in the config is reported before anything is sent.
        let bad = ClientConfig::default().deflate(crate::DeflateConfig::default().client_max_window_bits(20));
        assert!(Request::try_new(&Url::parse("ws://a/").unwrap(), &bad).is_err());
    }

    #[test]
    fn chosen_subprotocol() {
        let config = ClientConfig::default().subprotocol("a").subprotocol("b");
        let r = request(&config);
        let text = ok_response(&r, "Sec-WebSocket-Protocol: b\r\n");
        let (resp, _) = read(&r, &config, text.as_bytes()).unwrap();
        assert_eq!(resp.subprotocol(), Some("b"));
    }

    #[test]
    fn eof_before_head() {
        let config = ClientConfig::default();
        let r = request(&config);
        // Nothing came back: the path failed, another may be tried.
        let e = read(&r, &config, b"").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionClosed);
        assert!(e.is_path_failure());
        // The server began to answer, so it had the request: not a path
        // failure, or the upgrade would be sent twice.
        let e = read(&r, &config, b"HTTP/1.1 101 Switching").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionClosed);
        assert!(!e.is_path_failure());
    }
}
