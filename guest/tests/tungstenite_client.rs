//! The SDK's server role against an independent client: tokio-tungstenite
//! over real loopback sockets, the SDK's `server::accept` over a blocking
//! `std::net::TcpStream`. What tungstenite cannot send (an unmasked frame,
//! a compressed one, a broken request) is written as raw bytes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{
    self,
    client::IntoClientRequest,
    protocol::{
        CloseFrame as TCloseFrame, frame::Frame, frame::coding::CloseCode, frame::coding::Data, frame::coding::OpCode,
    },
};
use wsgate_guest::server::{ServerConfig, accept_with_request};
use wsgate_guest::{ClientConfig, DeflateConfig, Error, Message, Url, client};

const TIMEOUT: Duration = Duration::from_secs(10);

/// How the echo session ended, as the SDK's server saw it.
#[derive(Debug)]
struct Ended {
    subprotocols: Vec<String>,
    compressed: bool,
    result: Result<Option<u16>, Error>,
}

/// An SDK echo server for one connection, on its own thread: echoes Text
/// and Binary until the client's Close (whose code it reports) or an error.
fn echo_server(config: ServerConfig) -> (SocketAddr, mpsc::Receiver<Ended>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let (tcp, _) = listener.accept().expect("accept");
        tcp.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        let (mut ws, request) = match accept_with_request(tcp, &config) {
            Ok(accepted) => accepted,
            Err(e) => {
                let _ = tx.send(Ended {
                    subprotocols: Vec::new(),
                    compressed: false,
                    result: Err(e),
                });
                return;
            }
        };
        let result = loop {
            match ws.recv() {
                Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                    if let Err(e) = ws.send(m) {
                        break Err(e);
                    }
                }
                Ok(Message::Close(frame)) => break Ok(frame.map(|f| f.code)),
                Ok(_) => {}
                Err(e) => break Err(e),
            }
        };
        let _ = tx.send(Ended {
            subprotocols: request.subprotocols().to_vec(),
            compressed: ws.is_compressed(),
            result,
        });
    });
    (addr, rx)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn echoes_for_a_tungstenite_client() {
    let (addr, ended) = echo_server(ServerConfig::default());
    runtime().block_on(async {
        let (mut ws, response) = tokio_tungstenite::connect_async(format!("ws://{addr}/echo"))
            .await
            .expect("handshake");
        assert_eq!(response.status(), 101);
        ws.send(tungstenite::Message::Text("hello".into())).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            tungstenite::Message::Text("hello".into())
        );
        let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        ws.send(tungstenite::Message::Binary(big.clone().into())).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            tungstenite::Message::Binary(big.into())
        );
        // Fragmented, with a Ping between the fragments.
        ws.send(tungstenite::Message::Frame(Frame::message(
            "frag",
            OpCode::Data(Data::Text),
            false,
        )))
        .await
        .unwrap();
        ws.send(tungstenite::Message::Ping("between".into())).await.unwrap();
        ws.send(tungstenite::Message::Frame(Frame::message(
            "men",
            OpCode::Data(Data::Continue),
            false,
        )))
        .await
        .unwrap();
        ws.send(tungstenite::Message::Frame(Frame::message(
            "ted",
            OpCode::Data(Data::Continue),
            true,
        )))
        .await
        .unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            tungstenite::Message::Pong("between".into())
        );
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            tungstenite::Message::Text("fragmented".into())
        );
        ws.close(Some(TCloseFrame {
            code: CloseCode::Away,
            reason: "bye".into(),
        }))
        .await
        .unwrap();
        // The server's answering Close, then the end.
        match ws.next().await {
            Some(Ok(tungstenite::Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::Away),
            other => panic!("{other:?}"),
        }
    });
    let ended = ended.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(ended.result.unwrap(), Some(1001));
}

#[test]
fn chooses_the_clients_preferred_subprotocol() {
    let (addr, ended) = echo_server(ServerConfig::default().subprotocol("a").subprotocol("b"));
    runtime().block_on(async {
        let mut request = format!("ws://{addr}/").into_client_request().unwrap();
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", "c, b, a".parse().unwrap());
        let (mut ws, response) = tokio_tungstenite::connect_async(request).await.expect("handshake");
        assert_eq!(response.headers()["Sec-WebSocket-Protocol"], "b");
        ws.close(None).await.unwrap();
        while ws.next().await.is_some() {}
    });
    let ended = ended.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(ended.subprotocols, ["c", "b", "a"]);
    assert_eq!(ended.result.unwrap(), None);
}

