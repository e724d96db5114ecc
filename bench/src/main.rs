//! `wsgate-bench`: how long a WebSocket client takes to reach a dual-stack
//! server when one address family misbehaves, wsgate against two ordinary
//! Rust clients.
//!
//! For each scenario it starts a testbed in-process (one behaviour per
//! address family, `wss://` on `[::1]:P` and `127.0.0.1:P`) and runs every
//! client `--runs` times, interleaved (run 1 of each client, then run 2...):
//!
//! - `wsgate`: the `wsgate` binary running the `bench-client` plugin, one
//!   process per run (so every connect is a cold race: the host's family
//!   memory lives in one process);
//! - `tokio-tungstenite`: what `connect_async` does after its DNS lookup:
//!   `TcpStream::connect` over `[v6, v4]` (one address after the other),
//!   TLS, the upgrade;
//! - `hyper-util`: `HttpConnector` (Happy Eyeballs v1: the other family
//!   after 300 ms), TLS, then tokio-tungstenite's upgrade.
//!
//! Each run sends one text message and waits for its echo. It prints a
//! table of medians on standard output, a line per scenario on standard
//! error, and with `--json FILE` every sample.
//!
//! Only loopback is contacted; every run is bounded by `--timeout`.

mod clients;
mod stats;
mod wsgate;

use anyhow::{Context, bail};
use clap::Parser;
use serde::Serialize;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use wsgate_testbed::{Behaviour, Config};

/// The name every client connects to; it "resolves" to both loopbacks.
pub const HOST: &str = "wsgate.test";

/// Benchmark wsgate's connect against tokio-tungstenite and hyper-util on
/// the testbed's per-family failures.
#[derive(Parser, Debug)]
#[command(name = "wsgate-bench", version, about)]
struct Cli {
    /// Runs of each client in each scenario.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    runs: u32,

    /// The wsgate binary.
    #[arg(long, value_name = "PATH", default_value = "target/release/wsgate")]
    wsgate: PathBuf,

    /// The bench-client plugin.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "target/wasm32-wasip2/plugin/bench-client.wasm"
    )]
    plugin: PathBuf,

    /// Bound on one run of any client, in milliseconds; a run still going
    /// then is a failure (a stall) with that time.
    #[arg(long, value_name = "MS", default_value_t = 15_000, value_parser = clap::value_parser!(u64).range(100..=120_000))]
    timeout: u64,

    /// After this many stalls in a row, a client's remaining runs in the
    /// scenario are skipped (the testbed's behaviours are deterministic: a
    /// client that stalls three times stalls every time). 0: never skip.
    #[arg(long, value_name = "N", default_value_t = 3)]
    max_stalls: u32,

    /// Pass `--attempt-delay MS` to wsgate on every row (rows become
    /// "n/a (flag missing)" if this wsgate does not know the flag).
    #[arg(long, value_name = "MS")]
    attempt_delay: Option<u64>,

    /// Only these scenarios (comma-separated names).
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    scenarios: Vec<String>,

    /// Only these clients (comma-separated: wsgate, tokio-tungstenite, hyper-util).
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    clients: Vec<String>,

    /// Also write every sample, and the summary, as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// One scenario: the testbed's behaviours and the wsgate rows to run.
struct Scenario {
    name: &'static str,
    v6: Behaviour,
    v4: Behaviour,
    /// wsgate's rows: extra flags each (the peers get one row each).
    wsgate_rows: Vec<wsgate::Variant>,
}

