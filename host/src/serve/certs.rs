//! The gateway's own certificates: TLS for `wss://` listeners, with SNI
//! choosing among several.

use crate::error::Error;
use crate::tls::pem_problem;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// A certificate chain and its private key, as the operator names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertFiles {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

/// Picks the certificate for a handshake: the first whose end-entity
/// certificate is valid for the name the client asked for in SNI, else
/// the first of all (for clients that send no SNI, or an unknown name).
#[derive(Debug)]
struct BySni {
    keys: Vec<(Arc<CertifiedKey>, CertificateDer<'static>)>,
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let first = self.keys.first().map(|(key, _)| key.clone());
        let Some(name) = hello.server_name() else {
            return first;
        };
        let Ok(name) = rustls::pki_types::ServerName::try_from(name) else {
            return first;
        };
        self.keys
            .iter()
            .find(|(_, der)| {
                webpki::EndEntityCert::try_from(der).is_ok_and(|ee| ee.verify_is_valid_for_subject_name(&name).is_ok())
            })
            .map(|(key, _)| key.clone())
            .or(first)
    }
}

/// A TLS acceptor serving `certs` (at least one), offering ALPN
/// `http/1.1`. Each chain must load and match its key: a mismatch is found
/// here, at start, not at the first handshake.
pub(crate) fn acceptor(certs: &[CertFiles]) -> Result<TlsAcceptor, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut keys = Vec::with_capacity(certs.len());
    for files in certs {
        let chain = read_chain(&files.cert)?;
        let key = read_key(&files.key)?;
        let leaf = chain[0].clone();
        let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
            Error::config(format!(
                "certificate `{}` does not go with key `{}`: {e}",
                files.cert.display(),
                files.key.display()
            ))
        })?;
        keys.push((Arc::new(certified), leaf));
    }
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(BySni { keys }));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let shown = path.display();
    let bytes =
        std::fs::read(path).map_err(|e| Error::config(format!("cannot read certificate `{shown}`")).with_source(e))?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::config(format!("certificate `{shown}` is not valid PEM ({})", pem_problem(&e))))?;
    if chain.is_empty() {
        return Err(Error::config(format!("certificate `{shown}` holds no certificate")));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| Error::config(format!("cannot read key `{shown}`")).with_source(e))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => Error::config(format!("key `{shown}` holds no private key")),
        e => Error::config(format!("key `{shown}` is not valid PEM ({})", pem_problem(&e))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str, host: &str) -> CertFiles {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![host.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let files = CertFiles {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let dir = std::env::temp_dir().join(format!("wsgate-certs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = write_pair(&dir, "a", "a.test");
        let b = write_pair(&dir, "b", "b.test");
        assert!(acceptor(&[a.clone(), b.clone()]).is_ok());
        let mixed = CertFiles {
            cert: a.cert.clone(),
            key: b.key.clone(),
        };
        let err = acceptor(&[mixed]).err().unwrap().to_string();
        assert!(err.contains("does not go with key"), "{err}");
        let missing = CertFiles {
            cert: dir.join("missing.pem"),
            key: a.key,
        };
        let err = acceptor(&[missing]).err().unwrap().to_string();
        assert!(err.contains("cannot read certificate"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
