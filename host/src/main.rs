//! `wsgate`: runs WebAssembly plugins that reach the network only through
//! the host's `connect`.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use wsgate_host::log::{self, LogFormat};
use wsgate_host::settings::{
    AdminSettings, CertificateSettings, ListenAddress, ListenerSettings, RouteSettings, ServeSettings,
};
use wsgate_host::{Error, ErrorKind, Gateway, LogSink, RunOptions, Runtime, Settings};

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
    /// Serve clients' WebSocket sessions, each with a fresh instance of its
    /// route's gateway plugin, until SIGINT or SIGTERM (then drain); SIGHUP
    /// reloads the configuration.
    Serve(ServeArgs),
    /// Ask a running `wsgate serve` to reload its configuration, through
    /// its admin listener (as SIGHUP does); prints the answer.
    Reload(ReloadArgs),
}

#[derive(Args, Debug)]
struct ReloadArgs {
    /// The gateway's admin listener (`[admin] listen`).
    #[arg(long, value_name = "ADDR:PORT")]
    admin: std::net::SocketAddr,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// The plugin: a WebAssembly component of the `wsgate:connect/client` world.
    plugin: PathBuf,

    /// At exit, write the connect and traffic metrics to FILE, in the
    /// OpenMetrics text format (as the admin listener's /metrics has them).
    #[arg(long, value_name = "FILE")]
    metrics_file: Option<PathBuf>,

    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// A gateway plugin (a component of the `wsgate:connect/gateway` world)
    /// to serve every request with: a route of its own, after the file's.
    plugin: Option<PathBuf>,

    /// Listen on ADDR:PORT (`[::]:PORT`: IPv6 and IPv4), besides the file's
    /// listeners. Repeatable.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Vec<ListenAddress>,

    /// Serve `wss://` on the --listen addresses with this certificate chain
    /// (PEM).
    #[arg(long, value_name = "PEM", requires_all = ["tls_key", "listen"])]
    tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    #[command(flatten, next_help_heading = "Serve")]
    serve: ServeSettings,

    #[command(flatten, next_help_heading = "Admin")]
    admin: AdminSettings,

    #[command(flatten, next_help_heading = "Options")]
    common: CommonArgs,
}

/// What `run` and `serve` both take.
#[derive(Args, Debug)]
struct CommonArgs {
    /// Read settings from this TOML file (sections policy, dns, race, tls,
    /// limits; for serve also serve, admin, listener, route; keys named as these
    /// flags). Flags given here replace its values;
    /// --allow, --resolve, --dns-server and --ca-cert add to its lists.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

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

    /// How the log's lines on standard error are written: `human`
    /// (`wsgate: ...`) or `json` (one object a line; a gateway plugin's
    /// standard error too).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Human)]
    log_format: LogFormat,

    /// Arguments for the plugin (after `--`).
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<String>,

