//! `wsgate-soak`: thousands of sessions through `ws-proxy` while faults are
//! injected, every message counted at both ends, then a drain.
//!
//! The pieces, each a process of its own, all on loopback:
//!
//! - the **upstream** (this binary again, `wsgate-soak upstream`): a
//!   tokio-tungstenite echo server on `[::1]:P` and `127.0.0.1:P`, that
//!   counts each session's numbered messages and takes orders (reset a
//!   session, blackhole IPv6) — see [`upstream`];
//! - the **gateways**: `wsgate serve` processes (the sessions spread over
//!   them, two sockets a session, as the hard RLIMIT_NOFILE of 20,000
//!   allows), routing `/` to `ws_proxy.wasm` (upstream
//!   `ws://soak-upstream.test:P/`, resolved to both `::1` and `127.0.0.1`)
//!   and `/trap-after-upgrade` to the `gateway-probe` plugin, with an admin
//!   listener — see [`gateway`];
//! - the **clients** (this process, one task a session on a
//!   current-thread runtime): numbered messages, one in flight, each echo
//!   checked and timed — see [`driver`].
//!
//! The run, each step bounded in count and time:
//!
//! 1. the gateways start; one warm-up session each; their open files and
//!    RSS are the baseline;
//! 2. `--sessions` minus `--blackhole-sessions` sessions open and start
//!    their traffic;
//! 3. the upstream's IPv6 is blackholed; `--blackhole-sessions` more
//!    sessions open (over IPv4, through the race): all `--sessions` are
//!    open at once;
//! 4. `--flood` upgrades past the limit: 503 each;
//! 5. `--slow-headers` clients send half a head and stall: 408 each, after
//!    the head timeout (running beside the next steps);
//! 6. `--resets` sessions ask the upstream to reset their connection
//!    mid-stream: ws-proxy closes the client's side with 1011 (the
//!    upstream's side failed without a close code);
//! 7. `--vanish` clients drop their connection without a Close (half with a FIN, half with an RST): the
//!    gateway ends the session and closes its upstream;
//! 8. `--traps` sessions on the probe's trap route: Close 1011;
//! 9. traffic for `--hold` seconds, then every session closes (1000);
//! 10. the gateways' open files back to the baseline, RSS at the end,
//!     `/metrics` against what the clients saw, and the upstream's counts
//!     against the clients', session by session;
//! 11. the drain (unless `--no-drain`): `--drain-sessions` sessions in
//!     traffic, SIGTERM to every gateway: each session gets Close 1001, no
//!     message acknowledged before the drain is lost, each gateway exits 0
//!     with its `drained:` line.
//!
//! The figures and checks go to standard output as markdown; progress to
//! standard error. The exit code is 1 when any check failed.

use anyhow::bail;
use clap::{Parser, Subcommand};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

mod drain;
mod driver;
mod faults;
mod gateway;
mod ledger;
mod report;
mod upstream;

use driver::{ClientEnd, Cmd, Session, Traffic};
use faults::Tally;
use gateway::{Gateway, GatewayConfig, Scratch};
use ledger::Fault;
use report::{Report, describe, ms, quantile};
use upstream::Upstream;

#[derive(Parser, Debug)]
#[command(
    name = "wsgate-soak",
    version,
    about = "Thousands of sessions through ws-proxy while faults are injected, every message counted at both ends, then a drain"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    soak: Soak,
}

#[derive(Subcommand, Debug)]
enum Sub {
    /// The upstream echo server, ordered on standard input.
    #[command(hide = true)]
    Upstream,
}

#[derive(clap::Args, Debug)]
struct Soak {
    /// The wsgate binary.
    #[arg(long, value_name = "PATH", default_value = "target/release/wsgate")]
    wsgate: PathBuf,

