//! The permessage-deflate extension (RFC 7692): the client's offer and its
//! strict checks of the server's answer, the server's choice among the
//! client's offers and its answer, and the per-message compressor and
//! decompressor (either end's).
//!
//! Compression uses `flate2` with its pure-Rust backend (`miniz_oxide`),
//! which builds for wasm32-wasip2. That backend always compresses with a
//! 32 KiB (15-bit) window; when the server limits the client's window to
//! less, a message is compressed only when it is no longer than the window
//! (its back-references then cannot reach further), with a fresh context,
//! and sent uncompressed otherwise, as RFC 7692 §6 allows. Decompression
//! with a 15-bit window reads whatever window the server used.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::error::Error;

/// The extension's name in `Sec-WebSocket-Extensions`.
const NAME: &str = "permessage-deflate";

/// The bytes a sender strips from the end of each compressed message (the
/// end of an empty stored block, RFC 7692 §7.2.1) and the receiver appends
/// back before decompressing it.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// RSV1, the bit that marks a compressed message: set on the first frame
/// of a data message, and only there (RFC 7692 §6).
pub(crate) const RSV1: u8 = 0b100;

/// The windows DEFLATE can use, as powers of two (RFC 7692 §7.1.2).
const WINDOW_BITS: std::ops::RangeInclusive<u8> = 8..=15;

/// What a client asks for when it offers permessage-deflate
/// ([`ClientConfig::deflate`](crate::ClientConfig::deflate)), or what a
/// server asks for when it accepts an offer
/// ([`ServerConfig::deflate`](crate::server::ServerConfig::deflate)).
///
/// As a server's, each setting is a wish the answer carries where RFC 7692
/// lets it: `server_no_context_takeover` (the server resets its context
/// after each message: it keeps no 32 KiB window between messages),
/// `client_no_context_takeover` (asks the client to do the same),
/// `server_max_window_bits` (the largest window the server compresses with,
/// answered only when the client's offer has the parameter) and
/// `client_max_window_bits` (a limit on the client's window, answered only
/// when the client's offer allows it). A server accepts the first offer it
/// understands and declines (answers no extension) when there is none.
///
/// The default offers the extension with `client_max_window_bits` (no
/// value: the server may limit the client's window) and asks for nothing
/// else, which every server implementing RFC 7692 accepts.
///
/// ```
/// use wsgate_guest::{ClientConfig, DeflateConfig};
/// let config = ClientConfig::default().deflate(
///     DeflateConfig::default().server_no_context_takeover(true).server_max_window_bits(10),
/// );
/// # config.validate().unwrap();
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeflateConfig {
    client_no_context_takeover: bool,
    server_no_context_takeover: bool,
    client_max_window_bits: Option<u8>,
    server_max_window_bits: Option<u8>,
}

impl DeflateConfig {
    /// Tells the server that the client resets its compression context
    /// after each message (`client_no_context_takeover`). Costs ratio,
    /// saves the server keeping the client's window between messages.
    pub fn client_no_context_takeover(mut self, on: bool) -> Self {
        self.client_no_context_takeover = on;
        self
    }

    /// Asks the server to reset its compression context after each message
    /// (`server_no_context_takeover`); a server that accepts must say so.
    pub fn server_no_context_takeover(mut self, on: bool) -> Self {
        self.server_no_context_takeover = on;
        self
    }

    /// Offers `client_max_window_bits=bits` (8 to 15): the largest window
    /// the client will compress with. The server may answer a smaller one.
    pub fn client_max_window_bits(mut self, bits: u8) -> Self {
        self.client_max_window_bits = Some(bits);
        self
    }

    /// Asks the server to compress with a window of at most `bits` (8 to
    /// 15), to bound what it costs to decompress; a server that accepts
    /// must answer its window.
    pub fn server_max_window_bits(mut self, bits: u8) -> Self {
        self.server_max_window_bits = Some(bits);
        self
    }

    /// The first problem of this offer, if any (a window out of range).
    pub(crate) fn problem(&self) -> Option<String> {
        for (name, bits) in [
            ("client_max_window_bits", self.client_max_window_bits),
            ("server_max_window_bits", self.server_max_window_bits),
        ] {
            if let Some(bits) = bits
                && !WINDOW_BITS.contains(&bits)
            {
                return Some(format!("{name} {bits} is not between 8 and 15"));
            }
        }
        None
    }

