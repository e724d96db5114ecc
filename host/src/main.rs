//! `wsgate`: runs WebAssembly plugins that reach the network only through
//! the host's `connect`.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use wsgate_host::race::{CommitStage, RaceConfig};
use wsgate_host::report::LogSink;
use wsgate_host::resolve::Override;
use wsgate_host::runtime::{RunOptions, Runtime};
use wsgate_host::{ConnectConfig, Error};

/// A WebSocket edge gateway whose plugins are WebAssembly components.
#[derive(Parser, Debug)]
#[command(name = "wsgate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a client plugin (a wasm32-wasip2 component) to completion.
    Run(RunArgs),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// The plugin: a WebAssembly component of the `wsgate:connect/client` world.
    plugin: PathBuf,

    /// Answer for HOST:PORT with these addresses instead of DNS (curl's
    /// form; IPv6 with or without brackets). Repeatable.
    #[arg(long, value_name = "HOST:PORT:ADDR[,ADDR...]")]
    resolve: Vec<Override>,

    /// Trust the CA certificates in this PEM file, besides the system's.
    /// Repeatable.
    #[arg(long, value_name = "FILE")]
    ca_cert: Vec<PathBuf>,

    /// Do not trust the system's root certificates (only --ca-cert).
    #[arg(long)]
    no_system_roots: bool,

    /// Write every connect event as a JSON line to FILE (`-`: standard error).
    #[arg(long, value_name = "FILE|-")]
    race_log: Option<PathBuf>,

    /// When a race commits to an address: after `tcp`, after `tls` (the
    /// default for TLS targets), or after the first `response` (sends the
    /// first flight on every ready attempt). Plugins may ask for earlier.
    #[arg(long, value_name = "STAGE")]
    cancel_after: Option<CommitStage>,

    /// Connection Attempt Delay: milliseconds between attempt starts
    /// (10 to 2000).
    #[arg(long, value_name = "MS", default_value_t = 250)]
    attempt_delay: u64,

    /// Resolution Delay: how long to wait for AAAA once A answered, in
    /// milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 50)]
    resolution_delay: u64,

    /// First Address Family Count: how many IPv6 addresses are tried
    /// before the first IPv4 one.
    #[arg(long, value_name = "N", default_value_t = 1)]
    first_family_count: usize,

    /// At most this many attempts in flight at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    max_in_flight: usize,

    /// How long attempts that reached the commit stage after the winner
    /// stay open for a fallback, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    park_grace: u64,

    /// Bound on a TLS handshake done after a `tcp` commit, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    tls_timeout: u64,

    /// How long the address that won for a host and port is tried first,
    /// in seconds (0: never).
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    memory_ttl: u64,

    /// Ask this DNS server (ADDR:PORT) instead of the system's.
    #[arg(long, value_name = "ADDR:PORT")]
    dns_server: Option<std::net::SocketAddr>,

    /// Bound on each connect, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    connect_timeout: u64,

    /// Keep compiled plugins in DIR (default: $XDG_CACHE_HOME/wsgate or
    /// ~/.cache/wsgate).
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    cache_dir: Option<PathBuf>,

    /// Compile the plugin afresh, without reading or writing the cache.
    #[arg(long)]
    no_cache: bool,

    /// Print a line per connect and the plugin's start-up times on standard
    /// error.
    #[arg(short, long)]
    verbose: bool,

    /// Arguments for the plugin (after `--`).
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<String>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // clap's message spans several lines (usage, tips); the operator
            // gets its first line and where to look for more.
            let text = e.to_string();
            let first_paragraph: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            let line = first_paragraph.join(" ");
            let line = line.trim_start_matches("error: ");
            eprintln!("wsgate: {line} (see `wsgate --help`)");
            return ExitCode::from(2);
        }
    };
    let Command::Run(args) = cli.command;
    match run(args) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("wsgate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: RunArgs) -> Result<i32, Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::new(wsgate_host::ErrorKind::Io, "cannot start the async runtime").with_source(e))?;
    runtime.block_on(async move {
        let race = RaceConfig {
            attempt_delay: Duration::from_millis(args.attempt_delay),
            resolution_delay: Duration::from_millis(args.resolution_delay),
            max_in_flight: args.max_in_flight,
            first_family_count: args.first_family_count,
            park_grace: Duration::from_millis(args.park_grace),
            tls_timeout: Duration::from_millis(args.tls_timeout),
            ..RaceConfig::default()
        };
        let mut config = ConnectConfig::builder()
            .system_roots(!args.no_system_roots)
            .connect_timeout(Duration::from_millis(args.connect_timeout))
            .race(race)
            .memory_ttl(Duration::from_secs(args.memory_ttl));
        if let Some(stage) = args.cancel_after {
            config = config.cancel_after(stage);
        }
        if let Some(server) = args.dns_server {
            config = config.dns_server(server);
        }
        for entry in &args.resolve {
            config = config.resolve(entry.clone());
        }
        for ca in &args.ca_cert {
            config = config.ca_file(ca);
        }
        if let Some(path) = &args.race_log {
            config = config.race_log(open_log(path)?);
        }
        if args.verbose {
            config = config.summary(LogSink::new(std::io::stderr()));
        }
        let config = config.build()?;

        let started = Instant::now();
        let wasm = match cache_dir(&args) {
            Some(dir) => Runtime::with_cache(&dir)?,
            None => Runtime::new()?,
        };
        let engine_time = started.elapsed();
        let plugin = wasm.load(&args.plugin)?;
        let outcome = wasm.run(&plugin, config, RunOptions::new(args.args)).await?;
        if args.verbose {
            eprintln!(
                "wsgate: start-up {:.1} ms (engine {:.1} ms, compile {:.1} ms, instantiate {:.1} ms); run {:.1} ms; exit {}",
                ms(engine_time + plugin.compile_time() + outcome.instantiate_time()),
                ms(engine_time),
                ms(plugin.compile_time()),
                ms(outcome.instantiate_time()),
                ms(outcome.run_time()),
                outcome.exit_code(),
            );
        }
        Ok(outcome.exit_code())
    })
}

fn open_log(path: &std::path::Path) -> Result<LogSink, Error> {
    if path.as_os_str() == "-" {
        return Ok(LogSink::new(std::io::stderr()));
    }
    let file = std::fs::File::create(path).map_err(|e| {
        Error::new(
            wsgate_host::ErrorKind::Config,
            format!("cannot open race log `{}`", path.display()),
        )
        .with_source(e)
    })?;
    Ok(LogSink::new(file))
}

/// Where compiled plugins are kept, if anywhere: the flag, else the XDG
/// cache directory, else none (no home: compile every time).
fn cache_dir(args: &RunArgs) -> Option<PathBuf> {
    if args.no_cache {
        return None;
    }
    if let Some(dir) = &args.cache_dir {
        return Some(std::path::absolute(dir).unwrap_or_else(|_| dir.clone()));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("wsgate"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