    /// The ws-proxy gateway plugin.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "target/wasm32-wasip2/plugin/ws_proxy.wasm"
    )]
    proxy_plugin: PathBuf,

    /// The gateway-probe test plugin (its trap route).
    #[arg(
        long,
        value_name = "PATH",
        default_value = "target/wasm32-wasip2/plugin/gateway_probe.wasm"
    )]
    probe_plugin: PathBuf,

    /// Sessions open at once at the peak (the blackhole's included).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(2..=20_000))]
    sessions: u32,

    /// Gateway processes the sessions are spread over (each holds two
    /// sockets a session under the hard RLIMIT_NOFILE).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=4))]
    gateways: u32,

    /// Milliseconds between an echo and a session's next message.
    #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u64).range(20..=60_000))]
    interval_ms: u64,

    /// Seconds of traffic after the faults, before every session closes.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(0..=600))]
    hold: u64,

    /// Sessions whose upstream connection is reset mid-stream.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    resets: u32,

    /// Sessions opened after the upstream's IPv6 is blackholed.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    blackhole_sessions: u32,

    /// Sessions on the trap route (Close 1011).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    traps: u32,

    /// Clients that drop their connection without a Close.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    vanish: u32,

    /// Clients that send half a request head and stall (408).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=1000))]
    slow_headers: u32,

    /// Upgrades while the gateways are at their session limit (503).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    flood: u32,

    /// The gateways' `serve.head-timeout`, in milliseconds.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    head_timeout_ms: u64,

    /// The bound on the gateways' RSS growth at the peak, per session, in
    /// KiB.
    #[arg(long, default_value_t = 512.0)]
    rss_per_session_kib: f64,

    /// Skip the drain phase.
    #[arg(long)]
    no_drain: bool,

    /// Drain: sessions in traffic when the gateways get SIGTERM.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    drain_sessions: u32,

    /// Drain: milliseconds between an echo and the next message.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(20..=60_000))]
    drain_interval_ms: u64,

    /// Drain: pass `--drain-timeout SECS` to the gateways (their default
    /// otherwise).
    #[arg(long, value_name = "SECS")]
    drain_timeout: Option<u64>,

    /// Bound on the whole run, in minutes: no session runs longer.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=120))]
    max_minutes: u64,
}

