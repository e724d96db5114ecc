//! The sans-I/O core of a WebSocket session (RFC 6455 §5-7, RFC 7692):
//! received bytes in, messages out; messages in, bytes to send out.
//!
//! A [`Session`] is everything about a connection but the connection: the
//! close state machine and the answers to control frames here, message
//! reassembly and the limits in [`incoming`], frame encoding in
//! [`outgoing`], permessage-deflate on both sides. It is handed the bytes
//! that arrived and queues the bytes to send in an output buffer; it reads,
//! writes and waits for nothing. The blocking
//! [`WebSocket`](crate::WebSocket) drives it over a
//! [`Transport`](crate::Transport), as tungstenite's `WebSocket` drives its
//! `WebSocketContext`.

mod incoming;
mod outgoing;
#[cfg(test)]
mod tests;

use std::io;

use crate::config::Limits;
use crate::deflate::DeflateParams;
use crate::error::{Error, ErrorKind};
use crate::frame::{MAX_CONTROL_PAYLOAD, OpCode};
use crate::message::{MAX_CLOSE_REASON, Message};

#[cfg(test)]
pub(crate) use incoming::FIRST_ALLOCATION;
use incoming::Incoming;
use outgoing::Outgoing;

/// Which end of the connection a session is, which decides how the frames
/// it sends are masked and which frames it accepts (RFC 6455 §5.1: a client
/// masks every frame and a server none; each fails the connection with 1002
/// on a frame masked the other way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// The end that sent the upgrade request.
    Client,
    /// The end that answered it.
    Server,
}

impl Role {
    /// permessage-deflate's parameters as this end applies them: the
    /// compressor and decompressor take the client's view (`client_*` for
    /// what we send, `server_*` for what we receive), which a server
    /// mirrors.
    fn own_view(self, params: &DeflateParams) -> DeflateParams {
        match self {
            Role::Client => *params,
            Role::Server => DeflateParams {
                client_no_context_takeover: params.server_no_context_takeover,
                server_no_context_takeover: params.client_no_context_takeover,
                client_max_window_bits: params.server_max_window_bits,
                server_max_window_bits: params.client_max_window_bits,
            },
        }
    }
}

/// Where a session is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Messages flow both ways.
    Open,
    /// We sent Close and wait for the peer's; we send nothing more.
    CloseSent,
    /// Both Close frames were exchanged.
    Closed,
    /// An error ended the session.
    Failed,
}

/// The protocol state of one WebSocket connection, without the connection.
#[derive(Debug)]
pub(crate) struct Session {
    state: State,
    incoming: Incoming,
    outgoing: Outgoing,
}

impl Session {
    /// A session whose opening handshake is done, with `limits` and
    /// permessage-deflate if it was agreed (`deflate` as negotiated, in the
    /// terms of RFC 7692: `client_*` are the client's, whatever our role).
    pub(crate) fn new(role: Role, limits: &Limits, deflate: Option<&DeflateParams>) -> Session {
        let deflate = deflate.map(|params| role.own_view(params));
        Session {
            state: State::Open,
            incoming: Incoming::new(role, limits, deflate.as_ref()),
            outgoing: Outgoing::new(role, deflate.as_ref()),
        }
    }

    pub(crate) fn state(&self) -> State {
        self.state
    }

    /// Whether permessage-deflate is in use.
    pub(crate) fn is_compressed(&self) -> bool {
        self.outgoing.is_compressed()
    }

    /// Decodes received bytes up to the end of the next message. Returns
    /// how many bytes of `input` were used and the message they completed;
    /// without a message, all of `input` was used and more is needed.
    ///
    /// A Ping queues its Pong (unless we sent Close); the peer's Close
    /// queues the echo of its code (unless we sent one) and closes the
    /// session. A violation of the protocol queues a Close with the error's
    /// [`close_code`](Error::close_code) and fails the session. Write the
    /// [`output`](Session::output) after each call.
    pub(crate) fn read(&mut self, input: &[u8]) -> Result<(usize, Option<Message>), Error> {
        match self.state {
            State::Open | State::CloseSent => {}
            State::Closed => return Err(Error::already_closed("the close handshake is complete")),
            State::Failed => return Err(ended()),
        }
        let read = match self.incoming.read(input) {
            Ok((used, Some(message))) => self.answer(message).map(|message| (used, Some(message))),
            other => other,
        };
        read.map_err(|e| self.fail(e))
    }

    /// What a received message asks of the session.
    fn answer(&mut self, message: Message) -> Result<Message, Error> {
        match &message {
            // After our Close we send nothing, Pongs included (§5.5.1).
            Message::Ping(payload) if self.state == State::Open => self.queue(OpCode::Pong, payload)?,
            Message::Close(frame) => {
                if self.state == State::Open {
                    // Echo the code (§5.5.1); the reason is the peer's and
                    // is not sent back. If the echo cannot be sent, the
                    // peer's Close is still the answer to give the caller.
                    let echo = match frame {
                        Some(f) => f.code.to_be_bytes().to_vec(),
                        None => Vec::new(),
                    };
                    let _ = self.queue(OpCode::Close, &echo);
                }
                self.state = State::Closed;
            }
            _ => {}
        }
        Ok(message)
    }

