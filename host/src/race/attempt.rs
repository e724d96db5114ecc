//! One attempt, from the TCP connect up to the race's commit stage, run as
//! a task of its own so that the race can cancel it by aborting the task.

use super::{AttemptError, AttemptStage, CommitStage, Dialer, Target};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What an attempt tells the race on its way.
pub(super) enum Progress {
    Tcp(SocketAddr, Instant),
    Tls(SocketAddr, Instant),
    FirstFlight(SocketAddr, Instant, usize),
    Response(SocketAddr, Instant, String),
}

/// How an attempt ended.
pub(super) enum Outcome<S> {
    Ready {
        addr: SocketAddr,
        stream: S,
        prefix: Vec<u8>,
    },
    Failed {
        addr: SocketAddr,
        stage: AttemptStage,
        error: AttemptError,
        at: Instant,
    },
}

/// One attempt, up to the commit stage.
pub(super) async fn attempt<D: Dialer>(
    dialer: Arc<D>,
    target: Arc<Target>,
    addr: SocketAddr,
    max_head: usize,
    progress: mpsc::UnboundedSender<Progress>,
) -> Outcome<D::Stream> {
    let mut stage = AttemptStage::Started;
    let failed = |stage, error: AttemptError| Outcome::Failed {
        addr,
        stage,
        error,
        at: Instant::now(),
    };
    let mut stream = match dialer.tcp(addr).await {
        Ok(s) => s,
        Err(e) => return failed(stage, AttemptError::tcp(e)),
    };
    stage = AttemptStage::Tcp;
    let _ = progress.send(Progress::Tcp(addr, Instant::now()));
    if target.tls && target.commit >= CommitStage::Tls {
        stream = match dialer.tls(addr, stream, &super::EchOffer::Off).await {
            Ok((s, _)) => s,
            Err(e) => return failed(stage, AttemptError::tls(e)),
        };
        stage = AttemptStage::Tls;
        let _ = progress.send(Progress::Tls(addr, Instant::now()));
    }
    let mut prefix = Vec::new();
    if target.commit == CommitStage::Response {
        if let Some(flight) = &target.first_flight {
            if let Err(e) = write_flight(&mut stream, flight).await {
                return failed(stage, e);
            }
            stage = AttemptStage::FirstFlight;
            let _ = progress.send(Progress::FirstFlight(addr, Instant::now(), flight.len()));
        }
        match read_head(&mut stream, max_head).await {
            Ok((head, status)) => {
                prefix = head;
                let _ = progress.send(Progress::Response(addr, Instant::now(), status));
            }
            Err(e) => return failed(stage, AttemptError::io("", e)),
        }
    }
    Outcome::Ready { addr, stream, prefix }
}

/// Writes the plugin's first flight whole, and flushes it.
pub(super) async fn write_flight<S: tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    flight: &[u8],
) -> Result<(), AttemptError> {
    let written = async {
        stream.write_all(flight).await?;
        stream.flush().await
    };
    written
        .await
        .map_err(|e| AttemptError::io("writing the first flight", e))
}

/// Reads until a complete HTTP response head (`\r\n\r\n`) has arrived,
/// at most `max` bytes, and returns every byte read (the head and whatever
/// followed it in the same reads) with the status line.
async fn read_head<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, max: usize) -> io::Result<(Vec<u8>, String)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before a complete response head",
            ));
        }
        // Look for the end of the head only where it can be: in the new
        // bytes and the three before them.
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            let head_end = from + end + 4;
            let status = String::from_utf8_lossy(&buf[..head_end])
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned();
            return Ok((buf, status));
        }
        if buf.len() > max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("response head over {max} bytes"),
            ));
        }
    }
}
