//! End to end: Encrypted Client Hello through `wsgate run`, the ECH
//! configuration coming from an HTTPS record of the testbed's DNS server,
//! against `wsgate-ech-server` (BoringSSL, which accepts ECH).
//!
//! `make test` builds the server and names it in `WSGATE_ECH_SERVER`.
//! Without it these tests say so and pass, except under `CI=true`.

mod common;

use base64::Engine;
use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Lines};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use wsgate_testbed::{DnsHandle, DnsRecord, HttpsRecord, HttpsService, spawn_dns_in_thread};

/// A running ECH server; dropped, it is killed.
struct EchServer {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    addr: SocketAddr,
    ca: PathBuf,
    config: Vec<u8>,
    stale: Vec<u8>,
}

impl Drop for EchServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl EchServer {
    fn start() -> Option<EchServer> {
        let Some(binary) = std::env::var_os("WSGATE_ECH_SERVER").map(PathBuf::from) else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "WSGATE_ECH_SERVER is not set: `make test` builds wsgate-ech-server"
            );
            eprintln!("SKIPPED: no WSGATE_ECH_SERVER (`make ech-server` builds it)");
            return None;
        };
        let ca = tempdir("ech").join("ca.pem");
        let mut child = Command::new(binary)
            .arg("--ca-out")
            .arg(&ca)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start wsgate-ech-server");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        let decode = |key: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(first[key].as_str().unwrap())
                .unwrap()
        };
        Some(EchServer {
            addr: first["addr"].as_str().unwrap().parse().unwrap(),
            ca,
            config: decode("ech_config_list"),
            stale: decode("stale_ech_config_list"),
            child,
            lines,
        })
    }

    /// What the server saw of the next handshake.
    fn seen(&mut self) -> Value {
        serde_json::from_str(&self.lines.next().unwrap().unwrap()).unwrap()
    }
}

/// `wsgate.test` at the server's address, its HTTPS record carrying `ech`.
fn dns(server: &EchServer, ech: &[u8]) -> DnsHandle {
    spawn_dns_in_thread(vec![DnsRecord {
        name: "wsgate.test".into(),
        v4: vec![match server.addr.ip() {
            std::net::IpAddr::V4(ip) => ip,
            other => panic!("{other}"),
        }],
        https: vec![HttpsRecord::Service(HttpsService {
            priority: 1,
            target: ".".into(),
            ech: Some(ech.to_vec()),
            ..HttpsService::default()
        })],
        ..DnsRecord::default()
    }])
    .unwrap()
}

fn run(server: &EchServer, dns: &DnsHandle, flags: &[&str]) -> (Run, Vec<Value>) {
    let log = tempdir("ech").join("race.jsonl");
    let mut args = run_args("echo-client");
    args.extend([
        "--dns-server".into(),
        dns.addr().to_string(),
        "--ca-cert".into(),
        server.ca.display().to_string(),
        "--race-log".into(),
        log.display().to_string(),
    ]);
    args.extend(flags.iter().map(|f| f.to_string()));
    args.extend([
        "--".into(),
        format!("wss://wsgate.test:{}/", server.addr.port()),
        "hello".into(),
    ]);
    let run = wsgate(args);
    (run, race_log(&log))
}

fn commit(events: &[Value]) -> &Value {
    events.iter().find(|e| e["event"] == "commit").expect("a commit")
}

#[test]
fn the_https_records_ech_configuration_is_used_and_accepted() {
    let Some(mut server) = EchServer::start() else { return };
    let dns = dns(&server, &server.config.clone());
    let (run, events) = run(&server, &dns, &[]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.lines(), ["hello"]);
    assert_eq!(commit(&events)["ech"], "accepted", "{events:?}");
    // The server decrypted the inner hello: the real name went encrypted.
    let seen = server.seen();
    assert_eq!(
        (&seen["sni"], &seen["ech_accepted"]),
        (&"wsgate.test".into(), &true.into())
    );
}

#[test]
fn a_stale_configuration_is_retried_once_with_the_servers() {
    let Some(mut server) = EchServer::start() else { return };
    let dns = dns(&server, &server.stale.clone());
    let (run, events) = run(&server, &dns, &[]);
    assert_eq!(run.code, Some(0), "{run:?}");
    let ech: Vec<&Value> = events.iter().filter(|e| e["event"] == "ech").collect();
    assert!(
        ech.iter()
            .any(|e| e["detail"].as_str().unwrap().starts_with("rejected")),
        "{events:?}"
    );
    assert_eq!(commit(&events)["ech"], "accepted", "{events:?}");
    // First the public name (rejected), then the inner one (accepted).
    assert_eq!(server.seen()["ech_accepted"], false);
    let second = server.seen();
    assert_eq!(
        (&second["sni"], &second["ech_accepted"]),
        (&"wsgate.test".into(), &true.into())
    );
}

#[test]
fn grease_and_off_leave_the_name_in_the_clear() {
    let Some(mut server) = EchServer::start() else { return };
    let dns = dns(&server, &server.config.clone());
    for (mode, status) in [("grease", "grease"), ("off", "not offered")] {
        let (run, events) = run(&server, &dns, &["--ech", mode]);
        assert_eq!(run.code, Some(0), "{mode}: {run:?}");
        assert_eq!(commit(&events)["ech"], status, "{mode}: {events:?}");
        let seen = server.seen();
        assert_eq!(seen["ech_accepted"], false, "{mode}");
    }
}

#[test]
fn a_configuration_that_does_not_parse_is_not_used_and_the_log_says_why() {
    // And a name without a configuration gets no ECH extension at all
    // under the default `on`: TLS 1.2 servers stay reachable.
    let Some(mut server) = EchServer::start() else { return };
    let dns = dns(&server, b"not an ECHConfigList");
    let (run, events) = run(&server, &dns, &[]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        events.iter().any(|e| e["event"] == "resolve"
            && e["detail"]
                .as_str()
                .is_some_and(|d| d.contains("ECH configuration is not used"))),
        "{events:?}"
    );
    assert_eq!(commit(&events)["ech"], "not offered");
    assert_eq!(server.seen()["ech_accepted"], false);
}
