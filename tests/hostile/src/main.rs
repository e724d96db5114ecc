//! hostile: a wsgate plugin that misbehaves on purpose, for the host's
//! sandbox tests. Each mode attacks one limit of the sandbox; the host is
//! expected to contain it and say so with a clear error, never to hang,
//! crash or grow without bound.
//!
//! ```text
//! wsgate run hostile.wasm -- MODE [ARG...]
//! ```
//!
//! | mode                             | attacks                          | the host is expected to      |
//! |----------------------------------|----------------------------------|------------------------------|
//! | `spin`                           | the CPU budget                   | stop it at its budget        |
//! | `spin-host`                      | the CPU budget, from host calls  | count host calls' time too   |
//! | `memory`                         | the memory limit                 | refuse growth past 64 MiB    |
//! | `connect-flood HOST PORT COUNT`  | the connection limits            | refuse with `limited`        |
//! | `connect HOST PORT`              | the destination policy           | refuse with `denied`         |
//! | `read-file PATH`                 | the file system                  | give it no files at all      |
//! | `env [ARG...]`                   | the environment                  | pass no variables            |
//! | `write-flood HOST PORT`          | the host's write buffer          | end it at its run-time limit |
//! | `write-unchecked HOST PORT`      | the `check-write` contract       | refuse the oversized write   |
//! | `commit-at STAGE HOST PORT`      | the operator's commit stage      | never commit later than it   |
//!
//! The plugin reaches the network only through the host's raw WIT
//! `connect` (no TLS, no first flight): it imports no `wasi:sockets`.
//!
//! Exit codes: 0 when the mode ran to its end, 2 when an operation failed
//! (the error is printed on standard output), 3 when `connect-flood` was
//! refused, 64 on bad usage (a usage line on standard error).

use std::hint::black_box;
use std::io::Write as _;
use std::process::ExitCode;

#[allow(unsafe_code, missing_docs)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "wsgate:connect/imports",
        with: {
            "wasi:io/error@0.2.12": wasip2::io::error,
            "wasi:io/poll@0.2.12": wasip2::io::poll,
            "wasi:io/streams@0.2.12": wasip2::io::streams,
        },
    });
}

use bindings::wsgate::connect::types::{self, ConnectError, ConnectOptions, Connection};
use wasip2::io::streams::OutputStream;

const USAGE: &str = "usage: hostile spin | spin-host | memory | connect-flood HOST PORT COUNT | connect HOST PORT \
                     | read-file PATH | env [ARG...] | write-flood HOST PORT | write-unchecked HOST PORT \
                     | commit-at tcp|tls|response HOST PORT";

/// An operation failed; the error is on standard output.
const EX_FAILED: u8 = 2;
/// `connect-flood`: the host refused a connect.
const EX_REFUSED: u8 = 3;
/// Bad usage (`EX_USAGE` of sysexits.h).
const EX_USAGE: u8 = 64;

const MIB: usize = 1 << 20;
/// `memory`: at most this many 1 MiB chunks (far above any 32-bit memory).
const MEMORY_ITERATIONS: usize = 65536;
/// `connect-flood`: the largest COUNT accepted.
const MAX_FLOOD: u32 = 100_000;
/// `write-flood`: the size of each write.
const FLOOD_CHUNK: usize = 64 * 1024;
/// `write-flood`: at most this many turns of the write loop.
const FLOOD_ITERATIONS: u32 = 1 << 20;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let code = match args.get(1..).unwrap_or_default() {
        ["spin"] => spin(),
        ["spin-host"] => spin_host(),
        ["memory"] => Some(memory()),
        ["connect-flood", host, port, count] => {
            let count = count.parse::<u32>().ok().filter(|c| *c <= MAX_FLOOD);
            match (port.parse::<u16>(), count) {
                (Ok(port), Some(count)) => Some(connect_flood(host, port, count)),
                _ => None,
            }
        }
        ["connect", host, port] => port.parse().ok().map(|port| connect(host, port)),
        ["read-file", path] => Some(read_file(path)),
        ["env", ..] => Some(env()),
        ["write-flood", host, port] => port.parse().ok().map(|port| write_flood(host, port)),
        ["write-unchecked", host, port] => port.parse().ok().map(|port| write_unchecked(host, port)),
        ["commit-at", stage, host, port] => {
            let stage = match *stage {
                "tcp" => Some(types::CommitStage::Tcp),
                "tls" => Some(types::CommitStage::Tls),
                "response" => Some(types::CommitStage::Response),
                _ => None,
            };
            match (stage, port.parse()) {
                (Some(stage), Ok(port)) => Some(commit_at(stage, host, port)),
                _ => None,
            }
        }
        _ => None,
    };
    match code {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => exit(code),
        None => {
            eprintln!("{USAGE}");
            exit(EX_USAGE)
        }
    }
}

