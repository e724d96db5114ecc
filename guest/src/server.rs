//! The server's opening handshake (RFC 6455 §4.2): the checks of the
//! client's upgrade request, the `101 Switching Protocols` answer (accept
//! key, subprotocol, permessage-deflate) and the refusals.
//!
//! The checks work on a parsed head ([`RequestHead`], which is what the
//! wsgate host hands a gateway plugin) or on raw bytes ([`parse_request`],
//! [`RequestParser`]); they are pure functions, fuzzed on their own.
//! [`accept`] does the whole handshake over a [`Transport`] (a native
//! `TcpStream`, say) and returns the server's [`WebSocket`].
//!
//! What is refused, and how (RFC 6455 §4.2.1, §4.2.2 and §4.4, RFC 9110
//! §15.5.22):
//!
//! | request | answer |
//! |---|---|
//! | no `Upgrade: websocket` (not a WebSocket request at all) | `426 Upgrade Required`, with `Upgrade: websocket` and `Sec-WebSocket-Version: 13` |
//! | `Sec-WebSocket-Version` missing, repeated or not `13` | `426 Upgrade Required`, with `Sec-WebSocket-Version: 13` |
//! | not `GET`, not HTTP/1.1 or later, no `Connection: upgrade`, no single `Host`, a `Sec-WebSocket-Key` missing, repeated or not 16 bytes of base64, a body, a malformed subprotocol list, a head that does not parse | `400 Bad Request` |
//! | a head longer than the limit ([`ServerConfig::max_request_head`]) | `431 Request Header Fields Too Large` |
//!
//! ```no_run
//! use std::net::TcpListener;
//! use wsgate_guest::{Message, server::{ServerConfig, accept}};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = TcpListener::bind("127.0.0.1:9001")?;
//! let (tcp, _) = listener.accept()?;
//! let mut ws = accept(tcp, &ServerConfig::default().subprotocol("chat"))?;
//! while let Ok(message) = ws.recv() {
//!     match message {
//!         Message::Text(_) | Message::Binary(_) => ws.send(message)?,
//!         Message::Close(_) => break,
//!         _ => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::io::Read;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::config::{Limits, extra_header, is_token};
use crate::deflate::{DeflateConfig, DeflateParams, accept_offer};
use crate::error::Error;
use crate::handshake::{HeadBuffer, accept_key, find_head_end, trim};
use crate::transport::Transport;
use crate::websocket::WebSocket;

/// The WebSocket version this server speaks (RFC 6455 §4.4).
const VERSION: &str = "13";

/// The default bound on a request head: what the wsgate host allows too.
const DEFAULT_MAX_HEAD: usize = 16 << 10;

/// A request head, as the client sent it (or as the wsgate host parsed it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestHead {
    /// The method: `GET` for a WebSocket upgrade.
    pub method: String,
    /// The request target as sent: `/path?query`, usually.
    pub target: String,
    /// The minor HTTP version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub minor_version: u8,
    /// Every header, in the order sent: the name in its own case, the
    /// value's bytes untouched.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl RequestHead {
    /// The value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.values(name).next()
    }

    /// The values of every header named `name` (case-insensitive), in
    /// order.
    pub fn values<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a [u8]> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The elements of every header named `name` taken as a comma-separated
    /// list (RFC 9110 §5.6.1), trimmed, the empty ones left out.
    fn elements<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a [u8]> {
        self.values(name)
            .flat_map(|v| v.split(|&b| b == b','))
            .map(trim)
            .filter(|e| !e.is_empty())
    }

    /// The one header named `name`: `Ok(None)` when there is none,
    /// `Err(())` when there are several.
    fn single(&self, name: &str) -> Result<Option<&[u8]>, ()> {
        let mut values = self.values(name);
        match (values.next(), values.next()) {
            (None, _) => Ok(None),
            (Some(v), None) => Ok(Some(trim(v))),
            (Some(_), Some(_)) => Err(()),
        }
    }
}

/// A request the server will not upgrade, and the answer it gets: a status
/// (400, 426, 431, or one a plugin chooses) and a line saying why, sent as
/// a `text/plain` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    status: u16,
    detail: String,
}

impl Refusal {
    /// A refusal with `status` (an HTTP error status, 400 to 599; another
    /// is answered as 500) and `detail`, which becomes the body: one line,
    /// control characters replaced.
    pub fn new(status: u16, detail: impl Into<String>) -> Refusal {
        let status = if (400..=599).contains(&status) { status } else { 500 };
        let detail = detail
            .into()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        Refusal { status, detail }
    }

