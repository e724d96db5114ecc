//! `wsgate serve` as an operator runs it: the drain at SIGTERM (no new
//! connections, `/readyz` 503, every plugin told, a Close 1001 to every
//! client, the rest cut at the drain timeout, exit 0), the reload at SIGHUP
//! or `wsgate reload` (new routes for new sessions, running sessions
//! untouched, a bad configuration refused), and the log (the access line,
//! JSON). The binary as a process; independent clients and upstream
//! (tokio-tungstenite).

mod common;

use common::in_process::{Ws, bounded, connect, echo_once, runtime};
use common::served::{EXCHANGE_LIMIT, Served};
use common::{plugin, tempdir};
use futures_util::{SinkExt, StreamExt};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

fn probe() -> String {
    plugin("gateway-probe").display().to_string()
}

/// The next text message, or `None` at a Close or the end.
async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(t)) => return Some(t.as_str().to_owned()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Reads to the peer's Close, then on until the connection ends (which
/// sends tokio-tungstenite's answer to the Close); the Close's code.
async fn close_code(ws: &mut Ws) -> Option<CloseCode> {
    let code = loop {
        match ws.next().await {
            Some(Ok(Message::Close(frame))) => break frame.map(|f| f.code),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    };
    while let Some(Ok(_)) = ws.next().await {}
    code
}

/// A raw HTTP/1.1 exchange: the whole answer.
fn exchange(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(EXCHANGE_LIMIT)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn get(addr: SocketAddr, path: &str) -> String {
    exchange(addr, &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))
}

/// The status of an upgrade request for `path` (the connection is
/// dropped after the answer's head: a 101 would go on).
fn upgrade_status(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(EXCHANGE_LIMIT)).unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    // Bounded by the head's size and the read timeout.
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&head);
    head.split_whitespace().nth(1).unwrap_or("").to_owned()
}

/// Polls `check` until it is true, a bounded number of times.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < EXCHANGE_LIMIT, "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_drains_the_sessions_cuts_the_rest_and_exits_zero() {
    let mut served = Served::start(
        &[
            &probe(),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--drain-timeout",
            "3",
        ],
        1,
    );
    let (addr, admin) = (served.addr(), served.admin());
    assert!(get(admin, "/readyz").ends_with("\r\n\r\nready\n"));
    let runtime = runtime();
    // One session the SDK closes by itself, one whose plugin handles the
    // drain and never closes.
    let (mut polite, mut stubborn) = runtime.block_on(async {
        let mut polite = connect(addr, "/echo").await;
        echo_once(&mut polite, "one").await;
        let mut stubborn = connect(addr, "/ignore-going-away").await;
        echo_once(&mut stubborn, "two").await;
        (polite, stubborn)
    });
    let began = Instant::now();
    served.signal(libc::SIGTERM);
    runtime.block_on(async {
        tokio::time::timeout(EXCHANGE_LIMIT, async {
            // The SDK's Close 1001; tokio-tungstenite answers it.
            assert_eq!(close_code(&mut polite).await, Some(CloseCode::Away));
            // The other plugin was told, and still echoes.
            assert_eq!(next_text(&mut stubborn).await.as_deref(), Some("going away noticed"));
            echo_once(&mut stubborn, "three").await;
        })
        .await
        .expect("the drain's first part took too long");
    });
    // Draining: not ready, and the listener is closed.
    assert!(
        get(admin, "/readyz").starts_with("HTTP/1.1 503 "),
        "ready while draining"
    );
    eventually("the listener closes", || TcpStream::connect(addr).is_err());
    assert!(get(admin, "/healthz").ends_with("\r\n\r\nok\n"));
    // At the drain timeout the host closes what is left, with 1001.
    let code = runtime.block_on(async { tokio::time::timeout(EXCHANGE_LIMIT, close_code(&mut stubborn)).await });
    assert_eq!(code.expect("no Close at the drain timeout"), Some(CloseCode::Away));
    assert!(
        began.elapsed() >= Duration::from_secs(3),
        "cut before the drain timeout"
    );
    let status = served.wait_exit(EXCHANGE_LIMIT);
    assert!(status.success(), "{status:?}\n{}", served.stderr());
    let log = served.stderr();
    assert!(
        log.contains("wsgate: drained: 1 sessions ended by themselves, 1 cut\n"),
        "{log}"
    );
}

/// An echo upstream that records the close code of each session's Close.
async fn upstream() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Option<u16>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(message)) = ws.next().await {
                    if let Message::Close(frame) = &message {
                        let _ = tx.send(frame.as_ref().map(|f| u16::from(f.code)));
                        break;
                    }
                    let echo = matches!(message, Message::Text(_) | Message::Binary(_));
                    if echo && ws.send(message).await.is_err() {
                        break;
                    }
                }
                // Answer the Close, then end.
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
    (addr, rx)
}