#[test]
fn permessage_deflate_with_the_sdk_client() {
    let (addr, ended) = echo_server(ServerConfig::default().deflate(DeflateConfig::default()));
    let url = Url::parse(&format!("ws://{addr}/")).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    let config = ClientConfig::default().deflate(DeflateConfig::default().server_max_window_bits(12));
    let mut ws = client(tcp, &url, config).expect("handshake");
    assert!(ws.is_compressed());
    for message in [
        Message::Text("the quick brown fox ".repeat(5000)),
        Message::Text("again".into()),
        Message::Binary(vec![0; 1 << 20]),
        Message::Text(String::new()),
    ] {
        ws.send(message.clone()).unwrap();
        assert_eq!(ws.recv().unwrap(), message);
    }
    ws.close(1000, "").unwrap();
    let ended = ended.recv_timeout(TIMEOUT).unwrap();
    assert!(ended.compressed);
    assert_eq!(ended.result.unwrap(), Some(1000));
}

/// A raw client: writes `request`, returns the stream and the response head.
fn raw(addr: SocketAddr, request: &str) -> (TcpStream, String) {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    tcp.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(tcp.read(&mut byte).unwrap(), 1, "closed in the head: {head:?}");
        head.push(byte[0]);
    }
    (tcp, String::from_utf8(head).unwrap())
}

fn upgrade(extra: &str) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

fn read_exact(tcp: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    tcp.read_exact(&mut buf).unwrap();
    buf
}

#[test]
fn raw_deflate_rfc_7692_hello() {
    let (addr, ended) = echo_server(ServerConfig::default().deflate(DeflateConfig::default()));
    let (mut tcp, head) = raw(addr, &upgrade("Sec-WebSocket-Extensions: permessage-deflate\r\n"));
    assert!(
        head.contains("\r\nSec-WebSocket-Extensions: permessage-deflate\r\n"),
        "{head}"
    );
    // RFC 7692 §7.2.3.1's "Hello", compressed, masked with a zero key.
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    let mut frame = vec![0xc1, 0x80 | hello.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(&hello);
    tcp.write_all(&frame).unwrap();
    // The echo: compressed (RSV1), unmasked, and the same bytes as the
    // RFC's for a first "Hello".
    assert_eq!(read_exact(&mut tcp, 2), [0xc1, hello.len() as u8]);
    assert_eq!(read_exact(&mut tcp, hello.len()), hello);
    tcp.write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]).unwrap();
    assert_eq!(read_exact(&mut tcp, 4), [0x88, 0x02, 0x03, 0xe8]);
    assert_eq!(ended.recv_timeout(TIMEOUT).unwrap().result.unwrap(), Some(1000));
}

#[test]
fn an_unmasked_client_frame_is_1002() {
    let (addr, ended) = echo_server(ServerConfig::default());
    let (mut tcp, head) = raw(addr, &upgrade(""));
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(
        head.contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{head}"
    );
    tcp.write_all(b"\x81\x02hi").unwrap();
    let close = read_exact(&mut tcp, 2);
    assert_eq!(close[0], 0x88);
    let payload = read_exact(&mut tcp, usize::from(close[1]));
    assert_eq!(payload[..2], 1002u16.to_be_bytes());
    let e = ended.recv_timeout(TIMEOUT).unwrap().result.unwrap_err();
    assert_eq!(e.close_code(), Some(1002));
}

#[test]
fn refusals_have_the_right_status() {
    for (request, status, header) in [
        (
            "GET / HTTP/1.1\r\nHost: test\r\n\r\n".to_owned(),
            426,
            Some("Sec-WebSocket-Version: 13"),
        ),
        (
            upgrade("").replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
            426,
            Some("Sec-WebSocket-Version: 13"),
        ),
        (
            upgrade("").replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
            400,
            None,
        ),
        (upgrade("").replace("GET", "PUT"), 400, None),
        (format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(20_000)), 431, None),
    ] {
        let (addr, ended) = echo_server(ServerConfig::default());
        let (mut tcp, head) = raw(addr, &request);
        assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
        if let Some(h) = header {
            assert!(head.contains(&format!("\r\n{h}\r\n")), "{head}");
        }
        let e = ended.recv_timeout(TIMEOUT).unwrap().result.unwrap_err();
        assert_eq!(e.status(), Some(status));
        // The body, then the end of the connection.
        let mut rest = Vec::new();
        let _ = tcp.read_to_end(&mut rest);
        assert!(rest.ends_with(b"\n"));
    }
    // And tungstenite's client reports the status.
    let (addr, _ended) = echo_server(ServerConfig::default());
    runtime().block_on(async {
        let mut request = format!("ws://{addr}/").into_client_request().unwrap();
        request
            .headers_mut()
            .insert("Sec-WebSocket-Version", "12".parse().unwrap());
        match tokio_tungstenite::connect_async(request).await {
            Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 426),
            other => panic!("{:?}", other.map(|(_, r)| r)),
        }
    });
}