    fn bad(detail: impl Into<String>) -> Refusal {
        Refusal::new(400, detail)
    }

    fn upgrade_required(detail: impl Into<String>) -> Refusal {
        Refusal::new(426, detail)
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Why, in words.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The reason phrase of the status line.
    pub fn reason(&self) -> &'static str {
        reason_phrase(self.status)
    }

    /// The whole response: status line, headers and body. A 426 carries
    /// `Upgrade: websocket` and `Sec-WebSocket-Version: 13` (RFC 6455
    /// §4.4); every refusal closes the connection.
    pub fn response(&self) -> Vec<u8> {
        let body = format!("{}\n", self.detail);
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, self.reason());
        if self.status == 426 {
            head.push_str("Upgrade: websocket\r\nConnection: Upgrade, close\r\n");
            head.push_str("Sec-WebSocket-Version: 13\r\n");
        } else {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("Content-Type: text/plain; charset=utf-8\r\n");
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body.as_bytes());
        bytes
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.reason(), self.detail)
    }
}

impl std::error::Error for Refusal {}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Error {
        Error::refused(r.status, r.reason(), &r.detail)
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        402..=499 => "Client Error",
        _ => "Server Error",
    }
}

/// A checked WebSocket upgrade request (RFC 6455 §4.2.1).
#[derive(Clone, Debug)]
pub struct UpgradeRequest {
    head: RequestHead,
    key: String,
    subprotocols: Vec<String>,
}

impl UpgradeRequest {
    /// Checks that `head` asks for a WebSocket upgrade this server can
    /// make; the [`Refusal`] says how to answer when not (see the [module
    /// docs](self) for which status when).
    pub fn check(head: RequestHead) -> Result<UpgradeRequest, Refusal> {
        if !head.elements("upgrade").any(|t| t.eq_ignore_ascii_case(b"websocket")) {
            return Err(Refusal::upgrade_required(
                "this is a WebSocket endpoint: the request lacks \"Upgrade: websocket\"",
            ));
        }
        if head.method != "GET" {
            return Err(Refusal::bad(format!(
                "a WebSocket upgrade is a GET, not {:?}",
                head.method
            )));
        }
        if head.minor_version < 1 {
            return Err(Refusal::bad("a WebSocket upgrade needs HTTP/1.1"));
        }
        if !head.elements("connection").any(|t| t.eq_ignore_ascii_case(b"upgrade")) {
            return Err(Refusal::bad("the request lacks \"Connection: Upgrade\""));
        }
        match head.single("host") {
            Ok(Some(host)) if !host.is_empty() => {}
            Ok(_) => return Err(Refusal::bad("the request lacks a Host header")),
            Err(()) => return Err(Refusal::bad("the request has more than one Host header")),
        }
        match head.single("sec-websocket-version") {
            Ok(Some(v)) if v == VERSION.as_bytes() => {}
            Ok(Some(v)) => {
                return Err(Refusal::upgrade_required(format!(
                    "WebSocket version {:?} is not supported: this server speaks version 13",
                    String::from_utf8_lossy(v)
                )));
            }
            Ok(None) => {
                return Err(Refusal::upgrade_required(
                    "the request lacks Sec-WebSocket-Version: this server speaks version 13",
                ));
            }
            Err(()) => {
                return Err(Refusal::upgrade_required(
                    "the request has more than one Sec-WebSocket-Version: this server speaks version 13",
                ));
            }
        }
        let key = match head.single("sec-websocket-key") {
            Ok(Some(key)) if BASE64.decode(key).is_ok_and(|nonce| nonce.len() == 16) => {
                // Base64 is ASCII.
                String::from_utf8_lossy(key).into_owned()
            }
            Ok(Some(_)) => {
                return Err(Refusal::bad("Sec-WebSocket-Key is not 16 bytes in base64"));
            }
            Ok(None) => return Err(Refusal::bad("the request lacks Sec-WebSocket-Key")),
            Err(()) => return Err(Refusal::bad("the request has more than one Sec-WebSocket-Key")),
        };
        // The upgrade GET has no body: bytes behind the head are frames.
        if head.values("transfer-encoding").next().is_some() || head.values("content-length").any(|v| trim(v) != b"0") {
            return Err(Refusal::bad("a WebSocket upgrade request has no body"));
        }
        let mut subprotocols = Vec::new();
        for p in head.elements("sec-websocket-protocol") {
            match std::str::from_utf8(p) {
                Ok(p) if is_token(p) => {
                    if !subprotocols.iter().any(|q| q == p) {
                        subprotocols.push(p.to_owned());
                    }
                }
                _ => {
                    return Err(Refusal::bad(format!(
                        "subprotocol {:?} is not a token",
                        String::from_utf8_lossy(p)
                    )));
                }
            }
        }
        Ok(UpgradeRequest {
            head,
            key,
            subprotocols,
        })
    }

