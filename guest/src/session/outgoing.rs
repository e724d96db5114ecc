//! What the session sends: frames encoded (masked as the role has it,
//! compressed under permessage-deflate) into one output buffer, which the
//! driver of the session writes out and then empties.

use crate::deflate::{DeflateParams, Deflater, RSV1};
use crate::error::Error;
use crate::frame::{FrameHeader, OpCode, apply_mask};
use crate::rand::MaskPool;

use super::Role;

/// The buffers kept between messages: a larger one (after a large message)
/// is given back rather than held for the session's life, which may be
/// mostly idle (the stream's own buffer holds what waits to be sent).
const KEPT_BUFFER: usize = 16 << 10;

/// From this size on, an uncompressed payload is written from the message
/// itself (masked in place) instead of being copied behind its header. The
/// header then goes out in a write (and a segment) of its own, which costs
/// more than the copy below a few hundred KiB (64 KiB echoes through a
/// proxy were 15% slower at 64 KiB).
const DIRECT_PAYLOAD: usize = 256 << 10;

/// The sending half of a session: messages in, bytes out.
#[derive(Debug)]
pub(super) struct Outgoing {
    frames: Frames,
    /// The compressor, under permessage-deflate.
    deflate: Option<Box<Compression>>,
}

/// The frames encoded and not yet written out.
#[derive(Debug)]
struct Frames {
    role: Role,
    masks: MaskPool,
    out: Vec<u8>,
}

/// The permessage-deflate state of the sending half.
#[derive(Debug)]
struct Compression {
    deflater: Deflater,
    /// The compressed form of the message being sent, reused.
    buf: Vec<u8>,
}

impl Outgoing {
    pub(super) fn new(role: Role, deflate: Option<&DeflateParams>) -> Outgoing {
        Outgoing {
            frames: Frames {
                role,
                masks: MaskPool::new(),
                out: Vec::new(),
            },
            deflate: deflate.map(|params| {
                Box::new(Compression {
                    deflater: Deflater::new(params),
                    buf: Vec::new(),
                })
            }),
        }
    }

    pub(super) fn is_compressed(&self) -> bool {
        self.deflate.is_some()
    }

    /// The bytes to write, every frame queued since the last
    /// [`clear`](Outgoing::clear).
    pub(super) fn output(&self) -> &[u8] {
        &self.frames.out
    }

    /// Forgets the output (written, or never to be).
    pub(super) fn clear(&mut self) {
        recycle(&mut self.frames.out);
    }

    /// Queues a data message as one frame: compressed (RSV1) when
    /// permessage-deflate was agreed and the compressor can honour the
    /// agreed window.
    ///
    /// After an error the compressor's state is unknown, and with it what
    /// the peer's decompressor expects next: the session must be failed.
    pub(super) fn message(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), Error> {
        let Some(z) = &mut self.deflate else {
            return self.frames.push(opcode, 0, payload);
        };
        let result = match z.deflater.compress(payload, &mut z.buf) {
            Ok(true) => self.frames.push(opcode, RSV1, &z.buf),
            Ok(false) => self.frames.push(opcode, 0, payload),
            Err(e) => Err(e),
        };
        recycle(&mut z.buf);
        result
    }

    /// [`message`](Outgoing::message) for an owned payload: one of
    /// [`DIRECT_PAYLOAD`] bytes or more, when it is not compressed, is
    /// masked in place and returned, and only its frame's header queued.
    pub(super) fn message_owned(&mut self, opcode: OpCode, mut payload: Vec<u8>) -> Result<Option<Vec<u8>>, Error> {
        if self.deflate.is_some() || payload.len() < DIRECT_PAYLOAD {
            return self.message(opcode, &payload).map(|()| None);
        }
        let mask = self.frames.header(opcode, 0, payload.len())?;
        if let Some(mask) = mask {
            apply_mask(&mut payload, mask);
        }
        Ok(Some(payload))
    }

    /// Appends bytes to the output as they are (a payload from
    /// [`message_owned`](Outgoing::message_owned)).
    #[cfg(test)]
    pub(super) fn append(&mut self, bytes: &[u8]) {
        self.frames.out.extend_from_slice(bytes);
    }

    /// Queues a control frame; its payload was checked (at most 125 bytes).
    pub(super) fn control(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), Error> {
        self.frames.push(opcode, 0, payload)
    }
}

impl Frames {
    /// Appends one final frame, masked if the role masks.
    fn push(&mut self, opcode: OpCode, rsv: u8, payload: &[u8]) -> Result<(), Error> {
        self.out.reserve(FrameHeader::MAX_SIZE + payload.len());
        let mask = self.header(opcode, rsv, payload.len())?;
        // The payload is masked in the output buffer: the caller's message
        // stays untouched.
        let at = self.out.len();
        self.out.extend_from_slice(payload);
        if let Some(mask) = mask {
            apply_mask(&mut self.out[at..], mask);
        }
        Ok(())
    }

    /// Appends the header of one final frame with a payload of `len`
    /// bytes; returns the mask the payload takes.
    fn header(&mut self, opcode: OpCode, rsv: u8, len: usize) -> Result<Option<[u8; 4]>, Error> {
        let mask = match self.role {
            // Every client frame has a fresh unpredictable key (RFC 6455
            // §5.3).
            Role::Client => Some(self.masks.next()?),
            // A server's frames are never masked.
            Role::Server => None,
        };
        let header = FrameHeader {
            fin: true,
            rsv,
            opcode,
            mask,
            payload_len: len as u64,
        };
        let mut head = [0; FrameHeader::MAX_SIZE];
        let head_len = header.encode(&mut head);
        self.out.extend_from_slice(&head[..head_len]);
        Ok(mask)
    }
}

/// Empties a buffer for the next message, giving back one a large message
/// grew past [`KEPT_BUFFER`]: dropped rather than shrunk, so that the next
/// large message allocates afresh instead of growing (and copying) a kept
/// one.
fn recycle(buf: &mut Vec<u8>) {
    if buf.capacity() > KEPT_BUFFER {
        *buf = Vec::new();
    } else {
        buf.clear();
    }
}
