//! Gateway plugins (wasm32 only): the handler `wsgate serve` calls once per
//! client session, in a fresh instance, and the session it is handed.
//!
//! The host accepted the client's connection, did TLS, read the request
//! head and chose the route; the plugin answers the upgrade itself
//! ([`Session::accept`]: the checks, then `101 Switching Protocols` or the
//! refusal) and speaks WebSocket over the session's streams. It may open
//! upstream connections with [`connect`](crate::connect) as a client
//! plugin does, and wait on several WebSockets at once with a
//! [`Poller`](crate::Poller).
//!
//! A gateway plugin is a `cdylib` whose handler is one function, exported
//! with [`gateway!`](crate::gateway!):
//!
//! ```no_run
//! use wsgate_guest::{Message, ServerConfig, Session};
//!
//! fn handle(session: Session) -> Result<(), wsgate_guest::Error> {
//!     let mut ws = session.accept(&ServerConfig::default())?;
//!     loop {
//!         match ws.recv()? {
//!             message @ (Message::Text(_) | Message::Binary(_)) => ws.send(message)?,
//!             Message::Close(_) => return Ok(()),
//!             _ => {}
//!         }
//!     }
//! }
//!
//! wsgate_guest::gateway!(handle);
//! ```
//!
//! Only a crate that invokes the macro exports the handler: the SDK's own
//! bindings declare the `gateway` world's imports alone, so that a client
//! plugin linking the SDK stays a plain `wasi:cli/run` command.

use std::fmt::Display;
use std::io::{self, Read, Write};
use std::time::Duration;

use wasip2::io::poll::Pollable;

use crate::error::Error;
use crate::poll::Subscribe;
use crate::server::{Refusal, RequestHead, ServerConfig, UpgradeRequest};
use crate::transport::Transport;
use crate::wasm::Streams;
use crate::websocket::WebSocket;

/// The bindings of the `wsgate:connect/gateway` world, for
/// [`gateway!`](crate::gateway!); not an API.
#[doc(hidden)]
#[allow(unsafe_code, missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "wsgate:connect/gateway",
        with: {
            "wasi:io/error@0.2.12": wasip2::io::error,
            "wasi:io/poll@0.2.12": wasip2::io::poll,
            "wasi:io/streams@0.2.12": wasip2::io::streams,
            "wasi:cli/environment@0.2.12": wasip2::cli::environment,
            "wasi:cli/exit@0.2.12": wasip2::cli::exit,
            "wasi:cli/stdin@0.2.12": wasip2::cli::stdin,
            "wasi:cli/stdout@0.2.12": wasip2::cli::stdout,
            "wasi:cli/stderr@0.2.12": wasip2::cli::stderr,
            "wasi:clocks/monotonic-clock@0.2.12": wasip2::clocks::monotonic_clock,
            "wasi:clocks/wall-clock@0.2.12": wasip2::clocks::wall_clock,
            "wasi:random/random@0.2.12": wasip2::random::random,
            "wsgate:connect/types@0.2.2": crate::wasm::bindings::wsgate::connect::types,
        },
        // The module's own section has the world without its export; the
        // export and its section come with the macro, in the plugin.
        pub_export_macro: true,
        export_macro_name: "__export_gateway",
        default_bindings_module: "$crate::gateway::bindings",
    });
}

use bindings::wsgate::connect::sessions;

/// One client's session, as the host hands it to the handler: the request
/// head, who the client is, and (once [`accept`](Session::accept)ed) the
/// WebSocket to it. Dropping it closes the client's connection.
pub struct Session {
    inner: sessions::Session,
    head: RequestHead,
}

impl Session {
    fn new(inner: sessions::Session) -> Session {
        let head = inner.request();
        let head = RequestHead {
            method: head.method,
            target: head.target,
            minor_version: head.minor_version,
            headers: head.headers.into_iter().map(|h| (h.name, h.value)).collect(),
        };
        Session { inner, head }
    }

    /// The request head the client sent.
    pub fn request(&self) -> &RequestHead {
        &self.head
    }

    /// The client's address, as `ip:port` (`[v6]:port` for IPv6).
    pub fn client_address(&self) -> String {
        self.inner.client_address()
    }

    /// The name the client asked for in TLS's SNI; `None` over plain TCP or
    /// when it sent none.
    pub fn server_name(&self) -> Option<String> {
        self.inner.server_name()
    }

    /// The name of the route that matched, as the operator wrote it.
    pub fn route(&self) -> String {
        self.inner.route()
    }

    /// Checks the request, without answering it: the upgrade request (its
    /// target, headers, subprotocols), or the refusal
    /// [`accept`](Session::accept) would answer. For a handler that decides
    /// (routes, connects upstream) before it answers.
    pub fn upgrade_request(&self) -> Result<UpgradeRequest, Refusal> {
        UpgradeRequest::check(self.head.clone())
    }