    /// The offer, as the value of `Sec-WebSocket-Extensions`.
    pub(crate) fn offer(&self) -> String {
        let mut offer = String::from(NAME);
        if self.client_no_context_takeover {
            offer.push_str("; client_no_context_takeover");
        }
        if self.server_no_context_takeover {
            offer.push_str("; server_no_context_takeover");
        }
        match self.client_max_window_bits {
            Some(bits) => offer.push_str(&format!("; client_max_window_bits={bits}")),
            None => offer.push_str("; client_max_window_bits"),
        }
        if let Some(bits) = self.server_max_window_bits {
            offer.push_str(&format!("; server_max_window_bits={bits}"));
        }
        offer
    }
}

/// The permessage-deflate parameters a server agreed to
/// ([`Response::deflate`](crate::Response::deflate)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateParams {
    /// The client resets its compression context after each message.
    pub client_no_context_takeover: bool,
    /// The server resets its compression context after each message.
    pub server_no_context_takeover: bool,
    /// The largest window the client may compress with (8 to 15).
    pub client_max_window_bits: u8,
    /// The largest window the server compresses with (8 to 15).
    pub server_max_window_bits: u8,
}

/// Checks the server's `Sec-WebSocket-Extensions` values against what was
/// offered (`offer`: `None` when nothing was), and returns the agreed
/// parameters.
///
/// Strict, as RFC 6455 §4.1 and RFC 7692 §5 want of a client: an extension
/// that was not offered, the extension twice, an unknown or repeated
/// parameter, a value out of range or above what was offered, a parameter
/// the client did not allow the server to set, or a request of ours the
/// answer does not confirm all fail the handshake.
pub(crate) fn negotiate<'a>(
    offer: Option<&DeflateConfig>,
    values: impl Iterator<Item = &'a [u8]>,
) -> Result<Option<DeflateParams>, Error> {
    let mut agreed: Option<DeflateParams> = None;
    for value in values {
        let Ok(value) = std::str::from_utf8(value) else {
            return Err(Error::handshake("Sec-WebSocket-Extensions is not ASCII"));
        };
        // A list; empty elements are allowed by the list syntax
        // (RFC 9110 §5.6.1) and mean nothing.
        for element in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let mut parts = element.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let Some(offer) = offer else {
                return Err(Error::handshake(format!(
                    "server chose extension {name:?}, none was offered"
                )));
            };
            if !name.eq_ignore_ascii_case(NAME) {
                return Err(Error::handshake(format!(
                    "server chose extension {name:?}, which was not offered"
                )));
            }
            if agreed.is_some() {
                return Err(Error::handshake("server chose permessage-deflate twice"));
            }
            agreed = Some(parameters(offer, parts)?);
        }
    }
    Ok(agreed)
}

/// A client's offer of permessage-deflate, as a server reads it.
#[derive(Debug, Default)]
struct Offer {
    client_no_context_takeover: bool,
    server_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `client_max_window_bits`, with its value if it had one.
    client_max_window_bits: Option<Option<u8>>,
}

/// The server's side of the negotiation: reads the client's
/// `Sec-WebSocket-Extensions` values and accepts the first permessage-deflate
/// offer that is valid (RFC 7692 §5: an offer with an unknown or repeated
/// parameter, or a bad value, is declined, and the next one considered).
/// Returns the agreed parameters and the answer's header value, or `None`
/// when no offer could be accepted. Other extensions are ignored: a server
/// answers only those it accepts.
pub(crate) fn accept_offer<'a>(
    config: &DeflateConfig,
    values: impl Iterator<Item = &'a [u8]>,
) -> Option<(DeflateParams, String)> {
    let offers = values
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty());
    for element in offers {
        let mut parts = element.split(';').map(str::trim);
        if !parts.next().is_some_and(|name| name.eq_ignore_ascii_case(NAME)) {
            continue;
        }
        let Some(offer) = read_offer(parts) else { continue };
        return Some(answer_offer(config, &offer));
    }
    None
}

