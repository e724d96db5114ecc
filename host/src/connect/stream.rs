//! The `wasi:io` input stream of a connection, read straight from the
//! socket.
//!
//! wasmtime-wasi's `AsyncReadStream` reads in a task of its own and hands
//! the bytes over a channel, so every message a plugin waits for crosses
//! two tasks. A WebSocket exchange is latency-bound: here the plugin's
//! wait polls the socket itself, and a read takes what the kernel has
//! without a hand-over.

use bytes::{Bytes, BytesMut};
use std::future::Future;
use std::io;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncReadExt};
use wasmtime_wasi::p2::{InputStream, Pollable, StreamError, StreamResult};

/// How much one read from the socket may take: as much as wasmtime-wasi's
/// own streams read at once.
const READ_CHUNK: usize = 64 * 1024;

/// An input stream reading `R` directly, from the plugin's own calls.
pub struct ReadStream<R> {
    reader: R,
    buffer: BytesMut,
    state: State,
}

enum State {
    Open,
    /// The peer closed the stream (end of file).
    Closed,
    /// A read failed; reported once, then the stream is closed.
    Failed(io::Error),
}

impl<R: AsyncRead + Unpin + Send + 'static> ReadStream<R> {
    /// A stream over `reader`.
    pub fn new(reader: R) -> Self {
        ReadStream { reader, buffer: BytesMut::new(), state: State::Open }
    }

    /// Reads from the socket into the buffer if the buffer is empty and the
    /// stream open; ready when there is something to report.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.buffer.is_empty() || !matches!(self.state, State::Open) {
            return Poll::Ready(());
        }
        self.buffer.reserve(READ_CHUNK);
        // `read_buf` is cancel-safe: a future dropped while pending has
        // consumed nothing, so one is made for each poll.
        let read = pin!(self.reader.read_buf(&mut self.buffer));
        match read.poll(cx) {
            Poll::Ready(Ok(0)) => self.state = State::Closed,
            Poll::Ready(Ok(_)) => {}
            Poll::Ready(Err(e)) => self.state = State::Failed(e),
            Poll::Pending => return Poll::Pending,
        }
        Poll::Ready(())
    }
}

#[wasmtime_wasi::async_trait]
impl<R: AsyncRead + Unpin + Send + 'static> Pollable for ReadStream<R> {
    async fn ready(&mut self) {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await;
    }
}

impl<R: AsyncRead + Unpin + Send + 'static> InputStream for ReadStream<R> {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        if self.buffer.is_empty() {
            // Take what the socket has now, without waiting.
            let _ = self.poll_fill(&mut Context::from_waker(Waker::noop()));
        }
        if !self.buffer.is_empty() {
            let n = size.min(self.buffer.len());
            return Ok(self.buffer.split_to(n).freeze());
        }
        match std::mem::replace(&mut self.state, State::Closed) {
            State::Open => {
                self.state = State::Open;
                Ok(Bytes::new())
            }
            State::Closed => Err(StreamError::Closed),
            State::Failed(e) => Err(StreamError::LastOperationFailed(e.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn reads_what_is_there_waits_for_more_and_reports_the_end() {
        let (mut peer, ours) = tokio::io::duplex(1024);
        let mut stream = ReadStream::new(ours);
        // Nothing yet: an empty read, not an error.
        assert_eq!(stream.read(10).unwrap(), Bytes::new());
        peer.write_all(b"hello world").await.unwrap();
        stream.ready().await;
        assert_eq!(stream.read(5).unwrap(), Bytes::from_static(b"hello"));
        assert_eq!(stream.read(100).unwrap(), Bytes::from_static(b" world"));
        // `ready` wakes up on bytes that arrive later.
        let writer = tokio::spawn(async move {
            tokio::task::yield_now().await;
            peer.write_all(b"later").await.unwrap();
            peer
        });
        stream.ready().await;
        assert_eq!(stream.read(100).unwrap(), Bytes::from_static(b"later"));
        drop(writer.await.unwrap());
        stream.ready().await;
        assert!(matches!(stream.read(1), Err(StreamError::Closed)));
        assert!(matches!(stream.read(1), Err(StreamError::Closed)));
    }

    #[tokio::test]
    async fn a_large_transfer_arrives_whole_and_in_order() {
        let (mut peer, ours) = tokio::io::duplex(4096);
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move { peer.write_all(&sent).await.unwrap() });
        let mut stream = ReadStream::new(ours);
        let mut got = Vec::new();
        while got.len() < data.len() {
            stream.ready().await;
            got.extend_from_slice(&stream.read(7000).unwrap());
        }
        writer.await.unwrap();
        assert_eq!(got, data);
    }
}
