//! Encrypted Client Hello over real sockets: [`NetDialer`] and
//! [`TlsClient`] against `wsgate-ech-server` (BoringSSL, which accepts
//! ECH) and against the testbed (rustls, which knows nothing of it).
//!
//! The ECH server is a binary of the workspace outside its default
//! members (BoringSSL takes minutes to build): `WSGATE_ECH_SERVER` names
//! it, as `make test` does; under a plain `cargo test` these tests build
//! it with cargo. Where it cannot be built (no cmake, no libclang) they
//! say so and pass, except under `CI=true`, where that is a failure.

use super::*;
use crate::race::{Dialer, EchRetry, EchStatus, NetDialer, Transport};
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio_tungstenite::tungstenite::Message;
use wsgate_testbed::{Behaviour, Config, spawn_in_thread};

/// The name the ECH server serves, and its configuration's public name.
const INNER: &str = "wsgate.test";
const PUBLIC: &str = "public.wsgate.test";

/// How long to wait for the server to say something; only a bound, so
/// that a broken server fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(30);

/// A running `wsgate-ech-server`. Dropping it closes its standard input,
/// which stops it, and kills it besides.
struct EchServer {
    _child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    addr: SocketAddr,
    ca: PathBuf,
    /// The ECHConfigList of the key the server holds.
    config: Arc<[u8]>,
    /// A list with the same public name and a key the server lacks.
    stale: Arc<[u8]>,
    _dir: TempDir,
}

/// What the server saw of one handshake.
#[derive(Debug, PartialEq)]
struct Seen {
    sni: Option<String>,
    ech_accepted: bool,
}

impl EchServer {
    /// Starts the server, or `None` where it cannot be had (and that is
    /// allowed).
    async fn start() -> Option<EchServer> {
        let binary = server_binary()?;
        let dir = TempDir::new("ech-server");
        let ca = dir.0.join("ca.pem");
        let mut child = Command::new(binary)
            .arg("--ca-out")
            .arg(&ca)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start wsgate-ech-server");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = next_line(&mut lines).await;
        let base64 = |key: &str| -> Arc<[u8]> {
            let text = first[key].as_str().unwrap();
            base64::engine::general_purpose::STANDARD.decode(text).unwrap().into()
        };
        Some(EchServer {
            addr: first["addr"].as_str().unwrap().parse().unwrap(),
            ca,
            config: base64("ech_config_list"),
            stale: base64("stale_ech_config_list"),
            _child: child,
            lines,
            _dir: dir,
        })
    }

    /// The next handshake the server reports.
    async fn seen(&mut self) -> Seen {
        let line = next_line(&mut self.lines).await;
        Seen {
            sni: line["sni"].as_str().map(str::to_owned),
            ech_accepted: line["ech_accepted"].as_bool().unwrap(),
        }
    }

    /// A dialer for `wsgate.test` trusting the server's CA.
    fn dialer(&self) -> NetDialer {
        dialer_trusting(&self.ca)
    }
}

async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>) -> serde_json::Value {
    let line = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("the ECH server said nothing")
        .expect("reading the ECH server's output")
        .expect("the ECH server stopped");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("`{line}`: {e}"))
}

fn dialer_trusting(ca: &Path) -> NetDialer {
    let roots = TrustRoots {
        system: false,
        ca_files: vec![ca.to_owned()],
    };
    let client = TlsClient::new(&roots).unwrap();
    let name = TlsClient::server_name(&INNER.parse().unwrap()).unwrap();
    NetDialer::new(Some((client, Vec::new(), name)))
}

/// A TCP connection and a TLS handshake to `addr` offering `ech`.
async fn handshake(dialer: &NetDialer, addr: SocketAddr, ech: &EchOffer) -> std::io::Result<(Transport, EchStatus)> {
    let tcp = dialer.tcp(addr).await?;
    tokio::time::timeout(PATIENCE, dialer.tls(addr, tcp, ech))
        .await
        .expect("the handshake hung")
}

