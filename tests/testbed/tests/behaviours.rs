//! Each behaviour, observed from a real client over loopback.
//!
//! Only `127.0.0.1` and `[::1]` are ever contacted. Every wait is under a
//! timeout and every polling loop has a fixed number of rounds.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, Message};
use wsgate_testbed::{Behaviour, Config, Counts, Testbed};

/// Bound for anything that should happen promptly on loopback.
const PROMPT: Duration = Duration::from_secs(5);

/// How long a stalled step must stay unfinished to count as stalled.
const STALL: Duration = Duration::from_millis(500);

fn v6(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv6Addr::LOCALHOST, port))
}

fn v4(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

async fn start(v6: Behaviour, v4: Behaviour, tls: bool) -> Testbed {
    Testbed::start(Config {
        v6,
        v4,
        tls,
        ..Config::default()
    })
    .await
    .expect("testbed starts")
}

fn connector(ca_pem: &str) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.expect("CA PEM parses"))
            .expect("CA is a valid trust anchor");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

async fn tcp(addr: SocketAddr) -> TcpStream {
    timeout(PROMPT, TcpStream::connect(addr))
        .await
        .expect("TCP connect is prompt")
        .expect("TCP connect succeeds")
}

async fn tls(testbed: &Testbed, addr: SocketAddr, name: &'static str) -> tokio_rustls::client::TlsStream<TcpStream> {
    let stream = tcp(addr).await;
    let server_name = ServerName::try_from(name).expect("valid server name");
    let tls = timeout(PROMPT, connector(testbed.ca_pem()).connect(server_name, stream))
        .await
        .expect("TLS handshake is prompt")
        .expect("TLS handshake succeeds against the generated CA");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    tls
}

async fn upgrade<S>(url: String, stream: S) -> Result<WebSocketStream<S>, tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    timeout(PROMPT, tokio_tungstenite::client_async(url, stream))
        .await
        .expect("upgrade answer is prompt")
        .map(|(ws, _response)| ws)
}

async fn next_message<S>(ws: &mut WebSocketStream<S>) -> Message
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    timeout(PROMPT, ws.next())
        .await
        .expect("echo is prompt")
        .expect("stream still open")
        .expect("valid message")
}

/// Text, binary, ping and close, each answered in kind.
async fn assert_echoes<S>(mut ws: WebSocketStream<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    ws.send(Message::text("hello")).await.expect("send text");
    assert_eq!(next_message(&mut ws).await, Message::text("hello"));
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .expect("send binary");
    assert_eq!(next_message(&mut ws).await, Message::binary(vec![0u8, 1, 2, 255]));
    ws.send(Message::Ping(b"p".to_vec().into())).await.expect("send ping");
    assert_eq!(next_message(&mut ws).await, Message::Pong(b"p".to_vec().into()));
    ws.send(Message::Close(None)).await.expect("send close");
    assert!(matches!(next_message(&mut ws).await, Message::Close(_)));
    // After the close handshake the stream ends.
    let end = timeout(PROMPT, ws.next()).await.expect("end is prompt");
    assert!(end.is_none() || matches!(end, Some(Err(_))), "unexpected {end:?}");
}

/// Polls `f` until it holds, for at most about [`PROMPT`].
async fn eventually(what: &str, f: impl Fn() -> bool) {
    for _ in 0..250 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what} did not happen in time");
}

