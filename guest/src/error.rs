//! The one error type of the crate.
//!
//! Like hyper's, the error is opaque: callers branch on [`Error::kind`] and
//! on the few accessors ([`Error::status`], [`Error::close_code`],
//! [`Error::is_path_failure`]) rather than on the variants of a large public
//! enum, so that details can be added without breaking them.

use std::fmt;

/// What kind of failure an [`Error`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The URL is not a usable `ws://` or `wss://` URL.
    Url,
    /// Reading from or writing to the byte stream failed.
    Io,
    /// The opening handshake failed: the server did not answer with a valid
    /// `101 Switching Protocols`, or the request could not be built; for a
    /// server, the request was refused.
    Handshake,
    /// The peer closed the byte stream without a WebSocket Close frame
    /// (before the handshake response was complete, or during the session).
    ConnectionClosed,
    /// The WebSocket is closed (the close handshake is done, a Close was
    /// sent, or an earlier error ended it); nothing more can be sent or
    /// received.
    AlreadyClosed,
    /// The peer broke RFC 6455 (status 1002), or a message was refused for
    /// breaking it on our side.
    Protocol,
    /// A limit of [`ClientConfig`](crate::ClientConfig) or of the protocol
    /// was exceeded (status 1009 when the peer exceeded it).
    Capacity,
    /// A text message or close reason was not valid UTF-8 (status 1007).
    Utf8,
    /// The host could not open a connection (set by the wasm layer).
    Connect,
    /// A read did not complete within the time allowed: the read timeout
    /// set on the [`Transport`](crate::Transport), or the close handshake's
    /// [`close_timeout`](crate::ClientConfig::close_timeout). Nothing was
    /// consumed: after a timeout of `recv`, the session is still usable.
    Timeout,
    /// The gateway is going away (it drains before it stops), and the
    /// plugin asked to be told rather than have the SDK close with 1001
    /// (see [`ServerConfig::close_on_going_away`](crate::ServerConfig::close_on_going_away)).
    /// Reported once; the session stays usable and should be closed soon.
    GoingAway,
}

impl ErrorKind {
    fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Url => "invalid URL",
            ErrorKind::Io => "I/O error",
            ErrorKind::Handshake => "WebSocket handshake failed",
            ErrorKind::ConnectionClosed => "connection closed",
            ErrorKind::AlreadyClosed => "WebSocket already closed",
            ErrorKind::Protocol => "WebSocket protocol error",
            ErrorKind::Capacity => "WebSocket limit exceeded",
            ErrorKind::Utf8 => "invalid UTF-8",
            ErrorKind::Connect => "connect failed",
            ErrorKind::Timeout => "timed out",
            ErrorKind::GoingAway => "the gateway is going away",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error of the WebSocket client.
///
/// `Display` gives one line: the kind, then the detail
/// (`WebSocket handshake failed: server answered 200 OK instead of 101
/// Switching Protocols`).
pub struct Error {
    // Boxed so that `Result<T, Error>` stays one pointer wide on the hot
    // paths (`recv`, `send`), where errors are rare.
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    detail: String,
    status: Option<u16>,
    close_code: Option<u16>,
    /// Set for a `ConnectionClosed` that happened before a complete
    /// handshake response: only then is the EOF a failure of the path
    /// rather than of the session.
    before_response: bool,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    fn with(kind: ErrorKind, detail: impl Into<String>) -> Error {
        Error {
            inner: Box::new(Inner {
                kind,
                detail: detail.into(),
                status: None,
                close_code: None,
                before_response: false,
                source: None,
            }),
        }
    }

    /// An error of kind [`ErrorKind::Connect`]: the host refused or failed
    /// the connect. `msg` says why, in words.
    pub fn connect(msg: impl Into<String>) -> Error {
        Error::with(ErrorKind::Connect, msg)
    }

    pub(crate) fn url(detail: impl Into<String>) -> Error {
        Error::with(ErrorKind::Url, detail)
    }

    pub(crate) fn handshake(detail: impl Into<String>) -> Error {
        Error::with(ErrorKind::Handshake, detail)
    }

    /// A non-101 answer; keeps the status for [`Error::status`].
    pub(crate) fn http_status(status: u16, reason: &str) -> Error {
        let mut e = Error::handshake(format!(
            "server answered {status} {reason} instead of 101 Switching Protocols"
        ));
        e.inner.status = Some(status);
        e
    }

    /// A request this server refused, answered with `status`.
    pub(crate) fn refused(status: u16, reason: &str, detail: &str) -> Error {
        let mut e = Error::handshake(format!("refused the upgrade request with {status} {reason}: {detail}"));
        e.inner.status = Some(status);
        e
    }

    /// EOF before a complete response head.
    pub(crate) fn closed_before_response(detail: impl Into<String>) -> Error {
        let mut e = Error::with(ErrorKind::ConnectionClosed, detail);
        e.inner.before_response = true;
        e
    }

    pub(crate) fn connection_closed(detail: impl Into<String>) -> Error {
        Error::with(ErrorKind::ConnectionClosed, detail)
    }

    pub(crate) fn already_closed(detail: impl Into<String>) -> Error {
        Error::with(ErrorKind::AlreadyClosed, detail)
    }

    /// A read that timed out: `what` says which wait; `err` is the
    /// transport's error, kept as the source.
    pub(crate) fn timeout(what: impl Into<String>, err: Option<std::io::Error>) -> Error {
        let mut e = Error::with(ErrorKind::Timeout, what);
        e.inner.source = err.map(|err| Box::new(err) as Box<dyn std::error::Error + Send + Sync>);
        e
    }

