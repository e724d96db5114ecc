//! The upstream: an echo server of its own (tokio-tungstenite, an
//! independent peer of the gateway), in a child process, and the soak's
//! handle on it.
//!
//! It listens on `[::1]:P` and `127.0.0.1:P` (one port, both families, as
//! the gateways' `[dns] resolve` gives both addresses for one name), echoes
//! every message and counts each session's messages by the session id and
//! sequence number the driver writes in them (`ID SEQ`): how many, how many
//! came twice, how many sequence numbers were skipped, and how the session
//! ended. A message `ID reset` makes it reset that connection (SO_LINGER 0,
//! then close: an RST mid-stream).
//!
//! It takes its orders on standard input, a line each, and answers on
//! standard output:
//!
//! - at start it says `port P`;
//! - `blackhole`: the IPv6 listener stops answering: it is closed and a
//!   `listen(0)` socket bound in its place, whose accept queue is filled with
//!   connections of its own, so that further SYNs to `[::1]:P` are dropped
//!   (the sessions already open over IPv6 keep going); answers
//!   `blackholed N` (N fillers);
//! - `report`: answers `conns V6 V4` (connections accepted per family),
//!   then `s ID FAMILY MESSAGES DUPLICATES GAPS END` a session, then `end`;
//! - the end of standard input ends the process.

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// Backlog of the serving listeners: the gateways open thousands of
/// connections in bursts.
const SERVING_BACKLOG: u32 = 4096;
/// At most this many connections fill the blackhole's accept queue.
const MAX_FILLERS: usize = 16;
/// A filler whose connect has not completed within this was dropped: the
/// queue is full.
const FILL_PROBE: Duration = Duration::from_millis(200);

/// How an upstream session ended, as the upstream saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// Still open.
    Open,
    /// A Close frame with this code (0: without a code).
    Close(u16),
    /// The connection ended without a Close frame.
    Eof,
    /// A read or write failed.
    Error,
    /// This upstream reset it, as the session asked.
    Reset,
}

impl End {
    fn encode(self) -> String {
        match self {
            End::Open => "open".into(),
            End::Close(code) => format!("close:{code}"),
            End::Eof => "eof".into(),
            End::Error => "error".into(),
            End::Reset => "reset".into(),
        }
    }

    fn decode(text: &str) -> Option<End> {
        Some(match text {
            "open" => End::Open,
            "eof" => End::Eof,
            "error" => End::Error,
            "reset" => End::Reset,
            other => End::Close(other.strip_prefix("close:")?.parse().ok()?),
        })
    }
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Open => f.write_str("still open"),
            End::Close(0) => f.write_str("Close without a code"),
            End::Close(code) => write!(f, "Close {code}"),
            End::Eof => f.write_str("end of connection, no Close"),
            End::Error => f.write_str("a failed read or write"),
            End::Reset => f.write_str("reset by the upstream"),
        }
    }
}

/// What the upstream counted of one session.
#[derive(Clone, Copy, Debug)]
pub(crate) struct UpSession {
    /// Whether it came over IPv6.
    pub(crate) v6: bool,
    /// Messages received (each echoed), duplicates included.
    pub(crate) messages: u64,
    /// Messages whose sequence number had been seen before.
    pub(crate) duplicates: u64,
    /// Sequence numbers skipped (a message lost on the way up).
    pub(crate) gaps: u64,
    pub(crate) end: End,
}

/// The upstream's whole report.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) v6_connections: u64,
    pub(crate) v4_connections: u64,
    pub(crate) sessions: HashMap<u32, UpSession>,
}

// ---------------------------------------------------------------------------
// The child process.
// ---------------------------------------------------------------------------

struct Book {
    sessions: Mutex<HashMap<u32, UpSession>>,
    v6: AtomicU64,
    v4: AtomicU64,
}

/// The upstream process: serves until its standard input ends.
pub(crate) fn upstream_main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(serve())
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn serving_listener(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let socket = if addr.is_ipv6() {
        TcpSocket::new_v6()?
    } else {
        TcpSocket::new_v4()?
    };
    // The blackhole takes the IPv6 port while that listener's accepted
    // connections still hold it.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket.listen(SERVING_BACKLOG)?)
}

