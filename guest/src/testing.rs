//! Frames for the tests of the session: what a server sends, and the
//! decoding of what the client sent.

use crate::frame::{FrameHeader, OpCode, apply_mask};

/// A server frame (unmasked).
pub(crate) fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![u8::from(fin) << 7 | opcode];
    match payload.len() {
        n @ 0..=125 => v.push(n as u8),
        n @ 126..=65535 => {
            v.push(126);
            v.extend((n as u16).to_be_bytes());
        }
        n => {
            v.push(127);
            v.extend((n as u64).to_be_bytes());
        }
    }
    v.extend_from_slice(payload);
    v
}

/// A server frame with RSV1 set (a compressed message's first frame).
pub(crate) fn zframe(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = frame(fin, opcode, payload);
    f[0] |= 0x40;
    f
}

pub(crate) fn cat(frames: &[Vec<u8>]) -> Vec<u8> {
    frames.concat()
}

/// Decodes the client's frames from `bytes`, checking each is final and
/// masked.
pub(crate) fn client_frames(bytes: &[u8]) -> Vec<(OpCode, Vec<u8>)> {
    decode_client_frames(bytes)
        .into_iter()
        .map(|(h, payload)| {
            assert!(h.fin);
            (h.opcode, payload)
        })
        .collect()
}

/// The client's frames with their RSV bits, checking each is masked.
pub(crate) fn client_frames_rsv(bytes: &[u8]) -> Vec<(OpCode, u8, Vec<u8>)> {
    decode_client_frames(bytes)
        .into_iter()
        .map(|(h, payload)| (h.opcode, h.rsv, payload))
        .collect()
}

/// The client's frames: each header and its unmasked payload, checking
/// each is masked and `bytes` holds whole frames.
fn decode_client_frames(mut bytes: &[u8]) -> Vec<(FrameHeader, Vec<u8>)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (h, n) = FrameHeader::decode(bytes).unwrap().expect("whole header");
        let len = h.payload_len as usize;
        let mut payload = bytes[n..n + len].to_vec();
        apply_mask(&mut payload, h.mask.expect("client frames are masked"));
        out.push((h, payload));
        bytes = &bytes[n + len..];
    }
    out
}

/// A client frame: masked with `mask`, RSV bits `rsv` (as in
/// `FrameHeader::rsv`).
pub(crate) fn masked_frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let header = FrameHeader {
        fin,
        rsv,
        opcode: OpCode::from_bits(opcode).expect("opcode"),
        mask: Some(mask),
        payload_len: payload.len() as u64,
    };
    let mut head = [0; FrameHeader::MAX_SIZE];
    let n = header.encode(&mut head);
    let mut v = head[..n].to_vec();
    let at = v.len();
    v.extend_from_slice(payload);
    apply_mask(&mut v[at..], mask);
    v
}

/// Decodes a server's frames from `bytes`, checking each is unmasked:
/// opcode, RSV bits, payload.
pub(crate) fn server_frames(mut bytes: &[u8]) -> Vec<(OpCode, u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (h, n) = FrameHeader::decode(bytes).unwrap().expect("whole header");
        assert!(h.mask.is_none(), "server frames are not masked");
        let len = h.payload_len as usize;
        out.push((h.opcode, h.rsv, bytes[n..n + len].to_vec()));
        bytes = &bytes[n + len..];
    }
    out
}
