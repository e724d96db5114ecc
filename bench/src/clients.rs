//! The two peer clients, in-process: tokio-tungstenite as `connect_async`
//! uses it, and hyper-util's `HttpConnector` under tokio-tungstenite.

use crate::{HOST, Outcome, Target, ms};
use futures_util::{SinkExt, StreamExt};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use rustls_pki_types::ServerName;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// What a run knows so far, shared with the timeout so that a stalled run
/// still reports how far it got.
#[derive(Default)]
pub struct Progress {
    commit_ms: Option<f64>,
    peer: Option<String>,
}

pub type Shared = Arc<Mutex<Progress>>;

/// Runs `run` within `timeout`; past it the run is a stall.
pub async fn bounded<F, Fut>(timeout: Duration, run: F) -> Outcome
where
    F: FnOnce(Shared) -> Fut,
    Fut: Future<Output = Result<f64, String>>,
{
    let progress: Shared = Arc::default();
    let result = tokio::time::timeout(timeout, run(Arc::clone(&progress))).await;
    let progress = progress.lock().await;
    match result {
        Ok(Ok(echo_ms)) => Outcome {
            commit_ms: progress.commit_ms,
            echo_ms: Some(echo_ms),
            peer: progress.peer.clone(),
            ..Outcome::default()
        },
        Ok(Err(e)) => Outcome {
            commit_ms: progress.commit_ms,
            peer: progress.peer.clone(),
            error: Some(e),
            ..Outcome::default()
        },
        Err(_) => Outcome {
            commit_ms: progress.commit_ms,
            peer: progress.peer.clone(),
            error: Some(format!(
                "stalled: no echo within {} ms{}",
                timeout.as_millis(),
                match &progress.peer {
                    Some(peer) => format!(" (TCP to {peer})"),
                    None => String::new(),
                }
            )),
            stalled: true,
            ..Outcome::default()
        },
    }
}

/// `connect_async` minus the DNS lookup: `TcpStream::connect` over the
/// looked-up addresses (tokio tries them one after another), TLS, upgrade.
pub async fn tokio_tungstenite(target: &Target, progress: Shared) -> Result<f64, String> {
    let start = Instant::now();
    let tcp = TcpStream::connect(&target.addrs[..])
        .await
        .map_err(|e| format!("TCP: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let peer = tcp.peer_addr().map(|a| a.to_string()).ok();
    progress.lock().await.peer = peer;
    let tls = handshake_tls(target, tcp).await?;
    progress.lock().await.commit_ms = Some(ms(start.elapsed()));
    echo(target, tls, start).await
}

/// hyper-util's `HttpConnector` (Happy Eyeballs: the other family after
/// 300 ms, its default) with a resolver answering both loopbacks, then
/// TLS, then tokio-tungstenite's upgrade over the stream.
pub async fn hyper_util(target: &Target, progress: Shared) -> Result<f64, String> {
    let mut connector = HttpConnector::new_with_resolver(FixedResolver(target.addrs.to_vec()));
    connector.enforce_http(false);
    connector.set_happy_eyeballs_timeout(Some(Duration::from_millis(300)));
    connector.set_nodelay(true);
    let uri: http::Uri = target
        .url()
        .replace("wss://", "https://")
        .parse()
        .map_err(|e| format!("URI: {e}"))?;
    let start = Instant::now();
    std::future::poll_fn(|cx| tower_service::Service::<http::Uri>::poll_ready(&mut connector, cx))
        .await
        .map_err(|e| format!("connector: {e}"))?;
    let io = tower_service::Service::call(&mut connector, uri)
        .await
        .map_err(|e| format!("TCP: {}", error_chain(&e)))?;
    let tcp = io.into_inner();
    let peer = tcp.peer_addr().map(|a| a.to_string()).ok();
    progress.lock().await.peer = peer;
    let tls = handshake_tls(target, tcp).await?;
    progress.lock().await.commit_ms = Some(ms(start.elapsed()));
    echo(target, tls, start).await
}

async fn handshake_tls(target: &Target, tcp: TcpStream) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let name = ServerName::try_from(HOST).map_err(|e| e.to_string())?;
    target.tls.connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))
}

/// The upgrade, one text message, its echo, a close with 1000. Returns the
/// milliseconds from `start` to the echo.
async fn echo<S>(target: &Target, stream: S, start: Instant) -> Result<f64, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut ws, _response) = tokio_tungstenite::client_async(target.url(), stream)
        .await
        .map_err(|e| format!("upgrade: {e}"))?;
    ws.send(Message::text("ping")).await.map_err(|e| format!("send: {e}"))?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(_) | Message::Binary(_))) => break,
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Close(frame))) => {
                return Err(format!("the server closed before the echo ({frame:?})"));
            }
            Some(Err(e)) => return Err(format!("recv: {e}")),
            None => return Err("the connection ended before the echo".to_owned()),
        }
    }
    let echo_ms = ms(start.elapsed());
    // The close is not timed; it is bounded so a bad close cannot hang a run.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = ws
            .close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }))
            .await;
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    Ok(echo_ms)
}

/// A resolver that knows one name: `wsgate.test`, both loopbacks.
#[derive(Clone)]
struct FixedResolver(Vec<SocketAddr>);

impl tower_service::Service<Name> for FixedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        std::future::ready(if name.as_str() == HOST {
            Ok(self.0.clone().into_iter())
        } else {
            Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{name}: not a benchmark name"),
            ))
        })
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
