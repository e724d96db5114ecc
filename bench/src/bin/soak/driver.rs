//! The clients: one task a session, each a tokio-tungstenite client that
//! sends numbered messages (one in flight, then a pause), checks every
//! echo, and counts what it sent and got back.
//!
//! A message is the text `ID SEQ` (the session's id, then 0, 1, 2...): the
//! upstream counts them by the same numbers, so the two ends' counts can
//! be compared session by session.

use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// Bound on a connect and upgrade.
pub(crate) const OPEN_LIMIT: Duration = Duration::from_secs(20);
/// Bound on a close handshake (and on reading to the end after a Close).
const CLOSE_LIMIT: Duration = Duration::from_secs(10);

/// What the soak tells a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cmd {
    /// Ask the upstream to reset its connection (`ID reset`), then stop
    /// sending and wait for the gateway's Close.
    Reset,
    /// Drop the TCP connection, no Close (a FIN).
    Vanish,
    /// Drop the TCP connection with an RST (SO_LINGER 0), no Close.
    Abort,
    /// Finish the message in flight (waiting for its echo at most 10 s),
    /// then close (1000).
    Close,
}

/// How a session ended, as its client saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum ClientEnd {
    /// Still running.
    Open,
    /// A Close frame from the gateway with this code (0: none).
    Close(u16),
    /// The connection ended (or failed) without a Close frame.
    Abnormal,
    /// The client dropped its connection, as told.
    Vanished,
    /// The session's time bound passed.
    Timeout,
}

impl std::fmt::Display for ClientEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientEnd::Open => f.write_str("still open"),
            ClientEnd::Close(0) => f.write_str("Close without a code"),
            ClientEnd::Close(code) => write!(f, "Close {code}"),
            ClientEnd::Abnormal => f.write_str("abnormal end (no Close)"),
            ClientEnd::Vanished => f.write_str("vanished"),
            ClientEnd::Timeout => f.write_str("timed out"),
        }
    }
}

/// What one session's client counted.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Record {
    /// Messages sent.
    pub(crate) sent: u64,
    /// Echoes received that were the message in flight.
    pub(crate) echoed: u64,
    /// Messages received that were not (a duplicate, out of order, unknown).
    pub(crate) bad: u64,
    pub(crate) end: ClientEnd,
}

/// What the sessions share: their pace, the latencies they measured, the
/// bound on their lives.
pub(crate) struct Traffic {
    /// The pause between an echo and the next message.
    pub(crate) interval: Duration,
    /// Every echo's round trip, in microseconds.
    pub(crate) latencies_us: Mutex<Vec<u32>>,
    /// No session runs past this.
    pub(crate) deadline: Instant,
}

/// A running session, as the soak holds it.
pub(crate) struct Session {
    pub(crate) id: u32,
    commands: mpsc::Sender<Cmd>,
    record: Arc<Mutex<Record>>,
    task: tokio::task::JoinHandle<()>,
}

impl Session {
    /// Tells it `cmd` (ignored once it has ended).
    pub(crate) fn tell(&self, cmd: Cmd) {
        let _ = self.commands.try_send(cmd);
    }

    /// What it counted so far.
    pub(crate) fn record(&self) -> Record {
        *self.record.lock().unwrap()
    }

    pub(crate) fn finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// Connects to `addr` and upgrades on `path`.
pub(crate) async fn upgrade(addr: SocketAddr, path: &str) -> anyhow::Result<WebSocketStream<TcpStream>> {
    let run = async {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}{path}"), tcp).await?;
        anyhow::Ok(ws)
    };
    tokio::time::timeout(OPEN_LIMIT, run)
        .await
        .map_err(|_| anyhow::anyhow!("no upgrade within {OPEN_LIMIT:?}"))?
}

/// Opens session `id` to the gateway at `addr` and starts its
/// traffic: its first message at once (the upstream knows the session by
/// its id from then on), the next an interval after each echo.
pub(crate) async fn open(id: u32, addr: SocketAddr, traffic: Arc<Traffic>) -> anyhow::Result<Session> {
    let ws = upgrade(addr, "/").await?;
    let record = Arc::new(Mutex::new(Record {
        sent: 0,
        echoed: 0,
        bad: 0,
        end: ClientEnd::Open,
    }));
    let (commands, rx) = mpsc::channel(4);
    let task = tokio::spawn(run(ws, id, record.clone(), rx, traffic));
    Ok(Session {
        id,
        commands,
        record,
        task,
    })
}

