//! Sessions per second over TLS: the gateway against the native server.

use super::process::{Scratch, Server, cpu_seconds, native_command, wsgate_command};
use super::stats::{median, number_after, quantile, range};
use super::{Bench, ROUND_LIMIT, SESSION_LIMIT, progress};
use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

pub(super) fn tls_connector(ca_pem: &str) -> anyhow::Result<tokio_rustls::TlsConnector> {
    let mut config = wsgate_bench::client_config(ca_pem.as_bytes())?;
    // Every session a new client: a full handshake, no resumption.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// One session: TCP, TLS, the upgrade, one echo, the close handshake.
pub(super) async fn one_session(addr: SocketAddr, tls: &tokio_rustls::TlsConnector) -> anyhow::Result<()> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = rustls_pki_types::ServerName::try_from("localhost")?;
    let stream = tls.connect(name, tcp).await?;
    let (mut ws, response) = tokio_tungstenite::client_async("wss://localhost/", stream).await?;
    if response.status() != 101 {
        bail!("upgrade answered {}", response.status());
    }
    ws.send(Message::text("ping")).await?;
    match ws.next().await {
        Some(Ok(Message::Text(text))) if text.as_str() == "ping" => {}
        other => bail!("expected the echo, got {other:?}"),
    }
    ws.close(None).await?;
    // The server's Close, then the end of the connection (bounded by the
    // caller's timeout).
    while let Some(Ok(_)) = ws.next().await {}
    Ok(())
}