/// A WebSocket message goes there and back over `stream`.
async fn echoes(stream: Transport) {
    let (mut ws, _) = tokio_tungstenite::client_async(format!("wss://{INNER}/"), stream)
        .await
        .expect("WebSocket upgrade");
    ws.send(Message::text("through ECH")).await.unwrap();
    let reply = tokio::time::timeout(PATIENCE, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(reply, Message::text("through ECH"));
    ws.close(None).await.unwrap();
}

/// The server binary: `WSGATE_ECH_SERVER`, or one built here.
fn server_binary() -> Option<PathBuf> {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = BINARY.get_or_init(|| match std::env::var_os("WSGATE_ECH_SERVER") {
        Some(path) => Ok(PathBuf::from(path)),
        None => build_server(),
    });
    match found {
        Ok(path) => Some(path.clone()),
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => panic!("no ECH server: {why}"),
        Err(why) => {
            // Past the harness's capture, so that a skipped test is seen.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "wsgate tests: ECH tests skipped, no ECH server ({why}): run `make test`"
            );
            None
        }
    }
}

/// `cargo build -p wsgate-ech-server` into the target directory these
/// tests were built in.
fn build_server() -> Result<PathBuf, String> {
    // This binary is TARGET/PROFILE/deps/wsgate_host-HASH.
    let exe = std::env::current_exe().map_err(|e| format!("no current executable: {e}"))?;
    let target = exe
        .ancestors()
        .nth(3)
        .ok_or("the test binary is not in a target directory")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args(["build", "-p", "wsgate-ech-server", "--target-dir"])
        .arg(target)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start cargo: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let error = stderr.lines().find(|l| l.contains("error")).unwrap_or("no error line");
        return Err(format!("`cargo build -p wsgate-ech-server` failed: {error}"));
    }
    Ok(target.join("debug").join("wsgate-ech-server"))
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("wsgate-{what}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An ECHConfigList of one configuration: `version`, X25519 with
/// HKDF-SHA256 and AES-128-GCM, a fresh public key nobody holds the
/// private half of, and `public_name`.
fn config_list(version: u16, public_name: &str) -> Arc<[u8]> {
    let (key, _) = GREASE_SUITE.generate_key_pair().unwrap();
    let mut contents = vec![7]; // config_id
    contents.extend(0x0020u16.to_be_bytes()); // DHKEM(X25519, HKDF-SHA256)
    contents.extend((key.0.len() as u16).to_be_bytes());
    contents.extend(&key.0);
    contents.extend(4u16.to_be_bytes()); // one cipher suite:
    contents.extend(0x0001u16.to_be_bytes()); // HKDF-SHA256,
    contents.extend(0x0001u16.to_be_bytes()); // AES-128-GCM
    contents.push(0); // maximum_name_length
    contents.push(public_name.len() as u8);
    contents.extend(public_name.as_bytes());
    contents.extend(0u16.to_be_bytes()); // no extensions
    let mut config = version.to_be_bytes().to_vec();
    config.extend((contents.len() as u16).to_be_bytes());
    config.extend(contents);
    let mut list = (config.len() as u16).to_be_bytes().to_vec();
    list.extend(config);
    list.into()
}

fn client() -> TlsClient {
    TlsClient::new(&TrustRoots {
        system: false,
        ca_files: Vec::new(),
    })
    .unwrap()
}

#[test]
fn unusable_config_lists_are_typed_errors() {
    let client = client();
    let offer = |bytes: &[u8]| EchOffer::Config(bytes.into());
    let err = |offer: EchOffer| client.connector_for(&[], &offer).err();
    assert_eq!(err(offer(b"\x00\x05junk")), Some(EchConfigError::Malformed));
    assert_eq!(err(offer(b"")), Some(EchConfigError::Malformed));
    // Well formed, but a draft's version this client does not speak.
    assert_eq!(
        err(EchOffer::Config(config_list(0xfe0c, PUBLIC))),
        Some(EchConfigError::Unsupported)
    );
    // The same answer from the cache.
    assert_eq!(err(offer(b"\x00\x05junk")), Some(EchConfigError::Malformed));
    assert!(err(EchOffer::Config(config_list(0xfe0d, PUBLIC))).is_none());
    assert!(err(EchOffer::Grease).is_none());
    assert!(err(EchOffer::Off).is_none());
}

#[test]
fn the_cache_stays_bounded() {
    let client = client();
    for _ in 0..ECH_CACHE_SIZE + 5 {
        let offer = EchOffer::Config(config_list(0xfe0d, PUBLIC));
        assert!(client.connector_for(&[], &offer).is_ok());
    }
    assert_eq!(client.ech.lock().unwrap().len(), ECH_CACHE_SIZE);
}

#[tokio::test]
async fn ech_accepted_sends_the_name_encrypted() {
    let Some(mut server) = EchServer::start().await else {
        return;
    };
    let dialer = server.dialer();
    let offer = EchOffer::Config(server.config.clone());
    let (stream, status) = handshake(&dialer, server.addr, &offer).await.unwrap();
    assert_eq!(status, EchStatus::Accepted);
    // What the server decrypted: the inner name.
    assert_eq!(
        server.seen().await,
        Seen {
            sni: Some(INNER.into()),
            ech_accepted: true
        }
    );
    echoes(stream).await;
}

#[tokio::test]
async fn grease_and_off_against_an_ech_server() {
    let Some(mut server) = EchServer::start().await else {
        return;
    };
    let dialer = server.dialer();
    let (stream, status) = handshake(&dialer, server.addr, &EchOffer::Grease).await.unwrap();
    // The server answers GREASE with retry configurations, which a GREASE
    // client ignores.
    assert_eq!(status, EchStatus::Grease);
    assert_eq!(
        server.seen().await,
        Seen {
            sni: Some(INNER.into()),
            ech_accepted: false
        }
    );
    echoes(stream).await;

    let (_, status) = handshake(&dialer, server.addr, &EchOffer::Off).await.unwrap();
    assert_eq!(status, EchStatus::NotOffered);
}

#[tokio::test]
async fn a_rejection_carries_the_retry_configs_which_work() {
    let Some(mut server) = EchServer::start().await else {
        return;
    };
    let dialer = server.dialer();
    let stale = EchOffer::Config(server.stale.clone());
    let err = handshake(&dialer, server.addr, &stale).await.unwrap_err();
    let retry = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<EchRetry>())
        .unwrap_or_else(|| panic!("no retry configurations in `{err}`"))
        .clone();
    assert_eq!(retry.0, server.config);
    // The server could not decrypt, so it went on with the outer
    // ClientHello, and its certificate for the public name.
    assert_eq!(
        server.seen().await,
        Seen {
            sni: Some(PUBLIC.into()),
            ech_accepted: false
        }
    );

    let (stream, status) = handshake(&dialer, server.addr, &EchOffer::Config(retry.0))
        .await
        .unwrap();
    assert_eq!(status, EchStatus::Accepted);
    assert_eq!(server.seen().await.sni.as_deref(), Some(INNER));
    echoes(stream).await;
}

