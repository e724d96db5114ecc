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

/// The RSS of all of `servers` together.
fn rss_of(servers: &[Server]) -> Rss {
    servers.iter().map(|s| rss(s.pid())).fold(Rss::default(), |a, b| Rss {
        total: a.total + b.total,
        anon: a.anon + b.anon,
        file: a.file + b.file,
        shmem: a.shmem + b.shmem,
    })
}

/// The open files of all of `servers` together.
fn files_of(servers: &[Server]) -> usize {
    servers
        .iter()
        .map(|s| std::fs::read_dir(format!("/proc/{}/fd", s.pid())).map_or(0, |d| d.count()))
        .sum()
}

/// Opens `count` sessions to `servers` (64 at a time, dealt out in turn),
/// reads their RSS with all open and idle for `hold`, closes them and reads
/// it again once their files are back to where they were (at most 30 s).
pub(super) async fn hold_sessions(servers: &[Server], count: u32, hold: Duration) -> anyhow::Result<RssFigures> {
    for server in servers {
        let warm = tokio::time::timeout(SESSION_LIMIT, open_session(server.addr))
            .await
            .context("warm-up session: timeout")??;
        close_all(vec![warm]).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_of(servers);
    let files_before = files_of(servers);
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut open = Vec::with_capacity(count as usize);
    while open.len() < count as usize {
        if Instant::now() > deadline {
            bail!("opening {count} sessions took over 300 s ({} open)", open.len());
        }
        let batch = (count as usize - open.len()).min(64);
        let first = open.len();
        let results = futures_util::future::join_all((first..first + batch).map(|i| {
            let addr = servers[i % servers.len()].addr;
            tokio::time::timeout(SESSION_LIMIT, open_session(addr))
        }))
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
        if open.len() % 1024 < 64 {
            progress(format!("rss: {} of {count} open", open.len()));
        }
    }
    // Idle: let the allocator and the runtime settle.
    progress(format!("rss: {} open, idle for {} s", open.len(), hold.as_secs()));
    tokio::time::sleep(hold).await;
    let held = rss_of(servers);
    let opened = open.len();
    close_all(open).await;
    let closing = Instant::now();
    while files_of(servers) > files_before && closing.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The pool gives freed slots back in batches; let the last go.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let closed = rss_of(servers);
    progress(format!(
        "rss: closed in {:.1} s; {} files left over the {files_before} before",
        closing.elapsed().as_secs_f64(),
        files_of(servers).saturating_sub(files_before)
    ));
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

/// The gateway's files besides its sessions' sockets (its listener,
/// epoll, the plugin cache, standard streams), with room to spare.
const OTHER_FILES: u64 = 200;
/// The most gateway processes one row spreads its sessions over.
const MAX_GATEWAYS: u32 = 4;

pub(super) async fn rss_phase(cli: &Bench, scratch: &Scratch, nofile: u64) -> anyhow::Result<String> {
    let n = cli.idle_sessions;
    // Through ws-proxy the gateway holds two files a session (the client's
    // socket and the upstream one). When the hard RLIMIT_NOFILE cannot hold
    // them all in one process, they are spread over gateways that each
    // can, as behind a load balancer: the figure per session is the same.
    let fits = u32::try_from(nofile.saturating_sub(OTHER_FILES) / 2)
        .unwrap_or(u32::MAX)
        .max(1);
    let gateways = cli.proxy_idle_sessions.div_ceil(fits).clamp(1, MAX_GATEWAYS);
    let p = cli.proxy_idle_sessions.min(fits.saturating_mul(gateways));
    if p < cli.proxy_idle_sessions {
        progress(format!(
            "rss: RLIMIT_NOFILE {nofile} (the hard limit) fits {p} sessions through ws-proxy in {gateways} gateways, not {}",
            cli.proxy_idle_sessions
        ));
    }
    let hold = Duration::from_secs(cli.hold);
    // A session limit above what is held (the warm-up's place may still be
    // taken), within the gateway's bound.
    let max_for = |count: u32| (count + 100).min(10_000).to_string();
    let mut out = format!(
        "\n### Memory per idle session\n\n`ws://` sessions opened (64 at a time; each upgraded and echoed once), then idle for {} s; the server's /proc/PID/status against one warm-up session opened and closed. Per session: (open − before) ÷ sessions. Through ws-proxy each session is also the plugin's connection to a native upstream echo server (another process), the plugin blocked on a read of both; when one process's RLIMIT_NOFILE ({nofile}) cannot hold two sockets a session, the sessions are dealt out in turn to several gateway processes and their RSS added up.\n\n",
        cli.hold
    );
    out.push_str("| server | sessions | VmRSS before | with all open | per session | of which RssAnon | RssShmem | RssFile | VmRSS after closing them |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let mut targets: Vec<(String, u32, Vec<Command>, Option<Server>)> = vec![
        (
            "wsgate serve echo_server.wasm".into(),
            n,
            vec![wsgate_command(
                cli,
                scratch,
                &cli.echo_plugin,
                &["--max-sessions", &max_for(n)],
            )],
            None,
        ),
        ("native tokio-tungstenite".into(), n, vec![native_command(None)?], None),
    ];
    if p > 0 {
        let upstream = Server::start("upstream (native)", native_command(None)?)?;
        let allow = upstream.addr.to_string();
        let target = format!("ws://{}/", upstream.addr);
        let share = p.div_ceil(gateways);
        let commands = (0..gateways)
            .map(|_| {
                let mut command = wsgate_command(
                    cli,
                    scratch,
                    &cli.proxy_plugin,
                    &[
                        "--max-sessions",
                        &max_for(share),
                        // Each instance's linear memory is over 1 MiB: 10,000
                        // of them are more than the default 4 GiB of all
                        // together.
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
                command
            })
            .collect();
        let label = match gateways {
            1 => "wsgate serve ws_proxy.wasm → native upstream".to_owned(),
            k => format!("wsgate serve ws_proxy.wasm → native upstream ({k} gateway processes)"),
        };
        targets.push((label, p, commands, Some(upstream)));
    }
    for (label, count, commands, upstream) in targets {
        let servers = commands
            .into_iter()
            .map(|command| Server::start("server", command))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let pids: Vec<String> = servers.iter().map(|s| s.pid().to_string()).collect();
        progress(format!(
            "rss: {label} (pid {}): opening {count} sessions",
            pids.join(", ")
        ));
        let f = match hold_sessions(&servers, count, hold).await {
            Ok(f) => f,
            Err(e) => {
                // The row says why, with the servers' last words (their
                // plugin's own lines aside), and the others still run.
                let said: Vec<String> = servers
                    .iter()
                    .flat_map(|s| s.take_lines())
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
        drop((servers, upstream));
    }
    Ok(out)
}
