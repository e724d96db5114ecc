//! ws-proxy: a wsgate gateway plugin that bridges every client session to
//! one upstream WebSocket, passing messages both ways through a frame hook.
//!
//! ```text
//! wsgate serve ws_proxy.wasm --listen 127.0.0.1:8080 --allow echo.example:443 -- \
//!     [--max-message BYTES] wss://echo.example/socket
//! ```
//!
//! For each session it checks the client's upgrade request (refusing it
//! with 400 or 426 as the SDK does), connects to the upstream URL through
//! the host's `connect` (policy, DNS, the address race and TLS are the
//! host's), offering the client's subprotocols, and answers the client's
//! upgrade with the upstream's choice (or `502 Bad Gateway` when the
//! upstream cannot be reached). Then it waits on both WebSockets at once
//! and passes each message to the other side through [`frame_hook`], which
//! refuses messages over `--max-message` bytes (default 1 MiB) with 1009
//! and counts messages and bytes per direction. A Close from either side is
//! passed to the other, and when both close handshakes are done, one line
//! goes to standard error:
//!
//! ```text
//! ws-proxy: 127.0.0.1:50312 closed by client (1000): client→upstream 3 messages 51 bytes, upstream→client 3 messages 51 bytes, 0 refused
//! ```

use std::fmt;

use wsgate_guest::server::Refusal;
use wsgate_guest::{
    ClientConfig, Error, Event, HostStream, Message, Poller, ServerConfig, Session, SessionStream, WebSocket,
    connect_with_config,
};

/// The default of `--max-message`.
const DEFAULT_MAX_MESSAGE: usize = 1 << 20;

/// Which way a message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the client, to the upstream server.
    ClientToUpstream,
    /// From the upstream server, to the client.
    UpstreamToClient,
}

/// What the frame hook decides for a message.
#[derive(Debug)]
pub enum Verdict {
    /// Pass it on (possibly changed).
    Forward(Message),
    /// Refuse it: close the sender's side with this code and reason, and
    /// end the session.
    Refuse(u16, String),
}

/// Messages and bytes that went one way.
#[derive(Debug, Default)]
pub struct Count {
    /// Messages forwarded.
    pub messages: u64,
    /// Their payload bytes.
    pub bytes: u64,
}

/// What the hook keeps for a session.
#[derive(Debug, Default)]
pub struct Counters {
    /// Client to upstream.
    pub up: Count,
    /// Upstream to client.
    pub down: Count,
    /// Messages refused, both ways.
    pub refused: u64,
}

// ---------------------------------------------------------------------------
// The frame hook: change this function to filter, transform or count the
// messages the proxy passes on. It sees every text and binary message, in
// order, each whole (reassembled and decompressed); Pings are answered by
// the SDK and Closes are passed on by the proxy without it.
// ---------------------------------------------------------------------------

/// Decides what happens to `message` going `direction`: refuses those over
/// `max_message` bytes (1009, "message too big", RFC 6455 §7.4.1) and
/// counts what it forwards.
pub fn frame_hook(direction: Direction, message: Message, max_message: usize, counters: &mut Counters) -> Verdict {
    if message.len() > max_message {
        counters.refused += 1;
        return Verdict::Refuse(
            1009,
            format!("message of {} bytes exceeds {max_message}", message.len()),
        );
    }
    let count = match direction {
        Direction::ClientToUpstream => &mut counters.up,
        Direction::UpstreamToClient => &mut counters.down,
    };
    count.messages += 1;
    count.bytes += message.len() as u64;
    Verdict::Forward(message)
}

// ---------------------------------------------------------------------------

/// The plugin's arguments.
#[derive(Debug)]
struct Args {
    upstream: String,
    max_message: usize,
}

impl Args {
    fn parse() -> Result<Args, String> {
        let mut args: Vec<String> = std::env::args().collect();
        // argv[0], when the host passes one, is the plugin's name.
        if args
            .first()
            .is_some_and(|a| !a.starts_with("--") && !a.starts_with("ws://") && !a.starts_with("wss://"))
        {
            args.remove(0);
        }
        let mut upstream = None;
        let mut max_message = DEFAULT_MAX_MESSAGE;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--max-message" => {
                    max_message = args
                        .next()
                        .and_then(|n| n.parse().ok())
                        .filter(|&n: &usize| n > 0)
                        .ok_or("--max-message needs a positive number of bytes")?;
                }
                url if upstream.is_none() && !url.starts_with("--") => upstream = Some(url.to_owned()),
                other => return Err(format!("unexpected argument {other:?}")),
            }
        }
        let upstream = upstream.ok_or("usage: ws-proxy [--max-message BYTES] ws[s]://UPSTREAM/")?;
        Ok(Args { upstream, max_message })
    }
}

/// Why a session ended, for the log line.
struct Ending {
    by: &'static str,
    code: Option<u16>,
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(code) => write!(f, "closed by {} ({code})", self.by),
            None => write!(f, "closed by {}", self.by),
        }
    }
}

