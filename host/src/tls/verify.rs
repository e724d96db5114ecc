//! Server certificates checked against the operator's CA files first, and
//! against the system's roots only when those do not vouch for them.
//!
//! Reading the system's store means decoding hundreds of PEM certificates
//! (as a bundle, and again as a directory of files): about 10 ms of CPU,
//! a third of a `wsgate run` before its first connect when it was done at
//! start. A server that one of the operator's CAs vouches for never needs
//! it; the first server that needs it has it read then, once per process.
//! The outcome is the same as one store holding both: a chain that ends at
//! any of the roots ends at a root of one of the two.

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use std::sync::{Arc, OnceLock};

/// The host's server certificate verifier (see the module's documentation).
#[derive(Debug)]
pub(super) struct Verifier {
    /// The CA files' roots, when there are any.
    files: Option<Arc<WebPkiServerVerifier>>,
    /// The system's roots, when they are trusted: read at the first need.
    system: Option<OnceLock<Option<Arc<WebPkiServerVerifier>>>>,
    provider: Arc<CryptoProvider>,
}

impl Verifier {
    /// A verifier trusting `files` and, with `system`, the system's roots.
    pub(super) fn new(files: RootCertStore, system: bool, provider: Arc<CryptoProvider>) -> Verifier {
        Verifier {
            files: webpki(files, &provider),
            system: system.then(OnceLock::new),
            provider,
        }
    }

    /// The system's roots' verifier, reading them at the first call; `None`
    /// where the system's roots are not trusted or there are none.
    fn system(&self) -> Option<&Arc<WebPkiServerVerifier>> {
        self.system
            .as_ref()?
            .get_or_init(|| {
                let mut store = RootCertStore::empty();
                // Individual bad certificates in the system store are
                // skipped: one broken file there must not stop the gateway.
                store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
                webpki(store, &self.provider)
            })
            .as_ref()
    }
}

/// webpki's verifier for `roots`, or `None` for an empty store (which
/// vouches for nothing).
fn webpki(roots: RootCertStore, provider: &Arc<CryptoProvider>) -> Option<Arc<WebPkiServerVerifier>> {
    if roots.is_empty() {
        return None;
    }
    // Building fails only for an empty store, excluded above.
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .ok()
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let unknown = Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let refused = match &self.files {
            Some(files) => match files.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
                Ok(verified) => return Ok(verified),
                Err(e) => e,
            },
            None => unknown.clone(),
        };
        // Any refusal, not only an unknown issuer: a system root may share
        // its name with an operator's CA, whose signature then does not
        // match (as one store would, webpki then tries the other).
        let Some(system) = self.system() else {
            return Err(refused);
        };
        match system.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Ok(verified) => Ok(verified),
            // The CA files' reason is the one that says something (an
            // expired or misnamed certificate of the operator's CA).
            Err(e) if e == unknown && refused != unknown => Err(refused),
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

    /// A CA named `name` and a leaf for `wsgate.test` it signed.
    fn ca_and_leaf(name: &str) -> (CertificateDer<'static>, CertificateDer<'static>) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name.push(rcgen::DnType::CommonName, name);
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["wsgate.test".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        (ca_cert.der().clone(), leaf.der().clone())
    }

    fn verifier(files: &[&CertificateDer<'static>], system: bool) -> Verifier {
        let mut store = RootCertStore::empty();
        for cert in files {
            store.add((*cert).clone()).unwrap();
        }
        Verifier::new(store, system, Arc::new(rustls::crypto::ring::default_provider()))
    }

    fn check(verifier: &Verifier, leaf: &CertificateDer<'_>, name: &'static str) -> Result<ServerCertVerified, Error> {
        let name = ServerName::try_from(name).unwrap();
        verifier.verify_server_cert(leaf, &[], &name, &[], UnixTime::now())
    }

    fn system_was_read(verifier: &Verifier) -> bool {
        verifier.system.as_ref().is_some_and(|s| s.get().is_some())
    }

    #[test]
    fn a_server_a_ca_file_vouches_for_never_reads_the_system_roots() {
        let (ca, leaf) = ca_and_leaf("operator");
        let verifier = verifier(&[&ca], true);
        check(&verifier, &leaf, "wsgate.test").unwrap();
        assert!(!system_was_read(&verifier));
    }

    #[test]
    fn a_server_no_ca_file_knows_is_asked_of_the_system_roots() {
        let (ca, _) = ca_and_leaf("operator");
        for stranger in ["stranger", "operator"] {
            // A CA of another name, and one of the same name (whose
            // signature the operator's CA does not match).
            let (_, leaf) = ca_and_leaf(stranger);
            let verifier = verifier(&[&ca], true);
            let err = check(&verifier, &leaf, "wsgate.test").unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::InvalidCertificate(CertificateError::UnknownIssuer | CertificateError::BadSignature)
                ),
                "{stranger}: {err:?}"
            );
            assert!(system_was_read(&verifier), "{stranger}");
        }
    }

    #[test]
    fn a_failure_the_ca_files_explain_is_reported_as_theirs() {
        let (ca, leaf) = ca_and_leaf("operator");
        let verifier = verifier(&[&ca], true);
        let err = check(&verifier, &leaf, "elsewhere.test").unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidCertificate(
                    CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
                )
            ),
            "{err:?}"
        );
    }

    #[test]
    fn without_any_roots_nothing_is_vouched_for() {
        let (_, leaf) = ca_and_leaf("operator");
        let verifier = verifier(&[], false);
        let err = check(&verifier, &leaf, "wsgate.test").unwrap_err();
        assert_eq!(err, Error::InvalidCertificate(CertificateError::UnknownIssuer));
    }
}