/// Sets SO_LINGER to zero: the close that follows sends an RST.
pub(crate) fn linger_zero(tcp: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads the struct given, on a socket we own.
    unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// Reads to the end of the connection (bounded) after a Close.
/// Reads until the peer's Close (its code), the end of the connection
/// (abnormal) or `limit`.
pub(crate) async fn close_end(ws: &mut WebSocketStream<TcpStream>, limit: Duration) -> ClientEnd {
    tokio::time::timeout(limit, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return ClientEnd::Close(frame.map_or(0, |f| f.code.into())),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return ClientEnd::Abnormal,
            }
        }
    })
    .await
    .unwrap_or(ClientEnd::Timeout)
}

async fn read_to_end(ws: &mut WebSocketStream<TcpStream>) {
    let _ = tokio::time::timeout(CLOSE_LIMIT, async { while let Some(Ok(_)) = ws.next().await {} }).await;
}

async fn run(
    mut ws: WebSocketStream<TcpStream>,
    id: u32,
    record: Arc<Mutex<Record>>,
    mut commands: mpsc::Receiver<Cmd>,
    traffic: Arc<Traffic>,
) {
    let end = |e: ClientEnd| record.lock().unwrap().end = e;
    let mut seq = 0u64;
    let mut in_flight: Option<Instant> = None;
    let mut next_send = Instant::now();
    // Close asked: close once no message is in flight.
    let mut closing = false;
    // An echo not back by then is not waited for any longer.
    let mut close_by = traffic.deadline;
    // Reset asked: send nothing more.
    let mut quiet = false;
    let mut listening = true;
    loop {
        if closing && (in_flight.is_none() || Instant::now() >= close_by) {
            let frame = CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            };
            if ws.close(Some(frame)).await.is_err() {
                return end(ClientEnd::Abnormal);
            }
            // The gateway's Close, then the end.
            let answer = close_end(&mut ws, CLOSE_LIMIT).await;
            read_to_end(&mut ws).await;
            return end(answer);
        }
        tokio::select! {
            cmd = commands.recv(), if listening => match cmd {
                Some(Cmd::Reset) => {
                    quiet = true;
                    if ws.send(Message::text(format!("{id} reset"))).await.is_err() {
                        return end(ClientEnd::Abnormal);
                    }
                }
                Some(cmd @ (Cmd::Vanish | Cmd::Abort)) => {
                    if cmd == Cmd::Abort {
                        linger_zero(ws.get_ref());
                    }
                    drop(ws);
                    return end(ClientEnd::Vanished);
                }
                Some(Cmd::Close) => {
                    closing = true;
                    close_by = Instant::now() + CLOSE_LIMIT;
                }
                None => listening = false,
            },
            _ = tokio::time::sleep_until(next_send), if in_flight.is_none() && !closing && !quiet => {
                if ws.send(Message::text(format!("{id} {seq}"))).await.is_err() {
                    return end(ClientEnd::Abnormal);
                }
                seq += 1;
                in_flight = Some(Instant::now());
                record.lock().unwrap().sent += 1;
            }
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    let expected = seq.checked_sub(1).map(|s| format!("{id} {s}"));
                    let mut r = record.lock().unwrap();
                    match in_flight.take() {
                        Some(sent) if expected.as_deref() == Some(text.as_str()) => {
                            r.echoed += 1;
                            let us = sent.elapsed().as_micros().min(u32::MAX as u128) as u32;
                            traffic.latencies_us.lock().unwrap().push(us);
                        }
                        other => {
                            r.bad += 1;
                            in_flight = other;
                        }
                    }
                    next_send = Instant::now() + traffic.interval;
                }
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.map_or(0, |f| f.code.into());
                    read_to_end(&mut ws).await;
                    return end(ClientEnd::Close(code));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return end(ClientEnd::Abnormal),
            },
            _ = tokio::time::sleep_until(close_by), if closing => {}
            _ = tokio::time::sleep_until(traffic.deadline) => return end(ClientEnd::Timeout),
        }
    }
}
