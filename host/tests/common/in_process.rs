//! For tests that run a [`Gateway`](wsgate_host::Gateway) in their own
//! process and talk to it over loopback: a bounded runtime, and a client's
//! upgrade and echo.

use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// Bound on a whole test's exchange (not a timing assertion: a hung
/// gateway fails instead of hanging).
pub const EXCHANGE_LIMIT: Duration = Duration::from_secs(60);

/// A client's WebSocket.
pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A runtime of two worker threads, as the gateway's.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `f` on a [`runtime`], bounded by [`EXCHANGE_LIMIT`].
pub fn bounded<F: std::future::Future>(f: F) -> F::Output {
    runtime().block_on(async {
        tokio::time::timeout(EXCHANGE_LIMIT, f)
            .await
            .expect("the exchange took too long")
    })
}

/// Upgrades to `ws://ADDR/PATH`, asserting the 101.
pub async fn connect(addr: SocketAddr, path: &str) -> Ws {
    let (ws, response) = tokio_tungstenite::connect_async(format!("ws://{addr}{path}"))
        .await
        .expect("upgrade");
    assert_eq!(response.status(), 101);
    ws
}

/// Sends `text` and asserts that it comes back.
pub async fn echo_once(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
    match ws.next().await {
        Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), text),
        other => panic!("expected the echo, got {other:?}"),
    }
}

/// The admin listener's `/metrics` body, checked to be OpenMetrics text.
pub async fn metrics(admin: SocketAddr) -> String {
    let mut tcp = tokio::net::TcpStream::connect(admin).await.unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(
        answer.contains("Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\n"),
        "{answer}"
    );
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body).to_owned();
    assert!(body.ends_with("# EOF\n"), "{body}");
    body
}

/// The value of the sample `name` (with its labels) in the metrics `text`.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
}