    /// The request head.
    pub fn head(&self) -> &RequestHead {
        &self.head
    }

    /// The request target as sent (`/path?query`).
    pub fn target(&self) -> &str {
        &self.head.target
    }

    /// The path of the target: what comes before `?`.
    pub fn path(&self) -> &str {
        self.head.target.split('?').next().unwrap_or_default()
    }

    /// The value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.head.header(name)
    }

    /// The `Host` header.
    pub fn host(&self) -> &str {
        self.head
            .header("host")
            .and_then(|h| std::str::from_utf8(trim(h)).ok())
            .unwrap_or_default()
    }

    /// The `Origin` header, which browsers send (RFC 6455 §10.2): a server
    /// that serves browsers checks it.
    pub fn origin(&self) -> Option<&str> {
        self.head
            .header("origin")
            .and_then(|h| std::str::from_utf8(trim(h)).ok())
    }

    /// The `Sec-WebSocket-Key` sent.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The subprotocols the client offered, most preferred first (each
    /// once).
    pub fn subprotocols(&self) -> &[String] {
        &self.subprotocols
    }

    /// The `Sec-WebSocket-Extensions` values the client sent.
    pub fn extensions(&self) -> impl Iterator<Item = &[u8]> {
        self.head.values("sec-websocket-extensions")
    }

    /// The answer of a server with `config`: the `101 Switching Protocols`
    /// response, with the accept key, the subprotocol chosen (the client's
    /// most preferred one among `config`'s) and permessage-deflate when
    /// `config` accepts it and the client offered it.
    ///
    /// Fails only when `config` refused one of its own headers or
    /// subprotocols (see [`ServerConfig::validate`]).
    pub fn accept(&self, config: &ServerConfig) -> Result<Accept, Error> {
        config.validate()?;
        let subprotocol = self
            .subprotocols
            .iter()
            .find(|p| config.subprotocols.contains(p))
            .cloned();
        let deflate = config.deflate.as_ref().and_then(|d| accept_offer(d, self.extensions()));
        let mut head = String::with_capacity(160);
        head.push_str("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n");
        head.push_str(&format!("Sec-WebSocket-Accept: {}\r\n", accept_key(&self.key)));
        if let Some(p) = &subprotocol {
            head.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
        }
        if let Some((_, answer)) = &deflate {
            head.push_str(&format!("Sec-WebSocket-Extensions: {answer}\r\n"));
        }
        for (name, value) in &config.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        Ok(Accept {
            bytes: head.into_bytes(),
            subprotocol,
            deflate: deflate.map(|(params, _)| params),
        })
    }
}

/// The server's `101 Switching Protocols` answer to an [`UpgradeRequest`]
/// ([`UpgradeRequest::accept`]), and what it agreed to.
#[derive(Clone, Debug)]
pub struct Accept {
    bytes: Vec<u8>,
    subprotocol: Option<String>,
    deflate: Option<DeflateParams>,
}

impl Accept {
    /// The whole response, to be written before any frame.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The subprotocol chosen, if any.
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }

    /// The permessage-deflate parameters agreed, if any.
    pub fn deflate(&self) -> Option<&DeflateParams> {
        self.deflate.as_ref()
    }
}

/// Parses and checks an upgrade request from the start of `bytes`.
///
/// `Ok(None)` while the head is incomplete (and shorter than `max_head`);
/// `Ok(Some((request, n)))` with the length `n` of the head once it is
/// complete (the bytes past it are the client's first frames). A pure
/// function: what [`RequestParser`] and [`accept`] use, and what is fuzzed.
pub fn parse_request(bytes: &[u8], max_head: usize) -> Result<Option<(UpgradeRequest, usize)>, Refusal> {
    let window = &bytes[..bytes.len().min(max_head)];
    match find_head_end(window, 0) {
        (Some(end), _) => parse_head(&bytes[..end])
            .and_then(UpgradeRequest::check)
            .map(|r| Some((r, end))),
        (None, _) if bytes.len() >= max_head => Err(too_large(max_head)),
        (None, _) => Ok(None),
    }
}