#[tokio::test]
async fn ok_echoes_over_wss_on_both_families() {
    let testbed = start(Behaviour::Ok, Behaviour::Ok, true).await;
    let port = testbed.port();

    let ws = upgrade(
        format!("wss://localhost:{port}/"),
        tls(&testbed, v6(port), "localhost").await,
    )
    .await
    .expect("v6 upgrade");
    assert_echoes(ws).await;
    assert_eq!(testbed.upgrades(), Counts { v6: 1, v4: 0 });
    assert_eq!(testbed.connections(), Counts { v6: 1, v4: 0 });

    let ws = upgrade(
        format!("wss://wsgate.test:{port}/"),
        tls(&testbed, v4(port), "wsgate.test").await,
    )
    .await
    .expect("v4 upgrade");
    assert_echoes(ws).await;
    assert_eq!(testbed.upgrades(), Counts { v6: 1, v4: 1 });
    assert_eq!(testbed.connections(), Counts { v6: 1, v4: 1 });

    // The wildcard and IP SANs validate too.
    let tls_stream = tls(&testbed, v4(port), "case-1.wsgate.test").await;
    drop(tls_stream);
    let tls_stream = tls(&testbed, v6(port), "::1").await;
    drop(tls_stream);
    let tls_stream = tls(&testbed, v4(port), "127.0.0.1").await;
    drop(tls_stream);

    testbed.shutdown().await;
}

#[tokio::test]
async fn plain_mode_echoes_over_ws_on_both_families() {
    let testbed = start(Behaviour::Ok, Behaviour::Ok, false).await;
    let port = testbed.port();
    for (addr, host) in [(v6(port), "[::1]"), (v4(port), "127.0.0.1")] {
        let ws = upgrade(format!("ws://{host}:{port}/"), tcp(addr).await)
            .await
            .expect("plain upgrade");
        assert_echoes(ws).await;
    }
    assert_eq!(testbed.upgrades(), Counts { v6: 1, v4: 1 });
    assert_eq!(testbed.connections(), Counts { v6: 1, v4: 1 });
    testbed.shutdown().await;
}

#[tokio::test]
async fn refused_resets_that_family_only() {
    for refused_v6 in [true, false] {
        let (b6, b4) = if refused_v6 {
            (Behaviour::Refused, Behaviour::Ok)
        } else {
            (Behaviour::Ok, Behaviour::Refused)
        };
        let testbed = start(b6, b4, true).await;
        let port = testbed.port();
        let (refused, served, name) = if refused_v6 {
            (v6(port), v4(port), "wsgate.test")
        } else {
            (v4(port), v6(port), "localhost")
        };

        let err = timeout(PROMPT, TcpStream::connect(refused))
            .await
            .expect("a refusal is prompt")
            .expect_err("connect is refused");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{refused}: {err}");

        let ws = upgrade(format!("wss://{name}:{port}/"), tls(&testbed, served, name).await)
            .await
            .expect("the other family serves");
        assert_echoes(ws).await;
        let expected = if refused_v6 {
            Counts { v6: 0, v4: 1 }
        } else {
            Counts { v6: 1, v4: 0 }
        };
        assert_eq!(testbed.upgrades(), expected);
        assert_eq!(testbed.connections(), expected);
        testbed.shutdown().await;
    }
}

#[tokio::test]
async fn blackhole_connects_never_complete() {
    for blackhole_v6 in [true, false] {
        let (b6, b4) = if blackhole_v6 {
            (Behaviour::Blackhole, Behaviour::Ok)
        } else {
            (Behaviour::Ok, Behaviour::Blackhole)
        };
        let testbed = start(b6, b4, true).await;
        let port = testbed.port();
        let (hole, served) = if blackhole_v6 {
            (v6(port), v4(port))
        } else {
            (v4(port), v6(port))
        };

        let attempt = timeout(STALL, TcpStream::connect(hole)).await;
        assert!(attempt.is_err(), "connect to {hole} finished: {attempt:?}");

        // The other family is unaffected.
        let ws = upgrade(
            format!("wss://localhost:{port}/"),
            tls(&testbed, served, "localhost").await,
        )
        .await
        .expect("the other family serves");
        assert_echoes(ws).await;
        let expected = if blackhole_v6 {
            Counts { v6: 0, v4: 1 }
        } else {
            Counts { v6: 1, v4: 0 }
        };
        assert_eq!(testbed.connections(), expected);
        testbed.shutdown().await;
    }
}

