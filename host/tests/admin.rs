//! The gateway's admin listener, through the library: its `/metrics` after
//! scripted sessions, each counter moved by exactly what happened, and its
//! health endpoints.
//!
//! Built plugins are needed (`make plugins`); each test runs a gateway in
//! this process and talks to it over loopback.

mod common;

use common::in_process::*;
use common::*;
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wsgate_host::{ConnectConfig, Gateway, Settings};

/// A gateway serving the probe plugin as route `probe` for the Host
/// `127.0.0.1`, at most two sessions at once, 16 MiB and 300 ms of CPU an
/// instance, with an admin listener; serving in the background of the current runtime.
/// Its client address and its admin address.
fn start() -> (SocketAddr, SocketAddr) {
    let probe = plugin("gateway-probe");
    let toml = format!(
        "[serve]\nmax-sessions = 2\nidle-timeout = 0\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [limits]\nmemory = 16\ncpu-time = 300\nrun-time = 0\n\n\
         [[listener]]\naddress = \"127.0.0.1:0\"\n\n\
         [[route]]\nname = \"probe\"\nhost = \"127.0.0.1\"\nplugin = {:?}\n",
        probe.display().to_string()
    );
    let settings = Settings::from_toml(&toml, Path::new("/")).expect("settings");
    let config = ConnectConfig::builder().build().expect("connect config");
    let gateway = Gateway::bind(&settings, config, Some(&cache_dir()), false).expect("gateway");
    let addr = gateway.addresses()[0];
    let admin = gateway.admin_address().expect("an admin listener");
    assert!(
        gateway
            .describe()
            .iter()
            .any(|l| l.starts_with(&format!("admin on http://{admin}"))),
        "{:?}",
        gateway.describe()
    );
    tokio::spawn(gateway.serve(std::future::pending()));
    (addr, admin)
}

/// Reads until the Close frame, returning its code.
async fn close_code(ws: &mut Ws) -> Option<CloseCode> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

/// Closes `ws` and reads to its end.
async fn close(mut ws: Ws) {
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}
}

