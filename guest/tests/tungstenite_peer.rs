//! The SDK against an independent implementation: a tokio-tungstenite
//! server on 127.0.0.1, the SDK over a blocking `std::net::TcpStream`.
//!
//! The server's behaviour is chosen by the request path; what it observed
//! (the client's Close code, the Pong payload) comes back over a channel.

// The handshake callback's error type is tungstenite's, not ours to shrink.
#![allow(clippy::result_large_err)]

use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{
    self,
    protocol::{
        CloseFrame as TCloseFrame, frame::Frame, frame::coding::CloseCode, frame::coding::Data, frame::coding::OpCode,
    },
};
use wsgate_guest::{ClientConfig, CloseFrame, ErrorKind, Message, Url, WebSocket, client};

const TIMEOUT: Duration = Duration::from_secs(10);

/// What the server saw.
#[derive(Debug, PartialEq)]
enum Seen {
    Close(Option<u16>),
    Pong(Vec<u8>),
}

/// Starts the server on its own thread and runtime; returns its address
/// and the channel of what it saw. The thread ends with the test process.
fn server() -> (SocketAddr, mpsc::Receiver<Seen>) {
    let (addr_tx, addr_rx) = mpsc::channel();
    let (seen_tx, seen_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            addr_tx.send(listener.local_addr().expect("addr")).expect("send addr");
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let seen = seen_tx.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(TIMEOUT, serve(tcp, seen)).await;
                });
            }
        });
    });
    let addr = addr_rx.recv_timeout(TIMEOUT).expect("server address");
    (addr, seen_rx)
}

async fn serve(tcp: tokio::net::TcpStream, seen: mpsc::Sender<Seen>) -> Result<(), tungstenite::Error> {
    let mut path = String::new();
    let callback = |req: &tungstenite::handshake::server::Request, resp| {
        path = req.uri().path().to_owned();
        Ok(resp)
    };
    let mut ws = tokio_tungstenite::accept_hdr_async(tcp, callback).await?;
    match path.as_str() {
        "/fragmented" => {
            ws.send(tungstenite::Message::Frame(Frame::message(
                "frag",
                OpCode::Data(Data::Text),
                false,
            )))
            .await?;
            ws.send(tungstenite::Message::Ping("between".into())).await?;
            ws.send(tungstenite::Message::Frame(Frame::message(
                "men",
                OpCode::Data(Data::Continue),
                false,
            )))
            .await?;
            ws.send(tungstenite::Message::Frame(Frame::message(
                "ted",
                OpCode::Data(Data::Continue),
                true,
            )))
            .await?;
        }
        "/ping" => ws.send(tungstenite::Message::Ping("are you there".into())).await?,
        "/server-close" => {
            ws.close(Some(TCloseFrame {
                code: CloseCode::Away,
                reason: "going away".into(),
            }))
            .await?;
        }
        _ => {}
    }
    // Echo data messages and report control frames until the end.
    while let Some(msg) = ws.next().await {
        match msg? {
            m @ (tungstenite::Message::Text(_) | tungstenite::Message::Binary(_)) => ws.send(m).await?,
            tungstenite::Message::Pong(p) => {
                let _ = seen.send(Seen::Pong(p.to_vec()));
            }
            tungstenite::Message::Close(frame) => {
                let _ = seen.send(Seen::Close(frame.map(|f| u16::from(f.code))));
            }
            _ => {}
        }
    }
    Ok(())
}

fn connect(addr: SocketAddr, path: &str) -> WebSocket<TcpStream> {
    let url = Url::parse(&format!("ws://{addr}{path}")).expect("url");
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    tcp.set_write_timeout(Some(TIMEOUT)).expect("timeout");
    client(tcp, &url, ClientConfig::default()).expect("handshake")
}

#[test]
fn echo_round_trips() {
    let (addr, seen) = server();
    let mut ws = connect(addr, "/echo");
    for size in [0usize, 1, 125, 126, 65535, 65536, 1 << 20] {
        let text: String = "abcdefghij\u{e9}".chars().cycle().take(size).collect();
        ws.send(Message::Text(text.clone())).expect("send text");
        assert_eq!(
            ws.recv().expect("recv text"),
            Message::Text(text),
            "text of {size} chars"
        );
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        ws.send(Message::Binary(data.clone())).expect("send binary");
        assert_eq!(
            ws.recv().expect("recv binary"),
            Message::Binary(data),
            "binary of {size} bytes"
        );
    }
    ws.close(1000, "bye").expect("close");
    assert_eq!(
        seen.recv_timeout(TIMEOUT).expect("server saw close"),
        Seen::Close(Some(1000))
    );
}

#[test]
fn fragmented_message_is_reassembled() {
    let (addr, _seen) = server();
    let mut ws = connect(addr, "/fragmented");
    // The Ping between the fragments comes first; the message after it.
    assert_eq!(ws.recv().expect("ping"), Message::Ping(b"between".to_vec()));
    assert_eq!(ws.recv().expect("message"), Message::Text("fragmented".into()));
    ws.close(1000, "").expect("close");
}

#[test]
fn server_ping_is_answered() {
    let (addr, seen) = server();
    let mut ws = connect(addr, "/ping");
    assert_eq!(ws.recv().expect("ping"), Message::Ping(b"are you there".to_vec()));
    assert_eq!(
        seen.recv_timeout(TIMEOUT).expect("server saw pong"),
        Seen::Pong(b"are you there".to_vec())
    );
    // The session goes on.
    ws.send(Message::Text("after".into())).expect("send");
    assert_eq!(ws.recv().expect("echo"), Message::Text("after".into()));
    ws.close(1000, "").expect("close");
}

#[test]
fn close_initiated_by_client() {
    let (addr, seen) = server();
    let mut ws = connect(addr, "/echo");
    ws.close(1000, "done").expect("close handshake");
    assert_eq!(
        seen.recv_timeout(TIMEOUT).expect("server saw close"),
        Seen::Close(Some(1000))
    );
    assert_eq!(
        ws.send(Message::Text("x".into())).unwrap_err().kind(),
        ErrorKind::AlreadyClosed
    );
    assert_eq!(ws.recv().unwrap_err().kind(), ErrorKind::AlreadyClosed);
}

#[test]
fn close_initiated_by_server() {
    let (addr, seen) = server();
    let mut ws = connect(addr, "/server-close");
    assert_eq!(
        ws.recv().expect("close"),
        Message::Close(Some(CloseFrame {
            code: 1001,
            reason: "going away".into()
        }))
    );
    // The echo reached the server, with the same code.
    assert_eq!(
        seen.recv_timeout(TIMEOUT).expect("server saw echo"),
        Seen::Close(Some(1001))
    );
    assert_eq!(ws.recv().unwrap_err().kind(), ErrorKind::AlreadyClosed);
}