#[tokio::test]
async fn tls_stall_accepts_tcp_but_never_completes_tls() {
    let testbed = start(Behaviour::TlsStall, Behaviour::TlsStall, true).await;
    let port = testbed.port();
    for (addr, family_is_v6) in [(v6(port), true), (v4(port), false)] {
        let stream = tcp(addr).await;
        let server_name = ServerName::try_from("localhost").expect("valid server name");
        let handshake = timeout(STALL, connector(testbed.ca_pem()).connect(server_name, stream)).await;
        assert!(
            handshake.is_err(),
            "TLS handshake on {addr} finished: {:?}",
            handshake.map(|r| r.is_ok())
        );
        eventually("the stalled connection is counted", || {
            let c = testbed.connections();
            if family_is_v6 { c.v6 == 1 } else { c.v4 == 1 }
        })
        .await;
    }
    assert_eq!(testbed.connections(), Counts { v6: 1, v4: 1 });
    assert_eq!(testbed.upgrades(), Counts::default());
    testbed.shutdown().await;
}

#[tokio::test]
async fn tls_stall_in_plain_mode_never_answers_the_upgrade() {
    let testbed = start(Behaviour::Ok, Behaviour::TlsStall, false).await;
    let port = testbed.port();
    let stream = tcp(v4(port)).await;
    let attempt = timeout(
        STALL,
        tokio_tungstenite::client_async(format!("ws://127.0.0.1:{port}/"), stream),
    )
    .await;
    assert!(attempt.is_err(), "upgrade finished: {:?}", attempt.map(|r| r.is_ok()));
    // The request did arrive, unanswered.
    eventually("the unanswered upgrade is counted", || {
        testbed.upgrades() == Counts { v6: 0, v4: 1 }
    })
    .await;
    testbed.shutdown().await;
}

#[tokio::test]
async fn upgrade_503_answers_503_and_counts_the_request() {
    let testbed = start(Behaviour::Upgrade503, Behaviour::Ok, true).await;
    let port = testbed.port();
    let err = upgrade(
        format!("wss://localhost:{port}/"),
        tls(&testbed, v6(port), "localhost").await,
    )
    .await
    .expect_err("upgrade is refused");
    match err {
        tungstenite::Error::Http(response) => {
            assert_eq!(response.status(), 503);
            assert_eq!(
                response.headers().get("content-length").map(|v| v.as_bytes()),
                Some(&b"0"[..])
            );
            assert_eq!(
                response.headers().get("connection").map(|v| v.as_bytes()),
                Some(&b"close"[..])
            );
        }
        other => panic!("expected an HTTP 503, got {other:?}"),
    }
    assert_eq!(testbed.upgrades(), Counts { v6: 1, v4: 0 });
    assert_eq!(testbed.connections(), Counts { v6: 1, v4: 0 });
    testbed.shutdown().await;
}

