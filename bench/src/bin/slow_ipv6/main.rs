//! `wsgate-slow-ipv6`: what the race's history does for a host whose IPv6
//! works but is much slower than its IPv4 (HEv3 draft §5.3 and §6).
//!
//! The network is two namespaces, a client and a server, joined by a
//! userspace link ([`wire`]) that holds IPv6 packets for half the IPv6
//! round trip each way and passes IPv4 ones at once. A `wss://` echo server
//! ([`server`]) listens on one port of both server addresses; the name
//! `wsgate.test` resolves to both, IPv6 first (`--resolve`).
//!
//! Three clients make `--connects` sequential connects each, in the client
//! namespace, in two phases:
//!
//! - phase 1, IPv6 slow; phase 2, the IPv6 delay removed;
//! - **wsgate (history)**: one `wsgate run echo-client.wasm -- --connects
//!   N` process per phase with `--memory-file`, so the second process
//!   starts from what the first learned (the plugin cannot pause between
//!   its connects for the network to change under one process);
//! - **wsgate --memory-ttl 0**: the same race without history, the plain
//!   RFC 8305 race;
//! - **tokio-tungstenite**: what `connect_async` does after its lookup (no
//!   Happy Eyeballs: the first address that connects, however slowly).
//!
//! From wsgate's `--race-log` it reads, per connect, the family tried
//! first, the winner's, the `commit` event's time and the attempt delay
//! the race derived from a round trip ([`racelog`]). It prints a table per
//! phase and the medians of connects 2..N, and with `--json FILE` every
//! connect.
//!
//! Needs root, iproute2 and `/dev/net/tun`; without them it says so and
//! exits 0 (`--require` makes that a failure). Every namespace is removed
//! when it ends; every process and connect is bounded.

mod netns;
mod peer;
mod racelog;
mod server;
mod wire;

use anyhow::{Context, bail};
use clap::Parser;
use netns::Netns;
use racelog::{Connect, Family};
use serde::Serialize;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

/// The name every client connects to.
const HOST: &str = "wsgate.test";
/// The addresses of the two ends: the benchmarking ranges (RFC 5180's
/// 2001:2::/48, RFC 2544's 198.18.0.0/15). A global-scope IPv6 prefix, so
/// that RFC 6724 puts IPv6 first as on a real dual-stack host (a ULA would
/// rank below IPv4).
const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);
const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SERVER_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// wsgate's Connection Attempt Delay without history (its default).
const ATTEMPT_DELAY_MS: u64 = 250;
/// Every this-many-th race of a host:port explores (wsgate's default): it
/// races as if it had no history. Counted per process.
const EXPLORE_EVERY: usize = 16;
/// TCP connects per family to check the link, before each phase.
const PROBES: usize = 3;

/// A host whose IPv6 is much slower than its IPv4: wsgate with its race
/// history, without it, and tokio-tungstenite.
#[derive(Parser, Debug)]
#[command(name = "wsgate-slow-ipv6", version, about)]
struct Cli {
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

    /// Sequential connects of each client in each phase.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(2..=200))]
    connects: u32,

    /// The IPv6 round trip of phase 1, in milliseconds (half of it each
    /// way); IPv4's is the link's own (well under a millisecond).
    #[arg(long, value_name = "MS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=4000))]
    ipv6_rtt: u64,

    /// Bound on one connect (and its echo), in milliseconds; a wsgate
    /// process is bounded by N times this, plus its start-up.
    #[arg(long, value_name = "MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1000..=60_000))]
    timeout: u64,

    /// Fail, rather than skip, when the network cannot be made here.
    #[arg(long)]
    require: bool,

    /// Keep wsgate's race logs (`race-CLIENT-PHASE.jsonl`) in DIR rather
    /// than in a scratch directory removed at the end.
    #[arg(long, value_name = "DIR")]
    logs: Option<PathBuf>,

    /// Also write every connect, and the summary, as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsgate-slow-ipv6: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The three clients of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Client {
    WsgateHistory,
    WsgateNoHistory,
    TokioTungstenite,
}

impl Client {
    const ALL: [Client; 3] = [Client::WsgateHistory, Client::WsgateNoHistory, Client::TokioTungstenite];

