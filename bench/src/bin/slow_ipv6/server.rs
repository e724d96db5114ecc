//! The server: a `wss://` echo server (tokio-rustls, tokio-tungstenite) on
//! one port of several addresses, and the CA its certificate chains to.

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// Bound on one connection, handshakes and echoes together.
const SESSION_LIMIT: Duration = Duration::from_secs(30);

/// A CA and a leaf for one name, signed by it (ECDSA P-256).
pub struct Pki {
    /// The CA certificate, PEM: what the clients trust.
    pub ca_pem: String,
    leaf: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl Pki {
    /// A fresh CA and a leaf for `name`.
    pub fn generate(name: &str) -> anyhow::Result<Pki> {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let mut ca_params = CertificateParams::default();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "wsgate-slow-ipv6 CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        let leaf_key = KeyPair::generate()?;
        let leaf = CertificateParams::new(vec![name.to_owned()])?.signed_by(&leaf_key, &ca)?;
        Ok(Pki {
            ca_pem: ca.pem(),
            leaf: leaf.der().clone(),
            key: PrivatePkcs8KeyDer::from(leaf_key.serialize_der()),
        })
    }

    /// Writes the CA certificate to `path`, for `wsgate --ca-cert`.
    pub fn write_ca(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, &self.ca_pem).with_context(|| format!("writing {}", path.display()))
    }

    /// The server's TLS configuration: the leaf, ALPN `http/1.1` only.
    pub fn acceptor(&self) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![self.leaf.clone()], PrivateKeyDer::Pkcs8(self.key.clone_key()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}

/// The echo server, on its own runtime and thread; stops on drop.
pub struct EchoServer {
    port: u16,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EchoServer {
    /// Binds one port on every address of `addrs` (on the calling thread,
    /// so in its network namespace; the serving thread inherits it) and
    /// serves `wss://` echoes there, TLS by `acceptor` ([`Pki::acceptor`]).
    pub fn start(addrs: &[IpAddr], acceptor: tokio_rustls::TlsAcceptor) -> anyhow::Result<EchoServer> {
        let mut port = 0;
        let mut listeners = Vec::new();
        for &ip in addrs {
            let listener = std::net::TcpListener::bind(SocketAddr::new(ip, port))
                .with_context(|| format!("binding {ip}:{port}"))?;
            listener.set_nonblocking(true)?;
            port = listener.local_addr()?.port();
            listeners.push(listener);
        }
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let thread = std::thread::Builder::new()
            .name("echo-server".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut loops = tokio::task::JoinSet::new();
                    for listener in listeners {
                        match tokio::net::TcpListener::from_std(listener) {
                            Ok(listener) => {
                                loops.spawn(accept_loop(listener, acceptor.clone()));
                            }
                            Err(e) => eprintln!("wsgate-slow-ipv6: echo server: {e}"),
                        }
                    }
                    // A stop request or the handle dropped ends the wait;
                    // dropping the JoinSet aborts the loops and their
                    // connections.
                    let _ = stop_rx.await;
                });
            })
            .context("spawning the echo server thread")?;
        Ok(EchoServer {
            port,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The port bound on every address.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, acceptor: tokio_rustls::TlsAcceptor) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // A transient failure (out of descriptors): wait rather than spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        connections.spawn(async move {
            let _ = tokio::time::timeout(SESSION_LIMIT, async {
                let Ok(tls) = acceptor.accept(stream).await else { return };
                let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                    return;
                };
                while let Some(Ok(message)) = ws.next().await {
                    if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
                        break;
                    }
                }
            })
            .await;
        });
        // Reap finished connections so the set stays small.
        while connections.try_join_next().is_some() {}
    }
}