fn scenarios() -> Vec<Scenario> {
    use wsgate::Variant;
    vec![
        Scenario {
            name: "v6-blackhole",
            v6: Behaviour::Blackhole,
            v4: Behaviour::Ok,
            wsgate_rows: vec![Variant::default_row()],
        },
        Scenario {
            name: "v6-refused",
            v6: Behaviour::Refused,
            v4: Behaviour::Ok,
            wsgate_rows: vec![Variant::default_row()],
        },
        Scenario {
            name: "v6-tls-stall",
            v6: Behaviour::TlsStall,
            v4: Behaviour::Ok,
            wsgate_rows: vec![
                Variant::cancel_after("tls", &[]),
                Variant::cancel_after("tcp", &["--tls-timeout", "1000"]),
            ],
        },
        Scenario {
            name: "v6-503",
            v6: Behaviour::Upgrade503,
            v4: Behaviour::Ok,
            wsgate_rows: vec![Variant::default_row()],
        },
        Scenario {
            name: "both-slow",
            v6: Behaviour::SlowUpgrade,
            v4: Behaviour::SlowUpgrade,
            wsgate_rows: vec![
                Variant::cancel_after("tls", &[]),
                Variant::cancel_after("response", &[]),
            ],
        },
    ]
}

/// Which client a row runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Client {
    Wsgate,
    TokioTungstenite,
    HyperUtil,
}

impl Client {
    const ALL: [Client; 3] = [Client::Wsgate, Client::TokioTungstenite, Client::HyperUtil];

    fn as_str(self) -> &'static str {
        match self {
            Client::Wsgate => "wsgate",
            Client::TokioTungstenite => "tokio-tungstenite",
            Client::HyperUtil => "hyper-util",
        }
    }
}

/// What the testbed of a scenario offers the clients.
pub struct Target {
    pub port: u16,
    pub ca_path: PathBuf,
    pub addrs: [SocketAddr; 2],
    pub tls: tokio_rustls::TlsConnector,
}

impl Target {
    pub fn url(&self) -> String {
        format!("wss://{HOST}:{}/", self.port)
    }
}

/// The outcome of one run.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Milliseconds from the start of the connect to a committed,
    /// ready-to-use connection (TCP and TLS done; for wsgate the host's
    /// `commit` event).
    pub commit_ms: Option<f64>,
    /// Milliseconds from the start of the connect to the echo received.
    pub echo_ms: Option<f64>,
    /// The address used.
    pub peer: Option<String>,
    /// wsgate only: how many times the host wrote the upgrade request.
    pub first_flights: Option<u64>,
    /// Why the run failed, if it did.
    pub error: Option<String>,
    /// The run was cut by `--timeout`.
    pub stalled: bool,
    /// wsgate rejected a flag the row needs.
    pub flag_missing: bool,
}

impl Outcome {
    pub fn failed(error: impl Into<String>) -> Outcome {
        Outcome {
            error: Some(error.into()),
            ..Outcome::default()
        }
    }

    fn ok(&self) -> bool {
        self.error.is_none() && self.echo_ms.is_some()
    }
}

/// One sample, as `--json` writes it.
#[derive(Serialize, Debug, Clone)]
pub struct Sample {
    scenario: &'static str,
    client: Client,
    row: String,
    run: u32,
    ok: bool,
    commit_ms: Option<f64>,
    echo_ms: Option<f64>,
    /// The whole run as the harness saw it (for wsgate: the process, start-up
    /// and plugin compile included).
    wall_ms: f64,
    peer: Option<String>,
    first_flights: Option<u64>,
    /// Upgrade requests the testbed received during the run, per family.
    upgrades_v6: u64,
    upgrades_v4: u64,
    stalled: bool,
    error: Option<String>,
}