    fn label(self) -> &'static str {
        match self {
            Client::WsgateHistory => "wsgate (history)",
            Client::WsgateNoHistory => "wsgate --memory-ttl 0",
            Client::TokioTungstenite => "tokio-tungstenite",
        }
    }
}

/// One phase: the link's state and every client's connects.
#[derive(Serialize)]
struct Phase {
    name: &'static str,
    ipv6_rtt_ms: u64,
    /// TCP connect times measured before the phase (medians).
    tcp_ipv6_ms: f64,
    tcp_ipv4_ms: f64,
    runs: Vec<Run>,
}

#[derive(Serialize)]
struct Run {
    client: Client,
    connects: Vec<Connect>,
    /// The process failed or was cut (its connects so far are kept).
    error: Option<String>,
}

impl Phase {
    fn run(&self, client: Client) -> Option<&Run> {
        self.runs.iter().find(|r| r.client == client)
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    check_file(&cli.wsgate, "wsgate binary", "cargo build --release -p wsgate-host")?;
    check_file(
        &cli.plugin,
        "echo-client plugin",
        "cargo build --profile plugin --target wasm32-wasip2 -p echo-client",
    )?;
    let scratch = Scratch::new()?;
    let pki = server::Pki::generate(HOST)?;
    let network = match Network::start(Duration::from_millis(cli.ipv6_rtt), pki.acceptor()?) {
        Ok(network) => network,
        Err(e) if !cli.require => {
            eprintln!(
                "wsgate-slow-ipv6: skipped: {e:#} (it needs root, iproute2 and /dev/net/tun; --require makes this an error)"
            );
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let ca_path = scratch.path("ca.pem");
    pki.write_ca(&ca_path)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let env = Env {
        cli,
        network: &network,
        ca_pem: pki.ca_pem.clone(),
        ca_path,
        cache_dir: scratch.path("cache"),
        memory_file: scratch.path("memory.json"),
        logs: cli.logs.clone().unwrap_or_else(|| scratch.path("")),
    };
    std::fs::create_dir_all(&env.logs).with_context(|| format!("creating {}", env.logs.display()))?;

    // The plugin compiled once into the cache, by a run that learns
    // nothing, so that no phase pays for it.
    runtime.block_on(env.wsgate("warm-up", &["--memory-ttl", "0"], 1))?;

    let mut phases = Vec::new();
    for (name, rtt) in [("slow IPv6", cli.ipv6_rtt), ("IPv6 recovered", 0)] {
        network.wire.set_ipv6_delay(Duration::from_millis(rtt) / 2);
        // What the last phase left queued is out within its old delay.
        std::thread::sleep(Duration::from_millis(cli.ipv6_rtt / 2 + 200));
        let (tcp_ipv6_ms, tcp_ipv4_ms) = network.probe()?;
        eprintln!(
            "wsgate-slow-ipv6: {name}: TCP connect (median of {PROBES}) IPv6 {tcp_ipv6_ms:.2} ms, IPv4 {tcp_ipv4_ms:.2} ms"
        );
        if rtt > 0 && tcp_ipv6_ms < rtt as f64 * 0.8 {
            bail!("the link does not delay IPv6 as asked: {tcp_ipv6_ms:.1} ms, not {rtt} ms");
        }
        let mut runs = Vec::new();
        for client in Client::ALL {
            let run = match client {
                Client::WsgateHistory => runtime.block_on(env.wsgate_run(
                    &format!("history-{}", phases.len() + 1),
                    &["--memory-file", &env.memory_file.to_string_lossy()],
                )),
                Client::WsgateNoHistory => runtime
                    .block_on(env.wsgate_run(&format!("no-history-{}", phases.len() + 1), &["--memory-ttl", "0"])),
                Client::TokioTungstenite => env.peer_run()?,
            };
            let run = Run { client, ..run };
            eprintln!(
                "wsgate-slow-ipv6: {name}: {}: {} of {} committed{}",
                client.label(),
                run.connects.iter().filter(|c| c.commit_ms.is_some()).count(),
                cli.connects,
                run.error.as_deref().map_or(String::new(), |e| format!(" ({e})"))
            );
            runs.push(run);
        }
        phases.push(Phase {
            name,
            ipv6_rtt_ms: rtt,
            tcp_ipv6_ms,
            tcp_ipv4_ms,
            runs,
        });
    }
    if network.wire.dropped() > 0 {
        eprintln!(
            "wsgate-slow-ipv6: the link dropped {} packets (a queue was full)",
            network.wire.dropped()
        );
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "A host whose IPv6 is slow: {} sequential connects per client and phase (wsgate's attempt delay {ATTEMPT_DELAY_MS} ms)",
        cli.connects
    );
    let mut summary = Vec::new();
    for (i, phase) in phases.iter().enumerate() {
        out.push('\n');
        out.push_str(&table(phase, i));
        let s = summarise(phase, i);
        out.push_str(&s.text);
        summary.push(s.json);
    }
    print!("{out}");
    if let Some(path) = &cli.json {
        let json = serde_json::json!({ "phases": phases, "summary": summary });
        std::fs::write(path, serde_json::to_vec_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wsgate-slow-ipv6: every connect in {}", path.display());
    }
    Ok(())
}

fn check_file(path: &Path, what: &str, build: &str) -> anyhow::Result<()> {
    if !path.is_file() {
        bail!(
            "no {what} at `{}` (build it with `{build}`, or pass its path; `make bench` does both)",
            path.display()
        );
    }
    Ok(())
}

/// What the runs share.
struct Env<'a> {
    cli: &'a Cli,
    network: &'a Network,
    ca_pem: String,
    ca_path: PathBuf,
    cache_dir: PathBuf,
    memory_file: PathBuf,
    logs: PathBuf,
}

impl Env<'_> {
    /// One `wsgate run echo-client.wasm` process in the client namespace
    /// making `connects` connects; its race log, parsed.
    async fn wsgate(&self, name: &str, flags: &[&str], connects: u32) -> anyhow::Result<Run> {
        let log = self.logs.join(format!("race-{name}.jsonl"));
        let port = self.network.server.port();
        let mut command = self.network.client.exec(&self.cli.wsgate);
        command
            .arg("run")
            .arg(&self.cli.plugin)
            .arg("--resolve")
            .arg(format!("{HOST}:{port}:[{SERVER_V6}],{SERVER_V4}"))
            .arg("--ca-cert")
            .arg(&self.ca_path)
            .arg("--cache-dir")
            .arg(&self.cache_dir)
            // The server is on the benchmarking ranges, which the policy
            // allows only by an IP rule: allow its two addresses, as an
            // operator would allow the gateway's real upstreams.
            .args(["--allow", &format!("{HOST}:*"), "--allow-private"])
            .args(["--allow", &format!("[{SERVER_V6}]:{port}")])
            .args(["--allow", &format!("{SERVER_V4}:{port}")])
            .arg("--connect-timeout")
            .arg(self.cli.timeout.to_string())
            .arg("--race-log")
            .arg(&log)
            .args(flags)
            .arg("--")
            .args(["--connects", &connects.to_string()])
            .arg(format!("wss://{HOST}:{port}/"))
            .arg("ping")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("starting `{}`", self.cli.wsgate.display()))?;
        let limit = Duration::from_millis(self.cli.timeout) * connects + Duration::from_secs(30);
        let error = match tokio::time::timeout(limit, child.wait_with_output()).await {
            Ok(Ok(output)) if output.status.success() => None,
            Ok(Ok(output)) => Some(format!(
                "exit {}: {}",
                output.status.code().map_or("signal".into(), |c| c.to_string()),
                String::from_utf8_lossy(&output.stderr)
                    .lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("no message")
            )),
            Ok(Err(e)) => Some(format!("waiting for wsgate: {e}")),
            // Dropping the future killed the process.
            Err(_) => Some(format!("cut after {} s", limit.as_secs())),
        };
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        Ok(Run {
            client: Client::WsgateHistory,
            connects: racelog::parse(&text),
            error,
        })
    }

    /// [`wsgate`](Self::wsgate) with `--connects` connects; a failure to
    /// start is the run's error.
    async fn wsgate_run(&self, name: &str, flags: &[&str]) -> Run {
        match self.wsgate(name, flags, self.cli.connects).await {
            Ok(run) => run,
            Err(e) => Run {
                client: Client::WsgateHistory,
                connects: Vec::new(),
                error: Some(format!("{e:#}")),
            },
        }
    }

    /// The tokio-tungstenite connects, on a thread in the client namespace.
    fn peer_run(&self) -> anyhow::Result<Run> {
        let target = peer::Target {
            host: HOST.to_owned(),
            port: self.network.server.port(),
            addrs: self.network.server_addrs(),
            tls: wsgate_bench::tls_connector(self.ca_pem.as_bytes())?,
        };
        let (connects, timeout) = (self.cli.connects, Duration::from_millis(self.cli.timeout));
        let results = self.network.client.enter(move || -> anyhow::Result<Vec<Connect>> {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            Ok(runtime.block_on(async {
                let mut out = Vec::new();
                for _ in 0..connects {
                    out.push(peer::connect_once(&target, timeout).await);
                }
                out
            }))
        })??;
        Ok(Run {
            client: Client::TokioTungstenite,
            connects: results,
            error: None,
        })
    }
}

/// The two namespaces, the link between them and the server. Fields drop
/// in order: the server, then the link (its devices go with it), then the
/// namespaces.
struct Network {
    server: server::EchoServer,
    wire: wire::Wire,
    client: Netns,
    _server_ns: Netns,
}

impl Network {
    /// Makes the namespaces and their TUN devices, addresses them, starts
    /// the link with IPv6 delayed by half of `ipv6_rtt` each way, and the
    /// server, with `acceptor`'s certificate.
    fn start(ipv6_rtt: Duration, acceptor: tokio_rustls::TlsAcceptor) -> anyhow::Result<Network> {
        netns::remove_stale();
        let client = Netns::create("client")?;
        let server_ns = Netns::create("server")?;
        let client_tun = client
            .enter(|| wire::Tun::create("wsg6c"))?
            .context("making a TUN device")?;
        let server_tun = server_ns
            .enter(|| wire::Tun::create("wsg6s"))?
            .context("making a TUN device")?;
        for (ns, dev, v6, v4) in [
            (&client, "wsg6c", CLIENT_V6, CLIENT_V4),
            (&server_ns, "wsg6s", SERVER_V6, SERVER_V4),
        ] {
            ns.ip(&["link", "set", dev, "up"])?;
            ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", dev])?;
            // No duplicate address detection: the address is usable at
            // once rather than a second or two later.
            ns.ip(&["-6", "addr", "add", &format!("{v6}/64"), "dev", dev, "nodad"])?;
            // Default routes of both families: a dual-stack host, as
            // wsgate's connectivity check (draft §4.1) sees it.
            ns.ip(&["route", "add", "default", "dev", dev])?;
            ns.ip(&["-6", "route", "add", "default", "dev", dev])?;
        }
        let wire = wire::Wire::start(client_tun, server_tun, ipv6_rtt / 2).context("starting the link")?;
        let addrs = [IpAddr::V6(SERVER_V6), IpAddr::V4(SERVER_V4)];
        let server = server_ns.enter(move || server::EchoServer::start(&addrs, acceptor))??;
        Ok(Network {
            server,
            wire,
            client,
            _server_ns: server_ns,
        })
    }

