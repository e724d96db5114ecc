//! The native peer: a tokio-tungstenite (and tokio-rustls) echo server.

use super::SESSION_LIMIT;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

pub(super) fn native_main(listen: SocketAddr, tls: Option<(PathBuf, PathBuf)>) -> anyhow::Result<()> {
    let acceptor = match tls {
        Some((cert, key)) => Some(tls_acceptor(&cert, &key)?),
        None => None,
    };
    // tokio's multi-threaded runtime, a worker per CPU, as wsgate serve's.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        eprintln!(
            "native: listening on {} ({})",
            listener.local_addr()?,
            if acceptor.is_some() { "wss://" } else { "ws://" }
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                _ = term.recv() => return anyhow::Ok(()),
                accepted = listener.accept() => {
                    let Ok((tcp, _)) = accepted else { continue };
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let _ = tcp.set_nodelay(true);
                        match acceptor {
                            Some(acceptor) => {
                                if let Ok(Ok(tls)) = tokio::time::timeout(SESSION_LIMIT, acceptor.accept(tcp)).await {
                                    echo(tls).await;
                                }
                            }
                            None => echo(tcp).await,
                        }
                    });
                }
            }
        }
    })
}

pub(super) fn tls_acceptor(cert: &Path, key: &Path) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The upgrade, then every text and binary message back until the close.
pub(super) async fn echo<S: AsyncRead + AsyncWrite + Unpin>(stream: S) {
    let Ok(Ok(mut ws)) = tokio::time::timeout(SESSION_LIMIT, tokio_tungstenite::accept_async(stream)).await else {
        return;
    };
    while let Some(Ok(message)) = ws.next().await {
        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            break;
        }
    }
}