/// A row of the table: one client (and wsgate variant) in one scenario.
struct Row {
    client: Client,
    label: String,
    variant: Option<wsgate::Variant>,
    /// Why the row is not run at all ("flag missing").
    not_run: Option<String>,
    /// A note for the table (a flag dropped because it is the default).
    note: Option<String>,
    samples: Vec<Sample>,
    consecutive_stalls: u32,
    skipped: u32,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsgate-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    for name in &cli.clients {
        if !Client::ALL.iter().any(|c| c.as_str() == name) {
            bail!("unknown client `{name}` (expected wsgate, tokio-tungstenite or hyper-util)");
        }
    }
    let all = scenarios();
    for name in &cli.scenarios {
        if !all.iter().any(|s| s.name == name) {
            let names: Vec<&str> = all.iter().map(|s| s.name).collect();
            bail!("unknown scenario `{name}` (expected one of {})", names.join(", "));
        }
    }
    let chosen: Vec<Scenario> = all
        .into_iter()
        .filter(|s| cli.scenarios.is_empty() || cli.scenarios.iter().any(|n| n == s.name))
        .collect();
    let clients: Vec<Client> = Client::ALL
        .into_iter()
        .filter(|c| cli.clients.is_empty() || cli.clients.iter().any(|n| n == c.as_str()))
        .collect();

    let work = WorkDir::create()?;
    let wsgate_env = if clients.contains(&Client::Wsgate) {
        Some(wsgate::Env::probe(
            &cli.wsgate,
            &cli.plugin,
            &work.path.join("cache"),
            cli.attempt_delay,
        )?)
    } else {
        None
    };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let timeout = Duration::from_millis(cli.timeout);

    // Warm up once on a healthy testbed: the plugin gets compiled into the
    // cache, the binaries and libraries get paged in, and a broken setup
    // fails here with a clear message rather than as 100% failures.
    {
        let (testbed, target) = start_testbed(Behaviour::Ok, Behaviour::Ok, &work.path.join("warmup"))?;
        for &client in &clients {
            let out = runtime.block_on(run_once(client, None, wsgate_env.as_ref(), &target, timeout));
            if let Some(e) = out.error {
                bail!(
                    "warm-up run of {} against a healthy testbed failed: {e}",
                    client.as_str()
                );
            }
        }
        testbed.stop();
    }

    let started = Instant::now();
    let mut table = Vec::new();
    for scenario in &chosen {
        let scenario_started = Instant::now();
        let (testbed, target) = start_testbed(scenario.v6, scenario.v4, &work.path.join(scenario.name))?;
        let mut rows = build_rows(scenario, &clients, wsgate_env.as_ref());
        eprintln!(
            "wsgate-bench: {}: v6 {}, v4 {} on port {}; {} rows x {} runs ...",
            scenario.name,
            scenario.v6,
            scenario.v4,
            target.port,
            rows.len(),
            cli.runs
        );
        for run in 1..=cli.runs {
            for row in rows.iter_mut() {
                if row.not_run.is_some() {
                    continue;
                }
                if cli.max_stalls > 0 && row.consecutive_stalls >= cli.max_stalls {
                    row.skipped += 1;
                    continue;
                }
                let before = testbed.upgrades();
                let wall = Instant::now();
                let out = runtime.block_on(run_once(
                    row.client,
                    row.variant.as_ref(),
                    wsgate_env.as_ref(),
                    &target,
                    timeout,
                ));
                let wall_ms = ms(wall.elapsed());
                let after = testbed.upgrades();
                if out.flag_missing {
                    row.not_run = Some("n/a (flag missing)".into());
                    row.samples.clear();
                    continue;
                }
                row.consecutive_stalls = if out.stalled { row.consecutive_stalls + 1 } else { 0 };
                row.samples.push(Sample {
                    scenario: scenario.name,
                    client: row.client,
                    row: row.label.clone(),
                    run,
                    ok: out.ok(),
                    commit_ms: out.commit_ms,
                    echo_ms: out.echo_ms,
                    wall_ms,
                    peer: out.peer,
                    first_flights: out.first_flights,
                    upgrades_v6: after.v6.saturating_sub(before.v6),
                    upgrades_v4: after.v4.saturating_sub(before.v4),
                    stalled: out.stalled,
                    error: out.error,
                });
            }
        }
        testbed.stop();
        eprintln!(
            "wsgate-bench: {}: done in {:.1} s ({})",
            scenario.name,
            scenario_started.elapsed().as_secs_f64(),
            rows.iter()
                .map(|r| format!("{} {}", r.label, stats::ok_cell(r, cli.runs)))
                .collect::<Vec<_>>()
                .join("; ")
        );
        table.push((scenario.name, rows));
    }