    /// The settings' flags, under a heading per section (last, so that the
    /// headings do not run on over the flags above).
    #[command(flatten)]
    settings: Settings,
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
    let format = match &cli.command {
        Command::Run(args) => args.common.log_format,
        Command::Serve(args) => args.common.log_format,
        Command::Reload(_) => LogFormat::Human,
    };
    if let Err(e) = log::init(format) {
        eprintln!("wsgate: {e}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Serve(args) => serve(args).map(|()| 0),
        Command::Reload(args) => reload(&args),
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// The runtime of both commands. `wsgate run` too has worker threads: a
/// current-thread runtime saved a little per small message but lost the
/// overlap of the write queue's drain with the plugin on large ones (the
/// 1 MiB echo fell from 1.3 to 0.8 of native; BENCHMARKS.md).
fn tokio_runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::new(ErrorKind::Io, "cannot start the async runtime").with_source(e))
}

/// The file's settings with the flags on top, warnings printed.
fn settings(args: &CommonArgs) -> Result<Settings, Error> {
    let file = match &args.config {
        Some(path) => Settings::from_file(path)?,
        None => Settings::default(),
    };
    for warning in file.warnings() {
        tracing::warn!("{warning}");
    }
    Ok(file.merge(args.settings.clone()))
}

/// The connect configuration of `settings`, with the race log and the
/// summary the flags ask for.
fn connect_config(settings: &Settings, args: &CommonArgs) -> Result<wsgate_host::ConnectConfig, Error> {
    let mut config = settings.connect_builder();
    if let Some(path) = &args.race_log {
        config = config.race_log(open_log(path)?);
    }
    if args.verbose {
        config = config.summary(match args.log_format {
            LogFormat::Human => LogSink::new(std::io::stderr()),
            LogFormat::Json => LogSink::new(SummaryLines::default()),
        });
    }
    config.build()
}

/// `serve`'s settings: the file's, with the flags on top (read again at
/// each reload).
fn serve_settings(args: &ServeArgs) -> Result<Settings, Error> {
    let settings = settings(&args.common)?;
    let mut over = Settings::default();
    over.serve = args.serve.clone();
    over.admin = args.admin.clone();
    let tls: Vec<CertificateSettings> = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => vec![CertificateSettings {
            cert: Some(cert.clone()),
            key: Some(key.clone()),
        }],
        _ => Vec::new(),
    };
    over.listener = args
        .listen
        .iter()
        .map(|address| ListenerSettings {
            address: Some(*address),
            tls: tls.clone(),
        })
        .collect();
    if let Some(plugin) = &args.plugin {
        over.route.push(RouteSettings {
            plugin: Some(plugin.clone()),
            args: args.common.args.clone(),
            ..RouteSettings::default()
        });
    } else if !args.common.args.is_empty() {
        return Err(Error::new(
            ErrorKind::Config,
            "arguments after `--` are for the plugin given on the command line, and none is given",
        ));
    }
    let settings = settings.merge(over);
    Ok(settings)
}

fn serve(args: ServeArgs) -> Result<(), Error> {
    let args = std::sync::Arc::new(args);
    tokio_runtime()?.block_on(async move {
        let settings = serve_settings(&args)?;
        let config = connect_config(&settings, &args.common)?;
        let cache = cache_dir(&args.common);
        let gateway = Gateway::bind(&settings, config.clone(), cache.as_deref(), args.common.verbose)?;
        for line in gateway.describe() {
            tracing::info!("{line}");
        }
        // A reload reads the file and the flags again; the race's memory
        // and the logs carry on from the configuration before.
        let previous = std::sync::Mutex::new(config.clone());
        let reread = args.clone();
        gateway.reload_from(Box::new(move || {
            let settings = serve_settings(&reread)?;
            let mut previous = previous.lock().unwrap_or_else(|e| e.into_inner());
            let config = settings.connect_builder().continuing(&previous).build()?;
            *previous = config.clone();
            Ok((settings, config))
        }));
        let hangups = tokio::spawn(reload_on_sighup(gateway.reloader()));
        let saver = tokio::spawn(save_memory_every_minute(config.clone()));
        let drained = gateway.serve(stop_signal()).await;
        hangups.abort();
        saver.abort();
        save_memory(config).await;
        tracing::info!("drained: {drained}");
        Ok(())
    })
}

/// Reloads the configuration at every SIGHUP (the gateway says how it
/// went).
async fn reload_on_sighup(reloader: wsgate_host::Reloader) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        return;
    };
    while hangups.recv().await.is_some() {
        let _ = reloader.reload().await;
    }
}

