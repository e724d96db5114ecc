//! `wsgate-throughput`: echo throughput of a plugin through wsgate against
//! a native tokio-tungstenite client, same server, same run.
//!
//! The server is the testbed (tokio-tungstenite) on `ws://127.0.0.1:P`,
//! in-process. The plugin is `throughput-client`, run by the `wsgate`
//! binary; the native client runs in this process. Both send COUNT binary
//! messages of SIZE bytes and wait for each echo, with WINDOW messages in
//! flight at most; each row is run `--runs` times, interleaved, and the
//! median kept. Only loopback is contacted; every run is bounded.

use anyhow::{Context, bail};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use wsgate_testbed::{Behaviour, Config};

/// Echo throughput: a wsgate plugin against native tokio-tungstenite.
#[derive(Parser, Debug)]
#[command(name = "wsgate-throughput", version, about)]
struct Cli {
    /// Runs of each row for each client (the median is kept).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: u32,

    /// The wsgate binary.
    #[arg(long, value_name = "PATH", default_value = "target/release/wsgate")]
    wsgate: PathBuf,

    /// The throughput-client plugin.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "target/wasm32-wasip2/plugin/throughput-client.wasm"
    )]
    plugin: PathBuf,
}

/// One row: message size, count and window.
struct Row {
    size: usize,
    count: u64,
    window: u64,
}

const ROWS: [Row; 5] = [
    Row {
        size: 16,
        count: 20_000,
        window: 1,
    },
    Row {
        size: 1024,
        count: 20_000,
        window: 1,
    },
    Row {
        size: 1 << 20,
        count: 200,
        window: 1,
    },
    Row {
        size: 16,
        count: 50_000,
        window: 32,
    },
    Row {
        size: 1024,
        count: 50_000,
        window: 32,
    },
];

/// Bound on one run of either client.
const RUN_LIMIT: Duration = Duration::from_secs(120);

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsgate-throughput: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    for path in [&cli.wsgate, &cli.plugin] {
        if !path.is_file() {
            bail!("{} is missing (make build plugins)", path.display());
        }
    }
    let testbed = wsgate_testbed::spawn_in_thread(Config {
        v6: Behaviour::Ok,
        v4: Behaviour::Ok,
        tls: false,
        ..Config::default()
    })
    .context("starting the testbed")?;
    let url = format!("ws://127.0.0.1:{}/", testbed.port());
    let cache = std::env::temp_dir().join(format!("wsgate-throughput-{}", std::process::id()));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;

    // Warm-up: compile the plugin into the cache, page everything in.
    plugin_run(&cli, &cache, &url, 16, 100, 1).context("warm-up run of wsgate")?;
    runtime
        .block_on(native_run(&url, 16, 100, 1))
        .context("warm-up run of the native client")?;

    println!("| messages | in flight | wsgate plugin | tokio-tungstenite (native) | plugin ÷ native |");
    println!("|---|---:|---:|---:|---:|");
    for row in &ROWS {
        let (mut plugin, mut native) = (Vec::new(), Vec::new());
        for _ in 0..cli.runs {
            plugin.push(plugin_run(&cli, &cache, &url, row.size, row.count, row.window)?);
            native.push(runtime.block_on(native_run(&url, row.size, row.count, row.window))?);
        }
        let (p, n) = (median(&mut plugin), median(&mut native));
        let (rate_p, rate_n, unit) = if row.size >= 1 << 20 {
            let mb = (row.size as f64 * row.count as f64) / 1e6;
            (mb / p, mb / n, "MB/s")
        } else {
            (row.count as f64 / p, row.count as f64 / n, "msg/s")
        };
        println!(
            "| {} × {} | {} | {:.0} {unit} | {:.0} {unit} | {:.2} |",
            row.count,
            size_label(row.size),
            row.window,
            rate_p,
            rate_n,
            rate_p / rate_n
        );
        eprintln!("wsgate-throughput: {} × {} done", row.count, size_label(row.size));
    }
    let _ = std::fs::remove_dir_all(&cache);
    Ok(())
}

fn size_label(size: usize) -> String {
    match size {
        s if s >= 1 << 20 => format!("{} MiB", s >> 20),
        s if s >= 1 << 10 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// One run of the plugin through wsgate; the seconds it measured.
fn plugin_run(
    cli: &Cli,
    cache: &std::path::Path,
    url: &str,
    size: usize,
    count: u64,
    window: u64,
) -> anyhow::Result<f64> {
    let mut child = Command::new(&cli.wsgate)
        .arg("run")
        .arg(&cli.plugin)
        .arg("--cache-dir")
        .arg(cache)
        // The testbed is on loopback.
        .args(["--allow-private", "--connects-per-second", "0"])
        .arg("--")
        .args([url.to_owned(), size.to_string(), count.to_string(), window.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting wsgate")?;
    let started = Instant::now();
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            bail!("wsgate ran longer than {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let output = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("wsgate failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    let line: serde_json::Value =
        serde_json::from_str(stdout.trim()).with_context(|| format!("plugin said {stdout:?}"))?;
    line["secs"].as_f64().context("no `secs` in the plugin's line")
}

/// The same exchange with tokio-tungstenite, natively.
async fn native_run(url: &str, size: usize, count: u64, window: u64) -> anyhow::Result<f64> {
    let run = async {
        // Nagle off, as the host does for plugins.
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
        let payload = vec![0x5au8; size];
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
        anyhow::Ok(secs)
    };
    tokio::time::timeout(RUN_LIMIT, run)
        .await
        .context("the native client ran too long")?
}
