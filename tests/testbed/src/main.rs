//! `wsgate-testbed`: run the testbed until SIGINT or SIGTERM.
//!
//! Prints one JSON line on stdout when every listener is ready, and one with
//! the counts when stopping. Standard input is ignored on purpose: a testbed
//! started in the background (by make, say) often has it on /dev/null, which
//! would read as EOF at once.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use wsgate_testbed::{Behaviour, Config, Counts, Testbed};

/// A WebSocket echo server with one behaviour per address family, on the
/// same port of [::1] and 127.0.0.1.
///
/// Behaviours: ok, blackhole, refused, tls-stall, upgrade-503, slow-upgrade, upgrade-200, bad-accept,
/// nagle-tickets.
#[derive(Debug, Parser)]
#[command(name = "wsgate-testbed", version)]
struct Args {
    /// Behaviour of [::1]:PORT.
    #[arg(long, default_value = "ok", value_name = "BEHAVIOUR")]
    v6: Behaviour,
    /// Behaviour of 127.0.0.1:PORT.
    #[arg(long, default_value = "ok", value_name = "BEHAVIOUR")]
    v4: Behaviour,
    /// Serve plain ws:// instead of wss://.
    #[arg(long)]
    plain: bool,
    /// Port for both families; 0 picks one free on both.
    #[arg(long, default_value_t = 0, value_name = "P")]
    port: u16,
    /// Directory to write ca.pem, cert.pem and key.pem into.
    #[arg(long, value_name = "DIR")]
    cert_dir: Option<PathBuf>,
    /// Delay before the 101 answer of slow-upgrade, in milliseconds.
    #[arg(long, default_value_t = 300, value_name = "N")]
    slow_upgrade_ms: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsgate-testbed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    // Installed before the ready line, so a parent that signals as soon as
    // it has read the line never meets the default (killing) disposition.
    let mut stop = StopSignal::install()?;

    let config = Config {
        v6: args.v6,
        v4: args.v4,
        tls: !args.plain,
        port: args.port,
        cert_dir: args.cert_dir,
        slow_upgrade: Duration::from_millis(args.slow_upgrade_ms),
    };
    let (v6, v4, tls) = (config.v6, config.v4, config.tls);
    let testbed = Testbed::start(config).await?;

    print_line(&ReadyLine {
        port: testbed.port(),
        tls,
        ca: testbed.ca_path(),
        v6: v6.as_str(),
        v4: v4.as_str(),
    })?;

    stop.wait().await;

    let counts = CountsLine {
        upgrades: testbed.upgrades(),
        connections: testbed.connections(),
    };
    testbed.shutdown().await;
    print_line(&counts)
}

/// The line announcing readiness; a struct (not a map) keeps the keys in
/// this documented order.
#[derive(serde::Serialize)]
struct ReadyLine<'a> {
    port: u16,
    tls: bool,
    /// `null` when no --cert-dir was given.
    ca: Option<&'a Path>,
    v6: &'static str,
    v4: &'static str,
}

/// The line printed when stopping.
#[derive(serde::Serialize)]
struct CountsLine {
    upgrades: Counts,
    connections: Counts,
}

/// Writes one JSON line on stdout and flushes it: stdout is a pipe when
/// another process waits for the line, and pipes are block-buffered.
fn print_line(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let line = serde_json::to_string(value)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// SIGINT or SIGTERM (Ctrl-C elsewhere).
struct StopSignal {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl StopSignal {
    fn install() -> anyhow::Result<StopSignal> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(StopSignal {
                int: signal(SignalKind::interrupt())?,
                term: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(StopSignal {})
    }

    async fn wait(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
        #[cfg(not(unix))]
        {
            // If Ctrl-C cannot be listened for, there is no way to be asked
            // to stop; stopping at once beats running unstoppable.
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