fn handle(session: Session) -> Result<(), String> {
    let args = match Args::parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = session.refuse(&Refusal::new(500, "the proxy is misconfigured"));
            return Err(format!("ws-proxy: {e}"));
        }
    };
    let client = session.client_address();
    let request = match session.upgrade_request() {
        Ok(request) => request,
        Err(refusal) => {
            let _ = session.refuse(&refusal);
            return Err(format!("ws-proxy: {client}: {refusal}"));
        }
    };
    // The SDK's limits hold memory to what the hook accepts (a larger
    // message ends the session with 1009 as soon as its header shows it);
    // the hook is where the rule itself lives, to change.
    let mut upstream_config = ClientConfig::default()
        .max_frame_size(args.max_message)
        .max_message_size(args.max_message);
    for protocol in request.subprotocols() {
        upstream_config = upstream_config.subprotocol(protocol.as_str());
    }
    let mut up = match connect_with_config(&args.upstream, upstream_config) {
        Ok(up) => up,
        Err(e) => {
            let _ = session.refuse(&Refusal::new(502, "the upstream server cannot be reached"));
            return Err(format!("ws-proxy: {client}: upstream {}: {e}", args.upstream));
        }
    };
    let mut client_config = ServerConfig::default()
        .max_frame_size(args.max_message)
        .max_message_size(args.max_message);
    if let Some(protocol) = up.subprotocol() {
        client_config = client_config.subprotocol(protocol);
    }
    let mut down = match session.accept(&client_config) {
        Ok(down) => down,
        Err(e) => {
            let _ = up.close(1001, "the client went away");
            return Err(format!("ws-proxy: {client}: {e}"));
        }
    };
    let mut counters = Counters::default();
    let result = bridge(&mut down, &mut up, args.max_message, &mut counters);
    let summary = format!(
        "client→upstream {} messages {} bytes, upstream→client {} messages {} bytes, {} refused",
        counters.up.messages, counters.up.bytes, counters.down.messages, counters.down.bytes, counters.refused
    );
    match result {
        Ok(ending) => {
            eprintln!("ws-proxy: {client} {ending}: {summary}");
            Ok(())
        }
        Err(e) => {
            eprintln!("ws-proxy: {client} failed: {summary}");
            Err(format!("ws-proxy: {client}: {e}"))
        }
    }
}

/// Passes messages both ways until a close handshake or an error ends one
/// side, and then closes the other.
fn bridge(
    down: &mut WebSocket<SessionStream>,
    up: &mut WebSocket<HostStream>,
    max_message: usize,
    counters: &mut Counters,
) -> Result<Ending, Error> {
    let mut poller = Poller::new();
    loop {
        let (from_client, message) = match poller.next(&mut [down, up], None) {
            Event::Message(i, message) => (i == 0, message),
            Event::Error(i, e) => {
                // The failed side got its Close (with the error's code)
                // from the SDK; the other one is told the session is over.
                let code = e.close_code().unwrap_or(1011);
                if i == 0 {
                    let _ = up.close(code, "the client's side failed");
                } else {
                    let _ = down.close(code, "the upstream's side failed");
                }
                // A message over the SDK's limits (the hook's size, set on
                // both sessions) is refused as the hook refuses one.
                if code == 1009 {
                    counters.refused += 1;
                    return Ok(Ending {
                        by: "proxy",
                        code: Some(code),
                    });
                }
                return Err(e);
            }
            Event::Timeout | Event::Closed => {
                return Ok(Ending { by: "both", code: None });
            }
        };
        let direction = if from_client {
            Direction::ClientToUpstream
        } else {
            Direction::UpstreamToClient
        };
        let by = if from_client { "client" } else { "upstream" };
        match message {
            Message::Text(_) | Message::Binary(_) => match frame_hook(direction, message, max_message, counters) {
                // A side that is closing takes no more messages (RFC 6455
                // §5.5.1): the client's, when the SDK said 1001 because the
                // gateway drains, until the client's Close answers it.
                Verdict::Forward(message) if from_client => {
                    if up.can_send() {
                        up.send(message)?;
                    }
                }
                Verdict::Forward(message) => {
                    if down.can_send() {
                        down.send(message)?;
                    }
                }
                Verdict::Refuse(code, reason) => {
                    let other = if from_client { "client" } else { "upstream" };
                    let (a, b) = if from_client {
                        (
                            down.close(code, &reason),
                            up.close(1001, &format!("the {other} was refused")),
                        )
                    } else {
                        (
                            up.close(code, &reason),
                            down.close(1001, &format!("the {other} was refused")),
                        )
                    };
                    a.and(b)?;
                    return Ok(Ending {
                        by: "proxy",
                        code: Some(code),
                    });
                }
            },
            // The SDK answered Pings itself; Pongs are hop by hop.
            Message::Ping(_) | Message::Pong(_) => {}
            Message::Close(frame) => {
                // The SDK echoed the Close to its sender; the same Close
                // goes to the other side, whose answer ends the session.
                let code = frame.as_ref().map(|f| f.code);
                let close = Message::Close(frame);
                let (code_out, reason) = (code.unwrap_or(1000), "");
                if from_client {
                    if up.can_send() {
                        up.send(close)?;
                    }
                    up.close(code_out, reason)?;
                } else {
                    if down.can_send() {
                        down.send(close)?;
                    }
                    down.close(code_out, reason)?;
                }
                return Ok(Ending { by, code });
            }
        }
    }
}

wsgate_guest::gateway!(handle);