/// Exits with `code` through `wasi:cli/exit`'s `exit-with-code`: the
/// standard library's exit only tells the host success or failure (1).
fn exit(code: u8) -> ! {
    let _ = std::io::stdout().flush();
    wasip2::cli::exit::exit_with_code(code);
    // Not reached: the host ends the instance.
    std::process::exit(code.into())
}

/// `spin`: attacks the CPU budget. An infinite loop that never calls the
/// host, so nothing but the host's fuel or epoch deadline can end it.
///
/// The host is expected to stop it at its CPU budget with a clear error.
/// Never returns and prints nothing.
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = black_box(black_box(n).wrapping_add(1));
    }
}

/// `spin-host`: attacks the CPU budget from inside host calls. An infinite
/// loop of cheap host calls (the clock, a little randomness), so that most
/// of the time is spent in the host rather than in the plugin's own code.
///
/// The host is expected to count the time of its calls against the budget
/// and stop the plugin there. Never returns and prints nothing.
fn spin_host() -> ! {
    let mut seen: u64 = 0;
    loop {
        seen ^= wasip2::clocks::monotonic_clock::now();
        seen ^= wasip2::random::random::get_random_u64();
        black_box(seen);
    }
}

/// `memory`: attacks the memory limit. Allocates 1 MiB chunks and keeps
/// them all, writing into every 4 KiB of each so the memory is really used;
/// prints `allocated N MiB` on standard error every 16 MiB.
///
/// The host is expected to refuse growing the linear memory past its limit
/// (64 MiB): the allocation then fails, and Rust's allocation-failure
/// handler prints `memory allocation of 1048576 bytes failed` and aborts
/// (a trap), unless the host traps the growth itself first. The loop is
/// bounded; if it ever ends, `allocated N MiB` is printed on standard
/// output and the plugin exits 0.
fn memory() -> u8 {
    let mut kept: Vec<Vec<u8>> = Vec::with_capacity(MEMORY_ITERATIONS);
    for i in 0..MEMORY_ITERATIONS {
        let mut chunk = vec![0_u8; MIB];
        for byte in chunk.iter_mut().step_by(4096) {
            *byte = (i as u8) | 1;
        }
        kept.push(black_box(chunk));
        if kept.len().is_multiple_of(16) {
            eprintln!("allocated {} MiB", kept.len());
        }
    }
    println!("allocated {} MiB", kept.len());
    0
}

/// `connect-flood HOST PORT COUNT`: attacks the limits on connections.
/// Opens COUNT raw connections and keeps every one of them open.
///
/// The host is expected to refuse a connect once a limit is reached, with
/// `connect-error::limited` naming it. On the first error the plugin prints
/// `refused at I: ERROR` (I the 0-based index of the connect that failed,
/// ERROR the Debug form of the connect-error, e.g.
/// `ConnectError::Limited("...")`) on standard output and exits 3; when
/// every connect succeeds it prints `connected COUNT` and exits 0.
fn connect_flood(host: &str, port: u16, count: u32) -> u8 {
    let mut open: Vec<Connection> = Vec::with_capacity(count as usize);
    for i in 0..count {
        match raw_connect(host, port) {
            Ok(connection) => open.push(connection),
            Err(e) => {
                println!("refused at {i}: {e:?}");
                return EX_REFUSED;
            }
        }
    }
    println!("connected {count}");
    0
}

/// `connect HOST PORT`: attacks the destination policy. One raw connect.
///
/// The host is expected to refuse a destination its policy does not allow
/// with `connect-error::denied`. Prints `connected PEER` and exits 0, or
/// `error: ERROR` (the Debug form of the connect-error, e.g.
/// `ConnectError::Denied("...")`) on standard output and exits 2.
fn connect(host: &str, port: u16) -> u8 {
    match raw_connect(host, port) {
        Ok(connection) => {
            println!("connected {}", connection.peer());
            0
        }
        Err(e) => {
            println!("error: {e:?}");
            EX_FAILED
        }
    }
}

/// `read-file PATH`: attacks the file system. Reads PATH with `std::fs`.
///
/// The host is expected to give the plugin no file system (no preopened
/// directory), so the read fails. Prints `read N bytes` and exits 0, or
/// `error: ERROR` (the `std::io::Error`) on standard output and exits 2.
fn read_file(path: &str) -> u8 {
    match std::fs::read(path) {
        Ok(bytes) => {
            println!("read {} bytes", bytes.len());
            0
        }
        Err(e) => {
            println!("error: {e}");
            EX_FAILED
        }
    }
}

/// `env [ARG...]`: attacks the environment, which could leak the host's
/// secrets. Prints `env: N variables`, then each variable as `KEY=VALUE`,
/// then `args: N` and each argument (the program name first) on its own
/// line, and exits 0.
///
/// The host is expected to pass no environment variables at all, and
/// exactly the arguments given on its command line.
fn env() -> u8 {
    let vars: Vec<_> = std::env::vars_os().collect();
    println!("env: {} variables", vars.len());
    for (key, value) in &vars {
        println!("{}={}", key.to_string_lossy(), value.to_string_lossy());
    }
    let args: Vec<_> = std::env::args_os().collect();
    println!("args: {}", args.len());
    for arg in &args {
        println!("{}", arg.to_string_lossy());
    }
    0
}

