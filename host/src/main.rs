//! `wsgate`: runs WebAssembly plugins that reach the network only through
//! the host's `connect`.

use clap::{Args, Parser, Subcommand};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use wsgate_host::config::{Settings, range};
use wsgate_host::policy::Rule;
use wsgate_host::race::CommitStage;
use wsgate_host::report::LogSink;
use wsgate_host::resolve::Override;
use wsgate_host::runtime::{RunOptions, Runtime};
use wsgate_host::{Error, ErrorKind};

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

    /// Read settings from this TOML file (sections policy, race, tls, limits;
    /// keys named as these flags). Flags given here replace its values;
    /// --allow, --resolve and --ca-cert add to its lists.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Allow connects to what RULE matches: `host:port`, `host:*`,
    /// `*.domain:port`, `*:port`, an IP (`192.0.2.7`, `[2001:db8::7]:443`)
    /// or a CIDR (`10.1.0.0/16`). Nothing is allowed without a rule.
    /// Repeatable.
    #[arg(long, value_name = "RULE", help_heading = "Policy")]
    allow: Vec<Rule>,

    /// Allow loopback, private, link-local and unique-local addresses (for
    /// local testing). Names still need an --allow rule. `=false` turns off
    /// a config file's `allow-private = true`.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", help_heading = "Policy")]
    allow_private: Option<bool>,

    /// Answer for HOST:PORT with these addresses instead of DNS (curl's
    /// form; IPv6 with or without brackets). Repeatable.
    #[arg(long, value_name = "HOST:PORT:ADDR[,ADDR...]", help_heading = "Race")]
    resolve: Vec<Override>,

    /// When a race commits to an address: after `tcp`, after `tls` (the
    /// default for TLS targets), or after the first `response` (sends the
    /// first flight on every ready attempt). Plugins may ask for earlier.
    #[arg(long, value_name = "STAGE", help_heading = "Race")]
    cancel_after: Option<CommitStage>,

    /// Connection Attempt Delay: milliseconds between attempt starts
    /// (10 to 2000) [default: 250].
    #[arg(long, value_name = "MS", value_parser = ranged(range::ATTEMPT_DELAY), help_heading = "Race")]
    attempt_delay: Option<u64>,

    /// Resolution Delay: how long to wait for AAAA once A answered, in
    /// milliseconds [default: 50].
    #[arg(long, value_name = "MS", value_parser = ranged(range::RESOLUTION_DELAY), help_heading = "Race")]
    resolution_delay: Option<u64>,

    /// First Address Family Count: how many IPv6 addresses are tried
    /// before the first IPv4 one [default: 1].
    #[arg(long, value_name = "N", value_parser = ranged(range::FIRST_FAMILY_COUNT), help_heading = "Race")]
    first_family_count: Option<u64>,

    /// At most this many attempts in flight at once [default: 4].
    #[arg(long, value_name = "N", value_parser = ranged(range::MAX_IN_FLIGHT), help_heading = "Race")]
    max_in_flight: Option<u64>,

    /// How long attempts that reached the commit stage after the winner
    /// stay open for a fallback, in milliseconds [default: 2000].
    #[arg(long, value_name = "MS", value_parser = ranged(range::PARK_GRACE), help_heading = "Race")]
    park_grace: Option<u64>,

    /// Bound on a TLS handshake done after a `tcp` commit, in milliseconds
    /// [default: 5000].
    #[arg(long, value_name = "MS", value_parser = ranged(range::TLS_TIMEOUT), help_heading = "Race")]
    tls_timeout: Option<u64>,

    /// How long the address that won for a host and port is tried first,
    /// in seconds (0: never) [default: 600].
    #[arg(long, value_name = "SECONDS", value_parser = ranged(range::MEMORY_TTL), help_heading = "Race")]
    memory_ttl: Option<u64>,

    /// Ask this DNS server (ADDR:PORT) instead of the system's.
    #[arg(long, value_name = "ADDR:PORT", help_heading = "Race")]
    dns_server: Option<std::net::SocketAddr>,

    /// Bound on each connect, in milliseconds [default: 10000].
    #[arg(long, value_name = "MS", value_parser = ranged(range::CONNECT_TIMEOUT), help_heading = "Race")]
    connect_timeout: Option<u64>,

    /// Trust the CA certificates in this PEM file, besides the system's.
    /// Repeatable.
    #[arg(long, value_name = "FILE", help_heading = "TLS")]
    ca_cert: Vec<PathBuf>,

    /// Do not trust the system's root certificates (only --ca-cert).
    /// `=false` turns off a config file's `no-system-roots = true`.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", help_heading = "TLS")]
    no_system_roots: Option<bool>,

    /// Linear memory per plugin instance, in MiB [default: 64].
    #[arg(long, value_name = "MIB", value_parser = ranged(range::MEMORY), help_heading = "Limits")]
    memory: Option<u64>,

    /// CPU time the plugin may use, its host calls included, in
    /// milliseconds (0: no limit) [default: 60000].
    #[arg(long, value_name = "MS", value_parser = ranged(range::CPU_TIME), help_heading = "Limits")]
    cpu_time: Option<u64>,

    /// Wall-clock bound on the whole run, in seconds (0: no limit)
    /// [default: 3600].
    #[arg(long, value_name = "SECONDS", value_parser = ranged(range::RUN_TIME), help_heading = "Limits")]
    run_time: Option<u64>,

    /// Connections a plugin may hold open at once [default: 64].
    #[arg(long, value_name = "N", value_parser = ranged(range::CONNECTIONS), help_heading = "Limits")]
    connections: Option<u64>,

    /// Connects a plugin may start per second (0: no limit) [default: 100].
    #[arg(long, value_name = "N", value_parser = ranged(range::CONNECTS_PER_SECOND), help_heading = "Limits")]
    connects_per_second: Option<u64>,

    /// Bytes the host holds for a plugin per output stream, in KiB
    /// [default: 256].
    #[arg(long, value_name = "KIB", value_parser = ranged(range::STREAM_BUFFER), help_heading = "Limits")]
    stream_buffer: Option<u64>,

    /// Write every connect event as a JSON line to FILE (`-`: standard error).
    #[arg(long, value_name = "FILE|-")]
    race_log: Option<PathBuf>,

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

