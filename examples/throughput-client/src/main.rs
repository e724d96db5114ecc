//! throughput-client: the echo throughput of a plugin (`make bench`).
//!
//! ```text
//! wsgate run throughput-client.wasm -- ws://echo.example/ SIZE COUNT [WINDOW]
//! ```
//!
//! One connect, then COUNT binary messages of SIZE bytes, each echoed back,
//! with at most WINDOW (default 1) messages in flight, and one JSON line:
//!
//! ```text
//! {"size":16,"count":20000,"window":1,"secs":1.234}
//! ```
//!
//! `secs` runs from the first send to the last echo: the connect and the
//! close are not in it.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match args.as_slice() {
        [url, size, count, rest @ ..] if rest.len() <= 1 => {
            let window = rest.first().map_or(Some(1), |w| w.parse().ok());
            match (size.parse::<usize>(), count.parse::<u64>(), window) {
                (Ok(size), Ok(count), Some(window)) if count > 0 && window > 0 => Some((url, size, count, window)),
                _ => None,
            }
        }
        _ => None,
    };
    let Some((url, size, count, window)) = parsed else {
        eprintln!("usage: throughput-client URL SIZE COUNT [WINDOW]");
        return ExitCode::from(2);
    };
    match run(url, size, count, window) {
        Ok(secs) => {
            println!("{{\"size\":{size},\"count\":{count},\"window\":{window},\"secs\":{secs}}}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("throughput-client: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(target_arch = "wasm32")]
fn run(url: &str, size: usize, count: u64, window: u64) -> Result<f64, String> {
    use std::time::Instant;
    use wsgate_guest::Message;

    let config = wsgate_guest::ClientConfig::default();
    let mut ws = wsgate_guest::connect_with_config(url, config).map_err(|e| e.to_string())?;
    let payload = vec![0x5a; size];
    let started = Instant::now();
    let (mut sent, mut received) = (0u64, 0u64);
    while received < count {
        while sent < count && sent - received < window {
            ws.send(Message::Binary(payload.clone())).map_err(|e| e.to_string())?;
            sent += 1;
        }
        match ws.recv().map_err(|e| e.to_string())? {
            Message::Binary(echo) if echo.len() == size => received += 1,
            Message::Binary(echo) => return Err(format!("echo of {} bytes, sent {size}", echo.len())),
            Message::Ping(_) | Message::Pong(_) => {}
            other => return Err(format!("unexpected {other:?}")),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    ws.close(1000, "").map_err(|e| e.to_string())?;
    Ok(secs)
}

/// Natively there is no host to connect through.
#[cfg(not(target_arch = "wasm32"))]
fn run(_url: &str, _size: usize, _count: u64, _window: u64) -> Result<f64, String> {
    Err("this is a wsgate plugin: build it for wasm32-wasip2 and run it with `wsgate run`".to_owned())
}
