//! The frame layer (RFC 6455 §5.2): opcodes, headers, masking, and an
//! incremental frame decoder, for either end: a client's decoder refuses
//! masked frames, a server's requires them.

use crate::error::Error;

/// The opcode of a frame. Reserved opcodes (3-7, 11-15) have no variant:
/// a frame carrying one is a protocol error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// `0x0`: a further fragment of a message.
    Continuation,
    /// `0x1`: the first frame of a text message.
    Text,
    /// `0x2`: the first frame of a binary message.
    Binary,
    /// `0x8`: the Close control frame.
    Close,
    /// `0x9`: the Ping control frame.
    Ping,
    /// `0xA`: the Pong control frame.
    Pong,
}

impl OpCode {
    /// The opcode for the four low bits `bits`, or `None` if reserved.
    pub fn from_bits(bits: u8) -> Option<OpCode> {
        Some(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// The four-bit value on the wire.
    pub fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Whether this is a control frame opcode (Close, Ping, Pong).
    pub fn is_control(self) -> bool {
        self.bits() & 0x8 != 0
    }
}

/// The largest payload of a control frame (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Whether this is the final fragment of its message.
    pub fin: bool,
    /// The RSV1, RSV2 and RSV3 bits, as the three low bits (RSV1 = `0b100`).
    /// Non-zero only under a negotiated extension.
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key: always present in client frames, never in server
    /// frames.
    pub mask: Option<[u8; 4]>,
    /// The payload length in bytes.
    pub payload_len: u64,
}

impl FrameHeader {
    /// The longest encoded header: 2 bytes, an 8-byte length, a 4-byte key.
    pub const MAX_SIZE: usize = 14;

    /// Encodes the header into `out`; returns the number of bytes used.
    ///
    /// The length takes the shortest of its three forms, as RFC 6455 §5.2
    /// requires of senders.
    pub fn encode(&self, out: &mut [u8; Self::MAX_SIZE]) -> usize {
        out[0] = u8::from(self.fin) << 7 | (self.rsv & 0b111) << 4 | self.opcode.bits();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut n = match self.payload_len {
            len @ 0..=125 => {
                out[1] = mask_bit | len as u8;
                2
            }
            len @ 126..=0xFFFF => {
                out[1] = mask_bit | 126;
                out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                4
            }
            len => {
                out[1] = mask_bit | 127;
                out[2..10].copy_from_slice(&len.to_be_bytes());
                10
            }
        };
        if let Some(key) = self.mask {
            out[n..n + 4].copy_from_slice(&key);
            n += 4;
        }
        n
    }

    /// The size of a header whose second byte is `second`.
    fn size(second: u8) -> usize {
        let len_size = match second & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        2 + len_size + if second & 0x80 != 0 { 4 } else { 0 }
    }

    /// Decodes a header from the start of `buf`. Returns the header and its
    /// size, or `None` if `buf` does not hold all of it yet.
    ///
    /// Fails with a protocol error (1002) on a reserved opcode or a 64-bit
    /// length with its most significant bit set (RFC 6455 §5.2).
    pub fn decode(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, Error> {
        let (Some(&first), Some(&second)) = (buf.first(), buf.get(1)) else {
            return Ok(None);
        };
        let size = Self::size(second);
        let Some(buf) = buf.get(..size) else {
            return Ok(None);
        };
        let Some(opcode) = OpCode::from_bits(first & 0x0F) else {
            return Err(Error::protocol(format!("reserved opcode {:#x}", first & 0x0F)));
        };
        let (payload_len, rest) = match second & 0x7F {
            126 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), &buf[4..]),
            127 => {
                let mut len = [0; 8];
                len.copy_from_slice(&buf[2..10]);
                let len = u64::from_be_bytes(len);
                if len >> 63 != 0 {
                    return Err(Error::protocol("frame length has its most significant bit set"));
                }
                (len, &buf[10..])
            }
            len => (u64::from(len), &buf[2..]),
        };
        let mask = match rest {
            [a, b, c, d] => Some([*a, *b, *c, *d]),
            _ => None,
        };
        let header = FrameHeader {
            fin: first & 0x80 != 0,
            rsv: (first >> 4) & 0b111,
            opcode,
            mask,
            payload_len,
        };
        Ok(Some((header, size)))
    }
}

