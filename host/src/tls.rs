//! TLS for plugin connections: one rustls client configuration per host.
//!
//! Trust comes from the system's roots plus the CA files the operator
//! names with `--ca-cert`. The server name sent (SNI) and verified is the
//! host the plugin asked for; ALPN offers `http/1.1` unless the plugin asks
//! for other protocols.

use crate::error::Error;
use crate::host_name::HostName;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use rustls::{ClientConfig, RootCertStore};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::TlsConnector;

/// The ALPN protocol offered when the plugin names none: the WebSocket
/// upgrade of RFC 6455 is an HTTP/1.1 exchange.
pub const DEFAULT_ALPN: &str = "http/1.1";

/// Where the host's trust in servers comes from.
#[derive(Debug, Clone)]
pub struct TrustRoots {
    /// Use the operating system's root certificates.
    pub system: bool,
    /// Extra CA certificates, PEM files.
    pub ca_files: Vec<PathBuf>,
}

impl Default for TrustRoots {
    fn default() -> Self {
        TrustRoots {
            system: true,
            ca_files: Vec::new(),
        }
    }
}

/// The host's TLS client, built once at start.
#[derive(Debug, Clone)]
pub struct TlsClient {
    base: Arc<ClientConfig>,
}

impl TlsClient {
    /// Builds the client from `roots`. An unreadable or empty CA file is an
    /// error: an operator who names a CA means it to be used.
    pub fn new(roots: &TrustRoots) -> Result<Self, Error> {
        let mut store = RootCertStore::empty();
        if roots.system {
            // Individual bad certificates in the system store are skipped:
            // one broken file there must not stop the gateway.
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
        }
        for path in &roots.ca_files {
            add_ca_file(&mut store, path)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::config("TLS setup failed").with_source(e))?
            .with_root_certificates(store)
            .with_no_client_auth();
        Ok(TlsClient { base: Arc::new(config) })
    }

    /// A connector offering `alpn` (the default when empty).
    pub fn connector(&self, alpn: &[String]) -> TlsConnector {
        let mut config = (*self.base).clone();
        config.alpn_protocols = if alpn.is_empty() {
            vec![DEFAULT_ALPN.as_bytes().to_vec()]
        } else {
            alpn.iter().map(|p| p.as_bytes().to_vec()).collect()
        };
        TlsConnector::from(Arc::new(config))
    }

    /// The server name to send and verify for `host`: a DNS name, or an IP
    /// literal (verified against the certificate's IP addresses).
    pub fn server_name(host: &HostName) -> Result<ServerName<'static>, String> {
        ServerName::try_from(host.as_str().to_owned()).map_err(|_| format!("`{host}` is not a valid TLS server name"))
    }
}

fn add_ca_file(store: &mut RootCertStore, path: &Path) -> Result<(), Error> {
    let shown = path.display();
    let bytes =
        std::fs::read(path).map_err(|e| Error::config(format!("cannot read CA file `{shown}`")).with_source(e))?;
    let mut added = 0;
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        // pki-types' PEM errors print raw bytes; the file's name and what
        // is wrong with it say enough.
        let cert =
            cert.map_err(|e| Error::config(format!("CA file `{shown}` is not valid PEM ({})", pem_problem(&e))))?;
        store
            .add(cert)
            .map_err(|e| Error::config(format!("CA file `{shown}` holds an unusable certificate")).with_source(e))?;
        added += 1;
    }
    if added == 0 {
        return Err(Error::config(format!("CA file `{shown}` holds no PEM certificate")));
    }
    Ok(())
}

pub(crate) fn pem_problem(e: &rustls::pki_types::pem::Error) -> &'static str {
    use rustls::pki_types::pem::Error as Pem;
    match e {
        Pem::MissingSectionEnd { .. } => "a section has no end marker",
        Pem::IllegalSectionStart { .. } => "a section start marker is malformed",
        Pem::Base64Decode(_) => "bad base64",
        _ => "unreadable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_ca_files_are_config_errors() {
        let dir = std::env::temp_dir().join(format!("wsgate-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, b"not a certificate\n").unwrap();
        for (path, why) in [
            (dir.join("missing.pem"), "cannot read CA file"),
            (empty, "holds no PEM certificate"),
        ] {
            let roots = TrustRoots {
                system: false,
                ca_files: vec![path],
            };
            let err = TlsClient::new(&roots).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Config);
            assert!(err.to_string().contains(why), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn server_names() {
        let name = |text: &str| text.parse::<HostName>().unwrap();
        assert!(TlsClient::server_name(&name("wsgate.test")).is_ok());
        assert!(TlsClient::server_name(&name("::1")).is_ok());
        // What is no host name never gets this far.
        assert!("bad name".parse::<HostName>().is_err());
    }
}