/// Parses the parameters of one offer; `None` if it must be declined.
fn read_offer<'a>(parts: impl Iterator<Item = &'a str>) -> Option<Offer> {
    let mut offer = Offer::default();
    let mut seen: Vec<String> = Vec::new();
    for part in parts {
        let (key, value) = match part.split_once('=') {
            Some((k, v)) => (k.trim(), Some(unquote(v.trim()))),
            None => (part, None),
        };
        let key = key.to_ascii_lowercase();
        if seen.contains(&key) {
            return None;
        }
        match (key.as_str(), value) {
            ("client_no_context_takeover", None) => offer.client_no_context_takeover = true,
            ("server_no_context_takeover", None) => offer.server_no_context_takeover = true,
            ("server_max_window_bits", Some(v)) => offer.server_max_window_bits = Some(window(v)?),
            ("client_max_window_bits", None) => offer.client_max_window_bits = Some(None),
            ("client_max_window_bits", Some(v)) => offer.client_max_window_bits = Some(Some(window(v)?)),
            _ => return None,
        }
        seen.push(key);
    }
    Some(offer)
}

/// The parameters and the answer of a server with `config` to `offer`.
fn answer_offer(config: &DeflateConfig, offer: &Offer) -> (DeflateParams, String) {
    let mut answer = String::from(NAME);
    let server_nct = offer.server_no_context_takeover || config.server_no_context_takeover;
    if server_nct {
        answer.push_str("; server_no_context_takeover");
    }
    let client_nct = offer.client_no_context_takeover || config.client_no_context_takeover;
    if client_nct {
        answer.push_str("; client_no_context_takeover");
    }
    // Only in answer to the client's request (RFC 7692 §7.1.2.1), and never
    // above it.
    let server_bits = match offer.server_max_window_bits {
        Some(asked) => {
            let bits = asked.min(config.server_max_window_bits.unwrap_or(15));
            answer.push_str(&format!("; server_max_window_bits={bits}"));
            bits
        }
        None => 15,
    };
    // Only when the client allowed it (§7.1.2.2), and never above what it
    // offered.
    let client_bits = match (offer.client_max_window_bits, config.client_max_window_bits) {
        (Some(offered), Some(wanted)) => {
            let bits = wanted.min(offered.unwrap_or(15));
            answer.push_str(&format!("; client_max_window_bits={bits}"));
            bits
        }
        (Some(Some(offered)), None) => offered,
        _ => 15,
    };
    let params = DeflateParams {
        client_no_context_takeover: client_nct,
        server_no_context_takeover: server_nct,
        client_max_window_bits: client_bits,
        server_max_window_bits: server_bits,
    };
    (params, answer)
}

/// Parses and checks the parameters of the server's permessage-deflate.
fn parameters<'a>(offer: &DeflateConfig, parts: impl Iterator<Item = &'a str>) -> Result<DeflateParams, Error> {
    let bad = |what: String| Error::handshake(format!("permessage-deflate: {what}"));
    let mut seen: Vec<&str> = Vec::new();
    let mut params = DeflateParams {
        client_no_context_takeover: offer.client_no_context_takeover,
        server_no_context_takeover: false,
        client_max_window_bits: offer.client_max_window_bits.unwrap_or(15),
        server_max_window_bits: 15,
    };
    let mut server_window_answered = false;
    for part in parts {
        let (key, value) = match part.split_once('=') {
            Some((k, v)) => (k.trim(), Some(unquote(v.trim()))),
            None => (part, None),
        };
        let key_lower = key.to_ascii_lowercase();
        if seen.iter().any(|k| k.eq_ignore_ascii_case(key)) {
            return Err(bad(format!("parameter {key:?} appears twice")));
        }
        seen.push(key);
        match (key_lower.as_str(), value) {
            // The server may always ask the client to reset its context
            // (RFC 7692 §7.1.1.2), and may always reset its own.
            ("client_no_context_takeover", None) => params.client_no_context_takeover = true,
            ("server_no_context_takeover", None) => params.server_no_context_takeover = true,
            ("server_max_window_bits", Some(v)) => {
                let bits = window(v).ok_or_else(|| bad(format!("server_max_window_bits={v:?}")))?;
                if let Some(max) = offer.server_max_window_bits
                    && bits > max
                {
                    return Err(bad(format!(
                        "server_max_window_bits={bits} exceeds the {max} asked for"
                    )));
                }
                params.server_max_window_bits = bits;
                server_window_answered = true;
            }
            // Only as an answer to our offer of it, which is always made
            // (RFC 7692 §7.1.2.2), and only with a value.
            ("client_max_window_bits", Some(v)) => {
                let bits = window(v).ok_or_else(|| bad(format!("client_max_window_bits={v:?}")))?;
                // The server may lower the window we offered, not raise it.
                if let Some(max) = offer.client_max_window_bits
                    && bits > max
                {
                    return Err(bad(format!("client_max_window_bits={bits} exceeds the {max} offered")));
                }
                params.client_max_window_bits = bits;
            }
            (
                "client_no_context_takeover"
                | "server_no_context_takeover"
                | "server_max_window_bits"
                | "client_max_window_bits",
                _,
            ) => return Err(bad(format!("malformed parameter {part:?}"))),
            _ => return Err(bad(format!("unknown parameter {key:?}"))),
        }
    }
    // A server that accepts an offer must honour its requests (RFC 7692
    // §7.1.1.1, §7.1.2.1); one that cannot must decline the extension.
    if offer.server_no_context_takeover && !params.server_no_context_takeover {
        return Err(bad("the server did not accept server_no_context_takeover".into()));
    }
    if offer.server_max_window_bits.is_some() && !server_window_answered {
        return Err(bad("the server did not accept server_max_window_bits".into()));
    }
    Ok(params)
}

