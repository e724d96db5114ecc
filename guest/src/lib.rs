//! The wsgate plugin SDK: WebSocket (RFC 6455) for plugins, as a client
//! (`wsgate run`, and upstream connections) and as a server (the client
//! sessions of `wsgate serve`).
//!
//! A wsgate plugin never opens a socket: the host connects, and hands the
//! plugin one byte stream. This crate is the WebSocket client that runs
//! over that stream. Its codec is plain Rust over [`std::io::Read`] and
//! [`std::io::Write`], independent of the host bindings, so that it runs
//! (and is tested) natively over a `TcpStream` as well.
//!
//! # Why its own codec
//!
//! The SDK is laid out as tungstenite is, a sans-I/O protocol core under a
//! blocking `WebSocket`, but it is not tungstenite, whose client writes its
//! upgrade request on the stream and reads the answer in one handshake
//! step. A plugin's connection differs from a socket:
//!
//! - The host writes the upgrade request as the connect's *first flight*,
//!   on whichever connection of its address race it commits to, so the
//!   request is built apart from the session ([`Request`]) and handed to
//!   the host before there is a stream to write it to.
//! - When an upgrade fails for a reason of the network path (a 502, a
//!   connection closed before the answer), the host's `fallback()` hands
//!   over a new connection in the middle of the handshake, whose response
//!   is then read with the same request ([`read_response`]).
//! - permessage-deflate (RFC 7692) runs in bounded memory: the inflater's
//!   output stops at the message limit (a compression bomb fails with
//!   1009), and a window the pure-Rust compressor cannot honour sends the
//!   message uncompressed rather than failing the connection.
//! - Memory follows the data, not the headers: a header announcing a large
//!   frame reserves at most 64 KiB until the bytes arrive, and a message in
//!   many fragments grows as they come, never past its limit: a peer cannot
//!   make a component allocate its limits by announcing them.
//! - I/O is wasm32-wasip2's: blocking reads and writes on `wasi:io`
//!   streams, a read timeout made of a pollable and a timer, and writes
//!   kept until a flush hands them to the host together: the messages sent
//!   in a row leave together, before the session next waits for the peer.
//!
//! # The pieces
//!
//! - [`url`]: `ws://` and `wss://` URLs.
//! - [`handshake`]: the upgrade request and the checks of the response.
//! - [`server`]: the server's side of the handshake: the checks of the
//!   upgrade request, the `101` and the refusals, and [`server::accept`].
//! - [`frame`]: frame headers, masking and the incremental frame decoder.
//! - `session` (internal): the sans-I/O protocol core. It takes received
//!   bytes and returns messages (reassembled, decompressed, UTF-8 checked,
//!   within the limits), answers control frames, runs the close handshake,
//!   and encodes what is sent into an output buffer; it does no I/O.
//! - [`WebSocket`]: the blocking session over any [`Transport`] (a byte
//!   stream whose reads can time out): it reads into the core, writes each
//!   frame with one write (a large payload from its own buffer), flushes
//!   after control frames and before every wait for the peer, and bounds
//!   the close handshake's waits.
//! - [`DeflateConfig`]: permessage-deflate (RFC 7692), when asked for.
//! - `HostStream` and `connect` (wasm32 only): the stream through the
//!   wsgate host, and the connect that opens a session on it.
//! - `gateway` (wasm32 only): gateway plugins for `wsgate serve`: the
//!   client's `Session`, its `SessionStream`, and the `gateway!` macro that
//!   exports a handler function.
//! - `Poller`, `select` (wasm32 only): waiting on several WebSockets at
//!   once over `wasi:io/poll`, without threads and without spinning.
//!
//! ```no_run
//! use std::net::TcpStream;
//! use wsgate_guest::{client, ClientConfig, Message, url::Url};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let url = Url::parse("ws://127.0.0.1:9001/echo")?;
//! let stream = TcpStream::connect((url.host(), url.port()))?;
//! let mut ws = client(stream, &url, ClientConfig::default())?;
//! ws.send(Message::Text("hello".into()))?;
//! if let Message::Text(echo) = ws.recv()? {
//!     println!("{echo}");
//! }
//! ws.close(1000, "done")?;
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]
// The codec has no unsafe code; only the generated host bindings do.
#![deny(unsafe_code)]

mod config;
mod deflate;
mod error;
pub mod frame;
pub mod handshake;
mod message;
mod rand;
pub mod server;
mod session;
#[cfg(test)]
mod testing;
mod transport;
pub mod url;
mod websocket;

// The host bindings (wasm32 only) are a separate layer over this codec.
#[cfg(target_arch = "wasm32")]
pub mod gateway;
#[cfg(target_arch = "wasm32")]
mod poll;
#[cfg(target_arch = "wasm32")]
mod wasm;
#[cfg(target_arch = "wasm32")]
pub use gateway::{Session, SessionStream};
#[cfg(target_arch = "wasm32")]
pub use poll::{Event, Poller, Selectable, Subscribe, select};
#[cfg(target_arch = "wasm32")]
pub use wasm::{HostStream, RaceEvent, connect, connect_with_config};

pub use config::{ClientConfig, Limits};
pub use deflate::{DeflateConfig, DeflateParams};
pub use error::{Error, ErrorKind};
pub use handshake::{Request, Response, read_response};
pub use message::{CloseFrame, MAX_CLOSE_REASON, Message, is_valid_close_code};
pub use server::ServerConfig;
pub use transport::{GoingAway, Transport};
pub use url::Url;
pub use websocket::WebSocket;

/// Opens a WebSocket session over `stream`, a connected byte stream to the
/// server of `url` (TLS already set up for `wss://`).
///
/// Writes the upgrade request, reads and checks the response, and returns
/// the session. Bytes the server sent right behind its response are kept
/// for the session.
pub fn client<S: Transport>(stream: S, url: &Url, config: ClientConfig) -> Result<WebSocket<S>, Error> {
    client_with_response(stream, url, config).map(|(ws, _)| ws)
}

/// Like [`client`], also returning the server's handshake response (for its
/// headers and the chosen [`subprotocol`](Response::subprotocol)).
pub fn client_with_response<S: Transport>(
    mut stream: S,
    url: &Url,
    config: ClientConfig,
) -> Result<(WebSocket<S>, Response), Error> {
    let request = Request::try_new(url, &config)?;
    stream.write_all(request.bytes())?;
    stream.flush()?;
    let (response, leftover) = read_response(&mut stream, &request, &config)?;
    Ok((WebSocket::from_response(stream, &response, leftover, config), response))
}
