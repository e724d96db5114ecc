//! `wsgate-first-echo`: process start to first echo on a healthy
//! dual-stack name, against a TLS server that keeps Nagle's algorithm on
//! and sends its session tickets after the handshake: wsgate against
//! tokio-tungstenite, each a process of its own, run side by side.
//!
//! The server is the testbed's `nagle-tickets` on both families, in this
//! process. Against it, a client that sends its upgrade request right
//! behind its TLS Finished and then delays its ACKs makes the server's
//! `101` wait 40 ms for the tickets' ACK; the testbed records how long
//! each `101` waited, and the table shows it beside each client's time.
//!
//! The clients, each run `--runs` times, interleaved:
//! - **wsgate**: `wsgate run echo-client.wasm` by name, `--resolve
//!   wsgate.test:P:[::1],127.0.0.1`, with a warm plugin cache;
//! - **tokio-tungstenite**: this binary again (`wsgate-first-echo
//!   native`), doing what `connect_async` does after its lookup
//!   (`TcpStream::connect` on `[::1]:P` then `127.0.0.1:P`, Nagle left on),
//!   tokio-rustls, `client_async`;
//! - **tokio-tungstenite, TCP_NODELAY**: the same with Nagle off, as
//!   `connect_async_with_config(.., true)` has it, and as wsgate has it.
//!
//! A run's time is from spawning the process to reading the echo it prints
//! on its standard output. Only loopback is contacted; every run is
//! bounded.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use wsgate_testbed::{Behaviour, Config, TestbedHandle};

/// Process start to first echo: wsgate against tokio-tungstenite, against
/// a Nagle-on TLS server that sends its tickets after the handshake.
#[derive(Parser, Debug)]
#[command(name = "wsgate-first-echo", version, about)]
struct Cli {
    #[command(subcommand)]
    native: Option<Native>,

    /// Runs of each client (the median and p90 are kept).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    runs: u32,

    /// The wsgate binary.
    #[arg(long, value_name = "PATH", default_value = "target/release/wsgate")]
    wsgate: PathBuf,

    /// The echo-client plugin.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "target/wasm32-wasip2/plugin/echo-client.wasm"
    )]
    plugin: PathBuf,
}

/// The native client, run as a process of its own by the bench.
#[derive(Subcommand, Debug)]
enum Native {
    /// Connect to wss://wsgate.test:PORT/ on [::1] then 127.0.0.1, send
    /// `ping`, print the echo.
    Native {
        /// The testbed's port.
        #[arg(long)]
        port: u16,
        /// The testbed's CA certificate (PEM).
        #[arg(long, value_name = "PATH")]
        ca: PathBuf,
        /// Turn Nagle's algorithm off.
        #[arg(long)]
        nodelay: bool,
    },
}

/// Bound on one run of any client.
const RUN_LIMIT: Duration = Duration::from_secs(15);

/// The clients, in the table's order.
const CLIENTS: [Client; 3] = [Client::Wsgate, Client::Native, Client::NativeNodelay];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Client {
    Wsgate,
    Native,
    NativeNodelay,
}

