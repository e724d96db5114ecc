//! What the benches share: the clients' TLS set-up, the file limit.
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

/// Raises the soft RLIMIT_NOFILE to the hard limit (the children a bench
/// starts inherit it), returning the limit now in force (0 if it cannot be
/// read).
pub fn raise_soft_nofile() -> u64 {
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
        limit.rlim_cur
    }
}