/// Sessions opened at a time.
const OPEN_AT_ONCE: usize = 64;
/// The upstream's name in the gateways' configuration.
const UPSTREAM_NAME: &str = "soak-upstream.test";

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Sub::Upstream) => match upstream::upstream_main() {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("wsgate-soak upstream: {e:#}");
                std::process::ExitCode::FAILURE
            }
        },
        None => {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("wsgate-soak: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            };
            match runtime.block_on(soak(cli.soak)) {
                Ok(report) => {
                    println!("{}", report.markdown());
                    if report.failed() > 0 {
                        eprintln!("wsgate-soak: {} checks failed", report.failed());
                        std::process::ExitCode::FAILURE
                    } else {
                        std::process::ExitCode::SUCCESS
                    }
                }
                Err(e) => {
                    eprintln!("wsgate-soak: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
    }
}

/// A line on standard error.
pub(crate) fn progress(what: impl std::fmt::Display) {
    eprintln!("wsgate-soak: {what}");
}

/// The gateways' RSS and open files, sampled through the run.
struct Peaks {
    rss_kib: Vec<f64>,
    files: Vec<usize>,
}

/// Samples every 500 ms until aborted.
fn sampler(pids: Vec<u32>, peaks: Arc<Mutex<Peaks>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            {
                let mut p = peaks.lock().unwrap();
                p.rss_kib.resize(pids.len(), 0.0);
                p.files.resize(pids.len(), 0);
                for (i, pid) in pids.iter().enumerate() {
                    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
                        .ok()
                        .and_then(|s| {
                            s.lines()
                                .find_map(|l| l.strip_prefix("VmRSS:"))
                                .and_then(|v| v.split_whitespace().next())
                                .and_then(|v| v.parse::<f64>().ok())
                        })
                        .unwrap_or(0.0);
                    let files = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
                    p.rss_kib[i] = p.rss_kib[i].max(rss);
                    p.files[i] = p.files[i].max(files);
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

/// Opens sessions `ids` (dealt out to the gateways in turn), `OPEN_AT_ONCE`
/// at a time, each starting its traffic; those that opened, and why the
/// others did not.
async fn open_many(
    ids: std::ops::Range<u32>,
    gateways: &[Gateway],
    traffic: &Arc<Traffic>,
    what: &str,
) -> (Vec<Session>, Tally) {
    let total = ids.len();
    let mut open = Vec::with_capacity(total);
    let mut failed = Tally::new();
    let ids: Vec<u32> = ids.collect();
    for (b, chunk) in ids.chunks(OPEN_AT_ONCE).enumerate() {
        let results = futures_util::future::join_all(chunk.iter().map(|&id| {
            let g = id as usize % gateways.len();
            // The sessions' sends are spread by the times they open at.
            driver::open(id, gateways[g].addr, traffic.clone())
        }))
        .await;
        for r in results {
            match r {
                Ok(s) => open.push(s),
                Err(e) => *failed.entry(format!("{e:#}")).or_default() += 1,
            }
        }
        if (b + 1) % 32 == 0 {
            progress(format!("{what}: {} of {total} open", open.len()));
        }
    }
    progress(format!("{what}: {} of {total} open", open.len()));
    (open, failed)
}

/// Waits (bounded) until every one of `sessions` has ended.
async fn wait_finished(sessions: &[&Session], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if sessions.iter().all(|s| s.finished()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The sum over the gateways of `f` of their `/metrics`.
async fn metrics_sum(gateways: &[Gateway], f: impl Fn(&gateway::Metrics) -> f64) -> anyhow::Result<f64> {
    let mut sum = 0.0;
    for g in gateways {
        sum += f(&g.metrics().await?);
    }
    Ok(sum)
}

/// Waits (bounded) until the gateways' sessions open, all routes, are
/// `count`; the last count read.
async fn settle_active(gateways: &[Gateway], count: f64, limit: Duration) -> anyhow::Result<f64> {
    let deadline = Instant::now() + limit;
    loop {
        let active = metrics_sum(gateways, |m| m.sum("wsgate_sessions_active")).await?;
        if active == count || Instant::now() > deadline {
            return Ok(active);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Ids, a few, for a failed check's line.
fn some(ids: &[u32]) -> String {
    let mut s: Vec<String> = ids.iter().take(5).map(u32::to_string).collect();
    if ids.len() > 5 {
        s.push(format!("… ({} in all)", ids.len()));
    }
    s.join(", ")
}

async fn soak(cli: Soak) -> anyhow::Result<Report> {
    for path in [&cli.wsgate, &cli.proxy_plugin, &cli.probe_plugin] {
        if !path.is_file() {
            bail!("{} is missing (make soak builds it)", path.display());
        }
    }
    let main_sessions = cli.sessions.saturating_sub(cli.blackhole_sessions);
    if cli.resets + cli.vanish > main_sessions {
        bail!("--resets and --vanish take more sessions than there are before the blackhole");
    }
    if cli.traps > cli.resets + cli.vanish {
        bail!("--traps needs the slots of --resets and --vanish (at most their sum)");
    }
    let started = Instant::now();
    let nofile = wsgate_bench::raise_soft_nofile();
    let mut report = Report::default();
    let scratch = Scratch::new()?;
    let mut up = Upstream::start().await?;
    progress(format!(
        "upstream on [::1]:{0} and 127.0.0.1:{0} (pid {1}); RLIMIT_NOFILE {nofile}",
        up.port,
        up.pid()
    ));
    let share = cli.sessions.div_ceil(cli.gateways);
    // Two sockets a session in a gateway, and room for its own files and
    // the connections that come and go (flood, slow heads, admin).
    let needed = u64::from(share) * 2 + u64::from(cli.flood + cli.slow_headers) + 200;
    // This process holds every session's client socket, the upstream its
    // own end of each.
    let clients = u64::from(cli.sessions.max(cli.drain_sessions)) + u64::from(cli.flood + cli.slow_headers) + 200;
    if clients > nofile {
        bail!(
            "{} sessions need about {clients} files in this process, over RLIMIT_NOFILE {nofile}",
            cli.sessions
        );
    }
    if needed > nofile {
        bail!(
            "{share} sessions a gateway need about {needed} files, over RLIMIT_NOFILE {nofile}: give more --gateways"
        );
    }
    let config = scratch.dir.join("wsgate.toml");
    std::fs::write(
        &config,
        GatewayConfig {
            proxy_plugin: &std::path::absolute(&cli.proxy_plugin)?,
            probe_plugin: &std::path::absolute(&cli.probe_plugin)?,
            upstream_name: UPSTREAM_NAME,
            upstream_port: up.port,
            max_sessions: share,
            head_timeout_ms: cli.head_timeout_ms,
        }
        .toml(),
    )?;
    let extra: Vec<String> = match (cli.no_drain, cli.drain_timeout) {
        (false, Some(secs)) => vec!["--drain-timeout".into(), secs.to_string()],
        _ => Vec::new(),
    };
    let cache = scratch.dir.join("cache");
    let mut gateways = Vec::new();
    for i in 0..cli.gateways as usize {
        // One after the other: the first compiles the plugins into the
        // cache, the others read them.
        let g = Gateway::start(i, &cli.wsgate, &config, &cache, &extra)?;
        progress(format!(
            "gateway {i} on {} (admin {}, pid {}), {share} sessions at most",
            g.addr,
            g.admin,
            g.pid()
        ));
        gateways.push(g);
    }
    let addrs: Vec<_> = gateways.iter().map(|g| g.addr).collect();
    let mut next_id = 1u32;
    let mut ids = |n: u32| {
        let r = next_id..next_id + n;
        next_id += n;
        r
    };

    // 1. Warm-up and baseline.
    let deadline = started + Duration::from_secs(cli.max_minutes * 60);
    let traffic = Arc::new(Traffic {
        interval: Duration::from_millis(cli.interval_ms),
        latencies_us: Mutex::new(Vec::new()),
        deadline,
    });
    let warm = Arc::new(Traffic {
        interval: Duration::from_millis(10),
        latencies_us: Mutex::new(Vec::new()),
        deadline,
    });
    let (warmups, failed) = open_many(ids(cli.gateways), &gateways, &warm, "warm-up").await;
    if !failed.is_empty() {
        bail!("warm-up sessions failed: {}", describe(&failed));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for s in &warmups {
        s.tell(Cmd::Close);
    }
    wait_finished(&warmups.iter().collect::<Vec<_>>(), Duration::from_secs(10)).await;
    let warm_count = warmups.len() as u64;
    drop(warmups);
    // A trap on each gateway too: an instance of each route's plugin has
    // been made (wasmtime keeps one memory image a module, a file, from
    // its first instance on).
    let warm_traps = faults::traps(&addrs, gateways.len()).await;
    let warm_trapped = warm_traps.get("Close 1011").copied().unwrap_or(0);
    if warm_trapped != gateways.len() as u64 {
        bail!("warm-up traps: {}", describe(&warm_traps));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let base_files: Vec<usize> = gateways.iter().map(Gateway::files).collect();
    let base_rss: Vec<f64> = gateways.iter().map(Gateway::rss_kib).collect();
    let base_names: Vec<Vec<String>> = gateways.iter().map(Gateway::file_names).collect();
    progress(format!("baseline: files {base_files:?}, RSS {base_rss:?} KiB"));
    let peaks = Arc::new(Mutex::new(Peaks {
        rss_kib: base_rss.clone(),
        files: base_files.clone(),
    }));
    let sampling = sampler(gateways.iter().map(Gateway::pid).collect(), peaks.clone());

    // 2. The sessions before the blackhole.
    let (mut main, failed) = open_many(ids(main_sessions), &gateways, &traffic, "sessions").await;
    report.check(
        format!("{main_sessions} sessions open through ws-proxy"),
        failed.is_empty(),
        if failed.is_empty() {
            format!("{} open", main.len())
        } else {
            format!("{} open; failed: {}", main.len(), describe(&failed))
        },
    );

    // 3. The blackhole, and sessions after it.
    let fillers = up.blackhole().await?;
    progress(format!(
        "upstream's IPv6 blackholed ({fillers} connections fill its queue)"
    ));
    let blackhole_started = Instant::now();
    let (late, failed) = open_many(ids(cli.blackhole_sessions), &gateways, &traffic, "after the blackhole").await;
    let late_secs = blackhole_started.elapsed().as_secs_f64();
    report.check(
        format!("{} sessions opened after the IPv6 blackhole", cli.blackhole_sessions),
        failed.is_empty(),
        format!(
            "{} opened in {late_secs:.1} s{}",
            late.len(),
            if failed.is_empty() {
                String::new()
            } else {
                format!("; failed: {}", describe(&failed))
            }
        ),
    );
    let late_ids: Vec<u32> = late.iter().map(|s| s.id).collect();
    main.extend(late);
    let peak_open = main.len() as f64;
    let active = settle_active(&gateways, peak_open, Duration::from_secs(10)).await?;
    {
        // A reading at the peak itself, besides the sampler's.
        let mut p = peaks.lock().unwrap();
        for (i, g) in gateways.iter().enumerate() {
            p.rss_kib[i] = p.rss_kib[i].max(g.rss_kib());
            p.files[i] = p.files[i].max(g.files());
        }
    }
    report.check(
        format!("the gateways hold all {} sessions at once", main.len()),
        active == peak_open && main.len() == cli.sessions as usize,
        format!("wsgate_sessions_active {active}"),
    );

    // 4. The flood past the limit.
    let flood = faults::flood(&addrs, cli.flood as usize).await;
    let flood_503 = flood.get("503").copied().unwrap_or(0);
    report.check(
        format!("{} upgrades past the limit answered 503", cli.flood),
        flood_503 == u64::from(cli.flood),
        describe(&flood),
    );
    report.fault(
        "connection flood past the session limit",
        cli.flood.into(),
        describe(&flood),
    );

    // 5. Slow headers, beside what follows.
    let head_timeout = Duration::from_millis(cli.head_timeout_ms);
    let slow: Vec<_> = (0..cli.slow_headers as usize)
        .map(|i| tokio::spawn(faults::slow_header(addrs[i % addrs.len()], head_timeout)))
        .collect();

    // 6. Upstream resets, 7. vanishing clients: sessions spread over the
    // whole set (and so over the gateways).
    let step = (main_sessions as usize / (cli.resets + cli.vanish).max(1) as usize).max(1);
    let mut faulted: HashMap<u32, Fault> = HashMap::new();
    let (mut reset_at, mut vanish_at) = (Vec::new(), Vec::new());
    let g = cli.gateways as usize;
    for k in 0..(cli.resets + cli.vanish) as usize {
        // Fault k on gateway k % g (a session's gateway is its id modulo
        // their number): each gateway frees as many slots as the traps it
        // is dealt need.
        let base = k * step;
        let i = (base..(base + g).min(main_sessions as usize))
            .find(|&i| main[i].id as usize % g == k % g)
            .unwrap_or(base);
        if k < cli.resets as usize {
            reset_at.push(i);
            faulted.insert(main[i].id, Fault::Reset);
        } else {
            vanish_at.push(i);
            faulted.insert(main[i].id, Fault::Vanish);
        }
    }
    for &i in &reset_at {
        main[i].tell(Cmd::Reset);
    }
    let resets: Vec<&Session> = reset_at.iter().map(|&i| &main[i]).collect();
    if !wait_finished(&resets, Duration::from_secs(30)).await {
        progress("some reset sessions did not end within 30 s");
    }
    let mut reset_tally = Tally::new();
    for s in &resets {
        *reset_tally.entry(format!("client: {}", s.record().end)).or_default() += 1;
    }
    let reset_1011 = resets
        .iter()
        .filter(|s| s.record().end == ClientEnd::Close(1011))
        .count();
    report.check(
        format!(
            "{} sessions whose upstream reset end with Close 1011 at the client",
            cli.resets
        ),
        reset_1011 == resets.len(),
        describe(&reset_tally),
    );
    // Half of them leave with a FIN, half with an RST.
    for (k, &i) in vanish_at.iter().enumerate() {
        main[i].tell(if k % 2 == 0 { Cmd::Vanish } else { Cmd::Abort });
    }
    let vanished: Vec<&Session> = vanish_at.iter().map(|&i| &main[i]).collect();
    wait_finished(&vanished, Duration::from_secs(10)).await;
    let still = peak_open - (cli.resets + cli.vanish) as f64;
    let active = settle_active(&gateways, still, Duration::from_secs(30)).await?;
    report.check(
        "the gateways end the reset and vanished sessions",
        active == still,
        format!("wsgate_sessions_active {active}, expected {still}"),
    );

    // 8. Plugins that trap.
    let traps = faults::traps(&addrs, cli.traps as usize).await;
    let traps_1011 = traps.get("Close 1011").copied().unwrap_or(0);
    let traps_upgraded: u64 = traps
        .iter()
        .filter(|(k, _)| !k.starts_with("no upgrade"))
        .map(|(_, n)| n)
        .sum();
    // A trap session that found no slot was answered 503 by the host too.
    let traps_503: u64 = traps.iter().filter(|(k, _)| k.contains("503")).map(|(_, n)| n).sum();
    report.check(
        format!("{} sessions whose plugin traps get Close 1011", cli.traps),
        traps_1011 == u64::from(cli.traps),
        describe(&traps),
    );
    report.fault("plugin traps after the upgrade", cli.traps.into(), describe(&traps));

    let mut slow_tally = Tally::new();
    let mut slow_after = Vec::new();
    for task in slow {
        match task.await {
            Ok(s) => {
                *slow_tally.entry(s.outcome.clone()).or_default() += 1;
                if s.outcome == "408" {
                    slow_after.push(s.after.as_millis() as u32);
                }
            }
            Err(e) => *slow_tally.entry(format!("task failed: {e}")).or_default() += 1,
        }
    }
    let slow_408 = slow_tally.get("408").copied().unwrap_or(0);
    let early = slow_after
        .iter()
        .filter(|&&ms| u64::from(ms) < cli.head_timeout_ms)
        .count();
    report.check(
        format!(
            "{} slow-header clients answered 408, none before the head timeout",
            cli.slow_headers
        ),
        slow_408 == u64::from(cli.slow_headers) && early == 0,
        format!(
            "{}; after {} ms (median), {early} early",
            describe(&slow_tally),
            quantile(&mut slow_after.clone(), 0.5).unwrap_or(0)
        ),
    );
    report.fault(
        format!("slow-header clients (head timeout {} ms)", cli.head_timeout_ms),
        cli.slow_headers.into(),
        format!(
            "{}, after {}–{} ms",
            describe(&slow_tally),
            quantile(&mut slow_after.clone(), 0.0).unwrap_or(0),
            quantile(&mut slow_after, 1.0).unwrap_or(0)
        ),
    );

    // 9. Traffic, then every session closes.
    progress(format!("traffic for {} s", cli.hold));
    let hold_from = traffic.latencies_us.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(cli.hold)).await;
    let hold_to = traffic.latencies_us.lock().unwrap().len();
    let running: Vec<&Session> = main.iter().filter(|s| !s.finished()).collect();
    progress(format!("closing {} sessions", running.len()));
    for s in &running {
        s.tell(Cmd::Close);
    }
    let closed = wait_finished(&running, Duration::from_secs(60) + traffic.interval).await;
    report.check(
        "every session closed within its bound",
        closed,
        format!("{} closing", running.len()),
    );

    // 10. Files back to the baseline; RSS; the counts of both ends.
    let closing = Instant::now();
    let files_back = |gs: &[Gateway]| gs.iter().zip(&base_files).all(|(g, &b)| g.files() <= b);
    while !files_back(&gateways) && closing.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The pool gives freed slots back in batches.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let end_files: Vec<usize> = gateways.iter().map(Gateway::files).collect();
    let end_rss: Vec<f64> = gateways.iter().map(Gateway::rss_kib).collect();
    sampling.abort();
    let (peak_rss, peak_files) = {
        let p = peaks.lock().unwrap();
        (p.rss_kib.clone(), p.files.clone())
    };
    // The files more (or fewer) than at the baseline, by kind.
    let differences: Vec<String> = gateways
        .iter()
        .zip(&base_names)
        .filter_map(|(g, base)| {
            let now = g.file_names();
            let (mut more, mut fewer) = (now.clone(), base.clone());
            for name in base {
                if let Some(i) = more.iter().position(|n| n == name) {
                    more.remove(i);
                }
            }
            for name in &now {
                if let Some(i) = fewer.iter().position(|n| n == name) {
                    fewer.remove(i);
                }
            }
            (!more.is_empty() || !fewer.is_empty())
                .then(|| format!("gateway {}: more {more:?}, fewer {fewer:?}", g.index))
        })
        .collect();
    report.check(
        "the gateways' open files back to their baseline",
        end_files == base_files,
        format!(
            "baseline {base_files:?}, peak {peak_files:?}, end {end_files:?} (after {:.1} s){}",
            closing.elapsed().as_secs_f64(),
            if differences.is_empty() {
                String::new()
            } else {
                format!("; {}", differences.join("; "))
            }
        ),
    );
    let rss_growth: f64 = peak_rss.iter().zip(&base_rss).map(|(p, b)| p - b).sum();
    let per_session = rss_growth / peak_open.max(1.0);
    report.check(
        format!("RSS growth at the peak ≤ {} KiB a session", cli.rss_per_session_kib),
        per_session <= cli.rss_per_session_kib,
        format!("{per_session:.1} KiB a session"),
    );

    let upstream_report = up.report().await?;
    let ledger = ledger::compare(&main, &faulted, &upstream_report);
    report.check(
        format!(
            "{} unfaulted sessions: every message echoed once, in order, counted alike at both ends",
            ledger.healthy
        ),
        ledger.problems.is_empty(),
        if ledger.problems.is_empty() {
            let t = &ledger.unfaulted;
            format!("{} sent, {} echoed, {} at the upstream", t.sent, t.echoed, t.upstream)
        } else {
            ledger.problems_line()
        },
    );
    let (sent, echoed, up_messages) = (ledger.all.sent, ledger.all.echoed, ledger.all.upstream);
    let reset_up = ledger.reset_upstream;
    let vanish_tally = ledger.vanish_upstream;
    let mut reset_all = reset_tally.clone();
    reset_all.extend(reset_up);
    report.fault(
        "upstream resets mid-stream (SO_LINGER 0)",
        cli.resets.into(),
        describe(&reset_all),
    );
    let vanish_closed: u64 = vanish_tally
        .iter()
        .filter(|(k, _)| k.starts_with("upstream got"))
        .map(|(_, n)| n)
        .sum();
    report.check(
        format!("{} vanished clients: the gateway closed their upstream", cli.vanish),
        vanish_closed == vanished.len() as u64,
        describe(&vanish_tally),
    );
    report.fault(
        "clients that vanish (no Close; half FIN, half RST)",
        cli.vanish.into(),
        describe(&vanish_tally),
    );
    let late_v4 = late_ids
        .iter()
        .filter(|id| upstream_report.sessions.get(id).is_some_and(|u| !u.v6))
        .count();
    let main_v6 = main
        .iter()
        .filter(|s| !late_ids.contains(&s.id))
        .filter(|s| upstream_report.sessions.get(&s.id).is_some_and(|u| u.v6))
        .count();
    report.check(
        "the sessions opened after the blackhole reach the upstream over IPv4",
        late_v4 == late_ids.len(),
        format!(
            "{late_v4} of {} over IPv4 (before it: {main_v6} of {main_sessions} over IPv6)",
            late_ids.len()
        ),
    );
    report.fault(
        "upstream's IPv6 blackholed mid-run",
        1,
        format!(
            "{} of {} sessions opened after it succeeded ({late_v4} over IPv4) in {late_secs:.1} s",
            late_ids.len(),
            cli.blackhole_sessions
        ),
    );

    // The gateways' counters against what the clients saw.
    let m = {
        let mut all = Vec::new();
        for g in &gateways {
            all.push(g.metrics().await?);
        }
        all
    };
    let total = |f: &dyn Fn(&gateway::Metrics) -> f64| m.iter().map(f).sum::<f64>();
    let sessions_total = total(&|m| m.sum("wsgate_sessions_total"));
    let expected_total = (warm_count + warm_trapped + main.len() as u64 + traps_upgraded) as f64;
    report.check(
        "/metrics wsgate_sessions_total = the sessions the clients opened",
        sessions_total == expected_total,
        format!("{sessions_total} counted, {expected_total} opened (warm-up, healthy and faulted, trapped)"),
    );
    let answers_503 = total(&|m| m.sample("wsgate_host_answers_total{status=\"503\"}").unwrap_or(0.0));
    report.check(
        "/metrics host_answers_total{status=\"503\"} = the 503s the clients got",
        answers_503 == (flood_503 + traps_503) as f64,
        format!("{answers_503} counted, {} seen", flood_503 + traps_503),
    );
    let answers_408 = total(&|m| m.sample("wsgate_host_answers_total{status=\"408\"}").unwrap_or(0.0));
    report.check(
        "/metrics host_answers_total{status=\"408\"} = the slow headers' 408s",
        answers_408 == slow_408 as f64,
        format!("{answers_408} counted, {slow_408} seen"),
    );
    let trapped = total(&|m| {
        m.sample("wsgate_sessions_ended_total{route=\"trap\",outcome=\"trap\"}")
            .unwrap_or(0.0)
    });
    report.check(
        "/metrics sessions_ended_total{route=\"trap\",outcome=\"trap\"} = the traps' 1011s",
        trapped == (traps_1011 + warm_trapped) as f64,
        format!(
            "{trapped} counted, {} seen (warm-up's included)",
            traps_1011 + warm_trapped
        ),
    );
    let proxy_outcome = |o: &str| {
        total(&|m| {
            m.sample(&format!(
                "wsgate_sessions_ended_total{{route=\"proxy\",outcome=\"{o}\"}}"
            ))
            .unwrap_or(0.0)
        })
    };
    // ws-proxy returns an error when a side failed (a reset upstream, a
    // client gone without a Close) and Ok after a close handshake.
    let (done, refused) = (proxy_outcome("done"), proxy_outcome("refused"));
    let expected_refused = (cli.resets + cli.vanish) as f64;
    let expected_done = (warm_count + main.len() as u64) as f64 - expected_refused;
    report.check(
        "/metrics sessions_ended_total{route=\"proxy\"}: done = closed sessions, refused = reset and vanished ones",
        done == expected_done && refused == expected_refused,
        format!("{done} done, {refused} refused counted; {expected_done} and {expected_refused} seen"),
    );
    let outcomes: Vec<String> = ["done", "failed", "trap", "limit", "idle", "refused"]
        .iter()
        .filter_map(|o| {
            let n = proxy_outcome(o);
            (n > 0.0).then(|| format!("{n} {o}"))
        })
        .collect();

    // The figures.
    let mut latencies = std::mem::take(&mut *traffic.latencies_us.lock().unwrap());
    let mut held = latencies.get(hold_from..hold_to).unwrap_or_default().to_vec();
    report.figure("gateway processes", cli.gateways.to_string());
    report.figure("sessions open at once (peak)", format!("{}", peak_open));
    report.figure(
        "messages sent / echoed to the clients / counted at the upstream (all sessions, faulted ones included)",
        format!("{sent} / {echoed} / {up_messages}"),
    );
    report.figure(
        "echo latency p50 (client → gateway → upstream → client)",
        ms(quantile(&mut latencies, 0.5)),
    );
    report.figure("echo latency p99", ms(quantile(&mut latencies, 0.99)));
    report.figure("echo latency max", ms(quantile(&mut latencies, 1.0)));
    // The hold's alone: every session open, no fault, no session opening.
    report.figure(
        format!("echo latency during the hold, {} echoes: p50 / p99", held.len()),
        format!("{} / {}", ms(quantile(&mut held, 0.5)), ms(quantile(&mut held, 0.99))),
    );
    let sum = |v: &[f64]| v.iter().sum::<f64>();
    report.figure(
        "gateways' VmRSS: baseline / peak / end (all gateways)",
        format!(
            "{:.0} / {:.0} / {:.0} MiB",
            sum(&base_rss) / 1024.0,
            sum(&peak_rss) / 1024.0,
            sum(&end_rss) / 1024.0
        ),
    );
    report.figure(
        "RSS per session at the peak / at the end (over the baseline)",
        format!(
            "{per_session:.1} / {:.1} KiB",
            (sum(&end_rss) - sum(&base_rss)) / peak_open.max(1.0)
        ),
    );
    report.figure(
        "gateways' open files: baseline / peak / end",
        format!("{base_files:?} / {peak_files:?} / {end_files:?}"),
    );
    report.figure(
        "upstream connections over IPv6 / IPv4",
        format!(
            "{} / {}",
            upstream_report.v6_connections, upstream_report.v4_connections
        ),
    );
    report.figure("ws-proxy sessions ended (/metrics)", outcomes.join(", "));

    // 11. The drain.
    if cli.no_drain {
        progress("no drain (--no-drain)");
    } else {
        drain::drain(
            &cli,
            &mut report,
            &mut gateways,
            &mut up,
            ids(cli.drain_sessions),
            deadline,
        )
        .await?;
    }
    report.figure("run time", format!("{:.0} s", started.elapsed().as_secs_f64()));
    report.figure("load average at the end", load_average());
    Ok(report)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}
