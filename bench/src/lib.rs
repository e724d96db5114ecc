//! What the benches share: the clients' TLS set-up.
//!
//! Every bench's client is a peer of its own (tokio-tungstenite over
//! tokio-rustls); they trust the same kind of test CA and speak the same
//! protocol over TLS, so the configuration is made once, here.

use std::sync::Arc;

/// A TLS client configuration that trusts the certificates in `ca_pem`
/// (PEM) and nothing else: rustls with ring, its safe default versions,
/// ALPN `http/1.1` (as a WebSocket client offers).
pub fn client_config(ca_pem: &[u8]) -> anyhow::Result<rustls::ClientConfig> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A connector of [`client_config`]'s configuration.
pub fn tls_connector(ca_pem: &[u8]) -> anyhow::Result<tokio_rustls::TlsConnector> {
    Ok(tokio_rustls::TlsConnector::from(Arc::new(client_config(ca_pem)?)))
}