/// `write-flood HOST PORT`: attacks the host's write buffer. One raw
/// connect, then 64 KiB writes without end, the proper `wasi:io` way:
/// `check-write` for room, `write` of at most that, and a wait on the
/// stream's pollable when there is no room. Prints `accepted N MiB` on
/// standard error for each MiB the host accepted.
///
/// The peer never reads, so once the kernel's buffers and the host's are
/// full the plugin waits forever. The host is expected to keep its own
/// buffer bounded and to end the plugin at its run-time limit. The loop is
/// bounded (2^20 turns); if it ends, `accepted N bytes` is printed on
/// standard output and the plugin exits 0. A failed connect prints
/// `error: ERROR`, a failed write `write error: ERROR` (Debug forms), on
/// standard output, and the plugin exits 2.
fn write_flood(host: &str, port: u16) -> u8 {
    let (connection, output) = match connect_output(host, port) {
        Ok(pair) => pair,
        Err(code) => return code,
    };
    let code = flood(&output);
    // The stream is a child of the connection: it goes first.
    drop(output);
    drop(connection);
    code
}

fn flood(output: &OutputStream) -> u8 {
    let chunk = vec![0x5a_u8; FLOOD_CHUNK];
    let mut accepted: u64 = 0;
    for _ in 0..FLOOD_ITERATIONS {
        let room = match output.check_write() {
            Ok(room) => room,
            Err(e) => {
                println!("write error: {e:?}");
                return EX_FAILED;
            }
        };
        if room == 0 {
            output.subscribe().block();
            continue;
        }
        let n = chunk.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        if let Err(e) = output.write(&chunk[..n]) {
            println!("write error: {e:?}");
            return EX_FAILED;
        }
        let before = accepted / MIB as u64;
        accepted += n as u64;
        if accepted / MIB as u64 > before {
            eprintln!("accepted {} MiB", accepted / MIB as u64);
        }
    }
    println!("accepted {accepted} bytes");
    0
}

/// `write-unchecked HOST PORT`: attacks the `check-write` contract. One
/// raw connect, then a single 1 MiB `write` without asking `check-write`
/// for room first.
///
/// The host is expected to refuse the write (an error, or a trap) rather
/// than buffer without bound. Prints what the host answered on standard
/// output, `write error: ERROR` (the Debug form of the stream-error) or
/// `wrote`, and exits 0; a failed connect prints `error: ERROR` and exits 2.
fn write_unchecked(host: &str, port: u16) -> u8 {
    let (connection, output) = match connect_output(host, port) {
        Ok(pair) => pair,
        Err(code) => return code,
    };
    let data = vec![0x5a_u8; MIB];
    match output.write(&data) {
        Ok(()) => println!("wrote"),
        Err(e) => println!("write error: {e:?}"),
    }
    drop(output);
    drop(connection);
    0
}

/// `commit-at STAGE HOST PORT`: attacks the operator's commit stage. A TLS
/// connect that asks to commit at STAGE, with a WebSocket upgrade request as
/// its first flight (so that `response` has something to wait for); prints
/// `committed at STAGE` with the stage the host's report gives.
///
/// The host is expected to commit at the operator's stage when the plugin
/// asks for a later one, and at the plugin's when it asks for an earlier.
fn commit_at(stage: types::CommitStage, host: &str, port: u16) -> u8 {
    // RFC 6455's sample key: any valid upgrade gets a 101 from the server.
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let options = ConnectOptions {
        tls: Some(types::TlsOptions { alpn: Vec::new() }),
        first_flight: Some(request.into_bytes()),
        cancel_after: Some(stage),
        timeout_ms: None,
    };
    match types::connect(host, port, &options) {
        Ok(connection) => {
            let report = connection.report();
            let commit = report.iter().find(|e| e.event == "commit");
            println!(
                "committed at {}",
                commit.and_then(|e| e.detail.clone()).unwrap_or_default()
            );
            0
        }
        Err(e) => {
            println!("error: {e:?}");
            EX_FAILED
        }
    }
}

/// A raw connect: no TLS, no first flight, the host's defaults otherwise.
fn raw_connect(host: &str, port: u16) -> Result<Connection, ConnectError> {
    let options = ConnectOptions {
        tls: None,
        first_flight: None,
        cancel_after: None,
        timeout_ms: None,
    };
    types::connect(host, port, &options)
}

/// A raw connect and its output stream; on failure the error is printed
/// (`error: ERROR`) and the exit code returned.
fn connect_output(host: &str, port: u16) -> Result<(Connection, OutputStream), u8> {
    let connection = raw_connect(host, port).map_err(|e| {
        println!("error: {e:?}");
        EX_FAILED
    })?;
    let output = connection.output().map_err(|e| {
        println!("error: {e:?}");
        EX_FAILED
    })?;
    Ok((connection, output))
}
