//! How attempts and connects fail, as values a caller can act on.

use std::fmt;
use std::net::SocketAddr;

/// How far an attempt got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AttemptStage {
    /// Started: the TCP SYN was sent.
    Started,
    /// The TCP handshake completed.
    Tcp,
    /// The TLS handshake completed.
    Tls,
    /// The first flight was written.
    FirstFlight,
    /// A response head arrived.
    Response,
}

/// What failed in an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttemptErrorKind {
    /// The TCP connect (refused, unreachable, reset).
    Tcp,
    /// The TLS handshake (an untrusted certificate, a protocol error).
    Tls,
    /// A bound on a step passed (the TLS handshake after a `tcp` commit).
    Timeout,
    /// Reading or writing on an established connection (the first flight,
    /// the response head), or the attempt's task ending abnormally.
    Io,
    /// The plugin gave the connection up (`fallback()`).
    GivenUp,
}

/// Why one attempt failed: a [kind](AttemptErrorKind) and the cause in
/// words. [`Display`](fmt::Display) is the line the race log and the
/// plugin see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptError {
    kind: AttemptErrorKind,
    cause: String,
}

impl AttemptError {
    /// The TCP connect failed.
    pub(crate) fn tcp(cause: impl fmt::Display) -> Self {
        Self::new(AttemptErrorKind::Tcp, cause)
    }

    /// The TLS handshake failed.
    pub(crate) fn tls(cause: impl fmt::Display) -> Self {
        Self::new(AttemptErrorKind::Tls, cause)
    }

    /// I/O on an established connection failed; `doing` says what it was
    /// (`writing the first flight`), or is empty.
    pub(crate) fn io(doing: &str, cause: impl fmt::Display) -> Self {
        let cause = if doing.is_empty() {
            cause.to_string()
        } else {
            format!("{doing}: {cause}")
        };
        Self::new(AttemptErrorKind::Io, cause)
    }

    pub(crate) fn new(kind: AttemptErrorKind, cause: impl fmt::Display) -> Self {
        AttemptError {
            kind,
            cause: cause.to_string(),
        }
    }

    /// What failed.
    pub fn kind(&self) -> AttemptErrorKind {
        self.kind
    }

    /// The cause, without the kind's prefix.
    pub fn cause(&self) -> &str {
        &self.cause
    }
}

impl fmt::Display for AttemptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            AttemptErrorKind::Tls => write!(f, "TLS: {}", self.cause),
            _ => f.write_str(&self.cause),
        }
    }
}

impl std::error::Error for AttemptError {}

/// One failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptFailure {
    /// The address tried.
    pub addr: SocketAddr,
    /// The last stage reached before the failure.
    pub stage: AttemptStage,
    /// What went wrong.
    pub error: AttemptError,
}

/// Why a connect failed: the host side of the WIT `connect-error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// The operator's policy does not allow the destination.
    Denied(String),
    /// The name did not resolve.
    Dns(String),
    /// Every address was tried; one entry per attempt.
    AllAttemptsFailed(Vec<AttemptFailure>),
    /// The connect's time bound passed.
    Timeout,
    /// TLS could not be set up on any path that reached it.
    Tls(String),
    /// The request is malformed.
    Invalid(String),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Denied(rule) => write!(f, "denied by policy: {rule}"),
            ConnectError::Dns(e) => write!(f, "{e}"),
            ConnectError::AllAttemptsFailed(failures) => {
                f.write_str("all attempts failed")?;
                for (i, a) in failures.iter().enumerate() {
                    write!(f, "{} {}: {}", if i == 0 { ":" } else { ";" }, a.addr, a.error)?;
                }
                Ok(())
            }
            ConnectError::Timeout => f.write_str("timed out"),
            ConnectError::Tls(e) => write!(f, "TLS failed: {e}"),
            ConnectError::Invalid(e) => write!(f, "invalid request: {e}"),
        }
    }
}

impl std::error::Error for ConnectError {}
