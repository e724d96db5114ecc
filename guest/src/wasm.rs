//! The SDK bound to the wsgate host (wasm32 only).
//!
//! The host's `connect` owns DNS, the address race and TLS. The SDK hands
//! it the upgrade request as the *first flight*, so the host writes it once,
//! on the connection it committed to; the SDK then reads the response over
//! the `wasi:io` streams the connection hands out.
//!
//! When the upgrade fails for a reason of the network path (the connection
//! closed before an answer, a 502/503/504), the SDK asks the host for the
//! next candidate with `fallback()`: at most one upgrade request is ever in
//! flight, and a definitive answer (401, 403, 404...) is returned as is.

use crate::error::Error;
use crate::handshake::{Request, read_response};
use crate::poll::Subscribe;
use crate::transport::GoingAway;
use crate::url::Url;
use crate::{ClientConfig, Transport, WebSocket};
use std::io::{self, Read, Write};
use std::time::Duration;

#[allow(unsafe_code, missing_docs)]
pub(crate) mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "wsgate:connect/imports",
        with: {
            "wasi:io/error@0.2.12": wasip2::io::error,
            "wasi:io/poll@0.2.12": wasip2::io::poll,
            "wasi:io/streams@0.2.12": wasip2::io::streams,
        },
    });
}

pub use bindings::wsgate::connect::types::RaceEvent;
use bindings::wsgate::connect::types::{self, ConnectError, ConnectOptions, Connection, TlsOptions};
use wasip2::io::poll::Pollable;
use wasip2::io::streams::{InputStream, OutputStream, StreamError};

/// How many times one connect may fall back to another path before the
/// SDK gives up: the host's list of addresses is short, this only bounds a
/// misbehaving host.
const MAX_FALLBACKS: usize = 16;

/// A byte stream to the peer through the host: the connection and its two
/// `wasi:io` streams.
///
/// Writes are buffered: [`write`](Write::write) keeps small writes (up to
/// 64 KiB in all) and [`flush`](Write::flush) hands them to the host, so
/// that bytes written in pieces cost host calls by the host's buffer, not
/// by the piece. A read hands them over first, before it waits, and so
/// does dropping the stream. A [`WebSocket`] writes each message and
/// flushes before it waits for the peer and after each control frame, so
/// that messages sent in a row leave in one hand-over. The buffer grows
/// with what is written and is given back before a read waits: an idle
/// stream holds no buffer of its own, on either side.
pub struct HostStream {
    // Field order matters: the streams are children of the connection and
    // must be dropped before it, which Rust does in declaration order.
    streams: Streams,
    connection: Connection,
}

impl HostStream {
    fn new(connection: Connection) -> Result<Self, Error> {
        let input = connection.input().map_err(|e| Error::connect(describe(&e)))?;
        let output = connection.output().map_err(|e| Error::connect(describe(&e)))?;
        Ok(HostStream {
            streams: Streams::new(input, output),
            connection,
        })
    }

    /// The address the host connected to, as `ip:port`.
    pub fn peer(&self) -> String {
        self.connection.peer()
    }

    /// The events of the connect, as the host's race log has them.
    pub fn report(&self) -> Vec<RaceEvent> {
        self.connection.report()
    }

    fn into_connection(self) -> Connection {
        let HostStream { streams, connection } = self;
        drop(streams);
        connection
    }

    /// Waits until the host has written every byte written to the stream.
    pub fn flush_all(&mut self) -> io::Result<()> {
        self.streams.flush_all()
    }
}

impl Read for HostStream {
    /// Hands the bytes written to the host first (see
    /// [`flush`](Write::flush)), then reads.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.streams.read(buf)
    }
}

impl Write for HostStream {
    /// Takes all of `buf`: kept until [`flush`](Write::flush) while the
    /// bytes kept stay under 64 KiB, handed to the host at once (waiting
    /// for room in its buffer) otherwise.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.streams.write(buf)
    }

    /// Hands every byte written to the host, waiting while its buffer is
    /// full, and no longer: the host writes what it was handed, in order,
    /// without being asked to flush. Waiting for the socket as well would
    /// hold every message until the previous one reached it, and a host
    /// flush also blocks further writes until it completes;
    /// [`flush_all`](HostStream::flush_all) does that. [`HostStream`]'s
    /// drop waits until everything was written.
    fn flush(&mut self) -> io::Result<()> {
        self.streams.flush()
    }
}