/// A parameter value may be a quoted string whose content is a token
/// (RFC 6455 §9.1).
fn unquote(v: &str) -> &str {
    v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v)
}

/// A window size: 8 to 15, written without leading zeros (RFC 7692
/// §7.1.2.1's ABNF).
fn window(v: &str) -> Option<u8> {
    if v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u8>().ok().filter(|b| WINDOW_BITS.contains(b))
}

/// The compressor of the messages we send. It takes the client's view of
/// [`DeflateParams`] (`client_*` is ours): a server hands it the mirror.
pub(crate) struct Deflater {
    compress: Compress,
    no_context_takeover: bool,
    window_bits: u8,
}

impl Deflater {
    pub(crate) fn new(params: &DeflateParams) -> Deflater {
        Deflater {
            // zlib's default level: the usual balance of ratio and time.
            compress: Compress::new(Compression::default(), false),
            no_context_takeover: params.client_no_context_takeover,
            window_bits: params.client_max_window_bits,
        }
    }

    /// Compresses `payload` into `out` (replacing its contents), without
    /// the tail. Returns `false` when the message must go uncompressed
    /// (longer than a window smaller than the backend's); `out` is then
    /// unspecified.
    pub(crate) fn compress(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<bool, Error> {
        let small_window = self.window_bits < 15;
        if small_window {
            if payload.len() > 1 << self.window_bits {
                return Ok(false);
            }
            // No reference may reach into earlier messages, which a window
            // this small cannot hold; within the message, distances are
            // shorter than the message, which fits in the window.
            self.compress.reset();
        }
        out.clear();
        // Typical text compresses to well under half; the loop grows the
        // buffer when it does not.
        out.reserve(payload.len() / 2 + 64);
        let start = self.compress.total_in();
        // Each pass consumes input or fills the output buffer, which then
        // grows: the loop ends once all input is in and the flush is out.
        loop {
            let consumed = usize::try_from(self.compress.total_in() - start).unwrap_or(payload.len());
            let rest = payload.get(consumed..).unwrap_or_default();
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(64));
            }
            self.compress
                .compress_vec(rest, out, FlushCompress::Sync)
                .map_err(|e| Error::from(std::io::Error::other(format!("compression failed: {e}"))))?;
            let consumed = usize::try_from(self.compress.total_in() - start).unwrap_or(payload.len());
            if consumed >= payload.len() && out.len() < out.capacity() {
                break;
            }
        }
        // A sync flush ends with an empty stored block, whose last four
        // bytes the sender removes (RFC 7692 §7.2.1).
        if !out.ends_with(&TAIL) {
            return Err(Error::from(std::io::Error::other(
                "compressor output lacks the sync flush marker",
            )));
        }
        out.truncate(out.len() - TAIL.len());
        if self.no_context_takeover && !small_window {
            self.compress.reset();
        }
        Ok(true)
    }
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater")
            .field("no_context_takeover", &self.no_context_takeover)
            .field("window_bits", &self.window_bits)
            .finish()
    }
}

