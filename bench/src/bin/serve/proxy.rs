//! Echo throughput through ws-proxy against nginx, same upstream.

use super::process::{Scratch, Server, native_command, wsgate_command};
use super::stats::{median, range};
use super::{Bench, RUN_LIMIT, progress};
use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

pub(super) struct Row {
    pub(super) size: usize,
    pub(super) count: u64,
    pub(super) window: u64,
}

pub(super) const ROWS: [Row; 6] = [
    Row {
        size: 16,
        count: 10_000,
        window: 1,
    },
    Row {
        size: 1024,
        count: 10_000,
        window: 1,
    },
    Row {
        size: 64 << 10,
        count: 2_000,
        window: 1,
    },
    Row {
        size: 16,
        count: 30_000,
        window: 32,
    },
    Row {
        size: 1024,
        count: 30_000,
        window: 32,
    },
    Row {
        size: 64 << 10,
        count: 3_000,
        window: 32,
    },
];

pub(super) fn size_label(size: usize) -> String {
    match size {
        s if s >= 1 << 10 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}

/// COUNT messages of SIZE bytes, WINDOW in flight at most; seconds from
/// the first send to the last echo (connect and close excluded).
pub(super) async fn echo_run(url: &str, size: usize, count: u64, window: u64) -> anyhow::Result<f64> {
    let run = async {
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
        let payload = bytes_of(size);
        let started = Instant::now();
        let (mut sent, mut received) = (0u64, 0u64);
        while received < count {
            while sent < count && sent - received < window {
                ws.send(Message::binary(payload.clone())).await?;
                sent += 1;
            }
            match ws.next().await {
                Some(Ok(Message::Binary(echo))) if echo.len() == size => received += 1,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => bail!("unexpected {other:?}"),
            }
        }
        let secs = started.elapsed().as_secs_f64();
        ws.close(None).await?;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
        anyhow::Ok(secs)
    };
    tokio::time::timeout(RUN_LIMIT, run)
        .await
        .context("the run took too long")?
}

pub(super) fn bytes_of(size: usize) -> tokio_tungstenite::tungstenite::Bytes {
    (0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into()
}

/// nginx in the foreground, its own configuration and prefix in `dir`.
pub(super) fn start_nginx(nginx: &Path, dir: &Path, upstream: SocketAddr) -> anyhow::Result<Server> {
    std::fs::create_dir_all(dir)?;
    let port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port();
    let d = dir.display();
    let conf = format!(
        r#"worker_processes auto;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 300s;
            proxy_send_timeout 300s;
        }}
    }}
}}
"#
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf)?;
    let mut command = Command::new(nginx);
    command
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf_path)
        .arg("-e")
        .arg(dir.join("error.log"))
        .args(["-g", "daemon off;"]);
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", nginx.display()))?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            bail!("nginx exited ({status}): {}", log.trim());
        }
        if std::net::TcpStream::connect(addr).is_ok() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("nginx did not listen on {addr} within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let stderr = child.stderr.take();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    std::thread::spawn(move || {
        if let Some(stderr) = stderr {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        }
    });
    Ok(Server {
        name: "nginx",
        child,
        addr,
        lines,
    })
}

pub(super) fn nginx_version(nginx: &Path) -> Option<String> {
    let output = Command::new(nginx).arg("-v").output().ok()?;
    let text = String::from_utf8_lossy(&output.stderr);
    text.trim().strip_prefix("nginx version: ").map(str::to_owned)
}