    let summary = stats::summarise(&table, timeout);
    print!("{}", stats::render(&summary, cli.runs, timeout, started.elapsed()));

    if let Some(path) = &cli.json {
        let samples: Vec<&Sample> = table
            .iter()
            .flat_map(|(_, rows)| rows.iter().flat_map(|r| &r.samples))
            .collect();
        let doc = serde_json::json!({
            "runs": cli.runs,
            "timeout_ms": cli.timeout,
            "max_stalls": cli.max_stalls,
            "wsgate": cli.wsgate,
            "summary": summary,
            "samples": samples,
        });
        let text = serde_json::to_string_pretty(&doc)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing `{}`", path.display()))?;
        eprintln!("wsgate-bench: samples written to {}", path.display());
    }
    Ok(())
}

fn build_rows(scenario: &Scenario, clients: &[Client], env: Option<&wsgate::Env>) -> Vec<Row> {
    let mut rows = Vec::new();
    for &client in clients {
        match client {
            Client::Wsgate => {
                let env = env.expect("probed when wsgate is among the clients");
                for variant in &scenario.wsgate_rows {
                    let planned = env.plan(variant);
                    rows.push(Row {
                        client,
                        label: variant.label(),
                        variant: Some(planned.variant),
                        not_run: planned.not_run,
                        note: planned.note,
                        samples: Vec::new(),
                        consecutive_stalls: 0,
                        skipped: 0,
                    });
                }
            }
            Client::TokioTungstenite | Client::HyperUtil => rows.push(Row {
                client,
                label: client.as_str().to_owned(),
                variant: None,
                not_run: None,
                note: None,
                samples: Vec::new(),
                consecutive_stalls: 0,
                skipped: 0,
            }),
        }
    }
    rows
}

async fn run_once(
    client: Client,
    variant: Option<&wsgate::Variant>,
    env: Option<&wsgate::Env>,
    target: &Target,
    timeout: Duration,
) -> Outcome {
    match client {
        Client::Wsgate => {
            let env = env.expect("probed when wsgate is among the clients");
            let default = wsgate::Variant::default_row();
            env.run(variant.unwrap_or(&default), target, timeout).await
        }
        Client::TokioTungstenite => clients::bounded(timeout, |p| clients::tokio_tungstenite(target, p)).await,
        Client::HyperUtil => clients::bounded(timeout, |p| clients::hyper_util(target, p)).await,
    }
}

fn start_testbed(
    v6: Behaviour,
    v4: Behaviour,
    cert_dir: &Path,
) -> anyhow::Result<(wsgate_testbed::TestbedHandle, Target)> {
    let testbed = wsgate_testbed::spawn_in_thread(Config {
        v6,
        v4,
        tls: true,
        port: 0,
        cert_dir: Some(cert_dir.to_owned()),
        slow_upgrade: Duration::from_millis(300),
    })
    .with_context(|| format!("starting the testbed (v6 {v6}, v4 {v4})"))?;
    let port = testbed.port();
    let ca_path = testbed.ca_path().context("the testbed wrote no ca.pem")?.to_owned();
    let tls = wsgate_bench::tls_connector(testbed.ca_pem().as_bytes())?;
    let target = Target {
        port,
        ca_path,
        addrs: [
            SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        ],
        tls,
    };
    Ok((testbed, target))
}

/// A scratch directory (certificates, wsgate's plugin cache), removed on drop.
struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    fn create() -> anyhow::Result<WorkDir> {
        let base = std::env::temp_dir();
        for i in 0..100u32 {
            let path = base.join(format!("wsgate-bench.{}.{i}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(WorkDir { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).with_context(|| format!("creating `{}`", path.display())),
            }
        }
        bail!("cannot create a scratch directory in `{}`", base.display())
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
