//! The byte stream under a WebSocket, with the one thing the session needs
//! beyond `Read` and `Write`: a bound on how long a read waits.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A byte stream a [`WebSocket`](crate::WebSocket) runs over: connected to
/// the server, TLS already done for `wss://`.
///
/// Beyond reading and writing, the session sets read timeouts: the close
/// handshake waits for the peer's Close at most
/// [`close_timeout`](crate::ClientConfig::close_timeout), then restores the
/// timeout that was set before. A read that times out must fail with an
/// error of kind [`WouldBlock`](io::ErrorKind::WouldBlock) or
/// [`TimedOut`](io::ErrorKind::TimedOut) and consume nothing; the SDK
/// reports it as an error of kind [`Timeout`](crate::ErrorKind::Timeout)
/// and the session stays usable.
pub trait Transport: Read + Write {
    /// The read timeout in force (`None`: reads wait for data as long as
    /// it takes).
    fn read_timeout(&self) -> io::Result<Option<Duration>>;

    /// Sets how long a read may wait for data before it fails (`None`: no
    /// bound). The SDK never passes `Some(Duration::ZERO)`.
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()>;

    /// Reads once, waiting as [`read`](Read::read) does, into `buf`, whose
    /// contents are not kept: on `Ok(n)` the bytes read are `buf[..n]`
    /// (`n` is 0 at the end of the stream), and `buf` may have been
    /// replaced, grown or shrunk.
    ///
    /// The default reads into `buf` grown to 64 KiB. A stream that hands
    /// out owned buffers of its own (the host's streams do) gives its
    /// buffer instead, which saves a copy, and holds no buffer of its size
    /// while it waits.
    fn read_chunk(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        if buf.len() < DEFAULT_CHUNK {
            buf.resize(DEFAULT_CHUNK, 0);
        }
        self.read(buf)
    }
}

/// The error a gateway session's stream fails one read with once the
/// gateway is going away (it drains before it stops): a
/// [`Transport`]'s read returns `io::Error::other(GoingAway)`, having
/// consumed nothing. The [`WebSocket`](crate::WebSocket) over it then
/// closes with 1001 by itself, or reports it as an error of kind
/// [`GoingAway`](crate::ErrorKind::GoingAway) when the plugin handles it
/// (see [`ServerConfig::close_on_going_away`](crate::ServerConfig::close_on_going_away)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoingAway;

impl std::fmt::Display for GoingAway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the gateway is going away")
    }
}

impl std::error::Error for GoingAway {}

impl GoingAway {
    /// Whether `err` is the read error that says so.
    pub fn is(err: &io::Error) -> bool {
        err.get_ref().is_some_and(|inner| inner.is::<GoingAway>())
    }
}

/// What [`Transport::read_chunk`] reads at most by default: large enough
/// that a big message takes few reads.
const DEFAULT_CHUNK: usize = 64 << 10;

impl Transport for TcpStream {
    fn read_timeout(&self) -> io::Result<Option<Duration>> {
        TcpStream::read_timeout(self)
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
}

impl<T: Transport + ?Sized> Transport for &mut T {
    fn read_timeout(&self) -> io::Result<Option<Duration>> {
        (**self).read_timeout()
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        (**self).set_read_timeout(timeout)
    }

    fn read_chunk(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        (**self).read_chunk(buf)
    }
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn read_timeout(&self) -> io::Result<Option<Duration>> {
        (**self).read_timeout()
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        (**self).set_read_timeout(timeout)
    }

    fn read_chunk(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        (**self).read_chunk(buf)
    }
}