impl Client {
    fn label(self) -> &'static str {
        match self {
            Client::Wsgate => "wsgate",
            Client::Native => "tokio-tungstenite",
            Client::NativeNodelay => "tokio-tungstenite, TCP_NODELAY",
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.native {
        Some(Native::Native { port, ref ca, nodelay }) => native(port, ca, nodelay),
        None => bench(&cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsgate-first-echo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn bench(cli: &Cli) -> anyhow::Result<()> {
    for path in [&cli.wsgate, &cli.plugin] {
        if !path.is_file() {
            bail!("{} is missing (make build plugins)", path.display());
        }
    }
    let scratch = std::env::temp_dir().join(format!("wsgate-first-echo-{}", std::process::id()));
    let result = bench_in(cli, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn bench_in(cli: &Cli, scratch: &Path) -> anyhow::Result<()> {
    let testbed = wsgate_testbed::spawn_in_thread(Config {
        v6: Behaviour::NagleTickets,
        v4: Behaviour::NagleTickets,
        tls: true,
        cert_dir: Some(scratch.join("certs")),
        ..Config::default()
    })
    .context("starting the testbed")?;
    let ca = testbed.ca_path().context("the testbed wrote no CA")?.to_owned();
    let me = std::env::current_exe().context("finding this binary")?;
    let command = |client: Client| -> Command {
        match client {
            Client::Wsgate => {
                let mut c = Command::new(&cli.wsgate);
                c.arg("run")
                    .arg(&cli.plugin)
                    .arg("--cache-dir")
                    .arg(scratch.join("cache"))
                    .arg("--ca-cert")
                    .arg(&ca)
                    .arg("--resolve")
                    .arg(format!("wsgate.test:{}:[::1],127.0.0.1", testbed.port()))
                    // The testbed is on loopback.
                    .args(["--allow", "wsgate.test:*", "--allow-private"])
                    .arg("--")
                    .arg(format!("wss://wsgate.test:{}/", testbed.port()))
                    .arg("ping");
                c
            }
            Client::Native | Client::NativeNodelay => {
                let mut c = Command::new(&me);
                c.args(["native", "--port", &testbed.port().to_string(), "--ca"])
                    .arg(&ca);
                if client == Client::NativeNodelay {
                    c.arg("--nodelay");
                }
                c
            }
        }
    };

    // Warm-up: the plugin compiled into the cache, every binary paged in.
    for client in CLIENTS {
        one_run(command(client), &testbed).with_context(|| format!("warm-up run of {}", client.label()))?;
    }
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); CLIENTS.len()];
    let mut failures = vec![0u32; CLIENTS.len()];
    for run in 1..=cli.runs {
        for (i, client) in CLIENTS.into_iter().enumerate() {
            match one_run(command(client), &testbed) {
                Ok(sample) => samples[i].push(sample),
                Err(e) => {
                    failures[i] += 1;
                    eprintln!("wsgate-first-echo: {} run {run}: {e:#}", client.label());
                }
            }
        }
        if run % 5 == 0 || run == cli.runs {
            eprintln!("wsgate-first-echo: {run}/{} runs", cli.runs);
        }
    }

    let peer = median(samples[1].iter().map(|s| s.echo_ms).collect());
    println!(
        "| client | ok | process start to first echo, ms (median) | p90 | server's 101 held, ms (median) | max | ÷ tokio-tungstenite |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (i, client) in CLIENTS.into_iter().enumerate() {
        let runs = &samples[i];
        let echo: Vec<f64> = runs.iter().map(|s| s.echo_ms).collect();
        let held: Vec<f64> = runs.iter().map(|s| s.held_ms).collect();
        let (m, p90, h, hmax) = (
            median(echo.clone()),
            percentile(echo, 0.9),
            median(held.clone()),
            held.iter().copied().fold(f64::NAN, f64::max),
        );
        let ratio = if i == 1 {
            "1.00".to_owned()
        } else {
            format!("{:.2}", m / peer)
        };
        println!(
            "| {} | {}/{} | {m:.1} | {p90:.1} | {h:.2} | {hmax:.2} | {ratio} |",
            client.label(),
            runs.len(),
            runs.len() as u32 + failures[i]
        );
    }
    Ok(())
}

/// One run: the time to the echo, and how long the server held its `101`.
#[derive(Clone, Copy, Debug)]
struct Sample {
    echo_ms: f64,
    held_ms: f64,
}

/// Spawns `command`, waits for its first line (`ping`), then for its end.
fn one_run(mut command: Command, testbed: &TestbedHandle) -> anyhow::Result<Sample> {
    let before = testbed.response_holds();
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning the client")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send((Instant::now(), read.map(|_| line)));
    });
    let first = rx.recv_timeout(RUN_LIMIT);
    let status = match first {
        Ok(_) => wait_bounded(&mut child)?,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("no echo in {RUN_LIMIT:?}");
        }
    };
    let (at, line) = first.expect("checked above");
    let line = line.context("reading the client's output")?;
    if !status.success() || line.trim_end() != "ping" {
        let mut err = String::new();
        if let Some(mut stderr) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
        }
        bail!("the client said {line:?} and {status}: {}", err.trim());
    }
    let after = testbed.response_holds();
    let held = after.v6[before.v6.len()..]
        .iter()
        .chain(&after.v4[before.v4.len()..])
        .copied()
        .max()
        .unwrap_or_default();
    Ok(Sample {
        echo_ms: at.duration_since(started).as_secs_f64() * 1e3,
        held_ms: held.as_secs_f64() * 1e3,
    })
}

/// Waits for `child` to end, killing it past [`RUN_LIMIT`].
fn wait_bounded(child: &mut std::process::Child) -> anyhow::Result<std::process::ExitStatus> {
    let started = Instant::now();
    // Bounded by RUN_LIMIT / 1 ms rounds.
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the client did not exit in {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn median(samples: Vec<f64>) -> f64 {
    percentile(samples, 0.5)
}

fn percentile(mut samples: Vec<f64>, p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(f64::total_cmp);
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i.min(samples.len() - 1)]
}

/// The native client: what `connect_async` does after its lookup.
fn native(port: u16, ca: &Path, nodelay: bool) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let run = async {
            let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            let config = wsgate_bench::client_config(&pem)?;
            let addrs = [
                SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
                SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            ];
            let tcp = tokio::net::TcpStream::connect(&addrs[..]).await?;
            if nodelay {
                tcp.set_nodelay(true)?;
            }
            let name = rustls_pki_types::ServerName::try_from("wsgate.test")?;
            let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await?;
            let (mut ws, _) = tokio_tungstenite::client_async(format!("wss://wsgate.test:{port}/"), tls).await?;
            ws.send(Message::text("ping")).await?;
            match ws.next().await {
                Some(Ok(Message::Text(echo))) => {
                    use std::io::Write;
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "{}", echo.as_str())?;
                    out.flush()?;
                }
                other => bail!("unexpected {other:?}"),
            }
            ws.close(None).await?;
            anyhow::Ok(())
        };
        tokio::time::timeout(RUN_LIMIT, run)
            .await
            .context("the native client ran too long")?
    })
}