/// Read timeouts with `wasi:io` pollables: a read waits on the stream and a
/// monotonic-clock timer together, and fails with `TimedOut` (consuming
/// nothing) when the timer comes first.
impl Transport for HostStream {
    fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.streams.read_timeout)
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.streams.set_read_timeout(timeout)
    }

    /// The host's buffer itself, without a copy.
    fn read_chunk(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        self.streams.read_chunk(buf)
    }
}

impl Subscribe for HostStream {
    fn subscribe(&self) -> Pollable {
        self.streams.input.subscribe()
    }
}

/// The two `wasi:io` streams of a connection (the host's `connection`, or
/// a client's `session`) and what reading and writing them needs: the
/// read timeout, the bytes written but not handed over yet.
pub(crate) struct Streams {
    input: InputStream,
    output: Output,
    read_timeout: Option<Duration>,
    /// A gateway session's `going-away` pollable, until a read reported it.
    going_away: Option<Pollable>,
    /// Reads since the last look at `going_away`.
    reads: u32,
}

/// A session that always has bytes to read never waits, so the drain is
/// looked at every this many reads as well as at every wait.
const GOING_AWAY_EVERY: u32 = 16;

impl Streams {
    pub(crate) fn new(input: InputStream, output: OutputStream) -> Streams {
        Streams {
            input,
            output: Output {
                stream: output,
                pending: Vec::new(),
                permit: 0,
                last_burst: 0,
            },
            read_timeout: None,
            going_away: None,
            reads: 0,
        }
    }

    /// These streams, whose reads fail once with [`GoingAway`] when
    /// `going_away` is ready (a gateway session's).
    pub(crate) fn with_going_away(mut self, going_away: Pollable) -> Streams {
        self.going_away = Some(going_away);
        self
    }

    /// The `going-away` pollable, while no read has reported it.
    pub(crate) fn going_away(&self) -> Option<&Pollable> {
        self.going_away.as_ref()
    }

    /// A pollable ready once the input has bytes (or ended).
    pub(crate) fn subscribe(&self) -> Pollable {
        self.input.subscribe()
    }

    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut chunk = Vec::new();
        let n = self.read_at_most(&mut chunk, buf.len())?;
        buf[..n].copy_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// One read of at most [`READ_CHUNK`] bytes into a buffer of the host's
    /// making (`buf` is replaced), after handing over what was written.
    pub(crate) fn read_chunk(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        self.read_at_most(buf, READ_CHUNK)
    }

    /// One read of at most `max` bytes, waiting for them, and for the
    /// read timeout and a session's drain when there are: the drain fails
    /// it with [`GoingAway`] (once: the pollable is dropped).
    fn read_at_most(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        // Nothing is held while waiting: the old buffer goes first, and the
        // bytes written are handed over (the peer may be waiting for them)
        // and their buffer given back.
        *buf = Vec::new();
        self.output.push(None)?;
        self.output.release();
        let max = u64::try_from(max).unwrap_or(u64::MAX);
        if self.going_away.is_some() {
            // A session that always has bytes to read never waits: the
            // drain is looked at every few reads too.
            self.reads += 1;
            let look = self.reads.is_multiple_of(GOING_AWAY_EVERY);
            if look && self.going_away.as_ref().is_some_and(Pollable::ready) {
                return Err(self.gone_away());
            }
            // Bytes already there are taken without a wait.
            match self.input.read(max) {
                Ok(chunk) if chunk.is_empty() => {}
                read => return took(read, max, buf),
            }
        }
        if self.going_away.is_some() || self.read_timeout.is_some() {
            // Wait for bytes, the drain or the timer, whichever comes first.
            let readable = self.input.subscribe();
            let timer = self.read_timeout.map(|timeout| {
                let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
                wasip2::clocks::monotonic_clock::subscribe_duration(nanos)
            });
            let mut waiting = vec![&readable];
            waiting.extend(self.going_away.as_ref());
            waiting.extend(timer.as_ref());
            let ready = wasip2::io::poll::poll(&waiting);
            drop(waiting);
            if !ready.contains(&0) {
                if self.going_away.is_some() && ready.contains(&1) {
                    return Err(self.gone_away());
                }
                return Err(io::Error::new(io::ErrorKind::TimedOut, "read timed out"));
            }
        }
        took(self.input.blocking_read(max), max, buf)
    }