#[test]
fn a_drain_closes_both_sides_of_a_proxied_session_with_1001() {
    let runtime = runtime();
    let (upstream_addr, mut closes) = runtime.block_on(upstream());
    let proxy = plugin("ws-proxy").display().to_string();
    let allow = upstream_addr.to_string();
    let url = format!("ws://{upstream_addr}/");
    let mut served = Served::start(&[&proxy, "--listen", "127.0.0.1:0", "--allow", &allow, "--", &url], 1);
    let addr = served.addr();
    runtime.block_on(async {
        let mut ws = connect(addr, "/").await;
        for text in ["one", "two", "three"] {
            echo_once(&mut ws, text).await;
        }
        served.signal(libc::SIGTERM);
        tokio::time::timeout(EXCHANGE_LIMIT, async {
            assert_eq!(close_code(&mut ws).await, Some(CloseCode::Away));
            // The proxy passed the client's answer on to the upstream.
            assert_eq!(closes.recv().await, Some(Some(1001)));
        })
        .await
        .expect("the proxied drain took too long");
    });
    let status = served.wait_exit(EXCHANGE_LIMIT);
    assert!(status.success(), "{status:?}\n{}", served.stderr());
    let log = served.stderr();
    assert!(
        log.contains("wsgate: drained: 1 sessions ended by themselves, 0 cut\n"),
        "{log}"
    );
    assert!(log.contains("ws-proxy: 127.0.0.1:"), "{log}");
}

fn write_config(path: &Path, routes: &str) {
    let text = format!("[admin]\nlisten = \"127.0.0.1:0\"\n\n[[listener]]\naddress = \"127.0.0.1:0\"\n\n{routes}");
    std::fs::write(path, text).unwrap();
}

fn route(name: &str, path: &str) -> String {
    format!(
        "[[route]]\nname = \"{name}\"\npath = \"{path}\"\nplugin = {:?}\n\n",
        probe()
    )
}

/// `wsgate reload --admin ADDR`: its exit code and standard error.
fn reload_command(admin: SocketAddr) -> (i32, String) {
    let run = common::wsgate(["reload", "--admin", &admin.to_string()]);
    (run.code.unwrap_or(-1), run.stderr)
}

#[test]
fn a_reload_serves_new_routes_keeps_running_sessions_and_refuses_a_bad_file() {
    let dir = tempdir("reload");
    let config = dir.join("wsgate.toml");
    write_config(&config, &route("old", "/old"));
    let served = Served::start(&["--config", config.to_str().unwrap()], 1);
    let (addr, admin) = (served.addr(), served.admin());
    let runtime = runtime();
    let mut before = runtime.block_on(async {
        let mut ws = connect(addr, "/old/echo").await;
        echo_once(&mut ws, "before").await;
        ws
    });

    // SIGHUP with a changed route: new sessions get it.
    write_config(&config, &route("new", "/new"));
    served.signal(libc::SIGHUP);
    served.wait_for("wsgate: reloaded; routes: new (");
    assert_eq!(upgrade_status(addr, "/old/echo"), "404");
    bounded(async {
        let mut ws = connect(addr, "/new/echo").await;
        echo_once(&mut ws, "after").await;
        ws.close(None).await.unwrap();
    });
    // The session opened before keeps its route to its end.
    runtime.block_on(async {
        echo_once(&mut before, "still").await;
    });

    // A broken file: refused in one line, the routes in force stay.
    std::fs::write(&config, "[[route]]\nname = 3\n").unwrap();
    served.signal(libc::SIGHUP);
    let log = served.wait_for("wsgate: reload refused: ");
    let line = log.lines().find(|l| l.starts_with("wsgate: reload refused: ")).unwrap();
    assert!(line.contains("name"), "{line}");
    assert_eq!(upgrade_status(addr, "/new/echo"), "101");
    // The same through the admin listener.
    let (code, stderr) = reload_command(admin);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.starts_with("wsgate: reload refused: "), "{stderr}");
    // What needs a restart is refused too.
    std::fs::write(
        &config,
        format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[listener]]\naddress = \"127.0.0.1:1\"\n\n{}",
            route("third", "/third")
        ),
    )
    .unwrap();
    let (code, stderr) = reload_command(admin);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("the listeners changed"), "{stderr}");
    assert_eq!(upgrade_status(addr, "/third/echo"), "404");

    // A good file through `wsgate reload`.
    write_config(&config, &route("third", "/third"));
    let (code, stderr) = reload_command(admin);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.starts_with("wsgate: reloaded; routes: third"), "{stderr}");
    assert_eq!(upgrade_status(addr, "/third/echo"), "101");
    runtime.block_on(async {
        echo_once(&mut before, "to the end").await;
        before.close(None).await.unwrap();
        while let Some(Ok(_)) = before.next().await {}
    });
    let metrics = get(admin, "/metrics");
    assert!(
        metrics.contains("wsgate_reloads_total{outcome=\"ok\"} 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("wsgate_reloads_total{outcome=\"refused\"} 3\n"),
        "{metrics}"
    );
    // The route a reload removed is still counted, its session over; each
    // route's sessions were counted under its own name.
    for (route, total) in [("old", 1), ("new", 2), ("third", 1)] {
        let line = format!("wsgate_sessions_total{{route=\"{route}\"}} {total}\n");
        assert!(metrics.contains(&line), "no {line} in {metrics}");
    }
    // Its slot comes back just after the close.
    eventually("the old route's session is counted as over", || {
        get(admin, "/metrics").contains("wsgate_sessions_active{route=\"old\"} 0\n")
    });
}

