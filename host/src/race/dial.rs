//! How an attempt reaches its peer: the [`Dialer`] seam.
//!
//! The race decides when and to which address attempts go; a dialer does
//! the I/O of one attempt. [`NetDialer`] is the real one (tokio TCP,
//! rustls); tests put a scripted one in its place to check the race's
//! timing rules with tokio's paused clock.

use super::Transport;
use rustls::pki_types::ServerName;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The I/O of one connection attempt.
pub trait Dialer: Send + Sync + 'static {
    /// The stream an attempt produces.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Opens a TCP connection to `addr`.
    fn tcp(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Stream>> + Send;

    /// Does the TLS handshake over `stream`, verifying the target's name.
    fn tls(&self, addr: SocketAddr, stream: Self::Stream) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

/// Real sockets: tokio TCP and rustls.
#[derive(Clone)]
pub struct NetDialer {
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl NetDialer {
    /// A dialer for a target, with the TLS connector and the name to
    /// verify when the target speaks TLS.
    pub fn new(tls: Option<(TlsConnector, ServerName<'static>)>) -> Self {
        NetDialer { tls }
    }
}

impl Dialer for NetDialer {
    type Stream = Transport;

    async fn tcp(&self, addr: SocketAddr) -> io::Result<Transport> {
        let tcp = TcpStream::connect(addr).await?;
        // The WebSocket exchange is latency-bound: small frames must go
        // out at once.
        tcp.set_nodelay(true)?;
        Ok(Transport::Tcp(tcp))
    }

    async fn tls(&self, _addr: SocketAddr, stream: Transport) -> io::Result<Transport> {
        match (stream, &self.tls) {
            (Transport::Tcp(tcp), Some((connector, name))) => {
                // The race marks the error as a TLS failure.
                let tls = connector.connect(name.clone(), tcp).await?;
                Ok(Transport::Tls(Box::new(tls)))
            }
            (stream, None) => Ok(stream),
            (Transport::Tls(_), Some(_)) => Err(io::Error::other("TLS twice on one attempt")),
        }
    }
}
