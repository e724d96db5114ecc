//! A gateway plugin for the host's serve tests. It says on standard error
//! that it was called (so a test can tell that the host answered a request
//! without instantiating it), then does what the request's path asks:
//!
//! - `/trap-before-upgrade`: panics before answering;
//! - `/trap-after-upgrade`: answers 101, then panics;
//! - `/trap-mid-frame`: answers 101, writes the start of a frame, panics;
//! - `/memory`: answers 101, then allocates until its memory limit stops it;
//! - `/cpu`: answers 101, then spins until its CPU limit stops it;
//! - `/ignore-going-away`: handles the gateway's drain itself: says
//!   `going away noticed` and goes on echoing, never closing (the host
//!   closes it at its drain timeout);
//! - a path ending in `/info`: answers 101, sends one text message saying what the host gave
//!   it (route, SNI name, path), then echoes;
//! - anything else: a WebSocket echo until the client closes.

#![cfg(target_arch = "wasm32")]

use std::hint::black_box;
use std::io::Write;
use wsgate_guest::ServerConfig;
use wsgate_guest::{Error, Message, Session, WebSocket};

fn handle(session: Session) -> Result<(), Error> {
    let target = session.request().target.clone();
    eprintln!("gateway-probe: session {target}");
    if target == "/trap-before-upgrade" {
        panic!("gateway-probe: trap before the upgrade, as asked");
    }
    if target == "/trap-mid-frame" {
        // The 101, then the start of a 256-byte frame, then a trap: the
        // host must not put a Close frame of its own in the middle of it.
        let request = session.upgrade_request().map_err(Error::from)?;
        let accept = request.accept(&ServerConfig::default())?;
        let mut stream = session.into_stream()?;
        stream.write_all(accept.bytes())?;
        stream.write_all(&[0x82, 126, 0x01, 0x00, 1, 2, 3])?;
        stream.flush()?;
        panic!("gateway-probe: trap in the middle of a frame, as asked");
    }
    let route = session.route();
    let server_name = session.server_name();
    if target == "/ignore-going-away" {
        let mut ws = session.accept(&ServerConfig::default().close_on_going_away(false))?;
        loop {
            match ws.recv() {
                Ok(Message::Text(text)) => ws.send(Message::Text(text))?,
                Ok(Message::Close(_)) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == wsgate_guest::ErrorKind::GoingAway => {
                    ws.send(Message::Text("going away noticed".into()))?;
                }
                Err(e) => return Err(e),
            }
        }
    }
    let mut ws = session.accept(&ServerConfig::default())?;
    match target.as_str() {
        "/trap-after-upgrade" => panic!("gateway-probe: trap after the upgrade, as asked"),
        "/memory" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            // 4 GiB in 1 MiB pieces: more than any limit the tests set.
            for _ in 0..4096 {
                hoard.push(vec![1; 1 << 20]);
                black_box(&hoard);
            }
            Ok(())
        }
        "/cpu" => {
            let mut x: u64 = 1;
            // Far longer than any CPU limit the tests set (and bounded).
            for i in 0..u64::MAX / 2 {
                x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
            }
            black_box(x);
            Ok(())
        }
        path if path.ends_with("/info") => {
            let info = format!(
                "route={route} sni={} path={target}",
                server_name.as_deref().unwrap_or("-")
            );
            ws.send(Message::Text(info))?;
            echo(&mut ws)
        }
        _ => echo(&mut ws),
    }
}

fn echo<S: wsgate_guest::Transport>(ws: &mut WebSocket<S>) -> Result<(), Error> {
    loop {
        match ws.recv()? {
            Message::Text(text) => ws.send(Message::Text(text))?,
            Message::Binary(data) => ws.send(Message::Binary(data))?,
            Message::Close(_) => return Ok(()),
            _ => {}
        }
    }
}

wsgate_guest::gateway!(handle);
