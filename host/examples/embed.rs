//! Running a wsgate plugin from a Rust program, with the operator's
//! settings read from a TOML file, as the `wsgate` binary does.
//!
//! ```text
//! cargo run -p wsgate-host --example embed -- PLUGIN.wasm wsgate.toml [ARGS...]
//! ```
//!
//! The plugin runs to completion under the file's policy, DNS, race, TLS
//! and limits settings; the program exits with the plugin's exit code.

use std::path::Path;
use std::process::ExitCode;
use wsgate_host::{Error, LogSink, RunOptions, Runtime, Settings};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(plugin), Some(config)) = (args.next(), args.next()) else {
        eprintln!("usage: embed PLUGIN.wasm wsgate.toml [ARGS...]");
        return ExitCode::from(2);
    };
    let plugin_args: Vec<String> = args.collect();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match runtime.block_on(run(Path::new(&plugin), Path::new(&config), plugin_args)) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            // One line, with the kind first: `invalid configuration: ...`.
            eprintln!("embed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(plugin: &Path, config: &Path, args: Vec<String>) -> Result<i32, Error> {
    let settings = Settings::from_file(config)?;
    for warning in settings.warnings() {
        eprintln!("embed: warning: {warning}");
    }
    // What is not configuration is added to the settings' builder: here,
    // one line per committed connect on standard error.
    let connect = settings
        .connect_builder()
        .summary(LogSink::new(std::io::stderr()))
        .build()?;
    let runtime = Runtime::new()?;
    let plugin = runtime.load(plugin)?;
    let options = RunOptions::new(args).limits(settings.limits());
    let outcome = runtime.run(&plugin, connect, options).await?;
    Ok(outcome.exit_code())
}
