//! What the peer sends: frames decoded from bytes, data messages
//! reassembled from their fragments (decompressed, UTF-8 checked) within
//! the limits, control frames collected whole.

use crate::config::Limits;
use crate::deflate::{DeflateParams, Inflater, RSV1};
use crate::error::Error;
use crate::frame::{Decoded, FrameDecoder, FrameHeader, MAX_CONTROL_PAYLOAD, OpCode, apply_mask_at};
use crate::message::{CloseFrame, Message};

use super::Role;

/// The most a message's buffer takes before its bytes arrive: a header may
/// announce up to the limits, and memory should follow what was received,
/// not what was announced.
pub(crate) const FIRST_ALLOCATION: u64 = 64 << 10;

/// A data message being received, possibly over several frames.
#[derive(Debug)]
struct Partial {
    text: bool,
    /// RSV1 was set on its first frame: `data` is the decompressed output.
    compressed: bool,
    data: Vec<u8>,
    /// For text: how many bytes of `data` are known to be valid UTF-8. The
    /// rest (at most 3 bytes) is the start of a character whose remaining
    /// bytes have not arrived yet.
    validated: usize,
    fragments: usize,
    /// Payload bytes announced by its frames so far (compressed, if it is).
    wire: u64,
}

impl Partial {
    /// Validates the newly arrived text, so that invalid UTF-8 fails the
    /// message as soon as the bytes received cannot start valid text, not
    /// when the message is complete (Autobahn 6.4.*).
    fn validate(&mut self) -> Result<(), Error> {
        let fresh = self.data.get(self.validated..).unwrap_or_default();
        match simdutf8::compat::from_utf8(fresh) {
            Ok(_) => self.validated = self.data.len(),
            // `error_len` is `None` only when the input ends inside a
            // character that may still complete.
            Err(e) if e.error_len().is_none() => self.validated += e.valid_up_to(),
            Err(_) => return Err(Error::utf8("text message is not valid UTF-8")),
        }
        Ok(())
    }
}

/// The receiving half of a session: bytes in, messages out.
#[derive(Debug)]
pub(super) struct Incoming {
    decoder: FrameDecoder,
    max_message_size: u64,
    max_fragments: usize,
    /// The frame whose payload is arriving.
    current: Option<FrameHeader>,
    /// How many payload bytes of the current frame arrived (the offset
    /// into its masking key, for a server).
    received: usize,
    /// The unmasked copy of a compressed piece, reused (a server's only).
    unmasked: Vec<u8>,
    /// The payload of the control frame being received (at most 125 bytes).
    control: Vec<u8>,
    partial: Option<Partial>,
    /// The decompressor, under permessage-deflate.
    inflater: Option<Box<Inflater>>,
}

impl Incoming {
    pub(super) fn new(role: Role, config: &Limits, deflate: Option<&DeflateParams>) -> Incoming {
        let mut decoder = match role {
            Role::Client => FrameDecoder::new(config.max_frame_size),
            Role::Server => FrameDecoder::for_server(config.max_frame_size),
        };
        if deflate.is_some() {
            decoder.allow_rsv(RSV1);
        }
        Incoming {
            decoder,
            max_message_size: u64::try_from(config.max_message_size).unwrap_or(u64::MAX),
            max_fragments: config.max_fragments,
            current: None,
            received: 0,
            unmasked: Vec::new(),
            control: Vec::with_capacity(MAX_CONTROL_PAYLOAD),
            partial: None,
            inflater: deflate.map(|params| Box::new(Inflater::new(params))),
        }
    }

    /// Decodes `input` up to the end of the next message. Returns how many
    /// bytes were used and the message they completed; without a message,
    /// all of `input` was used (the pieces of a frame are kept).
    ///
    /// Control messages come out parsed: a Close's payload is checked
    /// ([`CloseFrame::parse`]). After an error the connection must be
    /// failed.
    pub(super) fn read(&mut self, input: &[u8]) -> Result<(usize, Option<Message>), Error> {
        let mut used = 0;
        // Each pass uses input or returns: the loop ends with the input, a
        // message, or an error.
        loop {
            let (n, decoded) = self.decoder.decode(&input[used..])?;
            used += n;
            let message = match decoded {
                Decoded::NeedMore => return Ok((used, None)),
                Decoded::Header(header) => {
                    self.on_header(header)?;
                    None
                }
                Decoded::Payload { data, end } => self.on_payload(data, end)?,
            };
            if message.is_some() {
                return Ok((used, message));
            }
        }
    }

    /// The bytes of the data message being received and the capacity of
    /// its buffer.
    #[cfg(test)]
    pub(super) fn partial_buffer(&self) -> Option<(usize, usize)> {
        self.partial.as_ref().map(|p| (p.data.len(), p.data.capacity()))
    }

