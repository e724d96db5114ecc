//! `wsgate-serve-bench`: `wsgate serve` against native peers, same run.
//!
//! Three measurements, each against a peer run side by side (interleaved
//! rounds, medians kept), all on loopback:
//!
//! - **sessions**: `wss://` sessions per second (TCP, a full TLS handshake,
//!   the upgrade, one echo, the close handshake) against `wsgate serve
//!   echo_server.wasm` and against a native tokio-tungstenite +
//!   tokio-rustls echo server with the same certificate, at 1 and 8
//!   sessions at a time; the server's CPU time per session; the
//!   gateway's instantiation time per session (p50, p99) from the `-v`
//!   lines of another gateway (the rates are a quiet one's);
//! - **rss**: the gateway's resident memory per idle session, 1,000 open
//!   sessions against one closed warm-up session (and the native server's,
//!   for context), and 10,000 open through `ws_proxy.wasm`, each with its
//!   upstream connection to a native echo server, the plugin blocked on a
//!   read (spread over as many gateway processes as the hard
//!   RLIMIT_NOFILE needs at two sockets a session);
//! - **proxy**: echo throughput through `wsgate serve ws_proxy.wasm` and
//!   through nginx (`proxy_pass` with the Upgrade headers), both in front of
//!   the same native upstream, and straight to the upstream for context.
//!
//! The native servers are this binary again (`wsgate-serve-bench native
//! ...`), a child process with tokio's multi-threaded runtime, as the
//! gateway has: both servers are processes of their own, whose RSS and CPU
//! time can be read in /proc. The clients run in this process on a
//! current-thread runtime, the same client for both servers.
//!
//! The tables go to standard output, a progress line per phase and round
//! to standard error. Every wait is bounded in count and time.

use anyhow::bail;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

mod native;
mod process;
mod proxy;
mod rss;
mod sessions;
mod stats;

use native::native_main;
use process::Scratch;
use proxy::proxy_phase;
use rss::rss_phase;
use sessions::sessions_phase;

#[derive(Parser, Debug)]
#[command(
    name = "wsgate-serve-bench",
    version,
    about = "wsgate serve against native peers: sessions per second, instantiation, RSS per idle session, proxy throughput against nginx"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    bench: Bench,
}

#[derive(Subcommand, Debug)]
enum Sub {
    /// The native peer: a tokio-tungstenite echo server (TLS with
    /// tokio-rustls when given a certificate), until SIGTERM.
    #[command(hide = true)]
    Native {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
}

#[derive(clap::Args, Debug)]
struct Bench {
    /// The wsgate binary.
    #[arg(long, value_name = "PATH", default_value = "target/release/wsgate")]
    wsgate: PathBuf,

    /// The echo-server gateway plugin.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "target/wasm32-wasip2/plugin/echo_server.wasm"
    )]
    echo_plugin: PathBuf,

    /// The ws-proxy gateway plugin.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "target/wasm32-wasip2/plugin/ws_proxy.wasm"
    )]
    proxy_plugin: PathBuf,

    /// The nginx binary (bench/nginx.sh installs Debian's and prints its path).
    #[arg(long, value_name = "PATH", default_value = "nginx")]
    nginx: PathBuf,

    /// Which phases to run.
    #[arg(long, value_delimiter = ',', default_value = "sessions,rss,proxy")]
    phases: Vec<Phase>,

    /// Sessions: rounds (each server, each concurrency, interleaved).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=50))]
    rounds: u32,

    /// Sessions: sessions per round, per server and concurrency.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    sessions: u32,

    /// Sessions: the concurrency levels (client tasks, each one session
    /// after the other).
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    concurrency: Vec<u32>,

    /// RSS: sessions held open at once, echo_server and native.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    idle_sessions: u32,

    /// RSS: sessions held open at once through ws_proxy.wasm (each with its
    /// upstream connection, the plugin blocked on a read); 0 skips the row.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    proxy_idle_sessions: u32,

    /// RSS: seconds the sessions stay open and idle before the reading.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=3600))]
    hold: u64,

    /// Proxy: runs of each row for each target (the median is kept).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=50))]
    runs: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Phase {
    Sessions,
    Rss,
    Proxy,
}

/// Bound on one session of the sessions phase.
const SESSION_LIMIT: Duration = Duration::from_secs(10);
/// Bound on one round of the sessions phase.
const ROUND_LIMIT: Duration = Duration::from_secs(300);
/// Bound on one throughput run.
const RUN_LIMIT: Duration = Duration::from_secs(60);
/// Bound on a server's start (the gateway compiles its plugin first).
const START_LIMIT: Duration = Duration::from_secs(180);

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Sub::Native {
            listen,
            tls_cert,
            tls_key,
        }) => native_main(listen, tls_cert.zip(tls_key)),
        None => bench_main(cli.bench),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsgate-serve-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn progress(what: impl std::fmt::Display) {
    eprintln!("wsgate-serve-bench: {what}");
}

fn bench_main(cli: Bench) -> anyhow::Result<()> {
    for path in [&cli.wsgate, &cli.echo_plugin, &cli.proxy_plugin] {
        if !path.is_file() {
            bail!("{} is missing (make build plugins)", path.display());
        }
    }
    if cli.concurrency.iter().any(|&c| c == 0 || c > 256) {
        bail!("--concurrency: each level from 1 to 256");
    }
    let nofile = raise_nofile();
    let scratch = Scratch::new()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let started = Instant::now();
    let mut out = String::new();
    out.push_str(&format!(
        "\n`wsgate-serve-bench` ({}), {} CPUs, load average at start {}; RLIMIT_NOFILE {nofile}.\n",
        describe_args(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    ));
    if cli.phases.contains(&Phase::Sessions) {
        out.push_str(&runtime.block_on(sessions_phase(&cli, &scratch))?);
    }
    if cli.phases.contains(&Phase::Rss) {
        out.push_str(&runtime.block_on(rss_phase(&cli, &scratch, nofile))?);
    }
    if cli.phases.contains(&Phase::Proxy) {
        out.push_str(&runtime.block_on(proxy_phase(&cli, &scratch))?);
    }
    out.push_str(&format!(
        "\nTook {:.0} s; load average at the end {}.\n",
        started.elapsed().as_secs_f64(),
        load_average()
    ));
    println!("{out}");
    Ok(())
}

fn describe_args() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        "defaults".into()
    } else {
        args.join(" ")
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The open files the bench wants: 10,000 sessions through ws-proxy are
/// 20,000 sockets in the gateway.
const WANTED_NOFILE: u64 = 65_536;

/// Raises RLIMIT_NOFILE (the children inherit it): to [`WANTED_NOFILE`]
/// when the process may raise its hard limit (root), else the soft limit to
/// the hard one.
fn raise_nofile() -> u64 {
    // SAFETY: setrlimit only reads the struct given.
    unsafe {
        let wanted = libc::rlimit {
            rlim_cur: WANTED_NOFILE,
            rlim_max: WANTED_NOFILE,
        };
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
            && limit.rlim_max < WANTED_NOFILE
            && libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0
        {
            return WANTED_NOFILE;
        }
    }
    wsgate_bench::raise_soft_nofile()
}
