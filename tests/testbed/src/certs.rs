//! Throwaway PKI: a CA generated at start and one server leaf signed by it.
//!
//! Clients under test trust the CA (never the leaf directly), so that they
//! exercise ordinary chain validation instead of certificate pinning.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Names the leaf certificate is valid for. `*.wsgate.test` lets tests use
/// per-case host names without regenerating anything.
const LEAF_SANS: [&str; 5] = ["localhost", "wsgate.test", "*.wsgate.test", "127.0.0.1", "::1"];

/// The generated CA and leaf, in the forms the server and the files need.
pub(crate) struct Pki {
    pub(crate) ca_pem: String,
    leaf_pem: String,
    leaf_key_pem: String,
    leaf_der: CertificateDer<'static>,
    leaf_key_der: PrivatePkcs8KeyDer<'static>,
}

impl Pki {
    /// Generates a fresh CA and a leaf signed by it (ECDSA P-256, rcgen's default).
    pub(crate) fn generate() -> anyhow::Result<Pki> {
        let mut ca_params = CertificateParams::default();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "wsgate-testbed CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().context("generating the CA key")?;
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).context("self-signing the CA certificate")?;

        let sans: Vec<String> = LEAF_SANS.iter().map(|s| s.to_string()).collect();
        let mut leaf_params = CertificateParams::new(sans).context("building the leaf certificate parameters")?;
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "wsgate-testbed");
        leaf_params.is_ca = IsCa::ExplicitNoCa;
        leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf_params.use_authority_key_identifier_extension = true;
        let leaf_key = KeyPair::generate().context("generating the leaf key")?;
        let leaf = leaf_params
            .signed_by(&leaf_key, &ca)
            .context("signing the leaf certificate")?;

        Ok(Pki {
            ca_pem: ca.pem(),
            leaf_pem: leaf.pem(),
            leaf_key_pem: leaf_key.serialize_pem(),
            leaf_der: leaf.der().clone(),
            leaf_key_der: PrivatePkcs8KeyDer::from(leaf_key.serialize_der()),
        })
    }

    /// The rustls server configuration presenting the leaf, offering only
    /// `http/1.1` by ALPN (WebSocket over HTTP/2 is not what is under test).
    pub(crate) fn server_config(&self) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        // An explicit provider, so the process-wide default (which a test binary
        // may or may not have installed) does not matter.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("choosing TLS protocol versions")?
            .with_no_client_auth()
            .with_single_cert(
                vec![self.leaf_der.clone()],
                PrivateKeyDer::Pkcs8(self.leaf_key_der.clone_key()),
            )
            .context("loading the leaf certificate into rustls")?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // rustls's default, said here because `nagle-tickets` depends on it:
        // TLS 1.3 tickets, sent after the handshake, are what the `101`
        // waits behind there.
        config.send_tls13_tickets = 2;
        Ok(Arc::new(config))
    }

    /// Writes `ca.pem`, `cert.pem` and `key.pem` into `dir` (created if
    /// missing) and returns the path of `ca.pem`.
    pub(crate) fn write_to(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let ca_path = dir.join("ca.pem");
        write_file(&ca_path, &self.ca_pem, false)?;
        write_file(&dir.join("cert.pem"), &self.leaf_pem, false)?;
        // The key is throwaway, but a world-readable private key is a bad habit.
        write_file(&dir.join("key.pem"), &self.leaf_key_pem, true)?;
        Ok(ca_path)
    }
}

fn write_file(path: &Path, contents: &str, private: bool) -> anyhow::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