    /// The read error that says the gateway is going away; reported once.
    fn gone_away(&mut self) -> io::Error {
        self.going_away = None;
        io::Error::other(GoingAway)
    }

    pub(crate) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.write(buf)?;
        Ok(buf.len())
    }

    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.output.push(None)
    }

    pub(crate) fn read_timeout(&self) -> Option<Duration> {
        self.read_timeout
    }

    pub(crate) fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        if timeout.is_some_and(|t| t.is_zero()) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "a zero read timeout"));
        }
        self.read_timeout = timeout;
        Ok(())
    }

    pub(crate) fn flush_all(&mut self) -> io::Result<()> {
        self.output.push(None)?;
        // A flush uses the permit up: the host takes no write until it is
        // done.
        self.output.permit = 0;
        self.output
            .stream
            .blocking_flush()
            .map_err(|e| io::Error::other(format!("{e:?}")))
    }
}

/// What a read of at most `max` bytes from the host gave, as `Read` has it
/// (0 at the end of the stream), the bytes in `buf`.
fn took(read: Result<Vec<u8>, StreamError>, max: u64, buf: &mut Vec<u8>) -> io::Result<usize> {
    match read {
        Ok(chunk) if chunk.len() as u64 > max => Err(io::Error::other("the host read more bytes than asked")),
        Ok(chunk) => {
            *buf = chunk;
            Ok(buf.len())
        }
        Err(StreamError::Closed) => Ok(0),
        Err(StreamError::LastOperationFailed(e)) => Err(io::Error::other(e.to_debug_string())),
    }
}

/// The most one read takes from the host: a large message takes few reads,
/// and the host hands over what it has, so a small read costs no more.
const READ_CHUNK: usize = 64 << 10;

/// The bytes [`HostStream::write`] keeps before it hands them to the host.
const WRITE_BUFFER: usize = 64 << 10;

/// A buffer of written bytes up to this size is kept across waits: smaller
/// than one page of the host's, not worth giving back.
const KEPT_WRITE_BUFFER: usize = 4 << 10;

/// The output stream and the bytes written but not handed to the host yet;
/// drained before it is dropped: the host's write queue goes with the
/// stream, and the last frames (a Close, say) must not be lost. The wait is
/// bounded: a peer that stopped reading must not hold the plugin forever.
/// A failed connection has nothing to drain.
///
/// The permit of the last `check-write` is used up across writes, and
/// asked for again only when it is spent: the wsgate host's permit is the
/// room left in its queue, which only its own writing out grows, so what
/// is left of it after a write stays good (a flush spends it).
struct Output {
    stream: OutputStream,
    pending: Vec<u8>,
    /// Bytes the host permits to be written without asking again.
    permit: usize,
    /// The bytes kept at the last hand-over: the size to allocate after
    /// the buffer was given back.
    last_burst: usize,
}

impl Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.pending.len() + buf.len() > WRITE_BUFFER {
            self.push(None)?;
        }
        if buf.len() >= WRITE_BUFFER {
            // Too large to keep: straight to the host, not copied first.
            return hand_over(&self.stream, &mut self.permit, buf, None);
        }
        if self.pending.capacity() == 0 {
            // Grown once to what the last burst needed, not doubled up to
            // it again.
            self.pending.reserve(buf.len().max(self.last_burst));
        }
        self.pending.extend_from_slice(buf);
        Ok(())
    }

    /// Hands the bytes kept to the host (see [`hand_over`]). They are gone
    /// either way: after an error the stream cannot carry frames.
    fn push(&mut self, timer: Option<&Pollable>) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.last_burst = self.pending.len();
        let result = hand_over(&self.stream, &mut self.permit, &self.pending, timer);
        self.pending.clear();
        result
    }

    /// Gives the buffer back if it grew beyond [`KEPT_WRITE_BUFFER`] (before
    /// a wait: an idle stream holds no large buffer).
    fn release(&mut self) {
        if self.pending.is_empty() && self.pending.capacity() > KEPT_WRITE_BUFFER {
            self.pending = Vec::new();
        }
    }
}

