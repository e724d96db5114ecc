//! echo-client: a wsgate plugin that sends each message over a WebSocket
//! and prints each echo on its own line.
//!
//! ```text
//! wsgate run echo-client.wasm -- [--connects N] wss://echo.example/ hello world
//! ```
//!
//! With `--connects N` it does the whole exchange N times, one connection
//! after another. It closes each connection with 1000 and exits 0 when
//! every echo came back; on any failure it prints one line on standard
//! error and exits 1.

use std::process::ExitCode;
use wsgate_guest::{Error, Message};

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut connects = 1;
    if args.first().map(String::as_str) == Some("--connects") {
        match args.get(1).and_then(|n| n.parse::<u32>().ok()).filter(|n| *n > 0) {
            Some(n) => connects = n,
            None => {
                eprintln!("echo-client: --connects needs a positive number");
                return ExitCode::from(2);
            }
        }
        args.drain(..2);
    }
    let Some((url, messages)) = args.split_first() else {
        eprintln!("usage: echo-client [--connects N] URL [MESSAGE...]");
        return ExitCode::from(2);
    };
    for _ in 0..connects {
        if let Err(e) = echo(url, messages) {
            eprintln!("echo-client: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn echo(url: &str, messages: &[String]) -> Result<(), Error> {
    let mut ws = wsgate_guest::connect(url)?;
    for message in messages {
        ws.send(Message::Text(message.clone()))?;
        let echo = loop {
            match ws.recv()? {
                Message::Text(text) => break text,
                Message::Binary(bytes) => break String::from_utf8_lossy(&bytes).into_owned(),
                // Control frames: the SDK answers pings itself.
                Message::Ping(_) | Message::Pong(_) => continue,
                Message::Close(frame) => {
                    let why = frame.map_or_else(|| "no status".to_owned(), |f| format!("{} {}", f.code, f.reason));
                    return Err(Error::connect(format!(
                        "the server closed the connection before the echo ({why})"
                    )));
                }
            }
        };
        println!("{echo}");
    }
    ws.close(1000, "")
}
