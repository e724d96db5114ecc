//! Resident memory per idle session.

use super::process::{Rss, Scratch, Server, native_command, rss, wsgate_command};
use super::{Bench, SESSION_LIMIT, progress};
use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// Connects, upgrades and gets one echo; the open session.
pub(super) async fn open_session(addr: SocketAddr) -> anyhow::Result<WebSocketStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp).await?;
    ws.send(Message::text("hello")).await?;
    match ws.next().await {
        Some(Ok(Message::Text(text))) if text.as_str() == "hello" => Ok(ws),
        other => bail!("expected the echo, got {other:?}"),
    }
}

pub(super) struct RssFigures {
    pub(super) before: Rss,
    pub(super) open: Rss,
    pub(super) closed: Rss,
    pub(super) opened: usize,
}

/// Opens `count` sessions to `server` (64 at a time), reads its RSS with
/// all open and idle for `hold`, closes them.
pub(super) async fn hold_sessions(server: &Server, count: u32, hold: Duration) -> anyhow::Result<RssFigures> {
    let warm = tokio::time::timeout(SESSION_LIMIT, open_session(server.addr))
        .await
        .context("warm-up session: timeout")??;
    close_all(vec![warm]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss(server.pid());
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut open = Vec::with_capacity(count as usize);
    while open.len() < count as usize {
        if Instant::now() > deadline {
            bail!("opening {count} sessions took over 300 s ({} open)", open.len());
        }
        let batch = (count as usize - open.len()).min(64);
        let results = futures_util::future::join_all(
            (0..batch).map(|_| tokio::time::timeout(SESSION_LIMIT, open_session(server.addr))),
        )
        .await;
        for result in results {
            match result {
                Ok(Ok(ws)) => open.push(ws),
                Ok(Err(e)) => bail!("session {} of {count}: {e:#}", open.len() + 1),
                Err(_) => bail!(
                    "session {} of {count}: no echo within {SESSION_LIMIT:?}",
                    open.len() + 1
                ),
            }
        }
    }
    // Idle: let the allocator and the runtime settle.
    progress(format!("rss: {} open, idle for {} s", open.len(), hold.as_secs()));
    tokio::time::sleep(hold).await;
    let held = rss(server.pid());
    let opened = open.len();
    close_all(open).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let closed = rss(server.pid());
    Ok(RssFigures {
        before,
        open: held,
        closed,
        opened,
    })
}

/// Close handshakes, 64 at a time, each bounded.
pub(super) async fn close_all<S: AsyncRead + AsyncWrite + Unpin>(sessions: Vec<WebSocketStream<S>>) {
    let mut sessions = sessions.into_iter();
    loop {
        let batch: Vec<_> = sessions.by_ref().take(64).collect();
        if batch.is_empty() {
            break;
        }
        futures_util::future::join_all(batch.into_iter().map(|mut ws| async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                ws.close(None).await?;
                while let Some(Ok(_)) = ws.next().await {}
                anyhow::Ok(())
            })
            .await;
        }))
        .await;
    }
}

pub(super) async fn rss_phase(cli: &Bench, scratch: &Scratch, nofile: u64) -> anyhow::Result<String> {
    let n = cli.idle_sessions;
    // Through ws-proxy the gateway holds three files a session (the
    // client's socket, the host's duplicate of it for a reset, the upstream
    // socket): within its RLIMIT_NOFILE, with room for its other files.
    let fits = u32::try_from(nofile.saturating_sub(200) / 3).unwrap_or(u32::MAX);
    let p = cli.proxy_idle_sessions.min(fits);
    if p < cli.proxy_idle_sessions {
        progress(format!(
            "rss: RLIMIT_NOFILE {nofile} (the hard limit) fits {p} sessions through ws-proxy, not {}",
            cli.proxy_idle_sessions
        ));
    }
    let hold = Duration::from_secs(cli.hold);
    // A session limit above what is held (the warm-up's place may still be
    // taken), within the gateway's bound.
    let max_for = |count: u32| (count + 100).min(10_000).to_string();
    let mut out = format!(
        "\n### Memory per idle session\n\n`ws://` sessions opened (64 at a time; each upgraded and echoed once), then idle for {} s; the server's /proc/PID/status against one warm-up session opened and closed. Per session: (open − before) ÷ sessions. Through ws-proxy each session is also the plugin's connection to a native upstream echo server (another process), the plugin blocked on a read of both.\n\n",
        cli.hold
    );
    out.push_str("| server | sessions | VmRSS before | with all open | per session | of which RssAnon | RssShmem | RssFile | VmRSS 2 s after closing them |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let mut targets: Vec<(&str, u32, Command, Option<Server>)> = vec![
        (
            "wsgate serve echo_server.wasm",
            n,
            wsgate_command(cli, scratch, &cli.echo_plugin, &["--max-sessions", &max_for(n)]),
            None,
        ),
        ("native tokio-tungstenite", n, native_command(None)?, None),
    ];
    if p > 0 {
        let upstream = Server::start("upstream (native)", native_command(None)?)?;
        let allow = upstream.addr.to_string();
        let target = format!("ws://{}/", upstream.addr);
        let mut command = wsgate_command(
            cli,
            scratch,
            &cli.proxy_plugin,
            &[
                "--max-sessions",
                &max_for(p),
                // Each instance's linear memory is over 1 MiB: 10,000 of
                // them are more than the default 4 GiB of all together.
                "--max-plugin-memory",
                "65536",
                "--allow",
                &allow,
                "--allow-private",
                "--connects-per-second",
                "0",
            ],
        );
        command.args(["--", &target]);
        targets.push((
            "wsgate serve ws_proxy.wasm → native upstream",
            p,
            command,
            Some(upstream),
        ));
    }
    for (label, count, command, upstream) in targets {
        let server = Server::start("server", command)?;
        progress(format!(
            "rss: {label} on {} (pid {}): opening {count} sessions",
            server.addr,
            server.pid()
        ));
        let f = match hold_sessions(&server, count, hold).await {
            Ok(f) => f,
            Err(e) => {
                // The row says why, with the server's last words (its
                // plugin's own lines aside), and the others still run.
                let said: Vec<String> = server
                    .take_lines()
                    .into_iter()
                    .filter(|l| l.starts_with("wsgate: session"))
                    .take(3)
                    .collect();
                let why = format!("{e:#}; the server said: {}", said.join(" / ")).replace('|', "/");
                progress(format!("rss: {label}: {why}"));
                out.push_str(&format!("| {label} | failed: {why} |||||||\n"));
                continue;
            }
        };
        let per = |a: f64, b: f64| (a - b) / f.opened as f64;
        out.push_str(&format!(
            "| {label} | {} | {:.0} KiB | {:.0} KiB | **{:.1} KiB** | {:.1} KiB | {:.1} KiB | {:.1} KiB | {:.0} KiB |\n",
            f.opened,
            f.before.total,
            f.open.total,
            per(f.open.total, f.before.total),
            per(f.open.anon, f.before.anon),
            per(f.open.shmem, f.before.shmem),
            per(f.open.file, f.before.file),
            f.closed.total,
        ));
        progress(format!(
            "rss: {label}: {:.1} KiB per session ({} open)",
            per(f.open.total, f.before.total),
            f.opened
        ));
        drop((server, upstream));
    }
    Ok(out)
}
