//! TLS for plugin connections: one rustls client configuration per host.
//!
//! Trust comes from the system's roots plus the CA files the operator
//! names with `--ca-cert` (the CA files are asked first, and the system's
//! roots are read when a server first needs them: `tls/verify.rs`). The
//! server name sent (SNI) and verified is the host the plugin asked for;
//! ALPN offers `http/1.1` unless the plugin asks for other protocols.
//!
//! Encrypted Client Hello (RFC 9849) comes per handshake, as the race's
//! [`EchOffer`] says: none, GREASE, or a configuration list from the
//! target's HTTPS record (RFC 9848) or from a server's retry
//! configurations. TLS itself uses ring; HPKE, which ECH needs and ring
//! lacks, comes from aws-lc-rs.

use crate::error::Error;
use crate::host_name::HostName;
use crate::race::EchOffer;
use rustls::client::{EchConfig, EchGreaseConfig};
use rustls::crypto::CryptoProvider;
use rustls::crypto::aws_lc_rs::hpke;
use rustls::crypto::hpke::Hpke;
use rustls::pki_types::{CertificateDer, EchConfigListBytes, ServerName, pem::PemObject};
use rustls::{ClientConfig, EncryptedClientHelloError, RootCertStore};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use tokio_rustls::TlsConnector;
use verify::Verifier;

/// The ALPN protocol offered when the plugin names none: the WebSocket
/// upgrade of RFC 6455 is an HTTP/1.1 exchange.
pub const DEFAULT_ALPN: &str = "http/1.1";

/// The HPKE suites an ECH configuration may use.
static HPKE_SUITES: &[&dyn Hpke] = hpke::ALL_SUPPORTED_SUITES;

/// The suite GREASE ECH pretends to use: the most common one (X25519,
/// HKDF-SHA256, AES-128-GCM), so that GREASE looks like real ECH.
static GREASE_SUITE: &dyn Hpke = hpke::DH_KEM_X25519_HKDF_SHA256_AES_128;

/// How many ECH configuration lists keep their client configuration. A
/// connect to a host with an HTTPS record builds one per list; a gateway
/// talks to few such hosts at once, and a miss costs one build.
const ECH_CACHE_SIZE: usize = 32;

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

/// Why an ECHConfigList cannot be used. The connect goes on without it,
/// as a client that has no configuration does.
#[derive(Debug, Clone, PartialEq)]
pub enum EchConfigError {
    /// The bytes are no ECHConfigList.
    Malformed,
    /// No configuration in the list has a version, HPKE suite and
    /// extensions this client supports.
    Unsupported,
    /// rustls would not build a client with it.
    Setup(rustls::Error),
}

impl fmt::Display for EchConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EchConfigError::Malformed => f.write_str("the ECH configuration list does not parse"),
            EchConfigError::Unsupported => {
                f.write_str("no ECH configuration in the list has a supported version and HPKE suite")
            }
            EchConfigError::Setup(e) => write!(f, "cannot set up ECH: {e}"),
        }
    }
}

impl std::error::Error for EchConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EchConfigError::Setup(e) => Some(e),
            _ => None,
        }
    }
}

impl From<rustls::Error> for EchConfigError {
    fn from(e: rustls::Error) -> Self {
        match e {
            rustls::Error::InvalidEncryptedClientHello(EncryptedClientHelloError::InvalidConfigList) => {
                EchConfigError::Malformed
            }
            rustls::Error::InvalidEncryptedClientHello(EncryptedClientHelloError::NoCompatibleConfig) => {
                EchConfigError::Unsupported
            }
            e => EchConfigError::Setup(e),
        }
    }
}

/// Client configurations by ECHConfigList, and why the lists that failed
/// did: a bad list in DNS is asked about at every connect.
type EchCache = HashMap<Arc<[u8]>, Result<Arc<ClientConfig>, EchConfigError>>;

/// The host's TLS client, built once at start.
#[derive(Debug, Clone)]
pub struct TlsClient {
    /// TLS 1.2 and 1.3, no ECH.
    base: Arc<ClientConfig>,
    /// TLS 1.3 with GREASE ECH, built at its first use: making its key
    /// starts aws-lc's random generator, about 100 ms of CPU, which a host
    /// that never sends GREASE (the default) should not pay at every start.
    grease: Arc<OnceLock<Result<Arc<ClientConfig>, EchConfigError>>>,
    verifier: Arc<Verifier>,
    provider: Arc<CryptoProvider>,
    /// Client configurations by ECHConfigList, and the lists that failed.
    ech: Arc<Mutex<EchCache>>,
}

