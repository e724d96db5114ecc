//! Settings: the limits both roles share ([`Limits`]), the client's
//! ([`ClientConfig`]: extra handshake headers, subprotocols) and the
//! server's ([`ServerConfig`](crate::server::ServerConfig)).

use std::time::Duration;

use crate::deflate::DeflateConfig;
use crate::error::Error;

/// Header names the SDK writes itself, or that would change the meaning of
/// the upgrade request. Letting a caller set them would produce a request
/// that the SDK's own checks of the response then contradict.
pub(crate) const RESERVED_HEADERS: &[&str] = &[
    "host",
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    // Extensions are negotiated by the SDK (`ClientConfig::deflate`): one
    // it does not implement would make the server set RSV bits or change
    // payloads in ways this client must reject.
    "sec-websocket-extensions",
    // The upgrade GET has no body; a length would desynchronise the stream.
    "content-length",
    "transfer-encoding",
];

/// Settings of a WebSocket client.
///
/// Built from [`ClientConfig::default`] with the builder methods:
///
/// ```
/// let config = wsgate_guest::ClientConfig::default()
///     .header("Authorization", "Bearer abc")
///     .subprotocol("chat")
///     .max_message_size(1 << 20);
/// ```
///
/// A header or subprotocol that is not valid HTTP is not added; the first
/// such problem is remembered and reported by [`ClientConfig::validate`],
/// which [`client`](crate::client) and
/// [`Request::try_new`](crate::handshake::Request::try_new) call.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) subprotocols: Vec<String>,
    pub(crate) limits: Limits,
    pub(crate) max_response_head: usize,
    pub(crate) deflate: Option<DeflateConfig>,
    pub(crate) invalid: Option<String>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            headers: Vec::new(),
            subprotocols: Vec::new(),
            limits: Limits::default(),
            max_response_head: 16 << 10,
            deflate: None,
            invalid: None,
        }
    }
}

/// The limits of a WebSocket session, whichever its role: what the peer
/// may send (frame, message, fragments) and how long the close handshake
/// waits.
///
/// [`ClientConfig`] and [`ServerConfig`](crate::server::ServerConfig) each
/// hold one, set through their builder methods of the same names, or all
/// at once with their `limits` method:
///
/// ```
/// use wsgate_guest::{ClientConfig, Limits, server::ServerConfig};
/// let limits = Limits::default().max_message_size(1 << 20).max_frame_size(1 << 20);
/// let client = ClientConfig::default().limits(limits.clone());
/// let server = ServerConfig::default().limits(limits);
/// # let _ = (client, server);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub(crate) max_frame_size: usize,
    pub(crate) max_message_size: usize,
    pub(crate) max_fragments: usize,
    pub(crate) close_timeout: Duration,
}

impl Default for Limits {
    /// 16 MiB frames, 64 MiB messages, 131072 fragments, a 5 s close
    /// timeout.
    fn default() -> Self {
        Limits {
            max_frame_size: 16 << 20,
            max_message_size: 64 << 20,
            // Fragment count bounds the work of a message whose frames are
            // tiny (empty continuations cost no message budget). It is set
            // well above the 65536 fragments of Autobahn's "4 MiB in 64-byte
            // fragments" cases, which real peers can legitimately match.
            max_fragments: 1 << 17,
            close_timeout: Duration::from_secs(5),
        }
    }
}

impl Limits {
    /// The largest frame payload accepted from the peer, in bytes
    /// (default 16 MiB). A larger frame ends the session with 1009 as soon
    /// as its header arrives.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes;
        self
    }

    /// The largest message accepted from the peer, in bytes, after
    /// reassembly of its fragments and after decompression (default
    /// 64 MiB); its compressed size is held to it too. A larger message
    /// ends the session with 1009 as soon as a header or the decompressed
    /// data shows it. Memory grows with the data that arrived, never to
    /// more than this.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// The most frames one message may be split into (default 131072),
    /// empty ones included: it bounds the work of a message of tiny frames.
    /// More ends the session with 1009.
    pub fn max_fragments(mut self, count: usize) -> Self {
        self.max_fragments = count;
        self
    }

    /// How long [`WebSocket::close`](crate::WebSocket::close) waits for the
    /// peer's answering Close, and
    /// [`WebSocket::wait_closed`](crate::WebSocket::wait_closed) for the end
    /// of the stream (default 5 s). A zero duration does not wait at all.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }
}