/// The decompressor of the messages the peer sends, in the client's view
/// of [`DeflateParams`] (`server_*` is the peer's), as the compressor.
pub(crate) struct Inflater {
    decompress: Decompress,
    no_context_takeover: bool,
    /// The current message's DEFLATE stream ended (a block with BFINAL set,
    /// RFC 7692 §7.2.3.4): the rest of the message is ignored, and the next
    /// one starts a new stream.
    ended: bool,
}

impl Inflater {
    pub(crate) fn new(params: &DeflateParams) -> Inflater {
        Inflater {
            // A 15-bit window reads data compressed with any smaller one.
            decompress: Decompress::new(false),
            no_context_takeover: params.server_no_context_takeover,
            ended: false,
        }
    }

    /// Decompresses a piece of a compressed message, appending to `out`,
    /// which may not grow past `max` bytes (a larger message fails with
    /// 1009 before more memory is taken).
    pub(crate) fn inflate(&mut self, mut input: &[u8], out: &mut Vec<u8>, max: usize) -> Result<(), Error> {
        // Each pass consumes input, produces output, or returns: the loop
        // ends with the input, the limit, or the end of the stream.
        while !self.ended {
            grow_for_output(out, max)?;
            let (in_before, out_before) = (self.decompress.total_in(), out.len());
            let status = self
                .decompress
                .decompress_vec(input, out, FlushDecompress::None)
                .map_err(|e| Error::protocol(format!("invalid compressed data: {e}")))?;
            let consumed = usize::try_from(self.decompress.total_in() - in_before).unwrap_or(input.len());
            input = input.get(consumed..).unwrap_or_default();
            if out.len() > max {
                return Err(too_big(max));
            }
            match status {
                Status::StreamEnd => self.ended = true,
                // Room was left in `out` and the input is used up (or
                // nothing moved): the decompressor needs more input.
                _ if out.len() < out.capacity() && (input.is_empty() || (consumed == 0 && out.len() == out_before)) => {
                    return Ok(());
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Ends a compressed message: decompresses the tail the sender
    /// stripped, and resets the context if it is not kept.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>, max: usize) -> Result<(), Error> {
        self.inflate(&TAIL, out, max)?;
        if self.no_context_takeover || self.ended {
            self.decompress.reset(false);
            self.ended = false;
        }
        Ok(())
    }
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("no_context_takeover", &self.no_context_takeover)
            .finish()
    }
}

fn too_big(max: usize) -> Error {
    Error::capacity(format!(
        "decompressed message of more than {max} bytes (max_message_size)"
    ))
}

/// Makes room in a full `out` for more output: doubling, so that a large
/// message costs few copies, but never past one byte over `max` (that byte
/// proves the message too large).
fn grow_for_output(out: &mut Vec<u8>, max: usize) -> Result<(), Error> {
    if out.len() < out.capacity() {
        return Ok(());
    }
    let limit = max.saturating_add(1);
    if out.len() >= limit {
        return Err(too_big(max));
    }
    let target = out.capacity().saturating_mul(2).max(1024).min(limit).max(out.len() + 1);
    out.reserve_exact(target - out.len());
    Ok(())
}

/// Full-window parameters with the given context takeover, for tests.
#[cfg(test)]
pub(crate) fn test_params(client_nct: bool, server_nct: bool) -> DeflateParams {
    DeflateParams {
        client_no_context_takeover: client_nct,
        server_no_context_takeover: server_nct,
        client_max_window_bits: 15,
        server_max_window_bits: 15,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::test_params as params;

    fn negotiate_str(offer: &DeflateConfig, answer: &str) -> Result<Option<DeflateParams>, Error> {
        negotiate(Some(offer), std::iter::once(answer.as_bytes()))
    }

    #[test]
    fn offers() {
        assert_eq!(
            DeflateConfig::default().offer(),
            "permessage-deflate; client_max_window_bits"
        );
        let all = DeflateConfig::default()
            .client_no_context_takeover(true)
            .server_no_context_takeover(true)
            .client_max_window_bits(12)
            .server_max_window_bits(10);
        assert_eq!(
            all.offer(),
            "permessage-deflate; client_no_context_takeover; server_no_context_takeover; \
             client_max_window_bits=12; server_max_window_bits=10"
        );
        assert!(all.problem().is_none());
        assert!(DeflateConfig::default().client_max_window_bits(7).problem().is_some());
        assert!(DeflateConfig::default().server_max_window_bits(16).problem().is_some());
    }

    #[test]
    fn accepts_valid_answers() {
        let d = DeflateConfig::default();
        assert_eq!(
            negotiate_str(&d, "permessage-deflate").unwrap(),
            Some(params(false, false))
        );
        let p = negotiate_str(
            &d,
            "permessage-deflate; client_no_context_takeover;server_no_context_takeover ; \
             server_max_window_bits=10; client_max_window_bits=\"9\"",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            p,
            DeflateParams {
                client_no_context_takeover: true,
                server_no_context_takeover: true,
                client_max_window_bits: 9,
                server_max_window_bits: 10,
            }
        );
        // Requests the server honours.
        let asked = DeflateConfig::default()
            .server_no_context_takeover(true)
            .server_max_window_bits(12)
            .client_max_window_bits(11);
        let p = negotiate_str(
            &asked,
            "PerMessage-Deflate; server_no_context_takeover; server_max_window_bits=12",
        )
        .unwrap()
        .unwrap();
        assert_eq!((p.server_max_window_bits, p.client_max_window_bits), (12, 11));
        // Nothing chosen, empty list elements.
        assert_eq!(negotiate(Some(&d), std::iter::empty()).unwrap(), None);
        assert_eq!(negotiate_str(&d, " , ").unwrap(), None);
        assert_eq!(negotiate(None, std::iter::once(&b""[..])).unwrap(), None);
    }

    #[test]
    fn refuses_bad_answers() {
        let d = DeflateConfig::default();
        let asked = DeflateConfig::default()
            .server_no_context_takeover(true)
            .server_max_window_bits(10)
            .client_max_window_bits(12);
        for (offer, answer) in [
            (&d, "x-webkit-deflate-frame"),
            (&d, "permessage-deflate, permessage-deflate"),
            (&d, "permessage-deflate; foo"),
            (&d, "permessage-deflate; foo=1"),
            (
                &d,
                "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            ),
            (&d, "permessage-deflate; server_no_context_takeover=1"),
            (&d, "permessage-deflate; client_no_context_takeover=\"\""),
            (&d, "permessage-deflate; server_max_window_bits"),
            (&d, "permessage-deflate; server_max_window_bits=7"),
            (&d, "permessage-deflate; server_max_window_bits=16"),
            (&d, "permessage-deflate; server_max_window_bits=010"),
            (&d, "permessage-deflate; server_max_window_bits=1a"),
            (&d, "permessage-deflate; server_max_window_bits=\"10"),
            (&d, "permessage-deflate; client_max_window_bits"),
            (
                &d,
                "permessage-deflate; client_max_window_bits=8; client_max_window_bits=9",
            ),
            (&asked, "permessage-deflate; server_max_window_bits=10"),
            (&asked, "permessage-deflate; server_no_context_takeover"),
            (
                &asked,
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=11",
            ),
            (
                &asked,
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits=13",
            ),
        ] {
            let r = negotiate_str(offer, answer);
            assert!(r.is_err(), "{answer:?} was accepted: {r:?}");
        }
        // Not offered at all.
        let e = negotiate(None, std::iter::once(&b"permessage-deflate"[..])).unwrap_err();
        assert!(e.to_string().contains("none was offered"), "{e}");
        assert!(negotiate(Some(&d), std::iter::once(&b"permessage-deflate\xff"[..])).is_err());
    }

    fn accept_str(config: &DeflateConfig, offers: &str) -> Option<(DeflateParams, String)> {
        accept_offer(config, std::iter::once(offers.as_bytes()))
    }

    #[test]
    fn server_accepts_offers() {
        let d = DeflateConfig::default();
        assert_eq!(
            accept_str(&d, "permessage-deflate"),
            Some((params(false, false), "permessage-deflate".into()))
        );
        // The client's requests are honoured and answered.
        let (p, answer) = accept_str(
            &d,
            "permessage-deflate; client_no_context_takeover; server_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits",
        )
        .unwrap();
        assert_eq!(
            answer,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10"
        );
        assert_eq!(
            p,
            DeflateParams {
                client_no_context_takeover: true,
                server_no_context_takeover: true,
                client_max_window_bits: 15,
                server_max_window_bits: 10,
            }
        );
        // The server's own wishes, where the offer lets them be said.
        let wishes = DeflateConfig::default()
            .server_no_context_takeover(true)
            .client_no_context_takeover(true)
            .server_max_window_bits(12)
            .client_max_window_bits(11);
        let (p, answer) = accept_str(&wishes, "permessage-deflate; client_max_window_bits=13").unwrap();
        assert_eq!(
            answer,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=11"
        );
        assert_eq!((p.client_max_window_bits, p.server_max_window_bits), (11, 15));
        let (p, answer) = accept_str(&wishes, "permessage-deflate; server_max_window_bits=9").unwrap();
        assert!(answer.ends_with("; server_max_window_bits=9"), "{answer}");
        assert_eq!((p.client_max_window_bits, p.server_max_window_bits), (15, 9));
        // An offered client window is what the client will use.
        let (p, answer) = accept_str(&d, "permessage-deflate; client_max_window_bits=\"9\"").unwrap();
        assert_eq!((answer.as_str(), p.client_max_window_bits), ("permessage-deflate", 9));
        // The first valid offer wins; bad ones and other extensions are
        // passed over.
        let values: [&[u8]; 2] = [
            b"x-webkit-deflate-frame, permessage-deflate; foo",
            b"permessage-deflate; server_max_window_bits=7, permessage-deflate; server_max_window_bits=8, \
              permessage-deflate",
        ];
        let (p, _) = accept_offer(&d, values.into_iter()).unwrap();
        assert_eq!(p.server_max_window_bits, 8);
    }

    #[test]
    fn server_declines_bad_offers() {
        let d = DeflateConfig::default();
        for offer in [
            "",
            "x-webkit-deflate-frame",
            "permessage-deflate; foo",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits; client_max_window_bits",
        ] {
            assert_eq!(accept_str(&d, offer), None, "{offer:?}");
        }
        assert_eq!(accept_offer(&d, std::iter::once(&b"permessage-deflate\xff"[..])), None);
    }

    /// What our server answers, our client accepts, and the two ends'
    /// compressors and decompressors agree.
    #[test]
    fn server_answer_satisfies_client() {
        let offers = [
            DeflateConfig::default(),
            DeflateConfig::default()
                .server_no_context_takeover(true)
                .server_max_window_bits(9),
            DeflateConfig::default()
                .client_no_context_takeover(true)
                .client_max_window_bits(10),
        ];
        let wishes = [
            DeflateConfig::default(),
            DeflateConfig::default()
                .client_max_window_bits(12)
                .server_no_context_takeover(true),
        ];
        for offer in &offers {
            for wish in &wishes {
                let (server, answer) = accept_str(wish, &offer.offer()).expect("accepted");
                let client = negotiate_str(offer, &answer).unwrap().expect("agreed");
                assert_eq!(server, client, "{} / {answer}", offer.offer());
            }
        }
    }

    fn inflate_all(inf: &mut Inflater, compressed: &[u8], max: usize) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        inf.inflate(compressed, &mut out, max)?;
        inf.finish(&mut out, max)?;
        Ok(out)
    }

    #[test]
    fn rfc_7692_hello() {
        // RFC 7692 §7.2.3.1: "Hello" in one compressed frame.
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let mut inf = Inflater::new(&params(false, false));
        assert_eq!(inflate_all(&mut inf, &hello, 100).unwrap(), b"Hello");
        // §7.2.3.2: the same again, with context takeover, uses a
        // back-reference to the first.
        assert_eq!(
            inflate_all(&mut inf, &[0xf2, 0x00, 0x11, 0x00, 0x00], 100).unwrap(),
            b"Hello"
        );
        // Split at every point.
        for cut in 0..=hello.len() {
            let mut inf = Inflater::new(&params(false, false));
            let mut out = Vec::new();
            inf.inflate(&hello[..cut], &mut out, 100).unwrap();
            inf.inflate(&hello[cut..], &mut out, 100).unwrap();
            inf.finish(&mut out, 100).unwrap();
            assert_eq!(out, b"Hello", "cut {cut}");
        }
        // §7.2.3.3: no compression (a stored block).
        let stored = [0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00];
        let mut inf = Inflater::new(&params(false, false));
        assert_eq!(inflate_all(&mut inf, &stored, 100).unwrap(), b"Hello");
        // §7.2.3.4: BFINAL set; the next message starts afresh.
        let bfinal = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        assert_eq!(inflate_all(&mut inf, &bfinal, 100).unwrap(), b"Hello");
        assert_eq!(inflate_all(&mut inf, &hello, 100).unwrap(), b"Hello");
        // Our compressor gives the RFC's bytes for a first "Hello".
        let mut def = Deflater::new(&params(false, false));
        let mut out = Vec::new();
        assert!(def.compress(b"Hello", &mut out).unwrap());
        assert_eq!(out, hello);
    }

    #[test]
    fn round_trips_with_and_without_context_takeover() {
        let messages: Vec<Vec<u8>> = vec![
            b"Hello".to_vec(),
            b"Hello".to_vec(),
            Vec::new(),
            "the quick brown fox jumps over the lazy dog ".repeat(2000).into_bytes(),
            (0..200_000u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
            b"Hello".to_vec(),
        ];
        for (client_nct, server_nct) in [(false, false), (true, true), (true, false), (false, true)] {
            // Our compressor feeds a decompressor with the matching
            // setting: the client's for the compressor, and the same for
            // the decompressor standing in for the server.
            let p = params(client_nct, server_nct);
            let mut def = Deflater::new(&p);
            let mut inf = Inflater::new(&DeflateParams {
                server_no_context_takeover: client_nct,
                ..p
            });
            let mut sizes = Vec::new();
            for m in &messages {
                let mut z = Vec::new();
                assert!(def.compress(m, &mut z).unwrap());
                sizes.push(z.len());
                // Fed in uneven pieces, as frames arrive.
                let mut out = Vec::new();
                for piece in z.chunks(777) {
                    inf.inflate(piece, &mut out, 1 << 20).unwrap();
                }
                inf.finish(&mut out, 1 << 20).unwrap();
                assert_eq!(&out, m, "nct {client_nct}/{server_nct}");
            }
            // The second "Hello" is a back-reference only with context
            // takeover.
            if client_nct {
                assert_eq!(sizes[0], sizes[1]);
            } else {
                assert!(sizes[1] < sizes[0], "{sizes:?}");
            }
            assert!(sizes[3] < messages[3].len() / 20, "{sizes:?}");
        }
    }

    #[test]
    fn small_client_window() {
        let p = DeflateParams {
            client_max_window_bits: 9,
            ..params(false, false)
        };
        let mut def = Deflater::new(&p);
        let mut inf = Inflater::new(&params(false, false));
        let mut z = Vec::new();
        let short = "abcabcabc".repeat(50).into_bytes(); // 450 bytes <= 512
        assert!(def.compress(&short, &mut z).unwrap());
        assert_eq!(inflate_all(&mut inf, &z, 1 << 20).unwrap(), short);
        // Longer than the window: sent uncompressed.
        assert!(!def.compress(&[7; 513], &mut z).unwrap());
        // And the next short one is still right.
        assert!(def.compress(&short, &mut z).unwrap());
        assert_eq!(inflate_all(&mut inf, &z, 1 << 20).unwrap(), short);
    }

    #[test]
    fn bomb_hits_the_limit() {
        let mut def = Deflater::new(&params(false, false));
        let mut z = Vec::new();
        def.compress(&vec![0; 10 << 20], &mut z).unwrap();
        assert!(z.len() < 20 << 10, "{}", z.len());
        let mut inf = Inflater::new(&params(false, false));
        let mut out = Vec::new();
        let e = inf.inflate(&z, &mut out, 1 << 20).unwrap_err();
        assert_eq!(e.close_code(), Some(1009));
        assert!(out.capacity() <= (1 << 20) + 1, "{}", out.capacity());
        // Exactly at the limit is fine.
        let mut inf = Inflater::new(&params(false, false));
        def.compress(&vec![1; 4096], &mut z).unwrap();
        assert_eq!(inflate_all(&mut inf, &z, 4096).unwrap().len(), 4096);
        // Corrupt data is a protocol error.
        let mut inf = Inflater::new(&params(false, false));
        let e = inflate_all(&mut inf, &[0xff, 0xff, 0xff], 100).unwrap_err();
        assert_eq!(e.close_code(), Some(1002));
    }
}