impl TlsClient {
    /// Builds the client from `roots`. An unreadable or empty CA file is an
    /// error: an operator who names a CA means it to be used. The system's
    /// roots are read when a server first needs them (see
    /// `tls/verify.rs`).
    pub fn new(roots: &TrustRoots) -> Result<Self, Error> {
        let mut files = RootCertStore::empty();
        for path in &roots.ca_files {
            add_ca_file(&mut files, path)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(Verifier::new(files, roots.system, provider.clone()));
        let base = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::config("TLS setup failed").with_source(e))?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        Ok(TlsClient {
            base: Arc::new(base),
            grease: Arc::default(),
            verifier,
            provider,
            ech: Arc::default(),
        })
    }

    /// A connector offering `alpn` (the default when empty), without ECH.
    pub fn connector(&self, alpn: &[String]) -> TlsConnector {
        with_alpn(&self.base, alpn)
    }

    /// A connector offering `alpn` (the default when empty) and what `ech`
    /// asks for Encrypted Client Hello. A configuration list that cannot
    /// be used is an error saying why; the caller goes on without it.
    pub fn connector_for(&self, alpn: &[String], ech: &EchOffer) -> Result<TlsConnector, EchConfigError> {
        let config = match ech {
            EchOffer::Off => return Ok(self.connector(alpn)),
            EchOffer::Grease => self.grease_config()?,
            EchOffer::Config(list) => self.ech_config(list)?,
        };
        Ok(with_alpn(&config, alpn))
    }

    /// The GREASE client configuration, built at the first call.
    fn grease_config(&self) -> Result<Arc<ClientConfig>, EchConfigError> {
        let built = self.grease.get_or_init(|| {
            // One placeholder key for every GREASE handshake: what goes on
            // the wire is a fresh encapsulation of it each time, and a
            // random configuration id.
            let (placeholder, _) = GREASE_SUITE.generate_key_pair().map_err(EchConfigError::Setup)?;
            let mode = EchGreaseConfig::new(GREASE_SUITE, placeholder).into();
            ech_config(&self.provider, &self.verifier, mode).map_err(EchConfigError::Setup)
        });
        built.clone()
    }

    /// The client configuration for one ECHConfigList, from the cache when
    /// it has been built before.
    fn ech_config(&self, list: &Arc<[u8]>) -> Result<Arc<ClientConfig>, EchConfigError> {
        // A poisoned lock only means another connect panicked while
        // holding it; the map is still whole.
        let mut cache = self.ech.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = cache.get(list) {
            return found.clone();
        }
        let built = EchConfig::new(EchConfigListBytes::from(&list[..]), HPKE_SUITES)
            .and_then(|config| ech_config(&self.provider, &self.verifier, config.into()))
            .map_err(EchConfigError::from);
        if cache.len() >= ECH_CACHE_SIZE {
            // Any entry will do: what goes is built again when next asked.
            if let Some(old) = cache.keys().next().cloned() {
                cache.remove(&old);
            }
        }
        cache.insert(list.clone(), built.clone());
        built
    }

    /// The server name to send and verify for `host`: a DNS name, or an IP
    /// literal (verified against the certificate's IP addresses).
    pub fn server_name(host: &HostName) -> Result<ServerName<'static>, String> {
        ServerName::try_from(host.as_str().to_owned()).map_err(|_| format!("`{host}` is not a valid TLS server name"))
    }
}

/// A TLS 1.3 client configuration with `mode`, verifying with `verifier`.
fn ech_config(
    provider: &Arc<CryptoProvider>,
    verifier: &Arc<Verifier>,
    mode: rustls::client::EchMode,
) -> Result<Arc<ClientConfig>, rustls::Error> {
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_ech(mode)?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A connector for `config` offering `alpn` (the default when empty).
fn with_alpn(config: &ClientConfig, alpn: &[String]) -> TlsConnector {
    let mut config = config.clone();
    config.alpn_protocols = if alpn.is_empty() {
        vec![DEFAULT_ALPN.as_bytes().to_vec()]
    } else {
        alpn.iter().map(|p| p.as_bytes().to_vec()).collect()
    };
    TlsConnector::from(Arc::new(config))
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

mod verify;

#[cfg(test)]
mod ech_tests;

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
