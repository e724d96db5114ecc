//! For tests that run a [`Gateway`](wsgate_host::Gateway) in their own
//! process and talk to it over loopback: a bounded runtime, and a client's
//! upgrade and echo.

use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// Bound on a whole test's exchange (not a timing assertion: a hung
/// gateway fails instead of hanging).
pub const EXCHANGE_LIMIT: Duration = Duration::from_secs(60);

/// A client's WebSocket.
pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Runs `f` on a runtime of two worker threads, as the gateway's, bounded
/// by [`EXCHANGE_LIMIT`].
pub fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
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
