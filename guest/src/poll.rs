//! Waiting on several WebSockets at once (wasm32 only): a plugin that
//! serves its client and talks to upstream servers waits for whichever
//! speaks first, without threads and without spinning.
//!
//! A [`Poller`] first decodes the bytes each session has received already
//! (a read may have brought several messages), then flushes every session
//! (what was sent to one while handling another's messages leaves now, in
//! one hand-over per session), then blocks in
//! `wasi:io/poll.poll` on the input streams of every session that can
//! still receive, and an optional timer. A stream that became readable is
//! read once, and only once: a session holding half a message never makes
//! the others wait for the other half.
//!
//! A proxy loop between a client and an upstream server:
//!
//! ```no_run
//! use wsgate_guest::{Event, Message, Poller, ServerConfig, Session};
//!
//! fn handle(session: Session) -> Result<(), wsgate_guest::Error> {
//!     let mut up = wsgate_guest::connect("wss://backend.example/")?;
//!     let mut down = session.accept(&ServerConfig::default())?;
//!     let mut poller = Poller::new();
//!     loop {
//!         match poller.next(&mut [&mut down, &mut up], None) {
//!             // A Close was echoed to its sender: close the other side too.
//!             Event::Message(0, Message::Close(_)) => return up.close(1000, ""),
//!             Event::Message(_, Message::Close(_)) => return down.close(1000, ""),
//!             // Pings were answered; Pongs are hop by hop.
//!             Event::Message(_, Message::Ping(_) | Message::Pong(_)) => {}
//!             Event::Message(0, message) => up.send(message)?,
//!             Event::Message(_, message) => down.send(message)?,
//!             Event::Error(_, e) => return Err(e),
//!             Event::Timeout | Event::Closed => return Ok(()),
//!         }
//!     }
//! }
//! # wsgate_guest::gateway!(handle);
//! ```

use std::time::Duration;

use wasip2::io::poll::Pollable;

use crate::error::Error;
use crate::message::Message;
use crate::transport::Transport;
use crate::websocket::WebSocket;

/// A stream whose readiness to be read is a `wasi:io` pollable: the
/// [`HostStream`](crate::HostStream) of a connect and the
/// [`SessionStream`](crate::SessionStream) of a gateway session.
pub trait Subscribe {
    /// A pollable that is ready once a read would not wait: bytes arrived,
    /// or the stream ended.
    fn subscribe(&self) -> Pollable;

    /// A pollable ready once the gateway is going away, for a
    /// [`SessionStream`](crate::SessionStream) whose reads have not said
    /// so yet; `None` for other streams. A [`Poller`] waits on it too, so
    /// that the session hears of the drain while it waits on others.
    fn going_away(&self) -> Option<&Pollable> {
        None
    }
}

/// What a [`Poller`] waits on: a [`WebSocket`] over a [`Subscribe`]
/// stream, usable as `&mut dyn Selectable` so that sessions over different
/// streams wait together.
pub trait Selectable {
    /// Whether messages can still be received (see
    /// [`WebSocket::can_recv`]).
    fn can_recv(&self) -> bool;
    /// Whether bytes were received that are not decoded yet.
    fn has_buffered(&self) -> bool;
    /// Decodes what was received, without reading (see
    /// [`WebSocket::recv_buffered`]).
    fn recv_buffered(&mut self) -> Result<Option<Message>, Error>;
    /// Reads the stream once and decodes (see [`WebSocket::recv_once`]).
    fn recv_once(&mut self) -> Result<Option<Message>, Error>;
    /// A pollable ready once the stream can be read without waiting.
    fn subscribe(&self) -> Pollable;
    /// The stream's [`Subscribe::going_away`].
    fn going_away(&self) -> Option<&Pollable> {
        None
    }
    /// Flushes what was sent (see [`WebSocket::flush`]): done for every
    /// session before the poller waits.
    fn flush(&mut self) -> Result<(), Error>;
}

impl<S: Transport + Subscribe> Selectable for WebSocket<S> {
    fn can_recv(&self) -> bool {
        WebSocket::can_recv(self)
    }

    fn has_buffered(&self) -> bool {
        WebSocket::has_buffered(self)
    }

    fn recv_buffered(&mut self) -> Result<Option<Message>, Error> {
        WebSocket::recv_buffered(self)
    }

    fn recv_once(&mut self) -> Result<Option<Message>, Error> {
        WebSocket::recv_once(self)
    }

    fn subscribe(&self) -> Pollable {
        self.get_ref().subscribe()
    }

    fn going_away(&self) -> Option<&Pollable> {
        self.get_ref().going_away()
    }