pub(super) async fn proxy_phase(cli: &Bench, scratch: &Scratch) -> anyhow::Result<String> {
    let upstream = Server::start("upstream (native)", native_command(None)?)?;
    let up = upstream.addr;
    let allow = up.to_string();
    let target = format!("ws://{up}/");
    let wsgate = Server::start("wsgate serve ws_proxy.wasm", {
        let mut c = wsgate_command(
            cli,
            scratch,
            &cli.proxy_plugin,
            &["--allow", &allow, "--allow-private", "--connects-per-second", "0"],
        );
        c.args(["--", &target]);
        c
    })?;
    let nginx = match nginx_version(&cli.nginx) {
        Some(version) => Some((start_nginx(&cli.nginx, &scratch.dir.join("nginx"), up)?, version)),
        None => {
            progress(format!(
                "proxy: no nginx at {} (bench/nginx.sh installs it): its column is empty",
                cli.nginx.display()
            ));
            None
        }
    };
    progress(format!(
        "proxy: upstream on {up}, wsgate ws-proxy on {}, nginx on {}",
        wsgate.addr,
        nginx.as_ref().map_or("—".into(), |(n, _)| n.addr.to_string())
    ));
    let mut targets: Vec<(&str, String)> =
        vec![("direct", target.clone()), ("wsgate", format!("ws://{}/", wsgate.addr))];
    if let Some((n, _)) = &nginx {
        targets.push(("nginx", format!("ws://{}/", n.addr)));
    }
    for (name, url) in &targets {
        echo_run(url, 1024, 200, 8)
            .await
            .with_context(|| format!("warm-up through {name}"))?;
    }

    let mut out = format!(
        "\n### Echo throughput through a proxy\n\nThe same upstream (native tokio-tungstenite echo, `ws://{up}`) straight and behind each proxy; the client (tokio-tungstenite, Nagle off) sends COUNT binary messages of SIZE, at most WINDOW in flight, timed from the first send to the last echo. {} runs per row and target, interleaved (the order rotating), medians. MB/s: payload bytes one way. nginx: {}, `worker_processes auto`, `proxy_pass` with `proxy_http_version 1.1` and the Upgrade and Connection headers.\n\n",
        cli.runs,
        nginx.as_ref().map_or("not run".into(), |(_, v)| v.clone())
    );
    out.push_str("| messages | in flight | direct to the upstream | through wsgate ws-proxy | through nginx | wsgate ÷ nginx (range of runs) |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|\n");
    for row in &ROWS {
        let mut secs: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
        for run in 0..cli.runs as usize {
            for k in 0..targets.len() {
                let i = (run + k) % targets.len();
                let (name, url) = &targets[i];
                let s = echo_run(url, row.size, row.count, row.window)
                    .await
                    .with_context(|| format!("{} × {} through {name}", row.count, size_label(row.size)))?;
                secs[i].push(s);
            }
        }
        let rate = |s: f64| row.count as f64 / s;
        let mb = |s: f64| row.count as f64 * row.size as f64 / s / 1e6;
        let cell = |i: usize| match secs.get(i) {
            Some(v) if !v.is_empty() => {
                let m = median(v);
                format!("{:.0} msg/s, {:.1} MB/s", rate(m), mb(m))
            }
            _ => "—".into(),
        };
        let ratio = if secs.len() > 2 {
            let per_run: Vec<f64> = secs[2].iter().zip(&secs[1]).map(|(n, w)| n / w).collect();
            format!(
                "**{:.2}** ({})",
                median(&secs[2]) / median(&secs[1]),
                range(&per_run, 2)
            )
        } else {
            "—".into()
        };
        out.push_str(&format!(
            "| {} × {} | {} | {} | {} | {} | {ratio} |\n",
            row.count,
            size_label(row.size),
            row.window,
            cell(0),
            cell(1),
            cell(2)
        ));
        progress(format!(
            "proxy: {} × {} ({} in flight): direct {}, wsgate {}, nginx {}",
            row.count,
            size_label(row.size),
            row.window,
            cell(0),
            cell(1),
            cell(2)
        ));
    }
    let failures: Vec<String> = wsgate
        .take_lines()
        .into_iter()
        .filter(|l| l.starts_with("wsgate: session from"))
        .collect();
    if !failures.is_empty() {
        out.push_str(&format!(
            "\nwsgate said, of {} sessions: {}\n",
            failures.len(),
            failures[0].replace('|', "/")
        ));
    }
    drop((wsgate, nginx, upstream));
    Ok(out)
}