/// `sessions` sessions at `concurrency` at a time; sessions per second,
/// failures (and the first error).
pub(super) async fn session_round(
    addr: SocketAddr,
    tls: &tokio_rustls::TlsConnector,
    sessions: u32,
    concurrency: u32,
) -> anyhow::Result<(f64, usize, Option<String>)> {
    let next = AtomicUsize::new(0);
    let failures = Mutex::new((0usize, None::<String>));
    let started = Instant::now();
    let worker = || async {
        while next.fetch_add(1, Ordering::Relaxed) < sessions as usize {
            let result = match tokio::time::timeout(SESSION_LIMIT, one_session(addr, tls)).await {
                Ok(r) => r,
                Err(_) => Err(anyhow::anyhow!("no end within {SESSION_LIMIT:?}")),
            };
            if let Err(e) = result {
                let mut f = failures.lock().unwrap();
                f.0 += 1;
                f.1.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    };
    let all = futures_util::future::join_all((0..concurrency).map(|_| worker()));
    tokio::time::timeout(ROUND_LIMIT, all)
        .await
        .with_context(|| format!("a round of {sessions} sessions took over {ROUND_LIMIT:?}"))?;
    let secs = started.elapsed().as_secs_f64();
    let (failed, first) = failures.into_inner().unwrap();
    Ok((sessions as f64 / secs, failed, first))
}

#[derive(Default)]
pub(super) struct SessionStats {
    /// Sessions per second, one value per round.
    pub(super) rate: Vec<f64>,
    /// The server's CPU ms per session, one value per round.
    pub(super) cpu_ms: Vec<f64>,
    pub(super) failed: usize,
    pub(super) first_error: Option<String>,
    /// wsgate only: `instantiate` and `ended after` of its `-v` lines.
    pub(super) instantiate_ms: Vec<f64>,
    pub(super) session_ms: Vec<f64>,
}

/// A `wsgate serve` of the echo plugin over TLS, with `extra` flags.
fn gateway(cli: &Bench, scratch: &Scratch, extra: &[&str]) -> anyhow::Result<Server> {
    let max = (cli.concurrency.iter().copied().max().unwrap_or(1) + 100).to_string();
    let mut command = wsgate_command(cli, scratch, &cli.echo_plugin, &["--max-sessions", &max]);
    command
        .args(extra)
        .arg("--tls-cert")
        .arg(&scratch.cert)
        .arg("--tls-key")
        .arg(&scratch.key);
    Server::start("wsgate serve", command)
}

/// Warms `server` up with 20 sessions, one at a time.
async fn warm_up(server: &Server, tls: &tokio_rustls::TlsConnector) -> anyhow::Result<()> {
    let (_, failed, first) = session_round(server.addr, tls, 20, 1).await?;
    if failed > 0 {
        bail!(
            "warm-up against {}: {failed} of 20 sessions failed: {}",
            server.name,
            first.unwrap_or_default()
        );
    }
    Ok(())
}

pub(super) async fn sessions_phase(cli: &Bench, scratch: &Scratch) -> anyhow::Result<String> {
    let tls = tls_connector(&scratch.ca_pem)?;
    // The rates and CPU are the gateway's as an operator runs it, without
    // `-v`: a line a session is a cost the native server does not pay.
    let wsgate = gateway(cli, scratch, &[])?;
    let native = Server::start("native server", native_command(Some((&scratch.cert, &scratch.key)))?)?;
    progress(format!(
        "sessions: wsgate serve on {} (pid {}), native on {} (pid {}); warming up",
        wsgate.addr,
        wsgate.pid(),
        native.addr,
        native.pid()
    ));
    for server in [&wsgate, &native] {
        warm_up(server, &tls).await?;
    }

    let levels = &cli.concurrency;
    let mut stats: Vec<[SessionStats; 2]> = levels.iter().map(|_| Default::default()).collect();
    for round in 0..cli.rounds {
        for (l, &concurrency) in levels.iter().enumerate() {
            // Alternate which server goes first.
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                let server = [&wsgate, &native][i];
                let cpu_before = cpu_seconds(server.pid());
                let (rate, failed, first) = session_round(server.addr, &tls, cli.sessions, concurrency).await?;
                let cpu = cpu_seconds(server.pid()) - cpu_before;
                let s = &mut stats[l][i];
                s.rate.push(rate);
                s.cpu_ms.push(cpu * 1000.0 / cli.sessions as f64);
                s.failed += failed;
                if s.first_error.is_none() {
                    s.first_error = first;
                }
            }
            progress(format!(
                "sessions: round {}/{} at {concurrency} at a time: wsgate {:.0}/s, native {:.0}/s",
                round + 1,
                cli.rounds,
                stats[l][0].rate.last().unwrap(),
                stats[l][1].rate.last().unwrap()
            ));
        }
    }
    drop((wsgate, native));

    // The instantiation times come from a gateway's `-v` lines: one more
    // round a level, against a gateway that says them.
    let verbose = gateway(cli, scratch, &["-v"])?;
    warm_up(&verbose, &tls).await?;
    verbose.wait_lines("ended after", 20, Duration::from_secs(5));
    for (l, &concurrency) in levels.iter().enumerate() {
        let (_, failed, _) = session_round(verbose.addr, &tls, cli.sessions, concurrency).await?;
        let s = &mut stats[l][0];
        let expected = cli.sessions as usize - failed;
        for line in verbose.wait_lines("ended after", expected, Duration::from_secs(5)) {
            if let (Some(inst), Some(total)) =
                (number_after(&line, "instantiate "), number_after(&line, "ended after "))
            {
                s.instantiate_ms.push(inst);
                s.session_ms.push(total);
            } else if line.contains("session from") {
                s.first_error.get_or_insert(line);
            }
        }
        progress(format!(
            "sessions: instantiation at {concurrency} at a time: {} sessions",
            s.instantiate_ms.len()
        ));
    }
    drop(verbose);

    let mut out = String::new();
    out.push_str(&format!(
        "\n### Sessions per second\n\n{} rounds of {} `wss://` sessions per server and concurrency, interleaved; each session: TCP, a full TLS 1.3 handshake (no resumption), the upgrade, one echo, the close handshake. Medians of the rounds (range in brackets).\n\n",
        cli.rounds, cli.sessions
    ));
    out.push_str("| at a time | wsgate serve echo_server.wasm | native tokio-tungstenite + tokio-rustls | wsgate ÷ native | server CPU ms/session, wsgate | native | failed (wsgate / native) |\n");
    out.push_str("|---:|---:|---:|---:|---:|---:|---|\n");
    for (l, &concurrency) in levels.iter().enumerate() {
        let [w, n] = &stats[l];
        let ratios: Vec<f64> = w.rate.iter().zip(&n.rate).map(|(a, b)| a / b).collect();
        let mut failed = format!("{} / {}", w.failed, n.failed);
        for e in [&w.first_error, &n.first_error].into_iter().flatten() {
            failed.push_str(&format!("; {}", e.replace('|', "/")));
        }
        out.push_str(&format!(
            "| {concurrency} | {:.0}/s ({}) | {:.0}/s ({}) | {:.2} ({}) | {:.2} | {:.2} | {failed} |\n",
            median(&w.rate),
            range(&w.rate, 0),
            median(&n.rate),
            range(&n.rate, 0),
            median(&w.rate) / median(&n.rate),
            range(&ratios, 2),
            median(&w.cpu_ms),
            median(&n.cpu_ms),
        ));
    }
    out.push_str(&format!("\n### Instantiation per session\n\nFrom the `-v` lines of another gateway, after the rounds above: one more round of {} sessions a level.\n\n", cli.sessions));
    out.push_str(
        "| at a time | sessions | instantiate ms p50 | p99 | max | whole session ms (gateway's view) p50 | p99 |\n",
    );
    out.push_str("|---:|---:|---:|---:|---:|---:|---:|\n");
    for (l, &concurrency) in levels.iter().enumerate() {
        let w = &stats[l][0];
        out.push_str(&format!(
            "| {concurrency} | {} | {:.3} | {:.3} | {:.3} | {:.2} | {:.2} |\n",
            w.instantiate_ms.len(),
            quantile(&w.instantiate_ms, 0.5),
            quantile(&w.instantiate_ms, 0.99),
            quantile(&w.instantiate_ms, 1.0),
            quantile(&w.session_ms, 0.5),
            quantile(&w.session_ms, 0.99),
        ));
    }
    Ok(out)
}