fn too_large(max_head: usize) -> Refusal {
    Refusal::new(431, format!("the request head exceeds {max_head} bytes"))
}

/// Parses a complete head (up to and with its empty line).
fn parse_head(head: &[u8]) -> Result<RequestHead, Refusal> {
    // As many header slots as the head has lines: never too few, and
    // bounded by the head's size cap.
    let lines = head.iter().filter(|&&b| b == b'\n').count();
    let mut slots = vec![httparse::EMPTY_HEADER; lines];
    let mut parsed = httparse::Request::new(&mut slots);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(Refusal::bad("malformed request head")),
        Err(e) => return Err(Refusal::bad(format!("malformed request head: {e}"))),
    }
    let (Some(method), Some(target), Some(version)) = (parsed.method, parsed.path, parsed.version) else {
        return Err(Refusal::bad("malformed request head"));
    };
    Ok(RequestHead {
        method: method.to_owned(),
        target: target.to_owned(),
        minor_version: version,
        headers: parsed
            .headers
            .iter()
            .map(|h| (h.name.to_owned(), h.value.to_vec()))
            .collect(),
    })
}

/// An incremental reader of an upgrade request, fed bytes as they arrive
/// (in linear time, however small the pieces), the head held to a maximum
/// size.
#[derive(Debug)]
pub struct RequestParser {
    head: HeadBuffer,
}

impl RequestParser {
    /// A parser accepting heads of at most `max_head` bytes.
    pub fn new(max_head: usize) -> RequestParser {
        RequestParser {
            head: HeadBuffer::new(max_head),
        }
    }

    /// Whether any byte was fed yet.
    pub fn is_empty(&self) -> bool {
        self.head.is_empty()
    }

    /// Feeds the next bytes. Returns the checked request once its head is
    /// complete, with the bytes that followed it, or `None` if more bytes
    /// are needed.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<(UpgradeRequest, Vec<u8>)>, Refusal> {
        match self.head.feed(data) {
            Ok(Some((head, leftover))) => Ok(Some((UpgradeRequest::check(parse_head(&head)?)?, leftover))),
            Ok(None) => Ok(None),
            Err(max) => Err(too_large(max)),
        }
    }
}

/// Settings of a WebSocket server: the subprotocols it speaks, extra
/// headers of its `101`, permessage-deflate, the limits.
///
/// ```
/// use wsgate_guest::{DeflateConfig, server::ServerConfig};
/// let config = ServerConfig::default()
///     .subprotocol("chat.v2")
///     .subprotocol("chat")
///     .deflate(DeflateConfig::default())
///     .max_message_size(1 << 20);
/// # config.validate().unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub(crate) subprotocols: Vec<String>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) limits: Limits,
    pub(crate) max_request_head: usize,
    pub(crate) deflate: Option<DeflateConfig>,
    pub(crate) invalid: Option<String>,
    pub(crate) close_on_going_away: bool,
}

impl Default for ServerConfig {
    /// No subprotocol, no permessage-deflate, the default [`Limits`], a
    /// 16 KiB request head.
    fn default() -> Self {
        ServerConfig {
            subprotocols: Vec::new(),
            headers: Vec::new(),
            limits: Limits::default(),
            max_request_head: DEFAULT_MAX_HEAD,
            deflate: None,
            invalid: None,
            close_on_going_away: true,
        }
    }
}

impl ServerConfig {
    /// A subprotocol this server speaks. Of those the client offers, the
    /// one it prefers most that the server speaks is chosen; with none,
    /// the `101` names none (and the client decides whether to go on).
    pub fn subprotocol(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        if !is_token(&name) {
            self.remember(format!("subprotocol {name:?} is not an HTTP token"));
        } else if !self.subprotocols.contains(&name) {
            self.subprotocols.push(name);
        }
        self
    }

