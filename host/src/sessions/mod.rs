//! The `wsgate:connect/sessions` capability: a client's session with the
//! gateway, as a `gateway` plugin holds it.
//!
//! Shaped as `connect` is (and as `wasmtime-wasi` shapes its
//! capabilities): the resource type here, the `bindgen!` output in
//! `bindings`, the trait impls in `host`. The gateway (`serve`) makes the
//! sessions; the runtime hands each to its instance. A session's streams
//! are the same direct `wasi:io` streams a connection's are.

pub(crate) mod bindings;
mod host;

use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use wasmtime::component::{HasData, Linker, ResourceTable};

/// The request head a client sent, as the plugin gets it.
#[derive(Debug, Clone)]
pub(crate) struct RequestHead {
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) minor_version: u8,
    /// Names in the client's case, values as bytes, in the order sent.
    pub(crate) headers: Vec<(String, Vec<u8>)>,
}

/// What the host knows of a session besides its streams.
#[derive(Debug, Clone)]
pub(crate) struct SessionInfo {
    pub(crate) head: RequestHead,
    pub(crate) client: SocketAddr,
    /// The name the client asked for in SNI.
    pub(crate) server_name: Option<String>,
    pub(crate) route: String,
}

/// A byte stream from the client: what follows the request head.
pub(crate) type ClientInput = Box<dyn AsyncRead + Send + Unpin>;
/// A byte stream to the client.
pub(crate) type ClientOutput = Box<dyn AsyncWrite + Send + Unpin>;

/// One client's session: what the host read of it, and the connection's
/// two halves until the plugin takes them as streams.
pub struct Session {
    head: RequestHead,
    client: SocketAddr,
    server_name: Option<String>,
    route: String,
    reader: Option<ClientInput>,
    writer: Option<ClientOutput>,
    stream_buffer: usize,
    going_away: watch::Receiver<bool>,
}

impl Session {
    /// A session described by `info`, over `reader` and `writer`; the host
    /// buffers at most `stream_buffer` bytes of the plugin's output.
    /// `going_away` turns true when the gateway drains.
    pub(crate) fn new(
        info: SessionInfo,
        reader: ClientInput,
        writer: ClientOutput,
        stream_buffer: usize,
        going_away: watch::Receiver<bool>,
    ) -> Session {
        Session {
            head: info.head,
            client: info.client,
            server_name: info.server_name,
            route: info.route,
            reader: Some(reader),
            writer: Some(writer),
            stream_buffer,
            going_away,
        }
    }
}

impl Session {
    /// The name of the route that matched.
    pub(crate) fn route(&self) -> &str {
        &self.route
    }
}

/// What a session's `going-away` pollable waits on: the gateway's drain.
struct GoingAway(watch::Receiver<bool>);

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for GoingAway {
    async fn ready(&mut self) {
        if self.0.wait_for(|going| *going).await.is_err() {
            // The gateway is gone without draining: nothing will come.
            std::future::pending::<()>().await;
        }
    }
}

/// The [`HasData`] of the interface: it works on the resource table alone.
struct Sessions;

impl HasData for Sessions {
    type Data<'a> = &'a mut ResourceTable;
}

/// Adds `wsgate:connect/sessions` to `linker`.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    table: fn(&mut T) -> &mut ResourceTable,
) -> wasmtime::Result<()> {
    bindings::sessions::add_to_linker::<T, Sessions>(linker, table)
}
