//! echo-server: a wsgate gateway plugin that echoes every message of every
//! client session until the client closes it.
//!
//! ```text
//! wsgate serve echo_server.wasm --listen 127.0.0.1:9001
//! ```
//!
//! Text and binary messages come back as they came (reassembled: one frame
//! per message); Pings are answered by the SDK; the client's Close is
//! echoed and ends the session. permessage-deflate (RFC 7692) is accepted
//! when the client offers it. It is the target of the Autobahn|Testsuite
//! fuzzingclient (cases 1.* to 10.*, and 12.* and 13.* with deflate), whose
//! largest messages (9.*) are 16 MiB: frames and messages up to
//! [`MAX_MESSAGE`] (17 MiB) are accepted. Echoing one holds it about twice
//! (received, and encoded to send): a 17 MiB message, in one frame or in
//! fragments, echoes within the host's default 64 MiB per instance.
//!
//! A request that is not a WebSocket upgrade is answered 426 or 400 by the
//! SDK; each session that ends in an error (a refused request, a client
//! that broke the protocol) returns it, for the host to log.

use wsgate_guest::{DeflateConfig, Error, Message, ServerConfig, Session};

/// The largest frame and message accepted: Autobahn's 16 MiB and a margin.
pub const MAX_MESSAGE: usize = (16 << 20) + (1 << 20);

fn handle(session: Session) -> Result<(), Error> {
    let config = ServerConfig::default()
        .deflate(DeflateConfig::default())
        .max_frame_size(MAX_MESSAGE)
        .max_message_size(MAX_MESSAGE);
    let mut ws = session.accept(&config)?;
    loop {
        match ws.recv()? {
            message @ (Message::Text(_) | Message::Binary(_)) => ws.send(message)?,
            // The SDK echoed the Close: the close handshake is done, and
            // returning closes the connection, as a server does first.
            Message::Close(_) => return Ok(()),
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }
}

wsgate_guest::gateway!(handle);