/// Binds one port on both loopback families (a bounded number of tries at
/// a port free on both).
fn bind_pair() -> anyhow::Result<(TcpListener, TcpListener)> {
    let mut last = None;
    for _ in 0..16 {
        let v4 = serving_listener(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        let port = v4.local_addr()?.port();
        match serving_listener(SocketAddr::from((Ipv6Addr::LOCALHOST, port))) {
            Ok(v6) => return Ok((v6, v4)),
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .unwrap_or_else(|| anyhow::anyhow!("no attempt"))
        .context("no port free on both [::1] and 127.0.0.1"))
}

async fn serve() -> anyhow::Result<()> {
    let (v6, v4) = bind_pair()?;
    let port = v4.local_addr()?.port();
    let book = Arc::new(Book {
        sessions: Mutex::new(HashMap::new()),
        v6: AtomicU64::new(0),
        v4: AtomicU64::new(0),
    });
    let mut v6_task = Some(tokio::spawn(accept_loop(v6, true, book.clone())));
    let _v4_task = tokio::spawn(accept_loop(v4, false, book.clone()));
    say(&format!("port {port}"));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(16);
    std::thread::spawn(move || {
        for line in BufReader::new(std::io::stdin()).lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    // Held until the process ends: the blackhole and its fillers.
    let mut held: Vec<std::net::TcpStream> = Vec::new();
    let mut _blackhole = None;
    while let Some(line) = rx.recv().await {
        match line.trim() {
            "blackhole" => {
                if let Some(task) = v6_task.take() {
                    task.abort();
                    let _ = task.await;
                }
                let addr = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
                let socket = TcpSocket::new_v6()?;
                socket.set_reuseaddr(true)?;
                socket.bind(addr).context("binding the blackhole")?;
                // Backlog 0: the queue holds one connection; once it is
                // full the kernel drops further SYNs.
                _blackhole = Some(socket.listen(0)?);
                held.extend(fill_accept_queue(addr).await?);
                say(&format!("blackholed {}", held.len()));
            }
            "report" => {
                let sessions = book.sessions.lock().unwrap().clone();
                let mut out = std::io::stdout().lock();
                let _ = writeln!(
                    out,
                    "conns {} {}",
                    book.v6.load(Ordering::Relaxed),
                    book.v4.load(Ordering::Relaxed)
                );
                for (id, s) in &sessions {
                    let _ = writeln!(
                        out,
                        "s {id} {} {} {} {} {}",
                        if s.v6 { 6 } else { 4 },
                        s.messages,
                        s.duplicates,
                        s.gaps,
                        s.end.encode()
                    );
                }
                let _ = writeln!(out, "end");
                let _ = out.flush();
            }
            other => say(&format!("unknown order {other:?}")),
        }
    }
    Ok(())
}

/// Fills the blackhole's accept queue until a connect hangs.
async fn fill_accept_queue(addr: SocketAddr) -> anyhow::Result<Vec<std::net::TcpStream>> {
    let mut held = Vec::new();
    for _ in 0..MAX_FILLERS {
        match tokio::time::timeout(FILL_PROBE, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => held.push(stream.into_std()?),
            Ok(Err(e)) => return Err(e).context("filling the blackhole's queue"),
            // The first can only have been slow: the queue was empty.
            Err(_) if held.is_empty() => {}
            Err(_) => return Ok(held),
        }
    }
    bail!("the blackhole at {addr} still took connections after {MAX_FILLERS}")
}

async fn accept_loop(listener: TcpListener, v6: bool, book: Arc<Book>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            // EMFILE and the like: wait a little rather than spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if v6 {
            book.v6.fetch_add(1, Ordering::Relaxed);
        } else {
            book.v4.fetch_add(1, Ordering::Relaxed);
        }
        tokio::spawn(session(tcp, v6, book.clone()));
    }
}

async fn session(tcp: TcpStream, v6: bool, book: Arc<Book>) {
    let _ = tcp.set_nodelay(true);
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    let mut id = None::<u32>;
    let record = |id: u32, f: &mut dyn FnMut(&mut UpSession)| {
        let mut sessions = book.sessions.lock().unwrap();
        let s = sessions.entry(id).or_insert(UpSession {
            v6,
            messages: 0,
            duplicates: 0,
            gaps: 0,
            end: End::Open,
        });
        f(s);
    };
    // The next sequence number expected, and the highest seen.
    let mut next = 0u64;
    let end = loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                let Some((sid, rest)) = text.as_str().split_once(' ') else {
                    continue;
                };
                let Ok(sid) = sid.parse::<u32>() else { continue };
                id = Some(sid);
                if rest == "reset" {
                    super::driver::linger_zero(ws.get_ref());
                    record(sid, &mut |s| s.end = End::Reset);
                    drop(ws);
                    return;
                }
                let Ok(seq) = rest.parse::<u64>() else { continue };
                record(sid, &mut |s| {
                    s.messages += 1;
                    if seq < next {
                        s.duplicates += 1;
                    } else {
                        s.gaps += seq - next;
                        next = seq + 1;
                    }
                });
                if ws.send(Message::Text(text)).await.is_err() {
                    break End::Error;
                }
            }
            Some(Ok(Message::Close(frame))) => {
                let code = frame.map_or(0, |f| u16::from(f.code));
                // tungstenite answers the Close; reading on flushes it and
                // sees the end.
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), async { while ws.next().await.is_some() {} }).await;
                break End::Close(code);
            }
            Some(Ok(_)) => {}
            Some(Err(_)) => break End::Error,
            None => break End::Eof,
        }
    };
    if let Some(sid) = id {
        record(sid, &mut |s| s.end = end);
    }
}

