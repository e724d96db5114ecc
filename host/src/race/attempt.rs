//! One attempt, from the TCP connect up to the race's commit stage, run as
//! a task of its own so that the race can cancel it by aborting the task.

use super::order::Endpoint;
use super::{AttemptError, AttemptStage, CommitStage, Dialer, EchOffer, EchRetry, EchStatus, Target};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// What an attempt tells the race on its way. Addresses are the ones the
/// endpoints stand for ([`Endpoint::addr`]).
pub(super) enum Progress {
    Tcp(SocketAddr, Instant),
    /// Waiting for the HTTPS answer before TLS, for its ECH configuration.
    AwaitingEch(SocketAddr, Instant),
    /// The server rejected ECH and sent retry configurations: a new
    /// connection tries them.
    EchRetry(SocketAddr, Instant),
    Tls(SocketAddr, Instant, EchStatus),
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

/// One attempt, up to the commit stage. `ech` gives the ECH offer for the
/// TLS handshake once it is known (`None` until the HTTPS answer is in).
pub(super) async fn attempt<D: Dialer>(
    dialer: Arc<D>,
    target: Arc<Target>,
    endpoint: Endpoint,
    max_head: usize,
    progress: mpsc::UnboundedSender<Progress>,
    mut ech: watch::Receiver<Option<EchOffer>>,
) -> Outcome<D::Stream> {
    let addr = endpoint.addr;
    let dial = endpoint.dial();
    let mut stage = AttemptStage::Started;
    let failed = |stage, error: AttemptError| Outcome::Failed {
        addr,
        stage,
        error,
        at: Instant::now(),
    };
    let mut stream = match dialer.tcp(dial).await {
        Ok(s) => s,
        Err(e) => return failed(stage, AttemptError::tcp(e)),
    };
    stage = AttemptStage::Tcp;
    let _ = progress.send(Progress::Tcp(addr, Instant::now()));
    if target.tls && target.commit >= CommitStage::Tls {
        if ech.borrow().is_none() {
            let _ = progress.send(Progress::AwaitingEch(addr, Instant::now()));
        }
        let offer = match ech.wait_for(Option::is_some).await {
            Ok(offer) => offer.clone().unwrap_or_default(),
            // The race is gone; so is this attempt.
            Err(_) => EchOffer::Off,
        };
        stream = match handshake(&*dialer, dial, stream, offer, addr, &progress).await {
            Ok((s, status)) => {
                let _ = progress.send(Progress::Tls(addr, Instant::now(), status));
                s
            }
            Err(e) => return failed(stage, e),
        };
        stage = AttemptStage::Tls;
    }
    let mut prefix = Vec::new();
    if target.commit == CommitStage::Response {
        if let Some(flight) = &target.first_flight {
            if let Err(e) = write_flight(&mut stream, flight).await {
                return failed(stage, e);
            }
            stage = AttemptStage::FirstFlight;
            let _ = progress.send(Progress::FirstFlight(addr, Instant::now(), flight.len()));
            dialer.awaiting_reply(&stream);
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

/// The TLS handshake with `offer`; when the server rejects ECH and sends
/// retry configurations, one more handshake with them on a new TCP
/// connection (RFC 9849 §6.1.6: used once, never again in a loop).
pub(super) async fn handshake<D: Dialer>(
    dialer: &D,
    dial: SocketAddr,
    stream: D::Stream,
    offer: EchOffer,
    addr: SocketAddr,
    progress: &mpsc::UnboundedSender<Progress>,
) -> Result<(D::Stream, EchStatus), AttemptError> {
    match dialer.tls(dial, stream, &offer).await {
        Ok(done) => Ok(done),
        Err(e) => {
            let Some(retry) = e.get_ref().and_then(|inner| inner.downcast_ref::<EchRetry>()).cloned() else {
                return Err(AttemptError::tls(e));
            };
            let _ = progress.send(Progress::EchRetry(addr, Instant::now()));
            let stream = dialer.tcp(dial).await.map_err(AttemptError::tcp)?;
            dialer
                .tls(dial, stream, &EchOffer::Config(retry.0))
                .await
                .map_err(AttemptError::tls)
        }
    }
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
