//! The `wasi:io` streams of a connection, on the socket directly.
//!
//! wasmtime-wasi's `AsyncReadStream` and `AsyncWriteStream` each run a
//! task of their own and hand bytes over, so every message crosses a task
//! boundary on its way in and on its way out. A WebSocket exchange is
//! latency-bound: here the plugin's read polls the socket itself, and its
//! write goes straight to the socket when the socket takes it; only what
//! the socket cannot take at once is left to a task that drains it.
//!
//! Neither holds a buffer while the connection is idle: the read buffer
//! is allocated for a read and given back when the socket has nothing,
//! and the write queue keeps the plugin's own chunks (no copy) only until
//! they are written.

use crate::metrics::Counting;
use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use wasmtime_wasi::p2::{InputStream, OutputStream, Pollable, StreamError, StreamResult};

/// How much one read from the socket may take: as much as wasmtime-wasi's
/// own streams read at once.
const READ_CHUNK: usize = 64 * 1024;

/// An input stream reading `R` directly, from the plugin's own calls.
pub struct ReadStream<R> {
    reader: R,
    buffer: BytesMut,
    state: State,
    /// What was read, counted as it arrives.
    counting: Option<Counting>,
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
        ReadStream {
            reader,
            buffer: BytesMut::new(),
            state: State::Open,
            counting: None,
        }
    }

    /// This stream, what it reads counted by `counting`.
    pub(crate) fn counted(mut self, counting: Option<Counting>) -> Self {
        self.counting = counting;
        self
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
        let polled = pin!(self.reader.read_buf(&mut self.buffer)).poll(cx);
        match polled {
            Poll::Ready(Ok(0)) => self.state = State::Closed,
            Poll::Ready(Ok(_)) => {
                // The buffer was empty: all of it is new.
                if let Some(counting) = &mut self.counting {
                    counting.count(&self.buffer);
                }
            }
            Poll::Ready(Err(e)) => self.state = State::Failed(e),
            Poll::Pending => {
                // Nothing there: an idle connection holds no read buffer
                // (the next read allocates one; the allocator has it at
                // hand).
                self.buffer = BytesMut::new();
                return Poll::Pending;
            }
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

/// An output stream writing to `W`: straight from the plugin's call when
/// the socket takes the bytes, else through a queue that a task drains.
///
/// At most `budget` bytes wait in the queue; `check-write` tells the plugin
/// how many more it may hand over.
pub struct WriteStream<W> {
    shared: Arc<Shared<W>>,
    budget: usize,
    drain: JoinHandle<()>,
}

struct Shared<W> {
    state: Mutex<WriteState<W>>,
    /// Wakes the drain task: there is something to write or flush.
    work: Notify,
}

struct WriteState<W> {
    writer: W,
    /// Bytes accepted from the plugin and not written yet, in order.
    queue: Queue,
    /// Bytes were written since the last flush (TLS may still hold some).
    unflushed: bool,
    /// The plugin asked for a flush and waits for it.
    flush_requested: bool,
    /// A write or flush failed: reported to the plugin once, then closed.
    error: Option<io::Error>,
    closed: bool,
    /// The plugin waiting in `ready`.
    waiter: Option<Waker>,
    /// What the plugin wrote, counted as it is accepted.
    counting: Option<Counting>,
}

impl<W> WriteState<W> {
    fn check(&mut self) -> StreamResult<()> {
        if let Some(e) = self.error.take() {
            self.closed = true;
            return Err(StreamError::LastOperationFailed(e.into()));
        }
        if self.closed {
            return Err(StreamError::Closed);
        }
        Ok(())
    }

    fn fail(&mut self, e: io::Error) {
        self.queue = Queue::default();
        self.error = Some(e);
        self.flush_requested = false;
    }

    fn wake_waiter(&mut self) {
        if let Some(waker) = self.waiter.take() {
            waker.wake();
        }
    }
}

impl<W: AsyncWrite + Unpin + Send + 'static> WriteStream<W> {
    /// A stream over `writer` that queues at most `budget` bytes.
    pub fn new(budget: usize, writer: W) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(WriteState {
                writer,
                queue: Queue::default(),
                unflushed: false,
                flush_requested: false,
                error: None,
                closed: false,
                waiter: None,
                counting: None,
            }),
            work: Notify::new(),
        });
        let drain = tokio::spawn(drain(shared.clone()));
        WriteStream { shared, budget, drain }
    }

    /// This stream, what it accepts counted by `counting`.
    pub(crate) fn counted(self, counting: Option<Counting>) -> Self {
        self.state().counting = counting;
        self
    }

    fn state(&self) -> MutexGuard<'_, WriteState<W>> {
        // A panic while the lock was held cannot leave the queue half
        // updated in a way that matters more than the panic itself.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The drain task: writes the queue and flushes, woken by `work`.