    /// Answers the upgrade: checks the request and writes the `101` with
    /// what `config` agrees to (subprotocol, permessage-deflate), and
    /// returns the WebSocket to the client. A request it refuses gets the
    /// [`Refusal`]'s response (400 or 426) and the error has its
    /// [`status`](Error::status); so does an invalid `config` (500).
    pub fn accept(self, config: &ServerConfig) -> Result<WebSocket<SessionStream>, Error> {
        let request = match self.upgrade_request() {
            Ok(request) => request,
            Err(refusal) => {
                self.refuse(&refusal)?;
                return Err(refusal.into());
            }
        };
        let answer = match request.accept(config) {
            Ok(answer) => answer,
            Err(e) => {
                self.refuse(&Refusal::new(500, "the plugin's WebSocket configuration is invalid"))?;
                return Err(e);
            }
        };
        let mut stream = self.into_stream()?;
        stream.write_all(answer.bytes())?;
        stream.flush()?;
        Ok(WebSocket::from_accept(stream, &answer, Vec::new(), config))
    }

    /// Answers the request with `refusal` (a 400, a 403 of the plugin's own
    /// checks, a 502 when the upstream cannot be reached...) and ends the
    /// session: the response is handed to the host, which writes it before
    /// the connection closes.
    pub fn refuse(self, refusal: &Refusal) -> Result<(), Error> {
        let mut stream = self.into_stream()?;
        stream.write_all(&refusal.response())?;
        stream.flush()?;
        Ok(())
    }

    /// The session's byte streams, for a handler that answers the request
    /// itself (plain HTTP, say). The host wrote nothing yet.
    pub fn into_stream(self) -> Result<SessionStream, Error> {
        let taken = || Error::from(io::Error::other("the session's streams were taken already"));
        let input = self.inner.input().map_err(|()| taken())?;
        let output = self.inner.output().map_err(|()| taken())?;
        let going_away = self.inner.going_away();
        Ok(SessionStream {
            streams: Streams::new(input, output).with_going_away(going_away),
            session: self.inner,
        })
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("request", &self.head)
            .finish_non_exhaustive()
    }
}

/// The byte stream to a gateway's client: the session's two `wasi:io`
/// streams, buffered and flushed as [`HostStream`](crate::HostStream)'s
/// are, with read timeouts. Dropping it waits (at most 5 s) until the host
/// took every byte written, then closes the client's connection.
pub struct SessionStream {
    // The streams are children of the session: dropped first.
    streams: Streams,
    session: sessions::Session,
}

impl SessionStream {
    /// The client's address, as `ip:port`.
    pub fn client_address(&self) -> String {
        self.session.client_address()
    }

    /// Waits until the host has written every byte written to the stream.
    pub fn flush_all(&mut self) -> io::Result<()> {
        self.streams.flush_all()
    }
}

impl Read for SessionStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.streams.read(buf)
    }
}

impl Write for SessionStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.streams.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.streams.flush()
    }
}

impl Transport for SessionStream {
    fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.streams.read_timeout())
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.streams.set_read_timeout(timeout)
    }

    /// The host's buffer itself, without a copy.
    fn read_chunk(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        self.streams.read_chunk(buf)
    }
}

impl Subscribe for SessionStream {
    fn subscribe(&self) -> Pollable {
        self.streams.subscribe()
    }

    fn going_away(&self) -> Option<&Pollable> {
        self.streams.going_away()
    }
}

/// Runs a handler on the host's session (for [`gateway!`](crate::gateway!)).
#[doc(hidden)]
pub fn serve<E: Display>(
    session: sessions::Session,
    handler: impl FnOnce(Session) -> Result<(), E>,
) -> Result<(), String> {
    handler(Session::new(session)).map_err(|e| e.to_string())
}

/// Exports a gateway plugin's handler: a function
/// `fn(wsgate_guest::Session) -> Result<(), E>` with `E: Display`, which the
/// host calls once per client session, each in an instance of its own. An
/// error is logged by the host, in its `Display` form.
///
/// ```no_run
/// fn handle(session: wsgate_guest::Session) -> Result<(), String> {
///     session
///         .refuse(&wsgate_guest::server::Refusal::new(503, "closed for maintenance"))
///         .map_err(|e| e.to_string())
/// }
/// wsgate_guest::gateway!(handle);
/// ```
///
/// Use it once, in a `cdylib` crate built for `wasm32-wasip2`.
#[macro_export]
macro_rules! gateway {
    ($handler:expr) => {
        #[doc(hidden)]
        struct __WsgateGatewayHandler;

        impl $crate::gateway::bindings::exports::wsgate::connect::handler::Guest for __WsgateGatewayHandler {
            fn handle(
                session: $crate::gateway::bindings::exports::wsgate::connect::handler::Session,
            ) -> ::core::result::Result<(), ::std::string::String> {
                $crate::gateway::serve(session, $handler)
            }
        }

        $crate::gateway::bindings::__export_gateway!(
            __WsgateGatewayHandler with_types_in $crate::gateway::bindings
        );
    };
}
