//! echo-client: a wsgate plugin that sends each message over a WebSocket
//! and prints each echo on its own line.
//!
//! ```text
//! wsgate run echo-client.wasm -- wss://echo.example/ hello world
//! ```
//!
//! It closes with 1000 and exits 0 when every echo came back; on any
//! failure it prints one line on standard error and exits 1.

use std::process::ExitCode;
use wsgate_guest::{Error, Message};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((url, messages)) = args.split_first() else {
        eprintln!("usage: echo-client URL [MESSAGE...]");
        return ExitCode::from(2);
    };
    match run(url, messages) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo-client: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(url: &str, messages: &[String]) -> Result<(), Error> {
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
                    return Err(Error::connect(format!("the server closed the connection before the echo ({why})")));
                }
            }
        };
        println!("{echo}");
    }
    ws.close(1000, "")
}
