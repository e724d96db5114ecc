//! The gateway's instance pool, through the library: sized from the
//! session limit, and giving a session's memory back when it ends.
//!
//! Built plugins are needed (`make plugins`); each test runs a gateway in
//! this process and talks to it over loopback.

mod common;

use common::in_process::*;
use common::*;
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use wsgate_host::{ConnectConfig, Gateway, PoolWatch, Settings};

/// A gateway serving the probe plugin with `max_sessions` and a memory
/// limit of `memory_mib` per instance, on a loopback port. Binds: call it
/// within the runtime.
fn gateway(max_sessions: usize, memory_mib: usize) -> Gateway {
    let probe = plugin("gateway-probe");
    let toml = format!(
        "[serve]\nmax-sessions = {max_sessions}\nidle-timeout = 0\n\n\
         [limits]\nmemory = {memory_mib}\ncpu-time = 0\nrun-time = 0\n\n\
         [[listener]]\naddress = \"127.0.0.1:0\"\n\n\
         [[route]]\nplugin = {:?}\n",
        probe.display().to_string()
    );
    let settings = Settings::from_toml(&toml, Path::new("/")).expect("settings");
    let config = ConnectConfig::builder().build().expect("connect config");
    Gateway::bind(&settings, config, Some(&cache_dir()), false).expect("gateway")
}

/// Serves `gateway` in the background of the current runtime; its address
/// and its pool.
fn start(gateway: Gateway) -> (SocketAddr, PoolWatch) {
    let addr = gateway.addresses()[0];
    let pool = gateway.pool();
    tokio::spawn(gateway.serve(std::future::pending()));
    (addr, pool)
}

/// The status line's code of a raw upgrade request's answer.
async fn status_of_upgrade(addr: SocketAddr) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /echo HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    answer.split_whitespace().nth(1).unwrap_or("").to_owned()
}

#[test]
fn the_pool_has_one_slot_per_session_and_the_next_one_is_refused_with_503() {
    bounded(async {
        let gateway = gateway(3, 16);
        assert_eq!(gateway.pool().usage().slots, 3);
        let (addr, pool) = start(gateway);
        // As many sessions as the limit, all instantiated at once: the pool
        // has room for every one.
        let mut open = Vec::new();
        for i in 0..3 {
            let mut ws = connect(addr, "/echo").await;
            echo_once(&mut ws, &format!("session {i}")).await;
            open.push(ws);
        }
        assert_eq!(pool.usage().instances, 3);
        assert_eq!(status_of_upgrade(addr).await, "503");
        // One ends: its place and its slot come back, and serve another.
        let mut first = open.remove(0);
        first.close(None).await.unwrap();
        while let Some(Ok(_)) = first.next().await {}
        // The place is given back just after the close handshake: retry
        // the 503 a bounded number of times (no timing asserted).
        let mut tries = 0;
        let mut again = loop {
            match tokio_tungstenite::connect_async(format!("ws://{addr}/echo")).await {
                Ok((ws, _)) => break ws,
                Err(_) if tries < 1000 => {
                    tries += 1;
                    tokio::task::yield_now().await;
                }
                Err(e) => panic!("no place came back: {e}"),
            }
        };
        echo_once(&mut again, "after").await;
        assert_eq!(pool.usage().slots, 3);
    });
}

#[test]
fn a_session_that_grew_its_memory_gives_it_back_when_it_ends() {
    // 32 MiB each: the probe's `/memory` grows up to it, then traps.
    bounded(async {
        let gateway = gateway(4, 32);
        let (addr, pool) = start(gateway);
        let mut hog = connect(addr, "/memory").await;
        // The plugin is stopped at its limit: a Close 1011 once the host
        // took over, after its instance is gone.
        loop {
            match hog.next().await {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            }
        }
        let usage = pool.usage();
        assert_eq!(usage.instances, 0, "{usage:?}");
        // A freed slot keeps nothing of the 32 MiB it grew to for the next
        // instance: its pages go back with the next batch of freed slots.
        assert_eq!(usage.idle_memory_resident, 0, "{usage:?}");
        assert_eq!(usage.idle_stack_resident, 0, "{usage:?}");
        // The next session starts small and works.
        let mut next = connect(addr, "/echo").await;
        echo_once(&mut next, "small again").await;
    });
}