/// The whole answer to a raw HTTP/1.1 request of `method` for `path`, with
/// `host` as its Host and `extra` header lines.
async fn request(addr: SocketAddr, method: &str, path: &str, host: &str, extra: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// An upgrade request's whole answer.
async fn upgrade(addr: SocketAddr, host: &str) -> String {
    let extra = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
    request(addr, "GET", "/echo", host, extra).await
}

fn status(answer: &str) -> &str {
    answer.split_whitespace().nth(1).unwrap_or("")
}

/// `/metrics` once `active` sessions are open on route `probe`: a session
/// ends just after its last frame leaves, so this reads until it is
/// counted, a bounded number of times (no timing asserted).
async fn settle(admin: SocketAddr, active: f64) -> String {
    let mut text = metrics(admin).await;
    for _ in 0..500 {
        if sample(&text, "wsgate_sessions_active{route=\"probe\"}") == Some(active) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        text = metrics(admin).await;
    }
    panic!("{active} sessions never settled:\n{text}")
}

#[test]
fn metrics_count_what_the_scripted_sessions_did() {
    bounded(async {
        let (addr, admin) = start();
        let before = metrics(admin).await;
        // The route is there before its first session.
        assert_eq!(
            sample(&before, "wsgate_sessions_total{route=\"probe\"}"),
            Some(0.0),
            "{before}"
        );
        assert_eq!(sample(&before, "wsgate_sessions_active{route=\"probe\"}"), Some(0.0));

        // A healthy session, held open.
        let mut first = connect(addr, "/echo").await;
        echo_once(&mut first, "one").await;
        // A plugin that traps after its 101: Close 1011. Its slot is
        // given back just after the Close leaves, so each faulted session
        // is waited out before the next takes the limit's second place.
        let mut trapped = connect(addr, "/trap-after-upgrade").await;
        assert_eq!(close_code(&mut trapped).await, Some(CloseCode::Error));
        settle(admin, 1.0).await;
        // A plugin over its memory limit: Close 1011, a limit.
        let mut hog = connect(addr, "/memory").await;
        assert_eq!(close_code(&mut hog).await, Some(CloseCode::Error));
        settle(admin, 1.0).await;
        // A plugin over its CPU time: the same, another limit.
        let mut spinner = connect(addr, "/cpu").await;
        assert_eq!(close_code(&mut spinner).await, Some(CloseCode::Error));
        settle(admin, 1.0).await;
        // No route for another Host: 404, no session.
        assert_eq!(status(&upgrade(addr, "elsewhere.test").await), "404");
        // A second healthy session fills the limit of two: the next is 503.
        let mut second = connect(addr, "/echo").await;
        echo_once(&mut second, "two").await;
        let now = metrics(admin).await;
        assert_eq!(
            sample(&now, "wsgate_sessions_active{route=\"probe\"}"),
            Some(2.0),
            "{now}"
        );
        assert_eq!(status(&upgrade(addr, "127.0.0.1").await), "503");
        close(first).await;
        close(second).await;

        // The two healthy sessions end just after their close handshakes.
        let after = settle(admin, 0.0).await;
        let count = |name: &str| sample(&after, name).unwrap_or_else(|| panic!("no {name} in\n{after}"));
        assert_eq!(count("wsgate_sessions_active{route=\"probe\"}"), 0.0);
        assert_eq!(count("wsgate_sessions_total{route=\"probe\"}"), 5.0);
        assert_eq!(
            count("wsgate_sessions_ended_total{route=\"probe\",outcome=\"done\"}"),
            2.0
        );
        assert_eq!(
            count("wsgate_sessions_ended_total{route=\"probe\",outcome=\"trap\"}"),
            1.0
        );
        assert_eq!(
            count("wsgate_sessions_ended_total{route=\"probe\",outcome=\"limit\"}"),
            2.0
        );
        assert_eq!(count("wsgate_limits_hit_total{kind=\"memory\"}"), 1.0);
        assert_eq!(count("wsgate_limits_hit_total{kind=\"cpu-time\"}"), 1.0);
        assert_eq!(sample(&after, "wsgate_limits_hit_total{kind=\"run-time\"}"), None);
        assert_eq!(count("wsgate_host_answers_total{status=\"404\"}"), 1.0);
        assert_eq!(count("wsgate_host_answers_total{status=\"503\"}"), 1.0);
        assert_eq!(sample(&after, "wsgate_host_answers_total{status=\"400\"}"), None);
        // The two echoes, each way; no upstream.
        assert_eq!(count("wsgate_messages_total{direction=\"from-client\"}"), 2.0);
        assert_eq!(count("wsgate_messages_total{direction=\"to-client\"}"), 2.0);
        assert_eq!(count("wsgate_messages_total{direction=\"to-upstream\"}"), 0.0);
        assert!(count("wsgate_bytes_total{direction=\"to-client\"}") >= 6.0);
        // The clients' Closes had no code; the host's, after the trap and
        // the two limits, were 1011.
        assert_eq!(
            count("wsgate_closes_total{direction=\"from-client\",code=\"1005\"}"),
            2.0
        );
        assert_eq!(count("wsgate_closes_total{direction=\"to-client\",code=\"1011\"}"), 3.0);
        assert_eq!(sample(&after, "wsgate_connects_total{outcome=\"ok\"}"), None);
        // Every session's instance was made once.
        assert_eq!(count("wsgate_instantiation_seconds_count"), 5.0);
        assert!(
            after.contains("# TYPE wsgate_instantiation_seconds histogram\n"),
            "{after}"
        );
        assert!(
            after.contains("# UNIT wsgate_instantiation_seconds seconds\n"),
            "{after}"
        );
    });
}

#[test]
fn health_endpoints_answer_and_nothing_else_does() {
    bounded(async {
        let (_, admin) = start();
        let healthz = request(admin, "GET", "/healthz", "127.0.0.1", "").await;
        assert_eq!(status(&healthz), "200", "{healthz}");
        assert!(healthz.ends_with("\r\n\r\nok\n"), "{healthz}");
        let readyz = request(admin, "GET", "/readyz", "127.0.0.1", "").await;
        assert_eq!(status(&readyz), "200", "{readyz}");
        assert!(readyz.ends_with("\r\n\r\nready\n"), "{readyz}");
        let head = request(admin, "HEAD", "/readyz", "127.0.0.1", "").await;
        assert_eq!(status(&head), "200", "{head}");
        assert!(head.ends_with("\r\n\r\n"), "a HEAD answer has no body: {head}");
        assert_eq!(status(&request(admin, "GET", "/nope", "127.0.0.1", "").await), "404");
        assert_eq!(
            status(&request(admin, "POST", "/metrics", "127.0.0.1", "").await),
            "405"
        );
        // A head that is not HTTP gets nothing, and the listener goes on.
        let mut tcp = tokio::net::TcpStream::connect(admin).await.unwrap();
        tcp.write_all(b"\x16\x03\x01 not http\r\n\r\n").await.unwrap();
        let mut rest = Vec::new();
        let _ = tcp.read_to_end(&mut rest).await;
        assert!(rest.is_empty(), "{rest:?}");
        assert_eq!(status(&request(admin, "GET", "/healthz", "127.0.0.1", "").await), "200");
    });
}
