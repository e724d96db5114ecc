//! How an attempt reaches its peer: the [`Dialer`] seam.
//!
//! The race decides when and to which address attempts go; a dialer does
//! the I/O of one attempt. [`NetDialer`] is the real one (tokio TCP,
//! rustls); tests put a scripted one in its place to check the race's
//! timing rules with tokio's paused clock.

use super::Transport;
use rustls::pki_types::ServerName;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The I/O of one connection attempt.
pub trait Dialer: Send + Sync + 'static {
    /// The stream an attempt produces.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Opens a TCP connection to `addr`.
    fn tcp(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Stream>> + Send;

    /// Does the TLS handshake over `stream`, verifying the target's name,
    /// with what `ech` asks for Encrypted Client Hello.
    ///
    /// A server that rejects ECH and sends retry configurations fails the
    /// handshake with an [`io::Error`] carrying an [`EchRetry`].
    fn tls(
        &self,
        addr: SocketAddr,
        stream: Self::Stream,
        ech: &EchOffer,
    ) -> impl Future<Output = io::Result<(Self::Stream, EchStatus)>> + Send;

    /// Whether TLS can use the ECHConfigList `config` (it parses, and has
    /// a configuration with a suite this TLS supports): `Err` says why
    /// not, and the race then offers GREASE instead.
    fn check_ech(&self, config: &[u8]) -> Result<(), String> {
        let _ = config;
        Ok(())
    }
}

/// The operator's choice for Encrypted Client Hello (`[tls] ech`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EchMode {
    /// Never: no ECH extension on any handshake.
    Off,
    /// GREASE only (RFC 9849 §6.2), never real ECH.
    Grease,
    /// Real ECH where a service's HTTPS record carries a configuration,
    /// GREASE elsewhere; TLS waits for the HTTPS answer (draft §6.3).
    #[default]
    On,
}

impl EchMode {
    /// The mode's name, as in the settings.
    pub fn as_str(self) -> &'static str {
        match self {
            EchMode::Off => "off",
            EchMode::Grease => "grease",
            EchMode::On => "on",
        }
    }
}

impl std::str::FromStr for EchMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(EchMode::Off),
            "grease" => Ok(EchMode::Grease),
            "on" => Ok(EchMode::On),
            other => Err(format!("`{other}` is not an ECH mode (off, grease or on)")),
        }
    }
}

impl fmt::Display for EchMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one TLS handshake offers for Encrypted Client Hello.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum EchOffer {
    /// No ECH extension at all.
    #[default]
    Off,
    /// A GREASE ECH extension (RFC 9849 §6.2): what a client without a
    /// configuration sends, so that real ECH does not stand out.
    Grease,
    /// Real ECH with this ECHConfigList (from an HTTPS record, or a
    /// server's retry configurations).
    Config(Arc<[u8]>),
}

/// What became of ECH on a handshake that completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchStatus {
    /// Not offered.
    NotOffered,
    /// GREASE sent (the server cannot accept it).
    Grease,
    /// Offered and accepted: the server name went encrypted.
    Accepted,
}

impl EchStatus {
    /// The status's name, as in the race log.
    pub fn as_str(self) -> &'static str {
        match self {
            EchStatus::NotOffered => "not offered",
            EchStatus::Grease => "grease",
            EchStatus::Accepted => "accepted",
        }
    }
}

/// The payload of the [`io::Error`] of a handshake whose server rejected
/// ECH and sent retry configurations (RFC 9849 §6.1.6): the connect may
/// try them once, on a new connection.
#[derive(Debug, Clone)]
pub struct EchRetry(pub Arc<[u8]>);

impl fmt::Display for EchRetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the server rejected ECH and sent retry configurations")
    }
}

impl std::error::Error for EchRetry {}

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

    async fn tls(&self, _addr: SocketAddr, stream: Transport, _ech: &EchOffer) -> io::Result<(Transport, EchStatus)> {
        match (stream, &self.tls) {
            (Transport::Tcp(tcp), Some((connector, name))) => {
                // The race marks the error as a TLS failure.
                let tls = connector.connect(name.clone(), tcp).await?;
                Ok((Transport::Tls(Box::new(tls)), EchStatus::NotOffered))
            }
            (stream, None) => Ok((stream, EchStatus::NotOffered)),
            (Transport::Tls(_), Some(_)) => Err(io::Error::other("TLS twice on one attempt")),
        }
    }
}
