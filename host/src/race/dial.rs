//! How an attempt reaches its peer: the [`Dialer`] seam.
//!
//! The race decides when and to which address attempts go; a dialer does
//! the I/O of one attempt. [`NetDialer`] is the real one (tokio TCP,
//! rustls); tests put a scripted one in its place to check the race's
//! timing rules with tokio's paused clock.

use super::Transport;
use crate::tls::{EchConfigError, TlsClient};
use rustls::PeerIncompatible;
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

    /// The first flight is out on `stream` and its reply is awaited: the
    /// moment to keep ACKs quick ([`Transport::quick_ack`]).
    fn awaiting_reply(&self, stream: &Self::Stream) {
        let _ = stream;
    }

    /// Whether TLS can use the ECHConfigList `config` (it parses, and has
    /// a configuration with a suite this TLS supports): `Err` says why
    /// not, and the race then offers no ECH.
    fn check_ech(&self, config: &[u8]) -> Result<(), String> {
        let _ = config;
        Ok(())
    }
}

/// The operator's choice for Encrypted Client Hello (`[tls] ech`).
///
/// An ECH handshake is TLS 1.3 only (RFC 9849; rustls offers no TLS 1.2
/// beside it, GREASE included), which is why `on` leaves the handshakes
/// without a configuration alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EchMode {
    /// Never: no ECH extension on any handshake.
    Off,
    /// GREASE on every handshake (RFC 9849 §6.2), never real ECH: ECH's
    /// users do not stand out, at the price of TLS 1.2 servers.
    Grease,
    /// Real ECH where a service's HTTPS record carries a configuration
    /// (TLS waits for the HTTPS answer: draft §6.3); no extension
    /// elsewhere, so that a TLS 1.2 server is still reached.
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
    tls: Option<Arc<NetTls>>,
}

/// What a TLS target's handshakes need.
struct NetTls {
    client: TlsClient,
    alpn: Vec<String>,
    name: ServerName<'static>,
    /// The connector without ECH, built once: most handshakes use it.
    plain: TlsConnector,
}

impl NetDialer {
    /// A dialer for a target, with the TLS client, the ALPN protocols to
    /// offer and the name to verify when the target speaks TLS.
    pub fn new(tls: Option<(TlsClient, Vec<String>, ServerName<'static>)>) -> Self {
        NetDialer {
            tls: tls.map(|(client, alpn, name)| {
                let plain = client.connector(&alpn);
                Arc::new(NetTls {
                    client,
                    alpn,
                    name,
                    plain,
                })
            }),
        }
    }
}

impl NetTls {
    /// The connector for `ech`. A configuration list that cannot be used
    /// counts as none: the handshake sends GREASE, as a client without a
    /// configuration does (RFC 9849 §6.2), and reports that status.
    fn connector(&self, ech: &EchOffer) -> TlsConnector {
        match ech {
            EchOffer::Off => self.plain.clone(),
            offer => self
                .client
                .connector_for(&self.alpn, offer)
                .unwrap_or_else(|_: EchConfigError| {
                    self.client
                        .connector_for(&self.alpn, &EchOffer::Grease)
                        .unwrap_or_else(|_| self.plain.clone())
                }),
        }
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

    async fn tls(&self, _addr: SocketAddr, stream: Transport, ech: &EchOffer) -> io::Result<(Transport, EchStatus)> {
        match (stream, &self.tls) {
            (Transport::Tcp(tcp), Some(tls)) => {
                // The race marks the error as a TLS failure.
                let stream = tls
                    .connector(ech)
                    .connect(tls.name.clone(), tcp)
                    .await
                    .map_err(with_retry_configs)?;
                let status = match stream.get_ref().1.ech_status() {
                    rustls::client::EchStatus::NotOffered => EchStatus::NotOffered,
                    rustls::client::EchStatus::Grease => EchStatus::Grease,
                    rustls::client::EchStatus::Accepted => EchStatus::Accepted,
                    // rustls fails a handshake whose ECH was rejected, so
                    // these do not come back; were one to, the server was
                    // only authenticated for the configuration's public
                    // name, and the stream must not be used.
                    rustls::client::EchStatus::Offered | rustls::client::EchStatus::Rejected => {
                        return Err(io::Error::other("the handshake ended with ECH unconfirmed"));
                    }
                };
                Ok((Transport::Tls(Box::new(stream)), status))
            }
            (stream, None) => Ok((stream, EchStatus::NotOffered)),
            (Transport::Tls(_), Some(_)) => Err(io::Error::other("TLS twice on one attempt")),
        }
    }

    fn awaiting_reply(&self, stream: &Transport) {
        stream.quick_ack();
    }

    fn check_ech(&self, config: &[u8]) -> Result<(), String> {
        match &self.tls {
            Some(tls) => tls
                .client
                .connector_for(&tls.alpn, &EchOffer::Config(Arc::from(config)))
                .map(drop)
                .map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }
}

/// A handshake error whose server rejected ECH and sent retry
/// configurations becomes an [`EchRetry`] with them, as an ECHConfigList;
/// any other error, a rejection without configurations among them, stays
/// as it is.
fn with_retry_configs(e: io::Error) -> io::Error {
    use rustls::internal::msgs::codec::Codec;
    // tokio-rustls passes rustls' error on as the io::Error's payload.
    let retry = match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::PeerIncompatible(PeerIncompatible::ServerRejectedEncryptedClientHello(Some(configs))))
            if !configs.is_empty() =>
        {
            // The list's encoding: a two-byte length, then the configs.
            configs.get_encoding()
        }
        _ => return e,
    };
    io::Error::other(EchRetry(retry.into()))
}
