//! Messages and close frames, as the application sees them.

use crate::error::{Error, ErrorKind};
use crate::frame::MAX_CONTROL_PAYLOAD;

/// A WebSocket message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A text message (valid UTF-8).
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// A Ping (at most 125 bytes). A received Ping has been answered
    /// already.
    Ping(Vec<u8>),
    /// A Pong (at most 125 bytes).
    Pong(Vec<u8>),
    /// A Close, with its code and reason if it had any.
    Close(Option<CloseFrame>),
}

impl Message {
    /// The payload length in bytes (for Close: code and reason).
    pub fn len(&self) -> usize {
        match self {
            Message::Text(s) => s.len(),
            Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b.len(),
            Message::Close(None) => 0,
            Message::Close(Some(f)) => 2 + f.reason.len(),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<String> for Message {
    fn from(s: String) -> Message {
        Message::Text(s)
    }
}

impl From<&str> for Message {
    fn from(s: &str) -> Message {
        Message::Text(s.to_owned())
    }
}

impl From<Vec<u8>> for Message {
    fn from(b: Vec<u8>) -> Message {
        Message::Binary(b)
    }
}

/// The code and reason of a Close frame.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CloseFrame {
    /// The status code (RFC 6455 §7.4), e.g. 1000 for a normal closure.
    pub code: u16,
    /// The reason, at most 123 bytes of UTF-8.
    pub reason: String,
}

/// The longest close reason: a control payload less the 2-byte code.
pub const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

/// Whether `code` may appear in a Close frame, sent or received: the codes
/// RFC 6455 §7.4.1 defines for use on the wire (1000-1003, 1007-1011) and
/// the range for libraries and applications (3000-4999).
///
/// 1004 is reserved; 1005, 1006 and 1015 are for reporting only, never
/// sent; the rest of 1000-2999 is for the protocol's future use. That
/// includes 1012-1014, which the IANA registry assigned after RFC 6455:
/// peers written to the RFC (the Autobahn testsuite among them, case 7.9.*)
/// fail a connection whose Close carries one, so this client neither sends
/// nor accepts them.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

impl CloseFrame {
    /// Parses the payload of a received Close frame: empty, or a valid code
    /// followed by a UTF-8 reason. A 1-byte payload or an invalid code is a
    /// protocol error (1002); a reason that is not UTF-8 is 1007.
    pub fn parse(payload: &[u8]) -> Result<Option<CloseFrame>, Error> {
        match payload {
            [] => Ok(None),
            [_] => Err(Error::protocol("Close frame with a 1-byte payload")),
            [hi, lo, reason @ ..] => {
                let code = u16::from_be_bytes([*hi, *lo]);
                if !is_valid_close_code(code) {
                    return Err(Error::protocol(format!("invalid close code {code}")));
                }
                let reason =
                    simdutf8::basic::from_utf8(reason).map_err(|_| Error::utf8("close reason is not valid UTF-8"))?;
                Ok(Some(CloseFrame {
                    code,
                    reason: reason.to_owned(),
                }))
            }
        }
    }

    /// Appends the payload of this Close frame to `out`, after checking
    /// that it may be sent.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        if !is_valid_close_code(self.code) {
            return Err(Error::local(
                ErrorKind::Protocol,
                format!("close code {} may not be sent", self.code),
            ));
        }
        if self.reason.len() > MAX_CLOSE_REASON {
            return Err(Error::local(
                ErrorKind::Capacity,
                format!("close reason of {} bytes exceeds {MAX_CLOSE_REASON}", self.reason.len()),
            ));
        }
        out.extend_from_slice(&self.code.to_be_bytes());
        out.extend_from_slice(self.reason.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_payloads() {
        assert_eq!(CloseFrame::parse(b"").unwrap(), None);
        assert_eq!(
            CloseFrame::parse(b"\x03\xe8bye").unwrap(),
            Some(CloseFrame {
                code: 1000,
                reason: "bye".into()
            })
        );
        assert_eq!(CloseFrame::parse(b"\x03").unwrap_err().close_code(), Some(1002));
        for code in [
            0u16, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            let e = CloseFrame::parse(&code.to_be_bytes()).unwrap_err();
            assert_eq!(e.close_code(), Some(1002), "{code}");
        }
        for code in [
            1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            assert!(CloseFrame::parse(&code.to_be_bytes()).is_ok(), "{code}");
        }
        let e = CloseFrame::parse(b"\x03\xe8\xff").unwrap_err();
        assert_eq!(e.close_code(), Some(1007));
    }

    #[test]
    fn close_encode_checks() {
        let mut out = Vec::new();
        let f = CloseFrame {
            code: 1005,
            reason: String::new(),
        };
        assert!(f.encode(&mut out).is_err());
        let f = CloseFrame {
            code: 1000,
            reason: "x".repeat(124),
        };
        assert!(f.encode(&mut out).is_err());
        let f = CloseFrame {
            code: 1000,
            reason: "x".repeat(123),
        };
        f.encode(&mut out).unwrap();
        assert_eq!(out.len(), 125);
    }
}
