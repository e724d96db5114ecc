//! bench-client: the wsgate plugin of the benchmark (`make bench`).
//!
//! ```text
//! wsgate run bench-client.wasm -- wss://echo.example/ [MESSAGE]
//! ```
//!
//! One connect, one text message (`ping` by default), one echo, a close
//! with 1000, and one JSON line on standard output:
//!
//! ```text
//! {"commit_ms":3.41,"echo_ms":5.02,"peer":"[::1]:443","first_flights":1}
//! ```
//!
//! - `commit_ms`: the `t_ms` of the last `commit` event of the host's race
//!   report (milliseconds since the host's connect began; `null` if none);
//! - `echo_ms`: from just before `connect` to the first echo received, by
//!   the plugin's monotonic clock;
//! - `peer`: the address the host committed to;
//! - `first_flights`: how many times the host wrote the upgrade request
//!   (`first-flight` events).
//!
//! On any failure: one line on standard error and exit status 1.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((url, rest)) = args.split_first() else {
        eprintln!("usage: bench-client URL [MESSAGE]");
        return ExitCode::from(2);
    };
    let message = rest.first().map_or("ping", String::as_str);
    match run(url, message) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench-client: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(target_arch = "wasm32")]
fn run(url: &str, message: &str) -> Result<String, String> {
    use std::time::Instant;
    use wsgate_guest::Message;

    let started = Instant::now();
    let mut ws = wsgate_guest::connect(url).map_err(|e| e.to_string())?;
    ws.send(Message::Text(message.to_owned())).map_err(|e| e.to_string())?;
    loop {
        match ws.recv().map_err(|e| e.to_string())? {
            Message::Text(_) | Message::Binary(_) => break,
            // Control frames: the SDK answers pings itself.
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Close(frame) => {
                let why = frame.map_or_else(|| "no status".to_owned(), |f| format!("{} {}", f.code, f.reason));
                return Err(format!("the server closed the connection before the echo ({why})"));
            }
        }
    }
    let echo_ms = started.elapsed().as_secs_f64() * 1000.0;

    let report = ws.get_ref().report();
    let commit_ms = report.iter().rev().find(|e| e.event == "commit").map(|e| e.t_ms);
    let first_flights = report.iter().filter(|e| e.event == "first-flight").count();
    let peer = ws.get_ref().peer();
    ws.close(1000, "").map_err(|e| e.to_string())?;

    Ok(format!(
        "{{\"commit_ms\":{},\"echo_ms\":{},\"peer\":\"{}\",\"first_flights\":{}}}",
        commit_ms
            .filter(|t| t.is_finite())
            .map_or_else(|| "null".to_owned(), |t| format!("{t}")),
        echo_ms,
        json_escape(&peer),
        first_flights,
    ))
}

/// The plugin only does something useful inside wsgate; natively it says so
/// (this keeps `cargo check --workspace` working on the host target).
#[cfg(not(target_arch = "wasm32"))]
fn run(_url: &str, _message: &str) -> Result<String, String> {
    Err("this is a wsgate plugin: build it for wasm32-wasip2 and run it with `wsgate run`".to_owned())
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}