    fn flush(&mut self) -> Result<(), Error> {
        WebSocket::flush(self)
    }
}

/// What [`Poller::next`] saw first.
#[derive(Debug)]
pub enum Event {
    /// The session at this index (in the slice given) received a message.
    /// Pings were answered already, and a Close echoed, as
    /// [`WebSocket::recv`] does.
    Message(usize, Message),
    /// Receiving on the session at this index failed: it is over (a Close
    /// with the error's code was sent when it has one). Except for an
    /// error of kind [`GoingAway`](crate::ErrorKind::GoingAway), which a
    /// plugin that handles the drain itself gets once, the session still
    /// open.
    Error(usize, Error),
    /// The timeout passed and no session had a message.
    Timeout,
    /// No session can receive any more (each got its peer's Close or
    /// failed): there is nothing to wait for.
    Closed,
}

/// Waits on several WebSockets at once, taking them in turns: the session
/// after the one that had the last message is looked at first, so that a
/// busy session cannot starve the others. Keep one for a loop.
#[derive(Debug, Default)]
pub struct Poller {
    turn: usize,
}

impl Poller {
    /// A poller; the first turn is the first session's.
    pub fn new() -> Poller {
        Poller::default()
    }

    /// The next message of any of `sockets`, an error of one of them, or,
    /// after `timeout` (`None`: no bound) without either,
    /// [`Event::Timeout`]. Sessions that cannot receive are left out; when
    /// none can, [`Event::Closed`] at once.
    pub fn next(&mut self, sockets: &mut [&mut dyn Selectable], timeout: Option<Duration>) -> Event {
        let n = sockets.len();
        let timer = timeout.map(|t| {
            let nanos = u64::try_from(t.as_nanos()).unwrap_or(u64::MAX);
            wasip2::clocks::monotonic_clock::subscribe_duration(nanos)
        });
        // Each pass decodes what was received, or blocks until a stream is
        // readable (and reads it) or the timer fires: no pass spins.
        loop {
            for k in 0..n {
                let i = (self.turn + k) % n;
                let socket = &mut sockets[i];
                if socket.can_recv() && socket.has_buffered() {
                    match socket.recv_buffered() {
                        Ok(Some(message)) => return self.message(i, message),
                        Ok(None) => {}
                        Err(e) => return Event::Error(i, e),
                    }
                }
            }
            // Nothing sent may wait behind the wait: the peers may be
            // waiting for it.
            for k in 0..n {
                let i = (self.turn + k) % n;
                if let Err(e) = sockets[i].flush() {
                    return Event::Error(i, e);
                }
            }
            let live: Vec<usize> = (0..n)
                .map(|k| (self.turn + k) % n)
                .filter(|&i| sockets[i].can_recv())
                .collect();
            if live.is_empty() {
                return Event::Closed;
            }
            let pollables: Vec<Pollable> = live.iter().map(|&i| sockets[i].subscribe()).collect();
            let mut waiting: Vec<&Pollable> = pollables.iter().collect();
            // A session's drain wakes it as its bytes would: its next read
            // reports it (see `Subscribe::going_away`).
            let mut draining = Vec::new();
            for &i in &live {
                if let Some(going_away) = sockets[i].going_away() {
                    waiting.push(going_away);
                    draining.push(i);
                }
            }
            let timer_at = waiting.len();
            waiting.extend(timer.as_ref());
            let ready = wasip2::io::poll::poll(&waiting);
            drop(waiting);
            let owner = |r: u32| {
                let r = r as usize;
                live.get(r).or_else(|| draining.get(r - live.len())).copied()
            };
            let mut timed_out = false;
            for (k, &r) in ready.iter().enumerate() {
                let Some(i) = owner(r) else {
                    timed_out |= r as usize == timer_at;
                    continue;
                };
                // Readable and draining at once: one read, which may wait
                // no more than the first did.
                if ready[..k].iter().any(|&q| owner(q) == Some(i)) {
                    continue;
                }
                match sockets[i].recv_once() {
                    Ok(Some(message)) => return self.message(i, message),
                    Ok(None) => {}
                    Err(e) => return Event::Error(i, e),
                }
            }
            if timed_out {
                return Event::Timeout;
            }
        }
    }

    fn message(&mut self, i: usize, message: Message) -> Event {
        self.turn = i + 1;
        Event::Message(i, message)
    }
}

/// [`Poller::next`] with a fresh poller: for a single wait. A loop keeps a
/// [`Poller`], which takes the sessions in turns.
pub fn select(sockets: &mut [&mut dyn Selectable], timeout: Option<Duration>) -> Event {
    Poller::new().next(sockets, timeout)
}
