//! `wsgate serve` end to end: the binary as a process, independent clients
//! (tokio-tungstenite, raw sockets) on loopback.

mod common;

use common::served::{EXCHANGE_LIMIT, Served};
use common::{plugin, tempdir};
use futures_util::{SinkExt, StreamExt};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

fn probe() -> String {
    plugin("gateway-probe").display().to_string()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `f` on a fresh runtime, bounded by [`EXCHANGE_LIMIT`].
fn bounded<F: std::future::Future>(f: F) -> F::Output {
    runtime().block_on(async {
        tokio::time::timeout(EXCHANGE_LIMIT, f)
            .await
            .expect("the exchange took too long")
    })
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str) -> Ws {
    let (ws, response) = tokio_tungstenite::connect_async(url).await.expect("upgrade");
    assert_eq!(response.status(), 101);
    ws
}

type Stream<S> = tokio_tungstenite::WebSocketStream<S>;

async fn echo_once<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(ws: &mut Stream<S>, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
    let answer = ws.next().await.expect("an answer").expect("a message");
    assert_eq!(answer, Message::text(text));
}

/// The next message that is not a Ping or Pong.
async fn next_data<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    ws: &mut Stream<S>,
) -> Option<Result<Message, tungstenite::Error>> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => return other,
        }
    }
}

/// Sends `request` on a raw connection and returns all the gateway answered
/// before it closed.
fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(EXCHANGE_LIMIT)).unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

fn status_of(answer: &str) -> &str {
    answer.split_whitespace().nth(1).unwrap_or("(no answer)")
}

#[test]
fn a_session_echoes_over_ws() {
    let served = Served::start(&[&probe(), "--listen", "127.0.0.1:0"], 1);
    bounded(async {
        let mut ws = connect(&served.url("/echo")).await;
        echo_once(&mut ws, "hello").await;
        ws.send(Message::binary(vec![0u8, 1, 2, 255])).await.unwrap();
        assert_eq!(
            next_data(&mut ws).await.unwrap().unwrap(),
            Message::binary(vec![0u8, 1, 2, 255])
        );
        ws.close(None).await.unwrap();
        while ws.next().await.is_some() {}
    });
    served.wait_for("gateway-probe: session /echo");
}

#[test]
fn listeners_on_both_families() {
    let served = Served::start(&[&probe(), "--listen", "127.0.0.1:0", "--listen", "[::1]:0"], 2);
    assert!(served.addrs[0].is_ipv4() && served.addrs[1].is_ipv6());
    bounded(async {
        for addr in &served.addrs {
            let mut ws = connect(&format!("ws://{addr}/echo")).await;
            echo_once(&mut ws, &format!("over {addr}")).await;
        }
    });
}

/// A CA and two server certificates signed by it, for `a.wsgate.test` and
/// `b.wsgate.test`, written to `dir`.
fn two_certificates(dir: &Path) -> (String, [(PathBuf, PathBuf); 2]) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::default();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let pair = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![format!("{name}.wsgate.test")])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let (cert_path, key_path) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    };
    (ca.pem(), [pair("a"), pair("b")])
}

/// A TLS connection to `addr` asking for `name` in SNI, trusting only
/// `ca_pem`, then a WebSocket upgrade for `path`.
async fn connect_tls(
    addr: SocketAddr,
    name: &str,
    ca_pem: &str,
    path: &str,
) -> Stream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let server_name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .expect("TLS handshake: the certificate for the SNI name");
    let url = format!("wss://{name}{path}");
    let (ws, response) = tokio_tungstenite::client_async(url, tls).await.expect("upgrade");
    assert_eq!(response.status(), 101);
    ws
}