    /// Where the server listens, IPv6 first (the resolver's order).
    fn server_addrs(&self) -> Vec<SocketAddr> {
        let port = self.server.port();
        vec![
            SocketAddr::new(IpAddr::V6(SERVER_V6), port),
            SocketAddr::new(IpAddr::V4(SERVER_V4), port),
        ]
    }

    /// The median TCP connect time to the server per family, in
    /// milliseconds: (IPv6, IPv4).
    fn probe(&self) -> anyhow::Result<(f64, f64)> {
        let addrs = self.server_addrs();
        self.client.enter(move || -> anyhow::Result<(f64, f64)> {
            let mut medians = Vec::new();
            for addr in addrs {
                let mut times = Vec::new();
                for _ in 0..PROBES {
                    let start = Instant::now();
                    let stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                        .with_context(|| format!("TCP connect to {addr}"))?;
                    times.push(start.elapsed().as_secs_f64() * 1000.0);
                    drop(stream);
                }
                medians.push(median(times).unwrap_or(f64::NAN));
            }
            Ok((medians[0], medians[1]))
        })?
    }
}

/// A scratch directory for the CA, the race logs, the plugin cache and the
/// history file; removed on drop.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new() -> anyhow::Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("wsgate-slow-ipv6-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Scratch { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The median of the finite values, if any.
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// One phase's table: a line per connect, the three clients side by side.
fn table(phase: &Phase, index: usize) -> String {
    let mut out = String::new();
    let link = match phase.ipv6_rtt_ms {
        0 => "IPv6 delay removed".to_owned(),
        rtt => format!("IPv6 delayed to a {rtt} ms round trip"),
    };
    let _ = writeln!(
        out,
        "Phase {}: {} ({link}; TCP connect measured: IPv6 {:.2} ms, IPv4 {:.2} ms){}",
        index + 1,
        phase.name,
        phase.tcp_ipv6_ms,
        phase.tcp_ipv4_ms,
        if index > 0 {
            "; wsgate (history) is a new process reading the last one's --memory-file"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "{:>3} | {:<38} | {:<23} | {}",
        "",
        Client::WsgateHistory.label(),
        Client::WsgateNoHistory.label(),
        Client::TokioTungstenite.label()
    );
    let _ = writeln!(
        out,
        "{:>3} | {:<5} {:<6} {:>10} {:>6} {:<8} | {:<5} {:<6} {:>10} | {:<5} {:<6} {:>10}",
        "#",
        "first",
        "winner",
        "commit ms",
        "delay",
        "",
        "first",
        "winner",
        "commit ms",
        "first",
        "winner",
        "commit ms"
    );
    let rows = phase.runs.iter().map(|r| r.connects.len()).max().unwrap_or(0);
    let cells = |client: Client, i: usize| -> [String; 3] {
        match phase.run(client).and_then(|r| r.connects.get(i)) {
            Some(c) => [
                family(c.first),
                family(c.winner),
                c.commit_ms.map_or_else(|| "failed".to_owned(), |t| format!("{t:.1}")),
            ],
            None => ["-".into(), "-".into(), "missing".into()],
        }
    };
    for i in 0..rows {
        let [h1, h2, h3] = cells(Client::WsgateHistory, i);
        let [n1, n2, n3] = cells(Client::WsgateNoHistory, i);
        let [t1, t2, t3] = cells(Client::TokioTungstenite, i);
        let delay = phase
            .run(Client::WsgateHistory)
            .and_then(|r| r.connects.get(i))
            .and_then(|c| c.derived_delay_ms)
            .map_or_else(|| "-".to_owned(), |d| format!("{d} ms"));
        let note = if (i + 1) % EXPLORE_EVERY == 0 { "explores" } else { "" };
        let line = format!(
            "{:>3} | {h1:<5} {h2:<6} {h3:>10} {delay:>6} {note:<8} | {n1:<5} {n2:<6} {n3:>10} | {t1:<5} {t2:<6} {t3:>10}",
            i + 1
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    for run in &phase.runs {
        if let Some(e) = &run.error {
            let _ = writeln!(out, "    {}: {e}", run.client.label());
        }
        for (i, c) in run.connects.iter().enumerate() {
            if let Some(e) = &c.error {
                let _ = writeln!(out, "    {} connect {}: {e}", run.client.label(), i + 1);
            }
        }
    }
    out
}

fn family(f: Option<Family>) -> String {
    f.map_or("-", Family::as_str).to_owned()
}

/// A phase's summary: the table's last lines, and the same as JSON.
struct Summary {
    text: String,
    json: serde_json::Value,
}

fn summarise(phase: &Phase, index: usize) -> Summary {
    // Connect 1 is where the history is empty (phase 1) or just loaded
    // (phase 2): the medians are over the ones after it.
    let medians = Client::ALL.map(|client| {
        let commits = phase
            .run(client)
            .map(|r| r.connects.iter().skip(1).filter_map(|c| c.commit_ms).collect())
            .unwrap_or_default();
        median(commits)
    });
    let ratio = match (medians[0], medians[1]) {
        (Some(with), Some(without)) if without > 0.0 => Some(with / without),
        _ => None,
    };
    let history = phase.run(Client::WsgateHistory).map_or(&[][..], |r| &r.connects[..]);
    let ipv4_first = history.iter().skip(1).filter(|c| c.first == Some(Family::V4)).count();
    let found = history.iter().position(|c| c.winner == Some(Family::V6));
    let leads_after = found.is_some_and(|k| history[k..].iter().all(|c| c.first == Some(Family::V6)));
    let n = history.len();
    let mut text = String::new();
    let cell = |m: Option<f64>| m.map_or_else(|| "n/a".to_owned(), |m| format!("{m:.1} ms"));
    let _ = writeln!(
        text,
        "connects 2..{n}, median commit: {} {}, {} {}, {} {}; with history ÷ without: {}",
        Client::WsgateHistory.label(),
        cell(medians[0]),
        Client::WsgateNoHistory.label(),
        cell(medians[1]),
        Client::TokioTungstenite.label(),
        cell(medians[2]),
        ratio.map_or_else(|| "n/a".to_owned(), |r| format!("{r:.3}")),
    );
    let _ = writeln!(
        text,
        "wsgate (history): IPv4 first on {ipv4_first} of connects 2..{n}; {}",
        match found {
            Some(k) if index > 0 => format!(
                "IPv6 won again at connect {}{}",
                k + 1,
                if leads_after {
                    ", and went first on every connect from then on"
                } else {
                    ""
                }
            ),
            Some(k) => format!("IPv6 won at connect {}", k + 1),
            None => "IPv6 never won".to_owned(),
        }
    );
    let json = serde_json::json!({
        "phase": phase.name,
        "median_commit_ms_connects_2_on": {
            "wsgate-history": medians[0],
            "wsgate-no-history": medians[1],
            "tokio-tungstenite": medians[2],
        },
        "ratio_history_over_no_history": ratio,
        "history_ipv4_first_connects_2_on": ipv4_first,
        "history_ipv6_won_first_at": found.map(|k| k + 1),
    });
    Summary { text, json }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(first: Family, winner: Family, commit_ms: f64) -> Connect {
        Connect {
            first: Some(first),
            winner: Some(winner),
            commit_ms: Some(commit_ms),
            attempts: 1,
            ..Connect::default()
        }
    }

    #[test]
    fn the_summary_takes_medians_after_the_first_connect_and_finds_ipv6_again() {
        use Family::{V4, V6};
        let history = vec![
            connect(V4, V4, 1.0),
            connect(V4, V4, 2.0),
            connect(V6, V6, 3.0),
            connect(V6, V6, 4.0),
        ];
        let without = vec![
            connect(V6, V6, 100.0),
            connect(V6, V6, 10.0),
            connect(V6, V6, 10.0),
            connect(V6, V6, 10.0),
        ];
        let phase = Phase {
            name: "test",
            ipv6_rtt_ms: 0,
            tcp_ipv6_ms: 0.1,
            tcp_ipv4_ms: 0.1,
            runs: vec![
                Run {
                    client: Client::WsgateHistory,
                    connects: history,
                    error: None,
                },
                Run {
                    client: Client::WsgateNoHistory,
                    connects: without,
                    error: None,
                },
            ],
        };
        let s = summarise(&phase, 1);
        assert_eq!(s.json["median_commit_ms_connects_2_on"]["wsgate-history"], 3.0);
        assert_eq!(s.json["median_commit_ms_connects_2_on"]["wsgate-no-history"], 10.0);
        assert_eq!(s.json["ratio_history_over_no_history"], 0.3);
        assert_eq!(s.json["history_ipv4_first_connects_2_on"], 1);
        assert_eq!(s.json["history_ipv6_won_first_at"], 3);
        assert!(
            s.text.contains("IPv6 won again at connect 3, and went first"),
            "{}",
            s.text
        );
        assert!(table(&phase, 1).contains("missing"));
    }

    #[test]
    fn medians_ignore_what_is_not_a_number() {
        assert_eq!(median(vec![3.0, f64::NAN, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }
}
