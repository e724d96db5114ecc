//! The native peer: what tokio-tungstenite's `connect_async` does after its
//! DNS lookup. `TcpStream::connect` over the looked-up addresses tries them
//! one after the other, each until it connects or fails: no Happy Eyeballs,
//! no memory; a slow but working first address is the one it keeps. Then
//! TLS (tokio-rustls) and the upgrade.

use crate::racelog::{Connect, Family};
use futures_util::{SinkExt, StreamExt};
use rustls_pki_types::ServerName;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// What the peer needs for one connect.
pub struct Target {
    /// The name (for TLS and the URL).
    pub host: String,
    pub port: u16,
    /// The looked-up addresses, in the resolver's order (IPv6 first).
    pub addrs: Vec<SocketAddr>,
    pub tls: tokio_rustls::TlsConnector,
}

/// One connect, one `ping`, its echo, a close; bounded by `timeout`.
pub async fn connect_once(target: &Target, timeout: Duration) -> Connect {
    let mut connect = Connect {
        first: target.addrs.first().map(Family::of),
        ..Connect::default()
    };
    let start = Instant::now();
    let result = tokio::time::timeout(timeout, exchange(target, start, &mut connect)).await;
    connect.error = match result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some(format!("no echo within {} ms", timeout.as_millis())),
    };
    connect
}

async fn exchange(target: &Target, start: Instant, connect: &mut Connect) -> Result<(), String> {
    connect.attempts = 1;
    let tcp = TcpStream::connect(&target.addrs[..])
        .await
        .map_err(|e| format!("TCP: {e}"))?;
    // wsgate sets TCP_NODELAY; so does the peer, to compare strategies only.
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let peer = tcp.peer_addr().map_err(|e| e.to_string())?;
    connect.winner = Some(Family::of(&peer));
    // Every address before the one that connected was tried (and failed).
    connect.attempts = target.addrs.iter().position(|a| *a == peer).map_or(1, |i| i as u32 + 1);
    let name = ServerName::try_from(target.host.clone()).map_err(|e| e.to_string())?;
    let tls = target.tls.connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))?;
    connect.commit_ms = Some(start.elapsed().as_secs_f64() * 1000.0);
    let url = format!("wss://{}:{}/", target.host, target.port);
    let (mut ws, _) = tokio_tungstenite::client_async(url, tls)
        .await
        .map_err(|e| format!("upgrade: {e}"))?;
    ws.send(Message::text("ping")).await.map_err(|e| format!("send: {e}"))?;
    // Bounded by the caller's timeout; a control frame is the only reason
    // to read twice.
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(_) | Message::Binary(_))) => break,
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Close(frame))) => return Err(format!("closed before the echo ({frame:?})")),
            Some(Err(e)) => return Err(format!("recv: {e}")),
            None => return Err("the connection ended before the echo".to_owned()),
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}