async fn drain<W: AsyncWrite + Unpin + Send + 'static>(shared: Arc<Shared<W>>) {
    loop {
        shared.work.notified().await;
        std::future::poll_fn(|cx| {
            let mut guard = shared.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let state = &mut *guard;
            let progress = poll_drain(state, cx);
            state.wake_waiter();
            progress
        })
        .await;
    }
}

/// The bytes accepted and not written yet: the plugin's chunks as they
/// were lifted, not copied into one buffer.
#[derive(Default)]
struct Queue {
    chunks: VecDeque<Bytes>,
    len: usize,
}

/// How many chunks one vectored write takes at most.
const MAX_SLICES: usize = 16;

impl Queue {
    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.len += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    /// The first chunks, for one vectored write.
    fn slices(&self) -> ([IoSlice<'_>; MAX_SLICES], usize) {
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        for (slice, chunk) in slices.iter_mut().zip(&self.chunks) {
            *slice = IoSlice::new(chunk);
        }
        (slices, self.chunks.len().min(MAX_SLICES))
    }

    /// Drops the first `n` bytes (written).
    fn advance(&mut self, mut n: usize) {
        self.len -= n.min(self.len);
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else { return };
            if n < front.len() {
                front.advance(n);
                return;
            }
            n -= front.len();
            self.chunks.pop_front();
        }
        if self.chunks.is_empty() && self.chunks.capacity() > MAX_SLICES {
            // A long burst's ring is not kept by an idle stream.
            self.chunks = VecDeque::new();
        }
    }
}

/// Writes the queue and then flushes, as far as the writer lets it now.
fn poll_drain<W: AsyncWrite + Unpin>(state: &mut WriteState<W>, cx: &mut Context<'_>) -> Poll<()> {
    while !state.queue.is_empty() && state.error.is_none() {
        let (slices, k) = state.queue.slices();
        let written = Pin::new(&mut state.writer).poll_write_vectored(cx, &slices[..k]);
        match written {
            Poll::Ready(Ok(0)) => state.fail(io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(n)) => {
                state.queue.advance(n);
                state.unflushed = true;
            }
            Poll::Ready(Err(e)) => state.fail(e),
            Poll::Pending => return Poll::Pending,
        }
    }
    if state.unflushed && state.error.is_none() {
        match Pin::new(&mut state.writer).poll_flush(cx) {
            Poll::Ready(Ok(())) => state.unflushed = false,
            Poll::Ready(Err(e)) => state.fail(e),
            Poll::Pending => return Poll::Pending,
        }
    }
    state.flush_requested = false;
    Poll::Ready(())
}

impl<W> Drop for WriteStream<W> {
    fn drop(&mut self) {
        self.drain.abort();
    }
}