/// Hands `bytes` to the host, as many at a time as it permits (`permit`,
/// asked for again when spent), waiting for room when it permits none;
/// with `timer`, fails with `TimedOut` once that is ready.
fn hand_over(stream: &OutputStream, permit: &mut usize, mut bytes: &[u8], timer: Option<&Pollable>) -> io::Result<()> {
    while !bytes.is_empty() {
        if *permit == 0 {
            let permitted = stream.check_write().map_err(stream_error)?;
            *permit = usize::try_from(permitted).unwrap_or(usize::MAX);
        }
        if *permit == 0 {
            let room = stream.subscribe();
            match timer {
                None => room.block(),
                Some(timer) => {
                    if !wasip2::io::poll::poll(&[&room, timer]).contains(&0) {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "the host took no more bytes"));
                    }
                }
            }
            continue;
        }
        let n = bytes.len().min(*permit);
        // Spent whatever happens: after a failed write the stream is done.
        *permit -= n;
        stream.write(&bytes[..n]).map_err(stream_error)?;
        bytes = &bytes[n..];
    }
    Ok(())
}

fn stream_error(e: StreamError) -> io::Error {
    match e {
        StreamError::Closed => io::Error::new(io::ErrorKind::WriteZero, "the connection's output is closed"),
        StreamError::LastOperationFailed(e) => io::Error::other(e.to_debug_string()),
    }
}

/// How long dropping a stream waits for the host to take and write what it
/// holds.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

impl Drop for Output {
    fn drop(&mut self) {
        let nanos = u64::try_from(DRAIN_TIMEOUT.as_nanos()).unwrap_or(u64::MAX);
        let timer = wasip2::clocks::monotonic_clock::subscribe_duration(nanos);
        if self.push(Some(&timer)).is_ok() && self.stream.flush().is_ok() {
            self.permit = 0;
            let drained = self.stream.subscribe();
            wasip2::io::poll::poll(&[&drained, &timer]);
        }
    }
}

/// Opens a WebSocket to `url` (`ws://` or `wss://`) through the host, with
/// the default configuration.
///
/// ```no_run
/// let mut ws = wsgate_guest::connect("wss://echo.example/chat")?;
/// ws.send(wsgate_guest::Message::Text("hello".into()))?;
/// # Ok::<(), wsgate_guest::Error>(())
/// ```
pub fn connect(url: &str) -> Result<WebSocket<HostStream>, Error> {
    connect_with_config(url, ClientConfig::default())
}

/// Opens a WebSocket to `url` through the host, with `config`.
pub fn connect_with_config(url: &str, config: ClientConfig) -> Result<WebSocket<HostStream>, Error> {
    let url = Url::parse(url)?;
    let request = Request::try_new(&url, &config)?;
    let options = ConnectOptions {
        tls: url.is_secure().then(|| TlsOptions { alpn: Vec::new() }),
        first_flight: Some(request.bytes().to_vec()),
        cancel_after: None,
        timeout_ms: None,
    };
    let connection = types::connect(url.host(), url.port(), &options)
        .map_err(|e| Error::connect(format!("{}:{}: {}", url.host(), url.port(), describe(&e))))?;
    let mut stream = HostStream::new(connection)?;
    let mut fallbacks = 0;
    loop {
        match read_response(&mut stream, &request, &config) {
            Ok((response, leftover)) => {
                return Ok(WebSocket::from_response(stream, &response, leftover, config));
            }
            Err(e) if e.is_path_failure() && fallbacks < MAX_FALLBACKS => {
                fallbacks += 1;
                let connection = Connection::fallback(stream.into_connection()).map_err(|fe| match fe {
                    // Nothing left to try: the upgrade's own failure is
                    // what the plugin needs to see.
                    ConnectError::AllAttemptsFailed(_) => e,
                    other => Error::connect(describe(&other)),
                })?;
                stream = HostStream::new(connection)?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The host's error in words.
fn describe(e: &ConnectError) -> String {
    match e {
        ConnectError::Denied(rule) => format!("denied by the host's policy ({rule})"),
        ConnectError::Dns(why) => why.clone(),
        ConnectError::AllAttemptsFailed(attempts) if attempts.is_empty() => "no address to try".to_owned(),
        ConnectError::AllAttemptsFailed(attempts) => {
            let each: Vec<String> = attempts.iter().map(|a| format!("{}: {}", a.address, a.error)).collect();
            format!("all attempts failed ({})", each.join("; "))
        }
        ConnectError::Limited(limit) => format!("refused by the host's limits ({limit})"),
        ConnectError::Timeout => "timed out".to_owned(),
        ConnectError::Tls(why) => format!("TLS failed: {why}"),
        ConnectError::Invalid(why) => format!("invalid request: {why}"),
    }
}
