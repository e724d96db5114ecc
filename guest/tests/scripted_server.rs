//! The handshake against scripted raw-TCP servers: each answers the
//! upgrade request with fixed bytes, to produce the failures (and the
//! edge cases) a real server rarely shows on demand.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use wsgate_guest::handshake::accept_key;
use wsgate_guest::{ClientConfig, DeflateConfig, Error, ErrorKind, Message, Url, WebSocket, client};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Reads the request head (bounded in size and time) and returns its
/// `Sec-WebSocket-Key`.
fn read_request(tcp: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < 16 << 10, "request head too long");
        let n = tcp.read(&mut byte).expect("read request");
        assert_eq!(n, 1, "request ended early");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).expect("request is text");
    head.lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        .expect("key header")
        .to_owned()
}

/// Serves one connection: reads the request, writes what `answer` makes of
/// the key, then waits (bounded) for the client to hang up.
fn scripted(answer: impl FnOnce(&str) -> Option<Vec<u8>> + Send + 'static) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let handle = std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().expect("accept");
        tcp.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        let key = read_request(&mut tcp);
        // `None`: hang up without answering.
        let Some(bytes) = answer(&key) else { return };
        // One write: frames behind the head arrive in the same segment.
        tcp.write_all(&bytes).expect("write answer");
        let mut sink = [0u8; 1024];
        while let Ok(n) = tcp.read(&mut sink) {
            if n == 0 {
                break;
            }
        }
    });
    (addr, handle)
}

fn connect(addr: SocketAddr) -> Result<WebSocket<TcpStream>, Error> {
    connect_with(addr, ClientConfig::default())
}

fn connect_with(addr: SocketAddr, config: ClientConfig) -> Result<WebSocket<TcpStream>, Error> {
    let url = Url::parse(&format!("ws://{addr}/")).expect("url");
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    client(tcp, &url, config)
}

fn switching(key: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key)
    )
}

fn handshake_error(answer: impl FnOnce(&str) -> Option<Vec<u8>> + Send + 'static) -> Error {
    let (addr, server) = scripted(answer);
    let err = connect(addr).expect_err("handshake must fail");
    server.join().expect("server thread");
    err
}

#[test]
fn ok_instead_of_switching() {
    let err = handshake_error(|_| Some(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi".to_vec()));
    assert_eq!(err.kind(), ErrorKind::Handshake);
    assert_eq!(err.status(), Some(200));
    assert!(err.to_string().contains("200 OK instead of 101"), "{err}");
    assert!(!err.is_path_failure());
}

#[test]
fn wrong_accept_key() {
    let err = handshake_error(|_| Some(switching("not the key").into_bytes()));
    assert_eq!(err.kind(), ErrorKind::Handshake);
    assert!(err.to_string().contains("wrong Sec-WebSocket-Accept"), "{err}");
    assert_eq!(err.status(), None);
    assert!(!err.is_path_failure());
}

#[test]
fn closed_before_response() {
    let err = handshake_error(|_| None);
    assert_eq!(err.kind(), ErrorKind::ConnectionClosed);
    assert!(err.is_path_failure());
}

#[test]
fn service_unavailable_is_a_path_failure() {
    let err = handshake_error(|_| Some(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n".to_vec()));
    assert_eq!(err.status(), Some(503));
    assert!(err.is_path_failure());
}

#[test]
fn forbidden_is_an_answer() {
    let err = handshake_error(|_| Some(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".to_vec()));
    assert_eq!(err.kind(), ErrorKind::Handshake);
    assert_eq!(err.status(), Some(403));
    assert!(!err.is_path_failure());
}

#[test]
fn frame_right_behind_the_response_is_kept() {
    let (addr, server) = scripted(|key| {
        let mut bytes = switching(key).into_bytes();
        bytes.extend_from_slice(b"\x81\x05early");
        bytes.extend_from_slice(b"\x88\x02\x03\xe8");
        Some(bytes)
    });
    let mut ws = connect(addr).expect("handshake");
    assert_eq!(ws.recv().expect("early frame"), Message::Text("early".into()));
    assert!(matches!(ws.recv().expect("close"), Message::Close(Some(f)) if f.code == 1000));
    drop(ws);
    server.join().expect("server thread");
}

#[test]
fn close_times_out_when_the_server_never_answers() {
    // The server reads our Close and keeps silent until we hang up.
    let (addr, server) = scripted(|key| Some(switching(key).into_bytes()));
    let config = ClientConfig::default().close_timeout(Duration::from_millis(300));
    let mut ws = connect_with(addr, config).expect("handshake");
    let started = std::time::Instant::now();
    let err = ws.close(1000, "bye").expect_err("no answer");
    let waited = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(waited >= Duration::from_millis(290), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    // The stream's own timeout is back.
    assert_eq!(ws.get_ref().read_timeout().expect("timeout"), Some(TIMEOUT));
    assert_eq!(
        ws.send(Message::Text("x".into())).unwrap_err().kind(),
        ErrorKind::AlreadyClosed
    );
    drop(ws);
    server.join().expect("server thread");
}

#[test]
fn permessage_deflate_from_the_server() {
    let (addr, server) = scripted(|key| {
        let head = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
            accept_key(key)
        );
        let mut bytes = head.into_bytes();
        // RFC 7692 §7.2.3.1 and §7.2.3.2: "Hello" twice, the second one a
        // back-reference into the first.
        bytes.extend_from_slice(b"\xc1\x07\xf2\x48\xcd\xc9\xc9\x07\x00");
        bytes.extend_from_slice(b"\xc1\x05\xf2\x00\x11\x00\x00");
        bytes.extend_from_slice(b"\x88\x02\x03\xe8");
        Some(bytes)
    });
    let mut ws = connect_with(addr, ClientConfig::default().deflate(DeflateConfig::default())).expect("handshake");
    assert!(ws.is_compressed());
    assert_eq!(ws.recv().expect("first"), Message::Text("Hello".into()));
    assert_eq!(ws.recv().expect("second"), Message::Text("Hello".into()));
    assert!(matches!(ws.recv().expect("close"), Message::Close(Some(f)) if f.code == 1000));
    drop(ws);
    server.join().expect("server thread");
}
