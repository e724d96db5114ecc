//! The host side of `wsgate:connect/sessions`: a client's session as a
//! plugin holds it.

use super::bindings::sessions::{self, Header, RequestHead};
use super::client::{ClientReader, ClientWriter};
use super::head::Head;
use crate::connect::{ReadStream, WriteStream};
use crate::race::Replay;
use std::net::SocketAddr;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream};

/// One client's session: what the host read of it, and the connection's
/// two halves until the plugin takes them as streams.
pub struct Session {
    head: Head,
    client: SocketAddr,
    server_name: Option<String>,
    route: String,
    reader: Option<Replay<ClientReader>>,
    writer: Option<ClientWriter>,
    stream_buffer: usize,
}

impl Session {
    /// A session for a client at `client` whose head is `head`; `early`
    /// holds the bytes read after the head, which the input stream gives
    /// first.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        head: Head,
        client: SocketAddr,
        server_name: Option<String>,
        route: String,
        early: Vec<u8>,
        reader: ClientReader,
        writer: ClientWriter,
        stream_buffer: usize,
    ) -> Session {
        Session {
            head,
            client,
            server_name,
            route,
            reader: Some(Replay::new(early, reader)),
            writer: Some(writer),
            stream_buffer,
        }
    }
}

/// The [`HasData`] of the interface: it works on the resource table alone.
pub(crate) struct Sessions;

impl HasData for Sessions {
    type Data<'a> = &'a mut ResourceTable;
}

/// Adds `wsgate:connect/sessions` to `linker`.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    table: fn(&mut T) -> &mut ResourceTable,
) -> wasmtime::Result<()> {
    sessions::add_to_linker::<T, Sessions>(linker, table)
}

impl sessions::Host for ResourceTable {}

impl sessions::HostSession for ResourceTable {
    async fn request(&mut self, this: Resource<Session>) -> wasmtime::Result<RequestHead> {
        let head = &self.get(&this)?.head;
        Ok(RequestHead {
            method: head.method.clone(),
            target: head.target.clone(),
            minor_version: head.minor_version,
            headers: head
                .headers
                .iter()
                .map(|(name, value)| Header {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
        })
    }

    async fn client_address(&mut self, this: Resource<Session>) -> wasmtime::Result<String> {
        Ok(self.get(&this)?.client.to_string())
    }

    async fn server_name(&mut self, this: Resource<Session>) -> wasmtime::Result<Option<String>> {
        Ok(self.get(&this)?.server_name.clone())
    }

    async fn route(&mut self, this: Resource<Session>) -> wasmtime::Result<String> {
        Ok(self.get(&this)?.route.clone())
    }

    async fn input(&mut self, this: Resource<Session>) -> wasmtime::Result<Result<Resource<DynInputStream>, ()>> {
        let Some(reader) = self.get_mut(&this)?.reader.take() else {
            return Ok(Err(()));
        };
        let stream: DynInputStream = Box::new(ReadStream::new(reader));
        Ok(Ok(self.push_child(stream, &this)?))
    }

    async fn output(&mut self, this: Resource<Session>) -> wasmtime::Result<Result<Resource<DynOutputStream>, ()>> {
        let session = self.get_mut(&this)?;
        let budget = session.stream_buffer;
        let Some(writer) = session.writer.take() else {
            return Ok(Err(()));
        };
        let stream: DynOutputStream = Box::new(WriteStream::new(budget, writer));
        Ok(Ok(self.push_child(stream, &this)?))
    }

    async fn drop(&mut self, this: Resource<Session>) -> wasmtime::Result<()> {
        self.delete(this)?;
        Ok(())
    }
}
