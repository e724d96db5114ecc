//! `wsgate-ech-server`: a WebSocket echo server over TLS that accepts
//! Encrypted Client Hello (RFC 9849), for wsgate's ECH tests.
//!
//! rustls has no server side of ECH; BoringSSL has. At start the server
//! makes a throwaway CA (written to `--ca-out`, for the client to trust),
//! a certificate for the inner name and one for the public name, and an
//! ECH key pair, and prints one JSON line:
//!
//! ```text
//! {"addr":"127.0.0.1:PORT","ca":"PATH","ech_config_list":"BASE64","stale_ech_config_list":"BASE64"}
//! ```
//!
//! `ech_config_list` is what an HTTPS record's `ech` parameter would carry
//! (base64 of the ECHConfigList). `stale_ech_config_list` has the same
//! public name and configuration id but a key the server does not hold, as
//! a DNS cache would after a key rotation: a client offering it is rejected
//! and given the current configurations as retry configurations.
//!
//! Then, one JSON line per handshake, with what the server saw:
//!
//! ```text
//! {"sni":"wsgate.test","ech_accepted":true,"error":null}
//! ```
//!
//! The server stops when its standard input closes, so that it never
//! outlives the test that started it.

use anyhow::{Context, bail};
use base64::Engine;
use boring::hpke::HpkeKey;
use boring::pkey::PKey;
use boring::ssl::{
    HandshakeError, NameType, SniError, SslAcceptor, SslContextBuilder, SslEchKeys, SslMethod, SslRef, SslVersion,
};
use boring::x509::X509;
use clap::Parser;
use foreign_types::ForeignTypeRef;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tungstenite::Message;

/// The ECH configuration id of both the current and the stale key.
const CONFIG_ID: u8 = 1;

/// How long a connection may sit idle before the server drops it.
const IDLE: Duration = Duration::from_secs(30);

#[derive(Parser)]
#[command(about = "A WebSocket echo server over TLS that accepts Encrypted Client Hello")]
struct Args {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The name the server really serves, sent encrypted in the inner
    /// ClientHello.
    #[arg(long, default_value = "wsgate.test")]
    inner_name: String,
    /// The ECH configuration's public name: the outer ClientHello's SNI,
    /// and the certificate a rejected client verifies.
    #[arg(long, default_value = "public.wsgate.test")]
    public_name: String,
    /// Where to write the CA certificate (PEM) the client must trust.
    #[arg(long)]
    ca_out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let ca = Ca::generate()?;
    std::fs::write(&args.ca_out, ca.issuer.pem()).with_context(|| format!("writing {}", args.ca_out.display()))?;

    let (current_key, current_config) = ech_key(&args.public_name)?;
    let (_, stale_config) = ech_key(&args.public_name)?;
    let mut keys = SslEchKeys::builder()?;
    // Marked as a retry configuration: it is what a rejected client is
    // told to use.
    keys.add_key(true, &current_config, current_key)?;
    let keys = keys.build();

    let public = context(&ca.leaf(&args.public_name)?)?.build();
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls())?;
    // ECH is TLS 1.3 only.
    acceptor.set_min_proto_version(Some(SslVersion::TLS1_3))?;
    let (cert, key) = ca.leaf(&args.inner_name)?;
    acceptor.set_certificate(&cert)?;
    acceptor.set_private_key(&key)?;
    acceptor.set_ech_keys(&keys)?;
    let public_name = args.public_name.clone();
    // After ECH: the name is the inner one when the server decrypted the
    // inner ClientHello, the outer one (the public name) otherwise.
    acceptor.set_servername_callback(move |ssl: &mut SslRef, _alert| {
        if ssl.servername(NameType::HOST_NAME) == Some(public_name.as_str()) {
            ssl.set_ssl_context(&public).map_err(|_| SniError::ALERT_FATAL)?;
        }
        Ok(())
    });
    let acceptor = Arc::new(acceptor.build());

    let listener = TcpListener::bind(args.listen).with_context(|| format!("listening on {}", args.listen))?;
    let engine = base64::engine::general_purpose::STANDARD;
    println!(
        "{}",
        serde_json::json!({
            "addr": listener.local_addr()?.to_string(),
            "ca": args.ca_out.display().to_string(),
            "ech_config_list": engine.encode(config_list(&current_config)?),
            "stale_ech_config_list": engine.encode(config_list(&stale_config)?),
        })
    );

    std::thread::spawn(|| {
        // Nothing is read from standard input: its end is the signal to stop.
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let acceptor = acceptor.clone();
        std::thread::spawn(move || serve(&acceptor, stream));
    }
    Ok(())
}

