//! What the host itself says to a client: an HTTP error before any plugin,
//! a WebSocket Close after a plugin failed.

use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The content type of the host's own text answers.
pub(crate) const TEXT: &str = "text/plain; charset=utf-8";

/// The most of a client's remaining input read before closing.
const DRAIN_LIMIT: usize = 64 * 1024;

/// An HTTP/1.1 response with status `code`, a body of `content_type`, and
/// `Connection: close`: the host closes the connection after it.
pub(crate) fn http_response(code: u16, reason: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// An [`http_response`] with a one-line text body.
pub(crate) fn http_error(code: u16, reason: &str, body: &str) -> Vec<u8> {
    http_response(code, reason, TEXT, &format!("{body}\n"))
}

/// Writes `answer`, shuts the write side down, then reads what the client
/// still sends (the rest of an oversized head, a pipelined request), up to
/// [`DRAIN_LIMIT`] bytes, all within `timeout`: closing a socket with
/// unread input makes the kernel send a reset, and a client that gets one
/// may drop the answer unread.
pub(crate) async fn answer_and_close<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    answer: &[u8],
    timeout: Duration,
) {
    let _ = tokio::time::timeout(timeout, async {
        stream.write_all(answer).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < DRAIN_LIMIT {
            match stream.read(&mut sink).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// A server's Close frame (unmasked, RFC 6455 §5.5.1) with `code` and
/// `reason` (cut to fit a control frame).
pub(crate) fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let reason = &reason.as_bytes()[..cut];
    let mut frame = vec![0x88, (2 + reason.len()) as u8];
    frame.extend_from_slice(&code.to_be_bytes());
    frame.extend_from_slice(reason);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_complete_responses() {
        let text = String::from_utf8(http_error(404, "Not Found", "no route for /x")).unwrap();
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut response = httparse::Response::new(&mut headers);
        let used = match response.parse(text.as_bytes()).unwrap() {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => panic!("partial"),
        };
        assert_eq!(response.code, Some(404));
        assert_eq!(&text[used..], "no route for /x\n");
    }

    #[test]
    fn close_frames_fit_a_control_frame() {
        assert_eq!(close_frame(1011, "x"), b"\x88\x03\x03\xf3x");
        let long = close_frame(1011, &"é".repeat(100));
        assert!(long.len() <= 2 + 125);
        assert!(std::str::from_utf8(&long[4..]).is_ok());
    }
}