/// XORs `buf` with the masking key `mask` (RFC 6455 §5.3), as if `buf`
/// started at payload offset 0.
///
/// Masking is the one operation applied to every payload byte sent, so it
/// works on whole words: 16-byte wasm SIMD vectors when the code is built
/// with `simd128` (the wsgate plugin build), 8-byte integers otherwise;
/// only the last few bytes go one at a time.
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let buf = mask_simd128(buf, mask);
    mask_words(buf, mask);
}

/// The portable masking: 8-byte words, then the tail.
fn mask_words(buf: &mut [u8], mask: [u8; 4]) {
    let [a, b, c, d] = mask;
    let word = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let (words, tail) = buf.as_chunks_mut::<8>();
    for chunk in words {
        *chunk = (u64::from_ne_bytes(*chunk) ^ word).to_ne_bytes();
    }
    // Every word is 8 bytes, a multiple of the key's 4, so the tail starts
    // at key offset 0.
    for (byte, key) in tail.iter_mut().zip(mask.iter().cycle()) {
        *byte ^= key;
    }
}

/// Masks the 16-byte chunks of `buf` with wasm SIMD; returns the rest
/// (under 16 bytes, at key offset 0 since 16 is a multiple of 4).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[allow(unsafe_code)]
fn mask_simd128(buf: &mut [u8], mask: [u8; 4]) -> &mut [u8] {
    use core::arch::wasm32::{u32x4_splat, v128, v128_load, v128_store, v128_xor};
    let key = u32x4_splat(u32::from_ne_bytes(mask));
    let (chunks, tail) = buf.as_chunks_mut::<16>();
    for chunk in chunks {
        let ptr = chunk.as_mut_ptr().cast::<v128>();
        // SAFETY: `chunk` is an exclusively borrowed `[u8; 16]`, so `ptr`
        // is valid for reads and writes of 16 bytes, the size of a `v128`;
        // `v128_load` and `v128_store` take unaligned addresses (they are
        // wasm's `v128.load` and `v128.store`, which have no alignment
        // requirement), and every bit pattern is a valid `v128` and `[u8; 16]`.
        unsafe { v128_store(ptr, v128_xor(v128_load(ptr), key)) };
    }
    tail
}

/// Like [`apply_mask`], for a piece of a payload that starts at payload
/// offset `offset` (so that a payload can be masked in pieces).
pub fn apply_mask_at(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut rotated = mask;
    rotated.rotate_left(offset % 4);
    apply_mask(buf, rotated);
}

/// One step of [`FrameDecoder::decode`].
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// All input was used and no header or payload is complete: feed more.
    NeedMore,
    /// A frame header arrived. Its payload follows as [`Decoded::Payload`]
    /// pieces, the last one with `end` set (one empty piece for an empty
    /// payload).
    Header(FrameHeader),
    /// A piece of the current frame's payload, borrowed from the input.
    Payload {
        /// The bytes.
        data: &'a [u8],
        /// Whether this piece ends the frame.
        end: bool,
    },
}

#[derive(Debug)]
enum State {
    Header,
    Payload { remaining: u64 },
}

/// An incremental decoder of the frames a server sends to a client.
///
/// It takes input in pieces of any size, from one byte to many frames, and
/// keeps the little state a split needs (a partial header of at most 14
/// bytes, the payload bytes still due). Payloads are handed out as borrowed
/// pieces of the input rather than collected, so that the caller copies
/// each byte once, into the message it assembles.
///
/// It enforces the rules of single frames: no RSV bits but those of a
/// negotiated extension ([`FrameDecoder::allow_rsv`]), no reserved opcodes,
/// no masked frames from a server, control frames final and at most 125
/// bytes (all 1002), and the frame size limit (1009). Rules spanning frames
/// (fragment order, UTF-8, the message size, which frames an extension's
/// bit may be set on) are the caller's.
#[derive(Debug)]
pub struct FrameDecoder {
    max_frame_size: u64,
    allowed_rsv: u8,
    /// Frames must be masked (a server's decoder), or must not be.
    masked: bool,
    head: [u8; FrameHeader::MAX_SIZE],
    head_len: usize,
    state: State,
}

impl FrameDecoder {
    /// A decoder accepting payloads of at most `max_frame_size` bytes.
    ///
    /// This is a client's decoder, of the frames a server sends: a masked
    /// frame is a protocol error (1002). [`FrameDecoder::for_server`] is the
    /// other end's.
    pub fn new(max_frame_size: usize) -> FrameDecoder {
        FrameDecoder {
            max_frame_size: u64::try_from(max_frame_size).unwrap_or(u64::MAX),
            allowed_rsv: 0,
            masked: false,
            head: [0; FrameHeader::MAX_SIZE],
            head_len: 0,
            state: State::Header,
        }
    }