    /// Checks a frame header against the state of the message sequence.
    fn on_header(&mut self, header: FrameHeader) -> Result<(), Error> {
        let len = header.payload_len;
        // The decoder lets RSV1 through only under permessage-deflate,
        // which defines it for the first frame of a data message alone
        // (RFC 7692 §6.1).
        let compressed = header.rsv & RSV1 != 0;
        match header.opcode {
            OpCode::Continuation => {
                let Some(partial) = &mut self.partial else {
                    return Err(Error::protocol("continuation frame without a message to continue"));
                };
                if compressed {
                    return Err(Error::protocol("RSV1 set on a continuation frame"));
                }
                if partial.fragments >= self.max_fragments {
                    return Err(Error::capacity(format!(
                        "message in more than {} fragments (max_fragments)",
                        self.max_fragments
                    )));
                }
                partial.fragments += 1;
                check_message_size(partial.wire, len, self.max_message_size)?;
                partial.wire += len;
            }
            OpCode::Text | OpCode::Binary => {
                if self.partial.is_some() {
                    return Err(Error::protocol(format!(
                        "{:?} frame inside a fragmented message",
                        header.opcode
                    )));
                }
                check_message_size(0, len, self.max_message_size)?;
                // An uncompressed final frame's size is the message's;
                // otherwise the buffer grows as the data comes.
                let first = if compressed { 0 } else { len.min(FIRST_ALLOCATION) };
                self.partial = Some(Partial {
                    text: header.opcode == OpCode::Text,
                    compressed,
                    data: Vec::with_capacity(usize::try_from(first).unwrap_or(0)),
                    validated: 0,
                    fragments: 1,
                    wire: len,
                });
            }
            OpCode::Close | OpCode::Ping | OpCode::Pong => {
                if compressed {
                    return Err(Error::protocol(format!("RSV1 set on a {:?} frame", header.opcode)));
                }
                self.control.clear();
            }
        }
        self.current = Some(header);
        self.received = 0;
        Ok(())
    }

    /// Takes a piece of the current frame's payload (`end`: the last);
    /// returns a message if it completes one.
    fn on_payload(&mut self, data: &[u8], end: bool) -> Result<Option<Message>, Error> {
        let Some(header) = self.current else {
            return Err(Error::protocol("payload without a frame header"));
        };
        // Where this piece starts in the frame's payload, for its mask.
        let offset = self.received;
        self.received += data.len();
        if header.opcode.is_control() {
            let at = self.control.len();
            self.control.extend_from_slice(data);
            unmask(&mut self.control[at..], header.mask, offset);
            if !end {
                return Ok(None);
            }
            self.current = None;
            return self.on_control(header.opcode).map(Some);
        }
        let Some(partial) = &mut self.partial else {
            return Err(Error::protocol("payload without a message"));
        };
        let max = usize::try_from(self.max_message_size).unwrap_or(usize::MAX);
        if partial.compressed {
            let Some(inflater) = &mut self.inflater else {
                return Err(Error::protocol("compressed message without permessage-deflate"));
            };
            let data = match header.mask {
                None => data,
                Some(mask) => {
                    self.unmasked.clear();
                    self.unmasked.extend_from_slice(data);
                    apply_mask_at(&mut self.unmasked, mask, offset);
                    &self.unmasked
                }
            };
            inflater.inflate(data, &mut partial.data, max)?;
            if end && header.fin {
                inflater.finish(&mut partial.data, max)?;
            }
        } else {
            // Within the limits checked on the header: this frame's end
            // when it ends the message, the message limit otherwise.
            let rest = usize::try_from(self.decoder.payload_remaining()).unwrap_or(usize::MAX);
            let bound = if header.fin {
                partial.data.len().saturating_add(data.len()).saturating_add(rest)
            } else {
                max
            };
            grow(&mut partial.data, data.len(), bound);
            let at = partial.data.len();
            partial.data.extend_from_slice(data);
            unmask(&mut partial.data[at..], header.mask, offset);
        }
        if partial.text && partial.validated < partial.data.len() {
            partial.validate()?;
        }
        if !end {
            return Ok(None);
        }
        self.current = None;
        if !header.fin {
            return Ok(None);
        }
        let Some(partial) = self.partial.take() else {
            return Ok(None);
        };
        if partial.text {
            // `validate` fails fast on bad bytes; this catches a message
            // ending inside a character. The second pass over the bytes is
            // the price of converting without `unsafe`.
            String::from_utf8(partial.data)
                .map(|text| Some(Message::Text(text)))
                .map_err(|_| Error::utf8("text message ends inside a UTF-8 character"))
        } else {
            Ok(Some(Message::Binary(partial.data)))
        }
    }

    fn on_control(&mut self, opcode: OpCode) -> Result<Message, Error> {
        let payload = self.control.clone();
        Ok(match opcode {
            OpCode::Ping => Message::Ping(payload),
            OpCode::Pong => Message::Pong(payload),
            _ => Message::Close(CloseFrame::parse(&payload)?),
        })
    }
}

/// Unmasks a piece of a masked payload that starts at payload offset
/// `offset`; an unmasked one (a server's frame) is left as it is.
fn unmask(piece: &mut [u8], mask: Option<[u8; 4]>, offset: usize) {
    if let Some(mask) = mask {
        apply_mask_at(piece, mask, offset);
    }
}

fn check_message_size(have: u64, more: u64, max: u64) -> Result<(), Error> {
    if have.saturating_add(more) > max {
        return Err(Error::capacity(format!(
            "message of more than {max} bytes (max_message_size)"
        )));
    }
    Ok(())
}

/// Makes room for `incoming` more bytes in `data`: doubling, so that a
/// message arriving in many pieces costs few copies, but never past
/// `bound` (what the limits let the message reach) unless the bytes need it.
fn grow(data: &mut Vec<u8>, incoming: usize, bound: usize) {
    let needed = data.len().saturating_add(incoming);
    if needed <= data.capacity() {
        return;
    }
    let target = data.capacity().saturating_mul(2).min(bound).max(needed);
    data.reserve_exact(target - data.len());
}
