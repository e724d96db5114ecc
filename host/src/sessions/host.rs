//! The host side of `wsgate:connect/sessions`: the trait impls that
//! `bindgen!` asks for.

use super::bindings::sessions::{self, Header, RequestHead};
use super::{GoingAway, Session};
use crate::connect::{ReadStream, WriteStream};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable};

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

    async fn going_away(&mut self, this: Resource<Session>) -> wasmtime::Result<Resource<DynPollable>> {
        let signal = GoingAway(self.get(&this)?.going_away.clone());
        // Owned by its pollable (deleted with it), a child of the session.
        let signal = self.push_child(signal, &this)?;
        wasmtime_wasi::p2::subscribe(self, signal)
    }

    async fn drop(&mut self, this: Resource<Session>) -> wasmtime::Result<()> {
        self.delete(this)?;
        Ok(())
    }
}