    /// Adds a header to the `101` response. The handshake's own headers
    /// (`Upgrade`, `Connection`, `Sec-WebSocket-*`) and body headers are
    /// refused, as are names that are not tokens and values with control
    /// characters.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        match extra_header(name.into(), value.into()) {
            Ok(header) => self.headers.push(header),
            Err(problem) => self.remember(problem),
        }
        self
    }

    /// Accepts permessage-deflate (RFC 7692) when the client offers it,
    /// with the server's wishes of `deflate` (see [`DeflateConfig`]).
    /// Decompressed messages are held to
    /// [`max_message_size`](Self::max_message_size).
    pub fn deflate(mut self, deflate: DeflateConfig) -> Self {
        match deflate.problem() {
            Some(problem) => self.remember(format!("permessage-deflate: {problem}")),
            None => self.deflate = Some(deflate),
        }
        self
    }

    /// What the session does when the gateway is going away (it drains
    /// before it stops). With `true` (the default) the SDK sends Close 1001
    /// "going away" itself at the next wait for the client, and `recv`
    /// goes on until the client's Close answers it. With `false` the
    /// plugin handles it: `recv` (or a `Poller`) reports
    /// one error of kind [`GoingAway`](crate::ErrorKind::GoingAway) and
    /// the session stays open, to finish what it must and close itself
    /// before the host's drain timeout closes it.
    pub fn close_on_going_away(mut self, yes: bool) -> Self {
        self.close_on_going_away = yes;
        self
    }

    /// All the session's limits at once (see [`Limits`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The largest frame payload accepted from the client (see
    /// [`Limits::max_frame_size`]; default 16 MiB).
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.limits.max_frame_size = bytes;
        self
    }

    /// The largest message accepted from the client (see
    /// [`Limits::max_message_size`]; default 64 MiB).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.limits.max_message_size = bytes;
        self
    }

    /// The most frames one message may be split into (see
    /// [`Limits::max_fragments`]; default 131072).
    pub fn max_fragments(mut self, count: usize) -> Self {
        self.limits.max_fragments = count;
        self
    }

    /// How long the close handshake waits (see [`Limits::close_timeout`];
    /// default 5 s).
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.limits.close_timeout = timeout;
        self
    }

    /// The largest request head [`accept`] reads (default 16 KiB); a longer
    /// one is refused with 431. A gateway plugin gets the head the host
    /// read, under the host's own bound.
    pub fn max_request_head(mut self, bytes: usize) -> Self {
        self.max_request_head = bytes;
        self
    }

    /// Reports the first header or subprotocol that the builder refused.
    pub fn validate(&self) -> Result<(), Error> {
        match &self.invalid {
            Some(problem) => Err(Error::handshake(problem.clone())),
            None => Ok(()),
        }
    }

    fn remember(&mut self, problem: String) {
        self.invalid.get_or_insert(problem);
    }
}

/// Serves the opening handshake on `stream`, a connection a client opened
/// (TLS already done), and returns the server's session.
///
/// Reads the request head (at most [`ServerConfig::max_request_head`]
/// bytes), checks it, and writes the `101` or, for a request it refuses,
/// the [`Refusal`]'s response, then fails with an error whose
/// [`status`](Error::status) is the one answered. Bytes the client sent
/// right behind its request are kept for the session.
pub fn accept<S: Transport>(stream: S, config: &ServerConfig) -> Result<WebSocket<S>, Error> {
    accept_with_request(stream, config).map(|(ws, _)| ws)
}

/// Like [`accept`], also returning the request (for its target, headers
/// and subprotocols).
pub fn accept_with_request<S: Transport>(
    mut stream: S,
    config: &ServerConfig,
) -> Result<(WebSocket<S>, UpgradeRequest), Error> {
    config.validate()?;
    let (request, leftover) = match read_request(&mut stream, config.max_request_head)? {
        Ok(read) => read,
        Err(refusal) => {
            // The answer is best effort: the client may be gone.
            let _ = stream.write_all(&refusal.response()).and_then(|()| stream.flush());
            return Err(refusal.into());
        }
    };
    let answer = request.accept(config)?;
    stream.write_all(answer.bytes())?;
    stream.flush()?;
    let ws = WebSocket::from_accept(stream, &answer, leftover, config);
    Ok((ws, request))
}

/// Reads a request head from `reader`: the checked request and the bytes
/// past it, or the refusal to answer; an error for a failed read or an
/// end of stream.
fn read_request<R: Read>(reader: &mut R, max_head: usize) -> Result<Result<(UpgradeRequest, Vec<u8>), Refusal>, Error> {
    let mut parser = RequestParser::new(max_head);
    let mut chunk = [0u8; 4096];
    // Each pass reads at least one byte or returns, and the parser fails
    // past `max_head` bytes, so the loop is bounded.
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => {
                return Err(Error::connection_closed(if parser.is_empty() {
                    "connection closed before any request"
                } else {
                    "connection closed in the middle of the request head"
                }));
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::from_read(e)),
        };
        match parser.feed(&chunk[..n]) {
            Ok(Some(read)) => return Ok(Ok(read)),
            Ok(None) => {}
            Err(refusal) => return Ok(Err(refusal)),
        }
    }
}

#[cfg(test)]
mod tests;