    /// The stream ended, which it should not before the close handshake:
    /// fails the session and returns the error to report.
    pub(crate) fn end_of_stream(&mut self) -> Error {
        let was = self.state;
        self.state = State::Failed;
        Error::connection_closed(if was == State::CloseSent {
            "connection closed before the peer answered our Close"
        } else {
            "connection closed without a Close frame"
        })
    }

    /// Queues a message as one frame (see [`WebSocket::send`] for the
    /// rules). A message refused by them queues nothing and leaves the
    /// session open.
    ///
    /// [`WebSocket::send`]: crate::WebSocket::send
    #[cfg(test)]
    pub(crate) fn send(&mut self, message: Message) -> Result<(), Error> {
        if let Some(payload) = self.send_split(message)? {
            self.outgoing.append(&payload);
        }
        Ok(())
    }

    /// [`send`](Session::send), except that a large payload that needs no
    /// compression is not copied into the output: its frame's header is
    /// queued, and the payload (masked in place, as the role has it) is
    /// returned, to be written right after the [`output`](Session::output).
    pub(crate) fn send_split(&mut self, message: Message) -> Result<Option<Vec<u8>>, Error> {
        match self.state {
            State::Open => {}
            State::CloseSent | State::Closed => return Err(Error::already_closed("a Close was sent already")),
            State::Failed => return Err(ended()),
        }
        let (opcode, payload) = match message {
            Message::Text(text) => (OpCode::Text, text.into_bytes()),
            Message::Binary(data) => (OpCode::Binary, data),
            Message::Ping(data) => return self.queue_control(OpCode::Ping, &data).map(|()| None),
            Message::Pong(data) => return self.queue_control(OpCode::Pong, &data).map(|()| None),
            Message::Close(frame) => {
                let mut payload = Vec::with_capacity(MAX_CONTROL_PAYLOAD);
                if let Some(frame) = &frame {
                    frame.encode(&mut payload)?;
                }
                self.queue(OpCode::Close, &payload)?;
                self.state = State::CloseSent;
                return Ok(None);
            }
        };
        let result = self.outgoing.message_owned(opcode, payload);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    fn queue_control(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), Error> {
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(Error::local(
                ErrorKind::Capacity,
                format!("{opcode:?} of {} bytes exceeds 125", payload.len()),
            ));
        }
        self.queue(opcode, payload)
    }

    /// Queues one frame. One that cannot be encoded (no randomness for its
    /// mask, a compressor failure) leaves what the peer expects next
    /// unknown: the session is failed.
    fn queue(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), Error> {
        let result = if opcode.is_control() {
            self.outgoing.control(opcode, payload)
        } else {
            self.outgoing.message(opcode, payload)
        };
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    /// The bytes queued to send: write them, then report how that went
    /// with [`wrote`](Session::wrote).
    pub(crate) fn output(&self) -> &[u8] {
        self.outgoing.output()
    }

    /// Takes the outcome of writing the [`output`](Session::output), which
    /// is then emptied. A failed write may have sent part of a frame, after
    /// which the stream cannot carry frames: the session is failed (a
    /// closed one stays closed).
    pub(crate) fn wrote(&mut self, result: io::Result<()>) -> Result<(), Error> {
        self.outgoing.clear();
        result.map_err(|e| {
            if matches!(self.state, State::Open | State::CloseSent) {
                self.state = State::Failed;
            }
            Error::from(e)
        })
    }

    /// Ends the session after `err`: queues a Close with its code if it has
    /// one and no Close was sent yet (best effort: the session is over
    /// either way, and nobody waits for the peer's), and returns `err`.
    fn fail(&mut self, err: Error) -> Error {
        if let Some(code) = err.close_code()
            && self.state == State::Open
        {
            let mut payload = code.to_be_bytes().to_vec();
            // The error's words, cut to fit, tell the peer what was wrong.
            let detail = err.to_string();
            let mut cut = detail.len().min(MAX_CLOSE_REASON);
            while !detail.is_char_boundary(cut) {
                cut -= 1;
            }
            payload.extend_from_slice(&detail.as_bytes()[..cut]);
            let _ = self.outgoing.control(OpCode::Close, &payload);
        }
        self.state = State::Failed;
        err
    }

    /// The bytes of the data message being received and the capacity of
    /// its buffer.
    #[cfg(test)]
    pub(crate) fn partial_buffer(&self) -> Option<(usize, usize)> {
        self.incoming.partial_buffer()
    }
}

/// The error of any use of a session an error ended.
pub(crate) fn ended() -> Error {
    Error::already_closed("an earlier error ended the WebSocket")
}