#[tokio::test]
async fn slow_upgrade_answers_101_after_the_delay() {
    let delay = Duration::from_millis(400);
    let testbed = Testbed::start(Config {
        v6: Behaviour::Ok,
        v4: Behaviour::SlowUpgrade,
        slow_upgrade: delay,
        ..Config::default()
    })
    .await
    .expect("testbed starts");
    let port = testbed.port();
    let stream = tls(&testbed, v4(port), "wsgate.test").await;
    let started = Instant::now();
    let ws = upgrade(format!("wss://wsgate.test:{port}/"), stream)
        .await
        .expect("slow upgrade succeeds");
    // The delay starts after the request arrives, so the client waits at
    // least that long (minus timer granularity, hence the margin).
    assert!(
        started.elapsed() >= delay - Duration::from_millis(20),
        "101 after {:?}",
        started.elapsed()
    );
    assert_eq!(testbed.upgrades(), Counts { v6: 0, v4: 1 });
    assert_echoes(ws).await;
    testbed.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_connections_and_listeners() {
    let testbed = start(Behaviour::Ok, Behaviour::TlsStall, false).await;
    let port = testbed.port();
    let mut ws = upgrade(format!("ws://[::1]:{port}/"), tcp(v6(port)).await)
        .await
        .expect("upgrade");
    let stalled = tcp(v4(port)).await;
    eventually("both connections accepted", || {
        testbed.connections() == Counts { v6: 1, v4: 1 }
    })
    .await;

    timeout(PROMPT, testbed.shutdown()).await.expect("shutdown is prompt");

    // The open connections see their end...
    let end = timeout(PROMPT, ws.next()).await.expect("close seen promptly");
    assert!(end.is_none() || matches!(end, Some(Err(_))), "unexpected {end:?}");
    let mut buf = [0u8; 16];
    let read = timeout(PROMPT, async {
        stalled.readable().await?;
        stalled.try_read(&mut buf)
    })
    .await
    .expect("EOF seen promptly");
    assert!(matches!(read, Ok(0) | Err(_)), "unexpected {read:?}");
    // ...and nothing listens any more.
    for addr in [v6(port), v4(port)] {
        let err = timeout(PROMPT, TcpStream::connect(addr))
            .await
            .expect("prompt")
            .expect_err("listener closed");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    }
}

#[tokio::test]
async fn cert_dir_receives_the_ca() {
    let dir = std::env::temp_dir().join(format!("wsgate-testbed-certs-{}", std::process::id()));
    let testbed = Testbed::start(Config {
        cert_dir: Some(dir.clone()),
        ..Config::default()
    })
    .await
    .expect("testbed starts");
    let ca_path = testbed.ca_path().expect("CA written").to_owned();
    assert_eq!(ca_path, dir.join("ca.pem"));
    let written = std::fs::read_to_string(&ca_path).expect("ca.pem readable");
    assert_eq!(written, testbed.ca_pem());
    assert!(dir.join("cert.pem").is_file() && dir.join("key.pem").is_file());
    testbed.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn behaviour_names_round_trip() {
    for b in Behaviour::ALL {
        assert_eq!(b.to_string().parse::<Behaviour>(), Ok(b));
    }
    let err = "nope".parse::<Behaviour>().expect_err("unknown name");
    assert!(err.to_string().contains("tls-stall"), "{err}");
}

#[test]
fn spawn_in_thread_serves_synchronous_clients() {
    let handle = wsgate_testbed::spawn_in_thread(Config {
        tls: false,
        ..Config::default()
    })
    .expect("testbed starts");
    let port = handle.port();
    assert!(handle.ca_pem().contains("BEGIN CERTIFICATE"));
    assert!(handle.ca_path().is_none());

    let stream = std::net::TcpStream::connect_timeout(&v4(port), PROMPT).expect("connect");
    stream.set_read_timeout(Some(PROMPT)).expect("read timeout");
    stream.set_write_timeout(Some(PROMPT)).expect("write timeout");
    let (mut ws, _) = tungstenite::client(format!("ws://127.0.0.1:{port}/"), stream).expect("upgrade");
    ws.send(Message::text("sync")).expect("send");
    assert_eq!(ws.read().expect("echo"), Message::text("sync"));
    let _ = ws.close(None);
    assert_eq!(handle.upgrades(), Counts { v6: 0, v4: 1 });
    assert_eq!(handle.connections(), Counts { v6: 0, v4: 1 });

    handle.stop();
    let err = std::net::TcpStream::connect_timeout(&v4(port), PROMPT).expect_err("stopped");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
}

/// `nagle-tickets`: the request goes out right behind the client's TLS
/// Finished; the server's tickets follow it, and its `101` waits behind them.
/// Sends the request with `quick_ack` or without, then reads the `101`, and
/// returns how long the server says it held it.
#[cfg(target_os = "linux")]
async fn nagle_tickets_hold(testbed: &Testbed, quick_ack: bool) -> Duration {
    use std::os::fd::AsRawFd;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let before = testbed.response_holds().v4.len();
    let tcp = tcp(v4(testbed.port())).await;
    // As WebSocket clients have it (wsgate too): with Nagle on, the request
    // would wait for the Finished's ACK, and the tickets carry that ACK.
    tcp.set_nodelay(true).expect("TCP_NODELAY");
    let server_name = ServerName::try_from("wsgate.test").expect("valid server name");
    let mut stream = timeout(PROMPT, connector(testbed.ca_pem()).connect(server_name, tcp))
        .await
        .expect("TLS handshake is prompt")
        .expect("TLS handshake succeeds");
    let request = format!(
        "GET / HTTP/1.1\r\nHost: wsgate.test:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        testbed.port()
    );
    stream.write_all(request.as_bytes()).await.expect("send request");
    stream.flush().await.expect("flush request");
    if quick_ack {
        let one: libc::c_int = 1;
        // SAFETY: an open TCP socket and an int option of the right size.
        let rc = unsafe {
            libc::setsockopt(
                stream.get_ref().0.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                (&raw const one).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "TCP_QUICKACK: {}", io::Error::last_os_error());
    }
    let mut head = Vec::new();
    let mut chunk = [0u8; 512];
    // A 101 is one short head: a few reads at most.
    for _ in 0..64 {
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
        let n = timeout(PROMPT, stream.read(&mut chunk))
            .await
            .expect("101 is prompt")
            .expect("read 101");
        assert!(n > 0, "closed before the 101");
        head.extend_from_slice(&chunk[..n]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    eventually("the server to record its hold", || {
        testbed.response_holds().v4.len() > before
    })
    .await;
    testbed.response_holds().v4[before]
}

/// Half of Linux's shortest delayed ACK (40 ms, TCP_ATO_MIN; its timer may
/// fire a tick early): a hold this long or longer is a delayed ACK's.
#[cfg(target_os = "linux")]
const DELAYED_ACK: Duration = Duration::from_millis(20);

#[cfg(target_os = "linux")]
#[tokio::test]
async fn nagle_tickets_holds_the_101_behind_a_delayed_ack() {
    let testbed = start(Behaviour::NagleTickets, Behaviour::NagleTickets, true).await;
    // A socket that has just written delays its ACKs, so the tickets' ACK
    // waits for the timer, and the 101 waits for the ACK. A machine busy
    // enough to stall the client between its Finished and its request
    // could let the request carry that ACK: a few tries.
    let mut holds = Vec::new();
    for _ in 0..3 {
        holds.push(nagle_tickets_hold(&testbed, false).await);
        if holds.last().is_some_and(|h| *h >= DELAYED_ACK) {
            break;
        }
    }
    assert!(
        holds.iter().any(|h| *h >= DELAYED_ACK),
        "the 101 was never held for a delayed ACK: {holds:?}"
    );

    // The same exchange with quick ACKs once the request is out: the 101
    // goes at once. Only a client stalled for 20 ms between its write and
    // its setsockopt could see otherwise: a few tries.
    let mut holds = Vec::new();
    for _ in 0..3 {
        holds.push(nagle_tickets_hold(&testbed, true).await);
        if holds.last().is_some_and(|h| *h < DELAYED_ACK) {
            break;
        }
    }
    assert!(
        holds.iter().any(|h| *h < DELAYED_ACK),
        "the 101 waited for a delayed ACK although the client acknowledged at once: {holds:?}"
    );
    testbed.shutdown().await;
}

#[tokio::test]
async fn nagle_tickets_echoes_like_ok() {
    let testbed = start(Behaviour::NagleTickets, Behaviour::NagleTickets, true).await;
    let port = testbed.port();
    for addr in [v6(port), v4(port)] {
        let stream = tls(&testbed, addr, "wsgate.test").await;
        let ws = upgrade(format!("wss://wsgate.test:{port}/"), stream)
            .await
            .expect("upgrade succeeds");
        assert_echoes(ws).await;
    }
    testbed.shutdown().await;
}