/// A session through ws-proxy to an upstream of the test's: three echoes,
/// a Close 1000. The gateway's standard error once it has `needle`, and
/// the upstream's address.
fn proxied_session(extra: &[&str], needle: &str) -> (String, SocketAddr) {
    let runtime = runtime();
    let (upstream_addr, mut closes) = runtime.block_on(upstream());
    let proxy = plugin("ws-proxy").display().to_string();
    let allow = upstream_addr.to_string();
    let url = format!("ws://{upstream_addr}/");
    let mut args = vec![proxy.as_str(), "--listen", "127.0.0.1:0", "--allow", &allow];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", &url]);
    let served = Served::start(&args, 1);
    let addr = served.addr();
    runtime.block_on(async {
        let mut ws = connect(addr, "/").await;
        for text in ["one", "two", "three"] {
            echo_once(&mut ws, text).await;
        }
        let normal = tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        ws.close(Some(normal)).await.unwrap();
        while let Some(Ok(_)) = ws.next().await {}
        assert_eq!(closes.recv().await, Some(Some(1000)));
    });
    (served.wait_for(needle), upstream_addr)
}

#[test]
fn each_session_ends_with_an_access_line() {
    let (log, upstream) = proxied_session(&[], "wsgate: access ");
    let line = log.lines().find(|l| l.starts_with("wsgate: access ")).unwrap();
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {line}"))
            .to_owned()
    };
    assert_eq!(field("session"), "1");
    assert_eq!(field("route"), "ws_proxy");
    assert!(field("client").starts_with("127.0.0.1:"), "{line}");
    assert_eq!(field("upstream"), upstream.to_string());
    assert_eq!(field("stage"), "tcp");
    assert_eq!(field("outcome"), "done");
    assert_eq!(field("messages_in"), "3");
    assert_eq!(field("messages_out"), "3");
    assert_eq!(field("close_in"), "1000");
    assert_eq!(field("close_out"), "1000");
    // Each way: three masked (client) or plain (server) frames and a Close.
    let bytes_in: u64 = field("bytes_in").parse().unwrap();
    let bytes_out: u64 = field("bytes_out").parse().unwrap();
    assert!(bytes_in >= 11 + 3 * 6 + 2, "{line}");
    assert!(bytes_out >= 11 + 3 * 2 + 2, "{line}");
    assert!(field("duration_ms").parse::<f64>().unwrap() > 0.0, "{line}");
    // Off when asked.
    let (log, _) = proxied_session(&["--access-log=false", "-v"], "wsgate: session from");
    assert!(!log.contains("wsgate: access "), "{log}");
}

#[test]
fn the_json_log_is_json_throughout_and_the_race_log_names_the_session() {
    let dir = tempdir("json-log");
    let race = dir.join("race.jsonl");
    let race_arg = race.display().to_string();
    let (log, upstream) = proxied_session(
        &["--log-format", "json", "--race-log", &race_arg],
        "\"target\":\"wsgate::access\"",
    );
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let with = |target: &'static str| lines.iter().filter(move |l| l["target"] == target);
    let listening = with("wsgate").find(|l| l["message"].as_str().unwrap().starts_with("listening on "));
    assert!(listening.is_some(), "{log}");
    assert!(
        lines
            .iter()
            .all(|l| l["timestamp"].is_string() && l["level"].is_string()),
        "{log}"
    );
    let access = with("wsgate::access").next().unwrap();
    assert_eq!(access["session"], 1, "{access}");
    assert_eq!(access["route"], "ws_proxy", "{access}");
    assert_eq!(access["upstream"], upstream.to_string(), "{access}");
    assert_eq!(access["messages_in"], 3, "{access}");
    assert_eq!(access["close_out"], "1000", "{access}");
    // The plugin's own line, as an event of its session.
    let plugin = with("wsgate::plugin").find(|l| l["message"].as_str().unwrap().starts_with("ws-proxy: "));
    let plugin = plugin.unwrap_or_else(|| panic!("no plugin line in {log}"));
    assert_eq!(plugin["session"], 1, "{plugin}");
    // The race log's events are the session's.
    let events = common::race_log(&race);
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| e["session"] == 1), "{events:?}");
}