#[test]
fn wss_picks_the_certificate_by_sni() {
    let dir = tempdir("serve-tls");
    let (ca, [(a_cert, a_key), (b_cert, b_key)]) = two_certificates(&dir);
    let config = dir.join("wsgate.toml");
    std::fs::write(
        &config,
        format!(
            "[[listener]]\naddress = \"127.0.0.1:0\"\ntls = [{{ cert = {a_cert:?}, key = {a_key:?} }}, {{ cert = {b_cert:?}, key = {b_key:?} }}]\n\n\
             [[route]]\nname = \"probe\"\nplugin = {:?}\n",
            probe()
        ),
    )
    .unwrap();
    let served = Served::start(&["--config", config.to_str().unwrap()], 1);
    assert!(
        served.stderr().contains("wss://, 2 certificates by SNI"),
        "{}",
        served.stderr()
    );
    bounded(async {
        for name in ["a.wsgate.test", "b.wsgate.test"] {
            let mut ws = connect_tls(served.addr(), name, &ca, "/info").await;
            let info = next_data(&mut ws).await.unwrap().unwrap();
            assert_eq!(info, Message::text(format!("route=probe sni={name} path=/info")));
            echo_once(&mut ws, "over TLS").await;
        }
    });
}

#[test]
fn wss_with_one_certificate_from_the_command_line() {
    let dir = tempdir("serve-tls-flag");
    let (ca, [(cert, key), _]) = two_certificates(&dir);
    let served = Served::start(
        &[
            &probe(),
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        1,
    );
    bounded(async {
        let mut ws = connect_tls(served.addr(), "a.wsgate.test", &ca, "/echo").await;
        echo_once(&mut ws, "hello").await;
    });
}

#[test]
fn routes_match_host_and_path_first_match_first() {
    let dir = tempdir("serve-routes");
    let config = dir.join("wsgate.toml");
    let p = probe();
    std::fs::write(
        &config,
        format!(
            "[[listener]]\naddress = \"127.0.0.1:0\"\n\n\
             [[route]]\nname = \"chat\"\npath = \"/chat\"\nplugin = {p:?}\n\n\
             [[route]]\nname = \"by-host\"\nhost = \"*.wsgate.test\"\nplugin = {p:?}\n\n\
             [[route]]\nname = \"local\"\nhost = \"localhost\"\npath = \"/\"\nplugin = {p:?}\n"
        ),
    )
    .unwrap();
    let served = Served::start(&["--config", config.to_str().unwrap()], 1);
    // The probe's first message at `…/info` names its route.
    let route_of = |host: &str, path: &str| -> String {
        let request = upgrade_request(path).replace("Host: localhost", &format!("Host: {host}"));
        let mut stream = TcpStream::connect(served.addr()).unwrap();
        stream.set_read_timeout(Some(EXCHANGE_LIMIT)).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let answer = read_head(&mut stream);
        if !answer.starts_with("HTTP/1.1 101") {
            return format!("status {}", status_of(&answer));
        }
        let mut header = [0u8; 2];
        stream.read_exact(&mut header).unwrap();
        assert_eq!(header[0], 0x81, "an unmasked text frame");
        let mut payload = vec![0u8; usize::from(header[1])];
        stream.read_exact(&mut payload).unwrap();
        let text = String::from_utf8(payload).unwrap();
        text.split_whitespace().next().unwrap().to_owned()
    };
    assert_eq!(route_of("x.wsgate.test", "/chat/room/info"), "route=chat");
    assert_eq!(route_of("x.wsgate.test", "/info"), "route=by-host");
    assert_eq!(route_of("localhost", "/info"), "route=local");
    assert_eq!(route_of("elsewhere.test", "/info"), "status 404");
}

/// Reads a response head, byte by byte (what follows is the session's).
fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        if stream.read(&mut byte).unwrap_or(0) == 0 {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[test]
fn the_host_answers_what_no_plugin_should_see() {
    let served = Served::start(
        &[
            &probe(),
            "--listen",
            "127.0.0.1:0",
            "--max-head",
            "1",
            "--head-timeout",
            "300",
            "--max-sessions",
            "1",
        ],
        1,
    );
    let addr = served.addr();
    // 400: not HTTP at all, and HTTP/1.1 without a Host.
    let answer = raw_exchange(addr, b"\x16\x03\x01\x00\x05hello\r\n\r\n");
    assert_eq!(status_of(&answer), "400", "{answer}");
    let answer = raw_exchange(addr, b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n");
    assert_eq!(status_of(&answer), "400", "{answer}");
    // Two Hosts, or one that names none.
    for hosts in ["Host: a.test\r\nHost: b.test\r\n", "Host: [::1\r\n"] {
        let answer = raw_exchange(addr, format!("GET / HTTP/1.1\r\n{hosts}\r\n").as_bytes());
        assert_eq!(status_of(&answer), "400", "{hosts:?}: {answer}");
    }
    // 431: a head over 1 KiB.
    let long = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(2000)
    );
    let answer = raw_exchange(addr, long.as_bytes());
    assert_eq!(status_of(&answer), "431", "{answer}");
    // 408: half a head, then silence.
    let answer = raw_exchange(addr, b"GET / HTTP/1.1\r\nHost: local");
    assert_eq!(status_of(&answer), "408", "{answer}");
    // 503: the one session there may be is open.
    let served_ref = &served;
    bounded(async move {
        let mut first = connect(&served_ref.url("/echo")).await;
        echo_once(&mut first, "holding the only session").await;
        let answer = tokio::task::spawn_blocking(move || raw_exchange(addr, upgrade_request("/echo").as_bytes()))
            .await
            .unwrap();
        assert_eq!(status_of(&answer), "503", "{answer}");
        first.close(None).await.unwrap();
        while first.next().await.is_some() {}
    });
    // Only the one real session reached the plugin.
    let log = served.wait_for("gateway-probe: session /echo");
    assert_eq!(log.matches("gateway-probe: session").count(), 1, "{log}");
}

#[test]
fn a_session_slot_comes_back_when_its_client_vanishes_mid_message() {
    let served = Served::start(&[&probe(), "--listen", "127.0.0.1:0", "--max-sessions", "1"], 1);
    let addr = served.addr();
    {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(EXCHANGE_LIMIT)).unwrap();
        stream.write_all(upgrade_request("/echo").as_bytes()).unwrap();
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 101");
        // A masked text frame announcing 1000 bytes, then 10 of them, then
        // the client is gone.
        let mut frame = vec![0x81, 0x80 | 126, 0x03, 0xe8, 1, 2, 3, 4];
        frame.extend_from_slice(&[b'x' ^ 1; 10]);
        stream.write_all(&frame).unwrap();
    }
    // The session ends; the next client gets the slot.
    let started = Instant::now();
    loop {
        let answer = bounded(async { tokio_tungstenite::connect_async(served.url("/echo")).await.map(|_| ()) });
        if answer.is_ok() {
            break;
        }
        assert!(
            started.elapsed() < EXCHANGE_LIMIT,
            "the slot never came back: {}",
            served.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads until a Close frame, returning its code.
async fn close_code(ws: &mut Ws) -> Option<CloseCode> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("expected a Close, got {e}"),
            None => return None,
        }
    }
}

#[test]
fn a_trap_ends_its_session_only() {
    let mut served = Served::start(&[&probe(), "--listen", "127.0.0.1:0"], 1);
    bounded(async {
        let mut steady = connect(&served.url("/echo")).await;
        echo_once(&mut steady, "before").await;

        let mut doomed = connect(&served.url("/trap-after-upgrade")).await;
        assert_eq!(close_code(&mut doomed).await, Some(CloseCode::Error));

        // Before the upgrade: no answer, the connection is reset or closed.
        let early = tokio_tungstenite::connect_async(served.url("/trap-before-upgrade")).await;
        assert!(early.is_err(), "a trapped plugin's client got an upgrade");

        echo_once(&mut steady, "after").await;
    });
    // In the middle of a frame: no Close of the host's after half a frame,
    // the connection is reset with the frame unfinished.
    let mut stream = TcpStream::connect(served.addr()).unwrap();
    stream.set_read_timeout(Some(EXCHANGE_LIMIT)).unwrap();
    stream.write_all(upgrade_request("/trap-mid-frame").as_bytes()).unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut rest = Vec::new();
    let end = stream.read_to_end(&mut rest);
    assert_eq!(rest, [0x82, 126, 0x01, 0x00, 1, 2, 3], "only the plugin's bytes");
    let end = end.expect_err("the connection ends with a reset, not a FIN");
    assert_eq!(end.kind(), std::io::ErrorKind::ConnectionReset, "{end}");
    assert!(served.alive());
    let log = served.wait_for("trap after the upgrade");
    assert!(log.contains("plugin trapped"), "{log}");
}

#[test]
fn a_plugin_over_its_memory_or_cpu_limit_is_stopped() {
    let mut served = Served::start(
        &[
            &probe(),
            "--listen",
            "127.0.0.1:0",
            "--memory",
            "32",
            "--cpu-time",
            "300",
        ],
        1,
    );
    bounded(async {
        let mut hog = connect(&served.url("/memory")).await;
        assert_eq!(close_code(&mut hog).await, Some(CloseCode::Error));
        let mut spinner = connect(&served.url("/cpu")).await;
        assert_eq!(close_code(&mut spinner).await, Some(CloseCode::Error));
        let mut fine = connect(&served.url("/echo")).await;
        echo_once(&mut fine, "still serving").await;
    });
    assert!(served.alive());
    let log = served.wait_for("CPU");
    assert!(log.contains("ran out of memory"), "{log}");
}

/// Runs `wsgate serve ARGS` expecting it to stop at start in one line.
fn start_failure(args: &[&str], needle: &str) {
    let mut all = vec!["serve".to_owned()];
    all.extend(args.iter().map(|s| s.to_string()));
    let run = common::wsgate(all);
    run.assert_one_line_failure(needle);
}

#[test]
fn bad_configuration_stops_the_gateway_at_start() {
    let dir = tempdir("serve-bad");
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let p = probe();
    let missing = write(
        "missing.toml",
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[[route]]\nplugin = \"nowhere.wasm\"\n".into(),
    );
    start_failure(&["--config", &missing], "nowhere.wasm");
    let twice = write(
        "twice.toml",
        format!(
            "[[listener]]\naddress = \"127.0.0.1:9\"\n[[listener]]\naddress = \"127.0.0.1:9\"\n[[route]]\nplugin = {p:?}\n"
        ),
    );
    start_failure(&["--config", &twice], "two listeners on 127.0.0.1:9");
    let (_, [(a_cert, _), (_, b_key)]) = two_certificates(&dir);
    start_failure(
        &[
            &p,
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            a_cert.to_str().unwrap(),
            "--tls-key",
            b_key.to_str().unwrap(),
        ],
        "does not go with key",
    );
    let unknown = write(
        "unknown.toml",
        "[[route]]\nplugin = \"x.wasm\"\ncolour = \"blue\"\n".into(),
    );
    start_failure(&["--config", &unknown], "colour");
    start_failure(&[&p], "no listener");
    // A client plugin is not served, a gateway plugin not run.
    start_failure(
        &[&plugin("echo-client").display().to_string(), "--listen", "127.0.0.1:0"],
        "is a client plugin",
    );
    let run = common::wsgate(["run", &p]);
    run.assert_one_line_failure("is a gateway plugin");
}

/// `ws-proxy` in front of a dual-stack testbed whose IPv6 path fails as
/// `v6` says: the client gets its echoes through IPv4, and the upstream saw
/// one upgrade that it answered with a 101.
fn proxy_through(v6: common::Behaviour) -> wsgate_testbed::Counts {
    let tb = common::testbed(v6, common::Behaviour::Ok, true);
    let port = tb.port();
    let upstream = format!("wss://wsgate.test:{port}/");
    let resolve = format!("wsgate.test:{port}:[::1],127.0.0.1");
    let allow = format!("wsgate.test:{port}");
    let ca = tb.ca_path().unwrap().display().to_string();
    let proxy = plugin("ws-proxy").display().to_string();
    let served = Served::start(
        &[
            &proxy,
            "--listen",
            "127.0.0.1:0",
            "--allow",
            &allow,
            "--allow-private",
            "--resolve",
            &resolve,
            "--ca-cert",
            &ca,
            "--attempt-delay",
            "100",
            "--",
            &upstream,
        ],
        1,
    );
    bounded(async {
        let mut ws = connect(&served.url("/")).await;
        for text in ["one", "two", "three"] {
            echo_once(&mut ws, text).await;
        }
        ws.close(None).await.unwrap();
        while ws.next().await.is_some() {}
    });
    // The proxy's count line, once its session is over.
    let log = served.wait_for("ws-proxy:");
    assert!(log.contains("3 messages"), "{log}");
    let upgrades = tb.upgrades();
    tb.stop();
    upgrades
}

#[test]
fn ws_proxy_with_ipv6_blackholed() {
    let upgrades = proxy_through(common::Behaviour::Blackhole);
    assert_eq!((upgrades.v6, upgrades.v4), (0, 1));
}

#[test]
fn ws_proxy_with_ipv6_tls_stalled() {
    let upgrades = proxy_through(common::Behaviour::TlsStall);
    assert_eq!((upgrades.v6, upgrades.v4), (0, 1));
}

#[test]
fn ws_proxy_with_ipv6_answering_503() {
    // The 503 is the one upgrade IPv6 saw; the SDK falls back to IPv4,
    // whose 101 is the only upgrade that succeeded.
    let upgrades = proxy_through(common::Behaviour::Upgrade503);
    assert_eq!((upgrades.v6, upgrades.v4), (1, 1));
}

#[test]
fn the_gateways_plugin_memory_bounds_all_sessions_together() {
    let mut served = Served::start(
        &[
            &probe(),
            "--listen",
            "127.0.0.1:0",
            "--memory",
            "256",
            "--max-plugin-memory",
            "24",
        ],
        1,
    );
    bounded(async {
        let mut steady = connect(&served.url("/echo")).await;
        echo_once(&mut steady, "before").await;
        // Within its own 256 MiB, beyond the 24 MiB all sessions share.
        let mut hog = connect(&served.url("/memory")).await;
        assert_eq!(close_code(&mut hog).await, Some(CloseCode::Error));
        echo_once(&mut steady, "after").await;
    });
    assert!(served.alive());
    served.wait_for("the gateway's plugin memory (24 MiB, all instances together) is in use");
}

/// Python's `websockets` (another independent client) as `make test`
/// installs it under `build/py`, or as the system has it.
#[test]
fn python_websockets_client_echoes_through_the_gateway() {
    let site = common::root().join("build/py");
    let python_path = std::env::join_paths([site.as_path()]).unwrap();
    let has_websockets = Command::new("python3")
        .args(["-c", "import websockets.sync.client"])
        .env("PYTHONPATH", &python_path)
        .status()
        .is_ok_and(|s| s.success());
    if !has_websockets {
        eprintln!("skipped: no Python `websockets` (make test installs it under build/py)");
        return;
    }
    let served = Served::start(&[&probe(), "--listen", "127.0.0.1:0"], 1);
    let script = r#"
import sys
from websockets.sync.client import connect
with connect(sys.argv[1], open_timeout=20, close_timeout=5, compression=None) as ws:
    for text in ["hello", "from python", "\U0001F980"]:
        ws.send(text)
        print(ws.recv(timeout=20))
    ws.send(b"\x00\x01\xff")
    print(ws.recv(timeout=20).hex())
"#;
    let mut command = Command::new("python3");
    command
        .args(["-c", script, &served.url("/echo")])
        .env("PYTHONPATH", &python_path);
    let run = common::run_bounded(command);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.lines(), ["hello", "from python", "🦀", "0001ff"]);
}

#[test]
fn the_admin_listener_is_on_its_own_flag() {
    let served = Served::start(
        &[&probe(), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
        1,
    );
    let log = served.wait_for("wsgate: admin on http://");
    let admin: SocketAddr = log
        .split("wsgate: admin on http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no admin address in:\n{log}"));
    let mut stream = TcpStream::connect(admin).unwrap();
    stream.set_read_timeout(Some(EXCHANGE_LIMIT)).unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nok\n"), "{answer}");
    // The clients' listener is not the admin one.
    assert_ne!(admin, served.addr());
}