// ---------------------------------------------------------------------------
// The soak's handle.
// ---------------------------------------------------------------------------

/// The upstream child process, its orders and answers.
pub(crate) struct Upstream {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: std::sync::mpsc::Receiver<String>,
    /// The port of both its listeners.
    pub(crate) port: u16,
}

impl Upstream {
    /// Starts this binary as the upstream and waits (bounded) for its port.
    pub(crate) async fn start() -> anyhow::Result<Upstream> {
        let mut child = Command::new(std::env::current_exe().context("finding this binary")?)
            .arg("upstream")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the upstream")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut upstream = Upstream {
            child,
            stdin,
            lines,
            port: 0,
        };
        let line = upstream.line(Duration::from_secs(10)).await?;
        upstream.port = line
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("the upstream said {line:?}, not its port"))?;
        Ok(upstream)
    }

    /// The child's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn line(&mut self, limit: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + limit;
        loop {
            match self.lines.try_recv() {
                Ok(line) => return Ok(line),
                Err(std::sync::mpsc::TryRecvError::Disconnected) => bail!("the upstream ended"),
                Err(std::sync::mpsc::TryRecvError::Empty) => {}
            }
            if Instant::now() > deadline {
                bail!("the upstream said nothing within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn order(&mut self, order: &str) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("the upstream's input is closed")?;
        writeln!(stdin, "{order}")?;
        stdin.flush()?;
        Ok(())
    }

    /// Blackholes its IPv6 listener; the connections that fill its queue.
    pub(crate) async fn blackhole(&mut self) -> anyhow::Result<usize> {
        self.order("blackhole")?;
        let line = self.line(Duration::from_secs(10)).await?;
        line.strip_prefix("blackholed ")
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("the upstream answered {line:?} to blackhole"))
    }

    /// What it counted.
    pub(crate) async fn report(&mut self) -> anyhow::Result<Report> {
        self.order("report")?;
        let mut report = Report::default();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let line = self.line(Duration::from_secs(10)).await?;
            if Instant::now() > deadline {
                bail!("the upstream's report took over 30 s");
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                ["conns", v6, v4] => {
                    report.v6_connections = v6.parse()?;
                    report.v4_connections = v4.parse()?;
                }
                ["s", id, family, messages, duplicates, gaps, end] => {
                    report.sessions.insert(
                        id.parse()?,
                        UpSession {
                            v6: *family == "6",
                            messages: messages.parse()?,
                            duplicates: duplicates.parse()?,
                            gaps: gaps.parse()?,
                            end: End::decode(end).with_context(|| format!("bad end in {line:?}"))?,
                        },
                    );
                }
                ["end"] => return Ok(report),
                _ => bail!("the upstream's report has {line:?}"),
            }
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        // The end of its input ends it; a kill if it does not go.
        drop(self.stdin.take());
        super::gateway::end_within(&mut self.child, Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::End;

    #[test]
    fn ends_survive_the_report_line() {
        for end in [
            End::Open,
            End::Close(0),
            End::Close(1011),
            End::Eof,
            End::Error,
            End::Reset,
        ] {
            assert_eq!(End::decode(&end.encode()), Some(end));
        }
        assert_eq!(End::decode("close:x"), None);
        assert_eq!(End::decode("closed"), None);
    }
}