#[tokio::test]
async fn an_unusable_config_list_falls_back_to_grease() {
    let Some(mut server) = EchServer::start().await else {
        return;
    };
    let dialer = server.dialer();
    let junk = EchOffer::Config(b"\x00\x05junk"[..].into());
    let (stream, status) = handshake(&dialer, server.addr, &junk).await.unwrap();
    assert_eq!(status, EchStatus::Grease);
    assert_eq!(server.seen().await.sni.as_deref(), Some(INNER));
    echoes(stream).await;
}

/// The testbed's rustls server knows no ECH; its certificate covers
/// `*.wsgate.test`, the public name included.
fn ech_unaware_server() -> wsgate_testbed::TestbedHandle {
    let dir = std::env::temp_dir().join(format!("wsgate-ech-unaware-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    spawn_in_thread(Config {
        v6: Behaviour::Ok,
        v4: Behaviour::Ok,
        tls: true,
        cert_dir: Some(dir),
        ..Config::default()
    })
    .expect("start testbed")
}

#[tokio::test]
async fn an_ech_unaware_server() {
    let tb = ech_unaware_server();
    let dialer = dialer_trusting(tb.ca_path().unwrap());
    let addr: SocketAddr = ([127, 0, 0, 1], tb.port()).into();

    // GREASE: the server ignores the extension.
    let (_, status) = handshake(&dialer, addr, &EchOffer::Grease).await.unwrap();
    assert_eq!(status, EchStatus::Grease);

    // Real ECH: the server answers the outer ClientHello, whose name it
    // has a certificate for, but sends no retry configurations; the client
    // refuses the connection (the server proved only the public name),
    // with a plain TLS error.
    let offer = EchOffer::Config(config_list(0xfe0d, PUBLIC));
    let err = handshake(&dialer, addr, &offer).await.unwrap_err();
    assert!(
        err.get_ref().and_then(|e| e.downcast_ref::<EchRetry>()).is_none(),
        "{err}"
    );
    let rustls_error = err.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>());
    assert!(
        matches!(
            rustls_error,
            Some(rustls::Error::PeerIncompatible(
                rustls::PeerIncompatible::ServerRejectedEncryptedClientHello(None)
            ))
        ),
        "{err}"
    );
    tb.stop();
}