impl ClientConfig {
    /// Adds a header to the upgrade request (for example `Authorization`,
    /// `Origin`, `User-Agent`).
    ///
    /// The headers the handshake itself needs (`Host`, `Upgrade`,
    /// `Connection`, `Sec-WebSocket-*`) and body headers are refused, as are
    /// names that are not HTTP tokens and values with control characters
    /// (which could inject a header or end the request early).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        match extra_header(name.into(), value.into()) {
            Ok(header) => self.headers.push(header),
            Err(problem) => self.remember(problem),
        }
        self
    }

    /// Offers a subprotocol (`Sec-WebSocket-Protocol`), most preferred
    /// first. The server's choice is in
    /// [`Response::subprotocol`](crate::handshake::Response::subprotocol).
    pub fn subprotocol(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        if !is_token(&name) {
            self.remember(format!("subprotocol {name:?} is not an HTTP token"));
        } else if self.subprotocols.contains(&name) {
            self.remember(format!("subprotocol {name:?} is offered twice"));
        } else {
            self.subprotocols.push(name);
        }
        self
    }

    /// The largest frame payload accepted from the server, in bytes
    /// (default 16 MiB). A larger frame ends the session with 1009 as soon
    /// as its header arrives.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.limits.max_frame_size = bytes;
        self
    }

    /// The largest message accepted from the server, in bytes, after
    /// reassembly of its fragments and after decompression (default
    /// 64 MiB); its compressed size is held to it too. A larger message
    /// ends the session with 1009 as soon as a header or the decompressed
    /// data shows it. Memory grows with the data that arrived, never to
    /// more than this.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.limits.max_message_size = bytes;
        self
    }

    /// The most frames one message may be split into (default 131072),
    /// empty ones included: it bounds the work of a message of tiny frames.
    /// More ends the session with 1009.
    pub fn max_fragments(mut self, count: usize) -> Self {
        self.limits.max_fragments = count;
        self
    }

    /// All the session's limits at once (see [`Limits`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The largest handshake response head (status line and headers)
    /// accepted, in bytes (default 16 KiB).
    pub fn max_response_head(mut self, bytes: usize) -> Self {
        self.max_response_head = bytes;
        self
    }

    /// How long [`WebSocket::close`](crate::WebSocket::close) waits for the
    /// peer's answering Close, and
    /// [`WebSocket::wait_closed`](crate::WebSocket::wait_closed) for the end
    /// of the stream (default 5 s). A zero duration does not wait at all.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.limits.close_timeout = timeout;
        self
    }

    /// Offers the permessage-deflate extension (RFC 7692) with these
    /// parameters. When the server accepts, messages are compressed both
    /// ways; the agreed parameters are in
    /// [`Response::deflate`](crate::Response::deflate). Decompressed
    /// messages are held to [`max_message_size`](Self::max_message_size).
    pub fn deflate(mut self, deflate: DeflateConfig) -> Self {
        match deflate.problem() {
            Some(problem) => self.remember(format!("permessage-deflate: {problem}")),
            None => self.deflate = Some(deflate),
        }
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
        // The first problem is the one to fix first; later ones may be
        // consequences of it.
        self.invalid.get_or_insert(problem);
    }
}

/// A header a config adds to the handshake (the client's request or the
/// server's `101`), checked: a token name, not one of the handshake's own,
/// a value without control characters (trimmed). The error says what is
/// wrong, for the config to remember.
pub(crate) fn extra_header(name: String, value: String) -> Result<(String, String), String> {
    if !is_token(&name) {
        Err(format!("header name {name:?} is not an HTTP token"))
    } else if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        Err(format!("header {name:?} is set by the WebSocket handshake itself"))
    } else if !is_field_value(&value) {
        Err(format!("value of header {name:?} has control characters"))
    } else {
        let value = value.trim().to_owned();
        Ok((name, value))
    }
}

/// RFC 9110 §5.6.2 `token`.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// RFC 9110 §5.5 field value: visible ASCII, spaces, tabs and obs-text; no
/// CR, LF or other controls.
pub(crate) fn is_field_value(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_headers() {
        assert!(ClientConfig::default().header("X-A", "b").validate().is_ok());
        for (n, v) in [
            ("X-A", "b\r\nEvil: 1"),
            ("X A", "b"),
            ("", "b"),
            ("Sec-WebSocket-Key", "x"),
            ("HOST", "x"),
        ] {
            let c = ClientConfig::default().header(n, v);
            assert!(c.validate().is_err(), "{n:?}: {v:?}");
            assert!(c.headers.is_empty());
        }
        assert!(ClientConfig::default().subprotocol("a b").validate().is_err());
        assert!(
            ClientConfig::default()
                .subprotocol("a")
                .subprotocol("a")
                .validate()
                .is_err()
        );
    }
}