/// One connection: the handshake, its line on standard output, then the
/// WebSocket echo.
fn serve(acceptor: &SslAcceptor, tcp: TcpStream) {
    // A client that stops talking must not keep its thread for ever.
    let _ = tcp.set_read_timeout(Some(IDLE));
    let seen = |ssl: &SslRef, error: Option<String>| {
        println!(
            "{}",
            serde_json::json!({
                "sni": ssl.servername(NameType::HOST_NAME),
                "ech_accepted": ssl.ech_accepted(),
                "error": error,
            })
        );
    };
    let tls = match acceptor.accept(tcp) {
        Ok(tls) => {
            seen(tls.ssl(), None);
            tls
        }
        Err(HandshakeError::Failure(mid) | HandshakeError::WouldBlock(mid)) => {
            seen(mid.ssl(), Some(mid.error().to_string()));
            return;
        }
        Err(HandshakeError::SetupFailure(e)) => {
            println!(
                "{}",
                serde_json::json!({ "sni": null, "ech_accepted": false, "error": e.to_string() })
            );
            return;
        }
    };
    let Ok(mut ws) = tungstenite::accept(tls) else { return };
    while let Ok(message) = ws.read() {
        let reply = match message {
            Message::Text(_) | Message::Binary(_) => message,
            Message::Close(_) => break,
            _ => continue,
        };
        if ws.send(reply).is_err() {
            break;
        }
    }
    // Drain what the close handshake still brings; bounded by the timeout.
    let _ = ws.close(None);
    let _ = ws.flush();
    let _ = ws.get_mut().read(&mut [0; 64]);
}

/// A context presenting one certificate.
fn context((cert, key): &(X509, PKey<boring::pkey::Private>)) -> anyhow::Result<SslContextBuilder> {
    let mut ctx = SslContextBuilder::new(SslMethod::tls())?;
    ctx.set_certificate(cert)?;
    ctx.set_private_key(key)?;
    Ok(ctx)
}

/// A fresh X25519 ECH key and its ECHConfig (HKDF-SHA256 with AES-128-GCM,
/// AES-256-GCM and ChaCha20-Poly1305, as BoringSSL marshals it).
fn ech_key(public_name: &str) -> anyhow::Result<(HpkeKey, Vec<u8>)> {
    let mut private = [0u8; 32];
    boring::rand::rand_bytes(&mut private)?;
    // Despite its name, this makes an X25519 key (DHKEM(X25519, HKDF-SHA256)).
    let key = HpkeKey::dhkem_p256_sha256(&private)?;
    let name = std::ffi::CString::new(public_name).context("a public name with a NUL byte")?;
    let mut out: *mut u8 = std::ptr::null_mut();
    let mut len = 0usize;
    // SAFETY: `key` and `name` outlive the call; on success BoringSSL sets
    // `out` to a buffer of `len` bytes that we copy and then free with
    // OPENSSL_free, as SSL_marshal_ech_config's documentation asks.
    let config = unsafe {
        if boring_sys::SSL_marshal_ech_config(&mut out, &mut len, CONFIG_ID, key.as_ptr(), name.as_ptr(), 0) != 1 {
            bail!("SSL_marshal_ech_config failed");
        }
        let config = std::slice::from_raw_parts(out, len).to_vec();
        boring_sys::OPENSSL_free(out.cast());
        config
    };
    Ok((key, config))
}

/// An ECHConfigList of one ECHConfig: a two-byte length, then the config.
fn config_list(config: &[u8]) -> anyhow::Result<Vec<u8>> {
    let len = u16::try_from(config.len()).context("an ECHConfig over 64 KiB")?;
    let mut list = len.to_be_bytes().to_vec();
    list.extend_from_slice(config);
    Ok(list)
}

/// The throwaway CA.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn generate() -> anyhow::Result<Ca> {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "wsgate-ech-server CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(Ca { issuer })
    }

    /// A server certificate for `name`, signed by the CA.
    fn leaf(&self, name: &str) -> anyhow::Result<(X509, PKey<boring::pkey::Private>)> {
        let mut params = CertificateParams::new(vec![name.to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((
            X509::from_der(cert.der())?,
            PKey::private_key_from_der(&key.serialize_der())?,
        ))
    }
}