/// `wsgate reload`: POST /reload on the admin listener, the answer's body
/// printed; 0 when the gateway put the configuration in force.
fn reload(args: &ReloadArgs) -> Result<i32, Error> {
    use std::io::{Read, Write};
    // A reload compiles plugins: it may take a while.
    const TIMEOUT: Duration = Duration::from_secs(120);
    let io = |what: &str, e: std::io::Error| {
        Error::new(ErrorKind::Io, format!("{what} the admin listener at {}", args.admin)).with_source(e)
    };
    let mut stream =
        std::net::TcpStream::connect_timeout(&args.admin, Duration::from_secs(5)).map_err(|e| io("cannot reach", e))?;
    let _ = stream.set_read_timeout(Some(TIMEOUT));
    let _ = stream.set_write_timeout(Some(TIMEOUT));
    let request = format!(
        "POST /reload HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        args.admin
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| io("cannot write to", e))?;
    let mut answer = Vec::new();
    // Bounded by the admin listener, which closes after one answer, and
    // by the read timeout.
    stream
        .take(1 << 20)
        .read_to_end(&mut answer)
        .map_err(|e| io("no answer from", e))?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.split_whitespace().nth(1).unwrap_or("");
    eprint!("wsgate: {body}");
    match status {
        "200" => Ok(0),
        "422" => Ok(1),
        _ => Err(Error::new(
            ErrorKind::Io,
            format!(
                "the admin listener at {} answered `{}`",
                args.admin,
                head.lines().next().unwrap_or("")
            ),
        )),
    }
}

/// Writes the race's history to its `--memory-file` (off the runtime's
/// threads: it is file I/O), saying so when it cannot.
async fn save_memory(config: wsgate_host::ConnectConfig) {
    match tokio::task::spawn_blocking(move || config.save_memory()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("{e}"),
        Err(e) => tracing::warn!("saving the race memory failed: {e}"),
    }
}

/// While serving, the history is saved every minute, so that a crash
/// loses at most a minute of it.
async fn save_memory_every_minute(config: wsgate_host::ConnectConfig) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    every.tick().await;
    loop {
        every.tick().await;
        save_memory(config.clone()).await;
    }
}

/// Completes at SIGINT or SIGTERM.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        // Without signal handlers the default action (exit) stands.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}

fn run(run_args: RunArgs) -> Result<i32, Error> {
    let args = &run_args.common;
    tokio_runtime()?.block_on(async move {
        let settings = settings(args)?;
        // Within bounds by their types; `Runtime::run` checks them again for
        // callers that build `Limits` by hand.
        let limits = settings.limits();
        let mut config = connect_config(&settings, args)?;
        if run_args.metrics_file.is_some() {
            config = config.with_metrics();
        }

        let started = Instant::now();
        let wasm = match cache_dir(args) {
            Some(dir) => Runtime::with_cache(&dir)?,
            None => Runtime::new()?,
        };
        let engine_time = started.elapsed();
        let plugin = wasm.load(&run_args.plugin)?;
        let outcome = wasm
            .run(&plugin, config.clone(), RunOptions::new(args.args.clone()).limits(limits))
            .await;
        // Whatever became of the plugin, its connects happened.
        if let Some(path) = &run_args.metrics_file {
            write_metrics(path, &config)?;
        }
        let outcome = outcome?;
        save_memory(config).await;
        if args.verbose {
            tracing::info!(
                "start-up {:.1} ms (engine {:.1} ms, compile {:.1} ms, instantiate {:.1} ms); run {:.1} ms (CPU {:.1} ms); exit {}",
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

/// Writes `config`'s metrics to `path` (`--metrics-file`).
fn write_metrics(path: &std::path::Path, config: &wsgate_host::ConnectConfig) -> Result<(), Error> {
    let text = config.metrics_text().unwrap_or_default();
    std::fs::write(path, text).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("cannot write the metrics to `{}`", path.display()),
        )
        .with_source(e)
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
fn cache_dir(args: &CommonArgs) -> Option<PathBuf> {
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

/// The `-v` summary's lines as log events, for the JSON log: each line
/// written becomes one event (target `wsgate::connect`).
#[derive(Default)]
struct SummaryLines(Vec<u8>);

impl std::io::Write for SummaryLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        while let Some(end) = self.0.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.0.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..end]);
            let line = line.strip_prefix("wsgate: ").unwrap_or(&line);
            tracing::info!(target: "wsgate::connect", "{line}");
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
