//! autobahn-client: a wsgate plugin that runs the Autobahn|Testsuite client
//! cases against a fuzzingserver, echoing every message it receives.
//!
//! ```text
//! wsgate run autobahn-client.wasm -- [--deflate] [--verbose] [--cases PATTERN]... ws://127.0.0.1:9001 wsgate
//! ```
//!
//! It asks `BASE/getCaseCount`, runs each case on
//! `BASE/runCase?case=N&agent=AGENT` (echoing text and binary messages until
//! the connection ends), then asks the server to write its reports
//! (`BASE/updateReports?agent=AGENT`).
//!
//! - `--deflate` offers permessage-deflate (the SDK's default offer) on
//!   each case's connection, which cases 12.* and 13.* need.
//! - `--verbose` prints each case's outcome on standard error (otherwise a
//!   progress line every 50 cases).
//! - `--cases PATTERN` (a case id where `*` matches any characters: `9.*`,
//!   `5.19`; repeatable) runs only the matching cases, asking
//!   `BASE/getCaseInfo` for each case's id. Which cases exist is the
//!   fuzzingserver's configuration: this is a help for debugging a few of
//!   them; the test harness runs them all.
//!
//! A case that ends in an error (the SDK closes on a protocol error) does
//! not stop the run: the verdicts are the server's report. The exit status
//! is 0 when the run completed, 1 when the server could not be used
//! (getCaseCount or updateReports failed), 2 for bad arguments.

use std::process::ExitCode;
use std::time::Instant;
use wsgate_guest::{ClientConfig, DeflateConfig, Error, Message, WebSocket};

/// A progress line on standard error every this many cases.
const PROGRESS_EVERY: u32 = 50;

struct Args {
    base: String,
    agent: String,
    patterns: Vec<String>,
    deflate: bool,
    verbose: bool,
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(msg) => {
            eprintln!("autobahn-client: {msg}");
            eprintln!("usage: autobahn-client [--deflate] [--verbose] [--cases PATTERN]... BASE_URL AGENT");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("autobahn-client: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut patterns = Vec::new();
    let mut positional = Vec::new();
    let (mut deflate, mut verbose) = (false, false);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--deflate" => deflate = true,
            "--verbose" | "-v" => verbose = true,
            "--cases" => patterns.push(it.next().ok_or("--cases needs a pattern")?),
            flag if flag.starts_with("--") => return Err(format!("unknown flag {flag}")),
            _ => positional.push(arg),
        }
    }
    let [base, agent] = <[String; 2]>::try_from(positional).map_err(|_| "expected BASE_URL and AGENT")?;
    // The agent goes into a query string and, on the server, into file
    // names: keep it to characters that need no escaping anywhere.
    if agent.is_empty() || !agent.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        return Err(format!("agent `{agent}`: use letters, digits, `.`, `_` and `-`"));
    }
    Ok(Args {
        base: base.trim_end_matches('/').to_owned(),
        agent,
        patterns,
        deflate,
        verbose,
    })
}

/// The SDK's defaults: its limits (16 MiB frames, 64 MiB messages) are
/// above the largest messages of the suite (9.*: 16 MiB).
fn config() -> ClientConfig {
    ClientConfig::default()
}

fn run(args: &Args) -> Result<(), Error> {
    let count: u32 = {
        let text = one_text(&format!("{}/getCaseCount", args.base))?;
        text.trim()
            .parse()
            .map_err(|_| Error::connect(format!("getCaseCount answered `{text}`, not a number")))?
    };
    let started = Instant::now();
    let (mut ran, mut errors) = (0u32, 0u32);
    for case in 1..=count {
        // The case's id (`1.1.1`) is asked for only when it is needed.
        let id = if !args.patterns.is_empty() || args.verbose {
            case_id(&args.base, case)?
        } else {
            String::new()
        };
        if !args.patterns.is_empty() && !args.patterns.iter().any(|p| glob(p, &id)) {
            continue;
        }
        let url = format!("{}/runCase?case={case}&agent={}", args.base, args.agent);
        let config = if args.deflate {
            config().deflate(DeflateConfig::default())
        } else {
            config()
        };
        let outcome = run_case(&url, config);
        if args.verbose {
            match &outcome {
                Ok(()) => eprintln!("autobahn-client: case {id}: closed"),
                Err(e) => eprintln!("autobahn-client: case {id}: {e}"),
            }
        }
        if outcome.is_err() {
            errors += 1;
        }
        ran += 1;
        if ran % PROGRESS_EVERY == 0 {
            eprintln!(
                "autobahn-client: {ran} cases run ({case}/{count}), {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    eprintln!(
        "autobahn-client: {ran} cases run in {:.1} s ({errors} ended in an error, as cases of bad frames do; verdicts are in the report)",
        started.elapsed().as_secs_f64()
    );
    drain(&format!("{}/updateReports?agent={}", args.base, args.agent))
}

/// Runs one case: echoes every data message until the connection ends.
/// Errors are the case's outcome (a protocol error the SDK closed on, the
/// server dropping the connection), judged by the server.
fn run_case(url: &str, config: ClientConfig) -> Result<(), Error> {
    let mut ws = wsgate_guest::connect_with_config(url, config)?;
    let result = echo(&mut ws);
    // The server closes the TCP connection first (RFC 6455 §7.1.1): wait
    // for that (at most the SDK's close timeout) rather than drop first.
    // It fails at once, without reading, when no Close was exchanged.
    let _ = ws.wait_closed();
    result
}

fn echo(ws: &mut WebSocket<wsgate_guest::HostStream>) -> Result<(), Error> {
    loop {
        match ws.recv()? {
            Message::Text(text) => ws.send(Message::Text(text))?,
            Message::Binary(data) => ws.send(Message::Binary(data))?,
            // The SDK answers Pings and echoes the peer's Close itself.
            Message::Ping(_) | Message::Pong(_) => {}
            Message::Close(_) => return Ok(()),
        }
    }
}

/// Connects to `url` and returns its first text message, reading on to the
/// server's Close.
fn one_text(url: &str) -> Result<String, Error> {
    let mut ws = wsgate_guest::connect_with_config(url, config())?;
    let mut first = None;
    loop {
        match ws.recv()? {
            Message::Text(text) if first.is_none() => first = Some(text),
            Message::Close(_) => break,
            _ => {}
        }
    }
    first.ok_or_else(|| Error::connect(format!("{url}: the server closed without a message")))
}

/// Connects to `url` and reads until the server's Close.
fn drain(url: &str) -> Result<(), Error> {
    let mut ws = wsgate_guest::connect_with_config(url, config())?;
    while !matches!(ws.recv()?, Message::Close(_)) {}
    Ok(())
}

/// The id (`1.1.1`) of case number `case`, from `BASE/getCaseInfo`.
fn case_id(base: &str, case: u32) -> Result<String, Error> {
    let info = one_text(&format!("{base}/getCaseInfo?case={case}"))?;
    // {"id": "1.1.1", "description": "..."}: the id is a plain string.
    let id = info
        .split_once("\"id\"")
        .and_then(|(_, rest)| rest.split('"').nth(1))
        .ok_or_else(|| Error::connect(format!("getCaseInfo answered `{info}`")))?;
    Ok(id.to_owned())
}

/// Whether `text` matches `pattern`, where `*` matches any characters.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            let Some(rest) = text.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len())
                .filter(|&i| rest.is_char_boundary(i))
                .any(|i| glob(tail, &rest[i..]))
        }
    }
}