    /// The gateway's drain, for a plugin that handles it itself.
    pub(crate) fn going_away() -> Error {
        Error::with(ErrorKind::GoingAway, "the gateway is draining")
    }

    /// An error of a read: a timeout (`WouldBlock`, which is how a socket
    /// with a read timeout reports it on Unix, or `TimedOut`) becomes an
    /// error of kind [`ErrorKind::Timeout`], any other one of kind
    /// [`ErrorKind::Io`].
    pub(crate) fn from_read(err: std::io::Error) -> Error {
        match err.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                Error::timeout(format!("read timed out ({err})"), Some(err))
            }
            _ => Error::from(err),
        }
    }

    /// A protocol violation of the peer: the session ends with 1002.
    pub(crate) fn protocol(detail: impl Into<String>) -> Error {
        let mut e = Error::with(ErrorKind::Protocol, detail);
        e.inner.close_code = Some(1002);
        e
    }

    /// The peer exceeded a limit: the session ends with 1009.
    pub(crate) fn capacity(detail: impl Into<String>) -> Error {
        let mut e = Error::with(ErrorKind::Capacity, detail);
        e.inner.close_code = Some(1009);
        e
    }

    /// The peer sent invalid UTF-8: the session ends with 1007.
    pub(crate) fn utf8(detail: impl Into<String>) -> Error {
        let mut e = Error::with(ErrorKind::Utf8, detail);
        e.inner.close_code = Some(1007);
        e
    }

    /// A misuse on our side (a message that may not be sent): nothing is
    /// sent to the peer, so there is no close code.
    pub(crate) fn local(kind: ErrorKind, detail: impl Into<String>) -> Error {
        Error::with(kind, detail)
    }

    /// What kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The HTTP status of a handshake answer other than 101, if that is
    /// what failed: the server's answer for a client, the status a server
    /// refused the request with.
    pub fn status(&self) -> Option<u16> {
        self.inner.status
    }

    /// The WebSocket close code this error ended the session with (sent to
    /// the peer, best effort): 1002 for protocol errors, 1007 for invalid
    /// UTF-8, 1009 for exceeded limits. `None` for errors that are not the
    /// peer's fault (I/O, misuse, handshake).
    pub fn close_code(&self) -> Option<u16> {
        self.inner.close_code
    }

    /// Whether the failure is of the network path rather than a definitive
    /// answer of the server, so that trying another address or route may
    /// succeed.
    ///
    /// True for: the connection closed before a complete handshake
    /// response, any I/O error, and HTTP 502, 503 and 504 (a gateway or an
    /// overloaded server in front of the real one). False for other HTTP
    /// statuses (401, 403, 404...: the server has spoken), for protocol
    /// errors, for [`ErrorKind::Connect`] (the host has already tried
    /// every path it knows), and for [`ErrorKind::Timeout`]: a server that
    /// is slow to answer may have acted on the request, and trying another
    /// path would send the upgrade twice.
    pub fn is_path_failure(&self) -> bool {
        match self.inner.kind {
            ErrorKind::Io => true,
            ErrorKind::ConnectionClosed => self.inner.before_response,
            ErrorKind::Handshake => matches!(self.inner.status, Some(502..=504)),
            _ => false,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Error {
        let mut e = Error::with(ErrorKind::Io, err.to_string());
        e.inner.source = Some(Box::new(err));
        e
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.inner.kind).field("detail", &self.inner.detail);
        if let Some(status) = self.inner.status {
            d.field("status", &status);
        }
        if let Some(code) = self.inner.close_code {
            d.field("close_code", &code);
        }
        if let Some(source) = &self.inner.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.inner.kind, self.inner.detail)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_ref()
            .map(|s| &**s as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_failures() {
        assert!(Error::closed_before_response("eof").is_path_failure());
        assert!(!Error::connection_closed("eof").is_path_failure());
        assert!(Error::from(std::io::Error::other("x")).is_path_failure());
        for s in [502, 503, 504] {
            assert!(Error::http_status(s, "x").is_path_failure());
        }
        for s in [200, 401, 403, 404, 500] {
            assert!(!Error::http_status(s, "x").is_path_failure());
        }
        assert!(!Error::protocol("x").is_path_failure());
        assert!(!Error::connect("x").is_path_failure());
        let t = Error::from_read(std::io::ErrorKind::WouldBlock.into());
        assert_eq!(t.kind(), ErrorKind::Timeout);
        assert!(!t.is_path_failure());
        assert_eq!(
            Error::from_read(std::io::ErrorKind::TimedOut.into()).kind(),
            ErrorKind::Timeout
        );
        assert_eq!(
            Error::from_read(std::io::ErrorKind::ConnectionReset.into()).kind(),
            ErrorKind::Io
        );
    }

    #[test]
    fn display_is_one_line() {
        let e = Error::http_status(200, "OK");
        assert_eq!(
            e.to_string(),
            "WebSocket handshake failed: server answered 200 OK instead of 101 Switching Protocols"
        );
        assert_eq!(e.status(), Some(200));
        assert_eq!(e.kind(), ErrorKind::Handshake);
        let io = Error::from(std::io::Error::other("boom"));
        assert!(std::error::Error::source(&io).is_some());
        assert_eq!(io.to_string(), "I/O error: boom");
    }
}