#[wasmtime_wasi::async_trait]
impl<W: AsyncWrite + Unpin + Send + 'static> Pollable for WriteStream<W> {
    async fn ready(&mut self) {
        let budget = self.budget;
        std::future::poll_fn(|cx| {
            let mut state = self.state();
            let room = !state.flush_requested && state.queue.len() < budget;
            if room || state.error.is_some() || state.closed {
                return Poll::Ready(());
            }
            state.waiter = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
    }
}

impl<W: AsyncWrite + Unpin + Send + 'static> OutputStream for WriteStream<W> {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        let budget = self.budget;
        let mut guard = self.state();
        let state = &mut *guard;
        state.check()?;
        if state.flush_requested {
            return Err(StreamError::Trap(wasmtime::format_err!(
                "write while a flush is pending"
            )));
        }
        if bytes.len() > budget - state.queue.len().min(budget) {
            return Err(StreamError::Trap(wasmtime::format_err!(
                "write beyond the permitted budget"
            )));
        }
        // Accepted: it goes out, or the stream fails.
        if let Some(counting) = &mut state.counting {
            counting.count(&bytes);
        }
        // Straight to the socket when the drain task is idle (nothing
        // queued, nothing left to flush): it then has no waker registered
        // with the writer that this attempt could displace.
        let mut rest = &bytes[..];
        if state.queue.is_empty() && !state.unflushed {
            let mut cx = Context::from_waker(Waker::noop());
            while !rest.is_empty() {
                match Pin::new(&mut state.writer).poll_write(&mut cx, rest) {
                    Poll::Ready(Ok(0)) => {
                        state.fail(io::ErrorKind::WriteZero.into());
                        return Ok(());
                    }
                    Poll::Ready(Ok(n)) => {
                        rest = &rest[n..];
                        state.unflushed = true;
                    }
                    Poll::Ready(Err(e)) => {
                        // Reported on the plugin's next call, as WASI has it.
                        state.fail(e);
                        return Ok(());
                    }
                    Poll::Pending => break,
                }
            }
            if rest.is_empty() {
                match Pin::new(&mut state.writer).poll_flush(&mut cx) {
                    Poll::Ready(Ok(())) => state.unflushed = false,
                    Poll::Ready(Err(e)) => {
                        state.fail(e);
                        return Ok(());
                    }
                    Poll::Pending => {}
                }
            }
        }
        // What the socket did not take waits as the plugin's own chunk.
        let written = bytes.len() - rest.len();
        state.queue.push(bytes.slice(written..));
        if !state.queue.is_empty() || state.unflushed {
            self.shared.work.notify_one();
        }
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        let mut state = self.state();
        state.check()?;
        if !state.queue.is_empty() || state.unflushed {
            state.flush_requested = true;
            self.shared.work.notify_one();
        }
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        let budget = self.budget;
        let mut state = self.state();
        state.check()?;
        if state.flush_requested {
            return Ok(0);
        }
        Ok(budget - state.queue.len().min(budget))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Hands `data` to `stream` as a plugin would: as much as `check-write`
    /// allows, waiting when it allows nothing; then a flush, waited for.
    async fn write_all<W: AsyncWrite + Unpin + Send + 'static>(
        stream: &mut WriteStream<W>,
        data: &[u8],
    ) -> StreamResult<()> {
        let mut rest = data;
        while !rest.is_empty() {
            let n = stream.check_write()?.min(rest.len());
            if n == 0 {
                stream.ready().await;
                continue;
            }
            stream.write(Bytes::copy_from_slice(&rest[..n]))?;
            rest = &rest[n..];
        }
        stream.flush()?;
        stream.ready().await;
        stream.check_write().map(|_| ())
    }

    #[tokio::test]
    async fn small_writes_go_out_at_once_and_in_order() {
        let (ours, mut peer) = tokio::io::duplex(1024);
        let mut stream = WriteStream::new(4096, ours);
        for word in [&b"one "[..], b"two ", b"three"] {
            stream.write(Bytes::copy_from_slice(word)).unwrap();
        }
        let mut got = vec![0; 13];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"one two three");
    }

    #[tokio::test]
    async fn what_the_socket_cannot_take_is_drained_in_order() {
        // A pipe of 4 KiB against 1 MB: most of it waits in the queue.
        let (ours, mut peer) = tokio::io::duplex(4096);
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut stream = WriteStream::new(64 * 1024, ours);
        write_all(&mut stream, &data).await.unwrap();
        // Dropping the stream closes the pipe: the reader sees the end.
        drop(stream);
        assert_eq!(reader.await.unwrap(), data);
    }

    /// A socket that takes nothing until opened, then at most `per_call`
    /// bytes per write, across as many chunks as a vectored write gives.
    struct Gate {
        log: Arc<Mutex<GateLog>>,
        per_call: usize,
    }

    #[derive(Default)]
    struct GateLog {
        open: bool,
        waker: Option<Waker>,
        written: Vec<u8>,
        /// The most chunks one write took bytes from.
        most_chunks: usize,
    }

    impl AsyncWrite for Gate {
        fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            self.poll_write_vectored(cx, &[IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            slices: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let mut log = self.log.lock().unwrap();
            if !log.open {
                log.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let (mut left, mut chunks) = (self.per_call, 0);
            for slice in slices {
                if left == 0 {
                    break;
                }
                let n = slice.len().min(left);
                log.written.extend_from_slice(&slice[..n]);
                left -= n;
                chunks += 1;
            }
            log.most_chunks = log.most_chunks.max(chunks);
            Poll::Ready(Ok(self.per_call - left))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn chunks_queued_behind_a_stalled_socket_go_out_vectored_and_in_order() {
        let log = Arc::new(Mutex::new(GateLog::default()));
        let gate = Gate {
            log: log.clone(),
            per_call: 1000,
        };
        let mut stream = WriteStream::new(1 << 20, gate);
        let chunks: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i; 50 + usize::from(i)]).collect();
        let total: usize = chunks.iter().map(Vec::len).sum();
        for chunk in &chunks {
            stream.write(Bytes::copy_from_slice(chunk)).unwrap();
        }
        // All of it waits, each chunk as it came; the permit is what is left.
        assert_eq!(stream.check_write().unwrap(), (1 << 20) - total);
        {
            let mut log = log.lock().unwrap();
            assert!(log.written.is_empty());
            log.open = true;
            if let Some(waker) = log.waker.take() {
                waker.wake();
            }
        }
        stream.flush().unwrap();
        stream.ready().await;
        assert_eq!(stream.check_write().unwrap(), 1 << 20);
        let log = log.lock().unwrap();
        assert_eq!(log.written, chunks.concat());
        // Writes took several chunks at once, and split chunks (1000 bytes
        // a call) were resumed where they were cut.
        assert!(log.most_chunks > 1, "{}", log.most_chunks);
    }

    #[tokio::test]
    async fn an_idle_read_stream_holds_no_buffer() {
        let (mut peer, ours) = tokio::io::duplex(1024);
        let mut stream = ReadStream::new(ours);
        assert_eq!(stream.read(10).unwrap(), Bytes::new());
        assert_eq!(stream.buffer.capacity(), 0);
        peer.write_all(b"hello").await.unwrap();
        stream.ready().await;
        assert_eq!(stream.read(100).unwrap(), Bytes::from_static(b"hello"));
        // Read out and nothing more there: given back again.
        assert_eq!(stream.read(100).unwrap(), Bytes::new());
        assert_eq!(stream.buffer.capacity(), 0);
    }

    #[tokio::test]
    async fn a_write_beyond_the_budget_traps() {
        let (ours, _peer) = tokio::io::duplex(16);
        let mut stream = WriteStream::new(8, ours);
        assert_eq!(stream.check_write().unwrap(), 8);
        assert!(matches!(
            stream.write(Bytes::from_static(b"123456789")),
            Err(StreamError::Trap(_))
        ));
    }

    #[tokio::test]
    async fn a_failed_write_is_reported_once_then_closed() {
        let (ours, peer) = tokio::io::duplex(16);
        drop(peer);
        let mut stream = WriteStream::new(1024, ours);
        // Accepted, then failed on the socket: the next call says so.
        let _ = stream.write(Bytes::from_static(b"hello"));
        stream.ready().await;
        assert!(matches!(stream.check_write(), Err(StreamError::LastOperationFailed(_))));
        assert!(matches!(stream.check_write(), Err(StreamError::Closed)));
    }

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