    /// A server's decoder, of the frames a client sends, accepting payloads
    /// of at most `max_frame_size` bytes: an unmasked frame is a protocol
    /// error (1002, RFC 6455 §5.1). Payload pieces come out as they were
    /// sent, masked: unmask them with [`apply_mask_at`] and the header's
    /// key.
    pub fn for_server(max_frame_size: usize) -> FrameDecoder {
        FrameDecoder {
            masked: true,
            ..FrameDecoder::new(max_frame_size)
        }
    }

    /// Lets frames set the RSV bits of `rsv` (as in [`FrameHeader::rsv`]:
    /// RSV1 is `0b100`), which a negotiated extension defines.
    pub fn allow_rsv(&mut self, rsv: u8) {
        self.allowed_rsv = rsv & 0b111;
    }

    /// How many payload bytes of the current frame are still due (0
    /// between frames).
    pub fn payload_remaining(&self) -> u64 {
        match self.state {
            State::Header => 0,
            State::Payload { remaining } => remaining,
        }
    }

    /// Decodes from `input`. Returns how many bytes of `input` were used
    /// and what they completed; call again with the rest (even an empty
    /// rest: an empty payload needs no input) until [`Decoded::NeedMore`].
    ///
    /// After an error the decoder is in an unspecified state and the
    /// connection must be failed.
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Decoded<'a>), Error> {
        match self.state {
            State::Header => {
                // First the two fixed bytes, then as many as they announce;
                // at most three passes.
                let mut used = 0;
                loop {
                    let need = if self.head_len < 2 {
                        2
                    } else {
                        FrameHeader::size(self.head[1])
                    };
                    if self.head_len == need {
                        break;
                    }
                    let take = (need - self.head_len).min(input.len() - used);
                    if take == 0 {
                        return Ok((used, Decoded::NeedMore));
                    }
                    self.head[self.head_len..self.head_len + take].copy_from_slice(&input[used..used + take]);
                    self.head_len += take;
                    used += take;
                }
                let Some((header, _)) = FrameHeader::decode(&self.head[..self.head_len])? else {
                    // Unreachable: the loop stops only with the whole header.
                    return Err(Error::protocol("incomplete frame header"));
                };
                self.head_len = 0;
                self.check(&header)?;
                self.state = State::Payload {
                    remaining: header.payload_len,
                };
                Ok((used, Decoded::Header(header)))
            }
            State::Payload { remaining } => {
                let available = u64::try_from(input.len()).unwrap_or(u64::MAX);
                let take = remaining.min(available);
                if take == 0 && remaining != 0 {
                    return Ok((0, Decoded::NeedMore));
                }
                // `take <= input.len()`, so it fits in usize.
                let take = usize::try_from(take).unwrap_or(input.len());
                let remaining = remaining - take as u64;
                let end = remaining == 0;
                self.state = if end {
                    State::Header
                } else {
                    State::Payload { remaining }
                };
                Ok((
                    take,
                    Decoded::Payload {
                        data: &input[..take],
                        end,
                    },
                ))
            }
        }
    }

    fn check(&self, h: &FrameHeader) -> Result<(), Error> {
        if h.rsv & !self.allowed_rsv != 0 {
            return Err(Error::protocol(format!(
                "reserved bits {:#05b} set without a negotiated extension",
                h.rsv
            )));
        }
        match (h.mask.is_some(), self.masked) {
            (true, false) => return Err(Error::protocol("server sent a masked frame")),
            (false, true) => return Err(Error::protocol("client sent an unmasked frame")),
            _ => {}
        }
        if h.opcode.is_control() {
            if !h.fin {
                return Err(Error::protocol(format!("fragmented {:?} frame", h.opcode)));
            }
            if h.payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(Error::protocol(format!(
                    "{:?} frame of {} bytes (control frames carry at most 125)",
                    h.opcode, h.payload_len
                )));
            }
        }
        if h.payload_len > self.max_frame_size {
            return Err(Error::capacity(format!(
                "frame of {} bytes exceeds max_frame_size ({})",
                h.payload_len, self.max_frame_size
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(h: &FrameHeader) -> Vec<u8> {
        let mut out = [0; FrameHeader::MAX_SIZE];
        let n = h.encode(&mut out);
        out[..n].to_vec()
    }

    #[test]
    fn header_round_trips() {
        for len in [0u64, 1, 125, 126, 127, 65535, 65536, 1 << 32, (1 << 63) - 1] {
            for mask in [None, Some([1, 2, 3, 4])] {
                for (fin, rsv, opcode) in [
                    (true, 0, OpCode::Binary),
                    (false, 0b101, OpCode::Text),
                    (true, 0b010, OpCode::Continuation),
                    (true, 0, OpCode::Ping),
                ] {
                    let h = FrameHeader {
                        fin,
                        rsv,
                        opcode,
                        mask,
                        payload_len: len,
                    };
                    let bytes = encode(&h);
                    let expected =
                        2 + match len {
                            0..=125 => 0,
                            126..=65535 => 2,
                            _ => 8,
                        } + if mask.is_some() { 4 } else { 0 };
                    assert_eq!(bytes.len(), expected, "{h:?}");
                    assert_eq!(FrameHeader::decode(&bytes).unwrap(), Some((h, bytes.len())));
                    for cut in 0..bytes.len() {
                        assert_eq!(FrameHeader::decode(&bytes[..cut]).unwrap(), None);
                    }
                }
            }
        }
        // The RFC 6455 §5.7 examples.
        let h = FrameHeader::decode(&[0x81, 0x05]).unwrap().unwrap().0;
        assert_eq!((h.fin, h.opcode, h.payload_len), (true, OpCode::Text, 5));
        let h = FrameHeader::decode(&[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0])
            .unwrap()
            .unwrap()
            .0;
        assert_eq!(h.payload_len, 65536);
        let masked = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let (h, n) = FrameHeader::decode(&masked).unwrap().unwrap();
        let mut payload = masked[n..].to_vec();
        apply_mask(&mut payload, h.mask.unwrap());
        assert_eq!(payload, b"Hello");
    }

    #[test]
    fn header_errors() {
        let e = FrameHeader::decode(&[0x83, 0]).unwrap_err();
        assert_eq!(e.close_code(), Some(1002));
        let e = FrameHeader::decode(&[0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(e.close_code(), Some(1002));
    }

    fn reference_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= mask[(offset + i) % 4];
        }
    }

    #[test]
    fn masking_matches_reference() {
        let mask = [0x9a, 0x01, 0xfe, 0x37];
        let data: Vec<u8> = (0..=255u8).cycle().take(120).collect();
        for align in 0..8 {
            for len in 0..=100 {
                let mut fast = data.clone();
                let mut slow = data.clone();
                apply_mask(&mut fast[align..align + len], mask);
                reference_mask(&mut slow[align..align + len], mask, 0);
                assert_eq!(fast, slow, "align {align} len {len}");
                for offset in 0..4 {
                    let mut fast = data.clone();
                    let mut slow = data.clone();
                    apply_mask_at(&mut fast[align..align + len], mask, offset);
                    reference_mask(&mut slow[align..align + len], mask, offset);
                    assert_eq!(fast, slow, "align {align} len {len} offset {offset}");
                }
            }
        }
    }

    #[test]
    fn word_masking_matches_reference() {
        // The portable path on its own (on a simd128 build, `apply_mask`
        // takes the other one).
        let mask = [0x12, 0x34, 0x56, 0x78];
        for len in 0..70 {
            let data: Vec<u8> = (0..len as u8).collect();
            let (mut fast, mut slow) = (data.clone(), data);
            mask_words(&mut fast, mask);
            reference_mask(&mut slow, mask, 0);
            assert_eq!(fast, slow, "len {len}");
        }
    }

    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    #[test]
    fn simd_masking_matches_words() {
        let mask = [0x9a, 0x01, 0xfe, 0x37];
        let data: Vec<u8> = (0..=255u8).cycle().take(300).collect();
        for align in 0..16 {
            for len in 0..=260 {
                let (mut simd, mut words) = (data.clone(), data.clone());
                let tail = mask_simd128(&mut simd[align..align + len], mask);
                mask_words(tail, mask);
                mask_words(&mut words[align..align + len], mask);
                assert_eq!(simd, words, "align {align} len {len}");
            }
        }
    }

    /// A frame as the decoder reports it.
    #[derive(Debug, PartialEq)]
    struct Got {
        header: FrameHeader,
        payload: Vec<u8>,
    }

    /// Drives the decoder over `pieces`, collecting whole frames.
    fn decode_pieces(pieces: &[&[u8]], max: usize) -> Result<Vec<Got>, Error> {
        let mut d = FrameDecoder::new(max);
        let mut out = Vec::new();
        let mut current: Option<Got> = None;
        for piece in pieces {
            let mut rest = *piece;
            loop {
                let (used, ev) = d.decode(rest)?;
                rest = &rest[used..];
                match ev {
                    Decoded::NeedMore => {
                        assert!(rest.is_empty());
                        break;
                    }
                    Decoded::Header(header) => {
                        assert!(current.is_none());
                        current = Some(Got {
                            header,
                            payload: Vec::new(),
                        });
                    }
                    Decoded::Payload { data, end } => {
                        let got = current.as_mut().expect("payload after header");
                        got.payload.extend_from_slice(data);
                        if end {
                            out.extend(current.take());
                        }
                    }
                }
            }
        }
        assert!(current.is_none(), "frame left incomplete");
        Ok(out)
    }

    fn frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let h = FrameHeader {
            fin,
            rsv: 0,
            opcode,
            mask: None,
            payload_len: payload.len() as u64,
        };
        let mut v = encode(&h);
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn decoder_every_split() {
        let payloads: Vec<Vec<u8>> = vec![
            vec![],
            b"hello".to_vec(),
            vec![7; 125],
            vec![8; 126],
            vec![9; 300],
            vec![1; 65536],
        ];
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            let opcode = if i % 2 == 0 { OpCode::Binary } else { OpCode::Text };
            stream.extend(frame(true, opcode, p));
            expected.push((opcode, p.clone()));
            stream.extend(frame(true, OpCode::Ping, b""));
            expected.push((OpCode::Ping, vec![]));
        }
        let check = |got: Vec<Got>| {
            let got: Vec<(OpCode, Vec<u8>)> = got.into_iter().map(|g| (g.header.opcode, g.payload)).collect();
            assert_eq!(got, expected);
        };
        // Many frames in one piece.
        check(decode_pieces(&[&stream], 1 << 20).unwrap());
        // One byte at a time.
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        check(decode_pieces(&bytes, 1 << 20).unwrap());
        // Every split point of the small frames (the 64 KiB frame is
        // covered by the byte-at-a-time pass above).
        let small_end = stream.len() - 65536 - 10 - 2;
        for split in 0..=small_end {
            let (a, b) = stream.split_at(split);
            check(decode_pieces(&[a, b], 1 << 20).unwrap());
        }
        // Irregular pieces.
        let mut pieces = Vec::new();
        let mut rest = &stream[..];
        let mut size = 1;
        while !rest.is_empty() {
            let n = size.min(rest.len());
            pieces.push(&rest[..n]);
            rest = &rest[n..];
            size = size * 3 % 1000 + 1;
        }
        check(decode_pieces(&pieces, 1 << 20).unwrap());
    }

    #[track_caller]
    fn fails(bytes: &[u8], code: u16) {
        let e = decode_pieces(&[bytes], 1000).unwrap_err();
        assert_eq!(e.close_code(), Some(code), "{e}");
        // The error comes whatever the split.
        let one: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(decode_pieces(&one, 1000).unwrap_err().close_code(), Some(code));
    }

    #[test]
    fn decoder_violations() {
        fails(&[0xC1, 0x00], 1002); // RSV1
        fails(&[0xA1, 0x00], 1002); // RSV2
        fails(&[0x91, 0x00], 1002); // RSV3
        fails(&[0x83, 0x00], 1002); // reserved data opcode
        fails(&[0x8B, 0x00], 1002); // reserved control opcode
        fails(&[0x81, 0x80, 1, 2, 3, 4], 1002); // masked
        fails(&[0x09, 0x00], 1002); // fragmented ping
        let mut ping = vec![0x89, 126, 0, 126];
        ping.extend([0; 126]);
        fails(&ping, 1002); // control frame over 125
        fails(&[0x82, 126, 0x03, 0xE9], 1009); // 1001 bytes > 1000
        fails(&[0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0], 1002); // length MSB
        // An allowed RSV bit passes; the others still fail.
        let mut d = FrameDecoder::new(1000);
        d.allow_rsv(0b100);
        assert!(matches!(d.decode(&[0xC1, 0x00]), Ok((2, Decoded::Header(h))) if h.rsv == 0b100));
        let mut d = FrameDecoder::new(1000);
        d.allow_rsv(0b100);
        assert_eq!(d.decode(&[0xE1, 0x00]).unwrap_err().close_code(), Some(1002));
        // At the limit is fine.
        let mut ok = vec![0x82, 126, 0x03, 0xE8];
        ok.extend([0; 1000]);
        assert_eq!(decode_pieces(&[&ok], 1000).unwrap()[0].payload.len(), 1000);
    }
}
