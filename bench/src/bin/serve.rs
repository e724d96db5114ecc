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
//!   gateway's instantiation time per session (p50, p99) from its `-v`
//!   lines;
//! - **rss**: the gateway's resident memory per idle session, 1,000 open
//!   sessions against one closed warm-up session (and the native server's,
//!   for context), and 10,000 open through `ws_proxy.wasm`, each with its
//!   upstream connection to a native echo server, the plugin blocked on a
//!   read;
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

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

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

// ---------------------------------------------------------------------
// The bench

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
/// 30,000 files in the gateway.
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
    raise_soft_nofile()
}

/// Raises the soft RLIMIT_NOFILE to the hard limit.
fn raise_soft_nofile() -> u64 {
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
        limit.rlim_cur
    }
}

/// A scratch directory: the certificates, the gateway's cache, nginx's
/// prefix. Removed at the end.
struct Scratch {
    dir: PathBuf,
    ca_pem: String,
    cert: PathBuf,
    key: PathBuf,
}

impl Scratch {
    fn new() -> anyhow::Result<Scratch> {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let dir = std::env::temp_dir().join(format!("wsgate-serve-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // A CA and a leaf it signs (ECDSA P-256), as the testbed has: the
        // client validates a chain, as a real one does.
        let mut ca_params = CertificateParams::default();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "wsgate-serve-bench CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        let leaf_key = KeyPair::generate()?;
        let leaf =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?.signed_by(&leaf_key, &ca)?;
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, leaf.pem())?;
        std::fs::write(&key, leaf_key.serialize_pem())?;
        Ok(Scratch {
            dir,
            ca_pem: ca.pem(),
            cert,
            key,
        })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A server in a child process, its standard error collected line by line.
struct Server {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `command` and waits (bounded) for its `listening on ADDR` line.
    fn start(name: &'static str, mut command: Command) -> anyhow::Result<Server> {
        // A backtrace captured for every error the host makes (a closed
        // stream, say) is a debugging setting, not serving: neither server
        // gets one.
        let mut child = command
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let stderr = child.stderr.take().context("no stderr")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<SocketAddr>();
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on ").nth(1)
                    && let Some(addr) = rest.split_whitespace().next().and_then(|a| a.parse().ok())
                {
                    let _ = ready_tx.send(addr);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Ok(addr) = ready_rx.recv_timeout(Duration::from_millis(50)) {
                return Ok(Server {
                    name,
                    child,
                    addr,
                    lines,
                });
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "{name} exited ({status}) before listening: {}",
                    lines.lock().unwrap().join("\n")
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{name} did not listen within {START_LIMIT:?}");
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The lines said so far, taken.
    fn take_lines(&self) -> Vec<String> {
        std::mem::take(&mut *self.lines.lock().unwrap())
    }

    /// Waits (bounded) until `count` lines containing `needle` have come,
    /// then takes every line.
    fn wait_lines(&self, needle: &str, count: usize, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.lines.lock().unwrap().iter().filter(|l| l.contains(needle)).count() >= count {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.take_lines()
    }

    /// SIGTERM, then (after 10 s) SIGKILL.
    fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        // SAFETY: kill with the id of our own child, which we have not reaped.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        progress(format!("{} did not stop on SIGTERM within 10 s: killed", self.name));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// This binary, as the native peer.
fn native_command(tls: Option<(&Path, &Path)>) -> anyhow::Result<Command> {
    let mut command = Command::new(std::env::current_exe().context("finding this binary")?);
    command.args(["native", "--listen", "127.0.0.1:0"]);
    if let Some((cert, key)) = tls {
        command.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
    }
    Ok(command)
}

/// `wsgate serve PLUGIN --listen 127.0.0.1:0 ...`, no limit that a bench
/// session could meet (CPU, run time, idle time).
fn wsgate_command(cli: &Bench, scratch: &Scratch, plugin: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(&cli.wsgate);
    command
        .arg("serve")
        .arg(plugin)
        .args(["--listen", "127.0.0.1:0", "--cache-dir"])
        .arg(scratch.dir.join("cache"))
        .args(["--cpu-time", "0", "--run-time", "0", "--idle-timeout", "0"])
        .args(extra);
    command
}

/// Process CPU time (user + system) of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // The fields after the command (which may hold spaces), from field 3.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return f64::NAN;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(f64::NAN);
    // utime is field 14, stime 15: indexes 11 and 12 after the command.
    // SAFETY: sysconf reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

/// VmRSS, RssAnon, RssFile and RssShmem of `pid`, in KiB.
#[derive(Clone, Copy, Debug, Default)]
struct Rss {
    total: f64,
    anon: f64,
    file: f64,
    shmem: f64,
}

fn rss(pid: u32) -> Rss {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    Rss {
        total: field("VmRSS:"),
        anon: field("RssAnon:"),
        file: field("RssFile:"),
        shmem: field("RssShmem:"),
    }
}

/// The `q` quantile by linear interpolation between the closest ranks (as
/// `wsgate-bench`'s).
fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let pos = q * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

fn median(values: &[f64]) -> f64 {
    quantile(values, 0.5)
}

fn range(values: &[f64], precision: usize) -> String {
    let (lo, hi) = (quantile(values, 0.0), quantile(values, 1.0));
    format!("{lo:.precision$}–{hi:.precision$}")
}

/// The number after `key` in `line` (`instantiate 0.123 ms`).
fn number_after(line: &str, key: &str) -> Option<f64> {
    line.split(key)
        .nth(1)?
        .split_whitespace()
        .next()?
        .trim_end_matches(')')
        .parse()
        .ok()
}

// ---------------------------------------------------------------------
// Sessions per second

fn tls_connector(ca_pem: &str) -> anyhow::Result<tokio_rustls::TlsConnector> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Every session a new client: a full handshake, no resumption.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// One session: TCP, TLS, the upgrade, one echo, the close handshake.
async fn one_session(addr: SocketAddr, tls: &tokio_rustls::TlsConnector) -> anyhow::Result<()> {
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
async fn session_round(
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
struct SessionStats {
    /// Sessions per second, one value per round.
    rate: Vec<f64>,
    /// The server's CPU ms per session, one value per round.
    cpu_ms: Vec<f64>,
    failed: usize,
    first_error: Option<String>,
    /// wsgate only: `instantiate` and `ended after` of its `-v` lines.
    instantiate_ms: Vec<f64>,
    session_ms: Vec<f64>,
}

async fn sessions_phase(cli: &Bench, scratch: &Scratch) -> anyhow::Result<String> {
    let tls = tls_connector(&scratch.ca_pem)?;
    let max = (cli.concurrency.iter().copied().max().unwrap_or(1) + 100).to_string();
    let mut wsgate_cmd = wsgate_command(
        cli,
        scratch,
        &cli.echo_plugin,
        &["--max-sessions", &max, "-v", "--tls-cert"],
    );
    wsgate_cmd.arg(&scratch.cert).arg("--tls-key").arg(&scratch.key);
    let wsgate = Server::start("wsgate serve", wsgate_cmd)?;
    let native = Server::start("native server", native_command(Some((&scratch.cert, &scratch.key)))?)?;
    progress(format!(
        "sessions: wsgate serve on {} (pid {}), native on {} (pid {}); warming up",
        wsgate.addr,
        wsgate.pid(),
        native.addr,
        native.pid()
    ));
    for server in [&wsgate, &native] {
        let (_, failed, first) = session_round(server.addr, &tls, 20, 1).await?;
        if failed > 0 {
            bail!(
                "warm-up against {}: {failed} of 20 sessions failed: {}",
                server.name,
                first.unwrap_or_default()
            );
        }
    }
    wsgate.wait_lines("ended after", 20, Duration::from_secs(5));

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
                if i == 0 {
                    let expected = cli.sessions as usize - failed;
                    for line in wsgate.wait_lines("ended after", expected, Duration::from_secs(5)) {
                        if let (Some(inst), Some(total)) =
                            (number_after(&line, "instantiate "), number_after(&line, "ended after "))
                        {
                            s.instantiate_ms.push(inst);
                            s.session_ms.push(total);
                        } else if line.contains("session from") {
                            s.first_error.get_or_insert(line);
                        }
                    }
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
    out.push_str("\n### Instantiation per session (wsgate serve `-v`)\n\n");
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

// ---------------------------------------------------------------------
// RSS per idle session

/// Connects, upgrades and gets one echo; the open session.
async fn open_session(addr: SocketAddr) -> anyhow::Result<WebSocketStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp).await?;
    ws.send(Message::text("hello")).await?;
    match ws.next().await {
        Some(Ok(Message::Text(text))) if text.as_str() == "hello" => Ok(ws),
        other => bail!("expected the echo, got {other:?}"),
    }
}

struct RssFigures {
    before: Rss,
    open: Rss,
    closed: Rss,
    opened: usize,
}

/// Opens `count` sessions to `server` (64 at a time), reads its RSS with
/// all open and idle for `hold`, closes them.
async fn hold_sessions(server: &Server, count: u32, hold: Duration) -> anyhow::Result<RssFigures> {
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
async fn close_all<S: AsyncRead + AsyncWrite + Unpin>(sessions: Vec<WebSocketStream<S>>) {
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

async fn rss_phase(cli: &Bench, scratch: &Scratch, nofile: u64) -> anyhow::Result<String> {
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

// ---------------------------------------------------------------------
// Proxy throughput

struct Row {
    size: usize,
    count: u64,
    window: u64,
}

const ROWS: [Row; 6] = [
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

fn size_label(size: usize) -> String {
    match size {
        s if s >= 1 << 10 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}

/// COUNT messages of SIZE bytes, WINDOW in flight at most; seconds from
/// the first send to the last echo (connect and close excluded).
async fn echo_run(url: &str, size: usize, count: u64, window: u64) -> anyhow::Result<f64> {
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

fn bytes_of(size: usize) -> tokio_tungstenite::tungstenite::Bytes {
    (0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into()
}

/// nginx in the foreground, its own configuration and prefix in `dir`.
fn start_nginx(nginx: &Path, dir: &Path, upstream: SocketAddr) -> anyhow::Result<Server> {
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

fn nginx_version(nginx: &Path) -> Option<String> {
    let output = Command::new(nginx).arg("-v").output().ok()?;
    let text = String::from_utf8_lossy(&output.stderr);
    text.trim().strip_prefix("nginx version: ").map(str::to_owned)
}

async fn proxy_phase(cli: &Bench, scratch: &Scratch) -> anyhow::Result<String> {
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

// ---------------------------------------------------------------------
// The native peer

fn native_main(listen: SocketAddr, tls: Option<(PathBuf, PathBuf)>) -> anyhow::Result<()> {
    let acceptor = match tls {
        Some((cert, key)) => Some(tls_acceptor(&cert, &key)?),
        None => None,
    };
    // tokio's multi-threaded runtime, a worker per CPU, as wsgate serve's.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        eprintln!(
            "native: listening on {} ({})",
            listener.local_addr()?,
            if acceptor.is_some() { "wss://" } else { "ws://" }
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                _ = term.recv() => return anyhow::Ok(()),
                accepted = listener.accept() => {
                    let Ok((tcp, _)) = accepted else { continue };
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let _ = tcp.set_nodelay(true);
                        match acceptor {
                            Some(acceptor) => {
                                if let Ok(Ok(tls)) = tokio::time::timeout(SESSION_LIMIT, acceptor.accept(tcp)).await {
                                    echo(tls).await;
                                }
                            }
                            None => echo(tcp).await,
                        }
                    });
                }
            }
        }
    })
}

fn tls_acceptor(cert: &Path, key: &Path) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The upgrade, then every text and binary message back until the close.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(stream: S) {
    let Ok(Ok(mut ws)) = tokio::time::timeout(SESSION_LIMIT, tokio_tungstenite::accept_async(stream)).await else {
        return;
    };
    while let Some(Ok(message)) = ws.next().await {
        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            break;
        }
    }
}