/// A clap parser for a u64 setting in `range`, the file's range too.
fn ranged(range: RangeInclusive<u64>) -> clap::builder::RangedU64ValueParser<u64> {
    clap::builder::RangedU64ValueParser::new().range(range)
}

impl RunArgs {
    /// The settings the flags give, for merging over the file's.
    fn settings(&self) -> Settings {
        Settings {
            allow: self.allow.clone(),
            allow_private: self.allow_private,
            cancel_after: self.cancel_after,
            attempt_delay: self.attempt_delay,
            resolution_delay: self.resolution_delay,
            first_family_count: self.first_family_count,
            max_in_flight: self.max_in_flight,
            park_grace: self.park_grace,
            tls_timeout: self.tls_timeout,
            memory_ttl: self.memory_ttl,
            connect_timeout: self.connect_timeout,
            dns_server: self.dns_server,
            resolve: self.resolve.clone(),
            ca_cert: self.ca_cert.clone(),
            no_system_roots: self.no_system_roots,
            memory: self.memory,
            cpu_time: self.cpu_time,
            run_time: self.run_time,
            connections: self.connections,
            connects_per_second: self.connects_per_second,
            stream_buffer: self.stream_buffer,
        }
    }
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
        .map_err(|e| Error::new(ErrorKind::Io, "cannot start the async runtime").with_source(e))?;
    runtime.block_on(async move {
        let file = match &args.config {
            Some(path) => Settings::from_file(path)?,
            None => Settings::default(),
        };
        let settings = file.merge(args.settings());
        let limits = settings.limits();
        limits.validate().map_err(|why| Error::new(ErrorKind::Config, why))?;
        let mut config = settings.connect_builder();
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
        let outcome = wasm
            .run(&plugin, config, RunOptions::new(args.args).limits(limits))
            .await?;
        if args.verbose {
            eprintln!(
                "wsgate: start-up {:.1} ms (engine {:.1} ms, compile {:.1} ms, instantiate {:.1} ms); run {:.1} ms (CPU {:.1} ms); exit {}",
                ms(engine_time + plugin.compile_time() + outcome.instantiate_time()),
                ms(engine_time),
                ms(plugin.compile_time()),
                ms(outcome.instantiate_time()),
                ms(outcome.run_time()),
                ms(outcome.cpu_time()),
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
        Error::new(ErrorKind::Config, format!("cannot open race log `{}`", path.display())).with_source(e)
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
