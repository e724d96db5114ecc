//! Reading a client's request head, bounded in size and time, before any
//! plugin sees the connection.
//!
//! The head is everything up to the blank line that ends the headers. The
//! host reads it itself so that what no plugin should handle (a malformed
//! request, one too large, one too slow) is answered without instantiating
//! anything: a client that trickles bytes or sends megabytes of headers
//! costs the gateway a buffer and a timer, never an instance.

use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The most headers a request head may have. More is answered as a head
/// too large: no WebSocket client sends near this many.
pub(crate) const MAX_HEADERS: usize = 128;

/// A request head as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) minor_version: u8,
    /// Names in the client's case, values as bytes, in the order sent.
    pub(crate) headers: Vec<(String, Vec<u8>)>,
}

impl Head {
    /// The first value of header `name` (names compare without case).
    pub(crate) fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The host the request names, without its port, lower-cased: the
    /// `Host` header (RFC 9112 §3.2), or the authority of an absolute
    /// target. `None` when there is neither, or it is not text.
    pub(crate) fn host(&self) -> Option<String> {
        let authority = match self.header("host") {
            Some(value) => std::str::from_utf8(value).ok()?.trim().to_owned(),
            None => {
                let rest = self.absolute_form()?;
                rest.split(['/', '?']).next()?.to_owned()
            }
        };
        let host = if let Some(bracketed) = authority.strip_prefix('[') {
            // An IPv6 literal: `[::1]:8080`.
            bracketed.split_once(']')?.0
        } else {
            authority.rsplit_once(':').map_or(authority.as_str(), |(h, _)| h)
        };
        let host = host.strip_suffix('.').unwrap_or(host);
        (!host.is_empty()).then(|| host.to_ascii_lowercase())
    }

    /// What follows `scheme://` in an absolute-form target
    /// (`ws://host/path`); `None` for the usual origin form (`/path?q`),
    /// whatever its query holds (`/?next=ws://elsewhere/`).
    fn absolute_form(&self) -> Option<&str> {
        if self.target.starts_with('/') {
            return None;
        }
        self.target.split_once("://").map(|(_, rest)| rest)
    }

    /// The path of the target, without its query: what routes match on.
    pub(crate) fn path(&self) -> &str {
        let target = match self.absolute_form() {
            // An absolute target: the path starts after the authority.
            Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
            None => &self.target,
        };
        target.split(['?', '#']).next().unwrap_or("/")
    }
}

/// Why no head could be read. Each but [`Closed`](HeadError::Closed) has
/// the status the host answers with.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeadError {
    /// Not HTTP/1.x, or a header line that does not parse: 400.
    Malformed(String),
    /// More bytes, or more headers, than the bound: 431.
    TooLarge,
    /// The head did not arrive in time: 408.
    Timeout,
    /// The client closed (or reset) the connection before the head was
    /// complete: nobody to answer.
    Closed,
}

impl HeadError {
    /// The status line's code and reason for this error.
    pub(crate) fn status(&self) -> Option<(u16, &'static str)> {
        match self {
            HeadError::Malformed(_) => Some((400, "Bad Request")),
            HeadError::TooLarge => Some((431, "Request Header Fields Too Large")),
            HeadError::Timeout => Some((408, "Request Timeout")),
            HeadError::Closed => None,
        }
    }
}

/// Reads a request head from `reader`: at most `max_bytes` of it, within
/// `timeout`. Returns the head and the bytes read after it (the start of
/// the client's WebSocket frames, when it did not wait for the 101).
pub(crate) async fn read_head<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_bytes: usize,
    timeout: Duration,
) -> Result<(Head, Vec<u8>), HeadError> {
    match tokio::time::timeout(timeout, read_until_head(reader, max_bytes)).await {
        Ok(result) => result,
        Err(_) => Err(HeadError::Timeout),
    }
}

async fn read_until_head<R: AsyncRead + Unpin>(reader: &mut R, max_bytes: usize) -> Result<(Head, Vec<u8>), HeadError> {
    let mut buffer = Vec::with_capacity(max_bytes.min(4096));
    loop {
        // Read no more than the bound allows, plus one byte: a head that
        // has not ended by the bound is too large, whatever follows.
        let room = max_bytes + 1 - buffer.len();
        let mut chunk = (&mut *reader).take(room.min(8192) as u64);
        match chunk.read_buf(&mut buffer).await {
            Ok(0) | Err(_) => return Err(HeadError::Closed),
            Ok(_) => {}
        }
        if let Some((head, used)) = parse(&buffer[..buffer.len().min(max_bytes)])? {
            let rest = buffer.split_off(used);
            return Ok((head, rest));
        }
        if buffer.len() > max_bytes {
            return Err(HeadError::TooLarge);
        }
    }
}

/// Parses a complete head at the start of `bytes`, with how many bytes it
/// took; `None` when more bytes are needed.
pub(crate) fn parse(bytes: &[u8]) -> Result<Option<(Head, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let used = match request.parse(bytes) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(e) => return Err(HeadError::Malformed(e.to_string())),
    };
    // A complete parse has all three.
    let (Some(method), Some(target), Some(minor_version)) = (request.method, request.path, request.version) else {
        return Err(HeadError::Malformed("incomplete request line".into()));
    };
    let headers = request
        .headers
        .iter()
        .map(|h| (h.name.to_owned(), h.value.to_vec()))
        .collect();
    let head = Head {
        method: method.to_owned(),
        target: target.to_owned(),
        minor_version,
        headers,
    };
    Ok(Some((head, used)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    const UPGRADE: &[u8] = b"GET /chat?room=1 HTTP/1.1\r\nHost: Echo.Example:8080\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn a_head_keeps_what_the_client_sent() {
        let (head, used) = parse(UPGRADE).unwrap().unwrap();
        assert_eq!(used, UPGRADE.len());
        assert_eq!(head.method, "GET");
        assert_eq!(head.target, "/chat?room=1");
        assert_eq!(head.path(), "/chat");
        assert_eq!(head.minor_version, 1);
        assert_eq!(head.headers[0], ("Host".to_owned(), b"Echo.Example:8080".to_vec()));
        assert_eq!(head.host().as_deref(), Some("echo.example"));
        assert_eq!(head.header("upgrade"), Some(&b"websocket"[..]));
    }

    #[test]
    fn hosts_lose_their_port_and_case() {
        let host = |value: &str| {
            let text = format!("GET / HTTP/1.1\r\nHost: {value}\r\n\r\n");
            parse(text.as_bytes()).unwrap().unwrap().0.host()
        };
        assert_eq!(host("[::1]:8443").as_deref(), Some("::1"));
        assert_eq!(host("127.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(host("a.example.").as_deref(), Some("a.example"));
        assert_eq!(host(""), None);
        assert_eq!(host("."), None);
        assert_eq!(host("[::1"), None);
        let (head, _) = parse(b"GET ws://b.example:9/x?y HTTP/1.1\r\n\r\n").unwrap().unwrap();
        assert_eq!(head.host().as_deref(), Some("b.example"));
        assert_eq!(head.path(), "/x");
    }

    #[test]
    fn a_url_in_the_query_is_not_the_target() {
        for (target, path) in [
            ("/public?next=ws://x/admin", "/public"),
            ("/admin?next=ws://x", "/admin"),
        ] {
            let text = format!("GET {target} HTTP/1.0\r\n\r\n");
            let (head, _) = parse(text.as_bytes()).unwrap().unwrap();
            assert_eq!(head.path(), path, "{target}");
            assert_eq!(head.host(), None, "{target}");
        }
    }

    #[test]
    fn bad_heads_are_told_apart() {
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(parse(b"\x16\x03\x01\x02\x00"), Err(HeadError::Malformed(_))));
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: a").unwrap(), None);
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: y\r\n")).collect();
        let text = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(parse(text.as_bytes()), Err(HeadError::TooLarge));
    }

    #[tokio::test]
    async fn bytes_after_the_head_are_kept() {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        let mut sent = UPGRADE.to_vec();
        sent.extend_from_slice(b"\x81\x85frame");
        client.write_all(&sent).await.unwrap();
        let (head, rest) = read_head(&mut server, 16 * 1024, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(head.target, "/chat?room=1");
        assert_eq!(rest, b"\x81\x85frame");
    }

    #[tokio::test]
    async fn a_head_in_pieces_is_read_whole() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            for piece in UPGRADE.chunks(7) {
                client.write_all(piece).await.unwrap();
                tokio::task::yield_now().await;
            }
            client
        });
        let (head, rest) = read_head(&mut server, 16 * 1024, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(head.header("sec-websocket-version"), Some(&b"13"[..]));
        assert!(rest.is_empty());
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn a_head_past_the_bound_is_too_large() {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        let long = format!("GET / HTTP/1.1\r\nX-Long: {}\r\n\r\n", "a".repeat(2000));
        client.write_all(long.as_bytes()).await.unwrap();
        let err = read_head(&mut server, 1024, Duration::from_secs(10)).await.unwrap_err();
        assert_eq!(err, HeadError::TooLarge);
        // Exactly at the bound is fine.
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        client.write_all(UPGRADE).await.unwrap();
        assert!(
            read_head(&mut server, UPGRADE.len(), Duration::from_secs(10))
                .await
                .is_ok()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_head_times_out() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let err = read_head(&mut server, 1024, Duration::from_secs(10)).await.unwrap_err();
        assert_eq!(err, HeadError::Timeout);
        drop(client);
    }

    #[tokio::test]
    async fn a_client_that_leaves_is_not_answered() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(b"GET / HT").await.unwrap();
        drop(client);
        let err = read_head(&mut server, 1024, Duration::from_secs(10)).await.unwrap_err();
        assert_eq!(err, HeadError::Closed);
        assert_eq!(err.status(), None);
    }
}
