//! End to end: HTTPS records (RFC 9460) through the `wsgate` binary, from
//! the testbed's DNS server, as the HEv3 draft uses them: a service's own
//! port, its address hints, its ALPN set, and alias chains.

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;
use wsgate_testbed::{DnsHandle, DnsRecord, HttpsRecord, HttpsService, spawn_dns_in_thread};

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `wsgate.test` (both loopbacks) with `https`, and `more` names.
fn dns(https: Vec<HttpsRecord>, delay: Duration, more: Vec<DnsRecord>) -> DnsHandle {
    let mut records = vec![DnsRecord {
        name: "wsgate.test".into(),
        v6: vec!["::1".parse().unwrap()],
        v4: vec!["127.0.0.1".parse().unwrap()],
        aaaa_delay: delay,
        a_delay: delay,
        https,
        ..DnsRecord::default()
    }];
    records.extend(more);
    spawn_dns_in_thread(records).unwrap()
}

/// Runs echo-client on `url` with the testbed's CA, through `dns`,
/// returning the run and the race log of its connect.
fn run(tb: &TestbedHandle, dns: &DnsHandle, url: &str) -> (Run, Vec<Value>) {
    let log = tempdir("https").join("race.jsonl");
    let args = [
        run_args("echo-client"),
        vec![
            "--dns-server".into(),
            dns.addr().to_string(),
            "--ca-cert".into(),
            tb.ca_path().unwrap().display().to_string(),
            "--race-log".into(),
            log.display().to_string(),
            "--".into(),
            url.into(),
            "hello".into(),
        ],
    ]
    .concat();
    let run = wsgate(args);
    (run, race_log(&log))
}

fn of<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

fn details(events: &[Value], kind: &str) -> Vec<String> {
    of(events, kind)
        .iter()
        .filter_map(|e| e["detail"].as_str().map(str::to_owned))
        .collect()
}

fn service(port: u16) -> HttpsService {
    HttpsService {
        priority: 1,
        target: ".".into(),
        port: Some(port),
        ..HttpsService::default()
    }
}

#[test]
fn a_record_that_moves_the_service_to_another_port_is_followed() {
    let tb = testbed(Behaviour::Ok, Behaviour::Ok, true);
    let dns = dns(vec![HttpsRecord::Service(service(tb.port()))], Duration::ZERO, vec![]);
    // The URL's port is closed: only the record's port can answer.
    let (run, events) = run(&tb, &dns, &format!("wss://wsgate.test:{}/", closed_port()));
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.lines(), ["hello"]);
    let commit = of(&events, "commit")[0];
    assert_eq!(commit["addr"], format!("[::1]:{}", tb.port()), "{events:?}");
    let queries = dns.queries();
    assert!(queries.iter().any(|q| q.1 == "HTTPS"), "{queries:?}");
}

#[test]
fn a_service_that_speaks_only_h3_is_not_dialled() {
    let tb = testbed(Behaviour::Ok, Behaviour::Ok, true);
    let h3 = testbed(Behaviour::Ok, Behaviour::Ok, true);
    let h3_only = HttpsService {
        alpn: vec!["h3".into()],
        no_default_alpn: true,
        ..service(h3.port())
    };
    let dns = dns(vec![HttpsRecord::Service(h3_only)], Duration::ZERO, vec![]);
    let (run, events) = run(&tb, &dns, &format!("wss://wsgate.test:{}/", tb.port()));
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(of(&events, "commit")[0]["addr"], format!("[::1]:{}", tb.port()));
    let h3_connections = h3.connections();
    assert_eq!((h3_connections.v6, h3_connections.v4), (0, 0));
    assert!(
        details(&events, "resolve")
            .iter()
            .any(|d| d.contains("not dialled") && d.contains("h3")),
        "{events:?}"
    );
}

#[test]
fn hints_start_the_race_before_aaaa_and_a_answer() {
    let tb = testbed(Behaviour::Ok, Behaviour::Ok, true);
    let hinted = HttpsService {
        ipv6hint: vec!["::1".parse().unwrap()],
        ipv4hint: vec!["127.0.0.1".parse().unwrap()],
        ..service(tb.port())
    };
    // AAAA and A take 3 s; the HTTPS answer, with hints, comes at once.
    let dns = dns(vec![HttpsRecord::Service(hinted)], Duration::from_secs(3), vec![]);
    let (run, events) = run(&tb, &dns, &format!("wss://wsgate.test:{}/", tb.port()));
    assert_eq!(run.code, Some(0), "{run:?}");
    let attempt = of(&events, "attempt")[0];
    assert_eq!(attempt["addr"], format!("[::1]:{}", tb.port()));
    assert_eq!(attempt["detail"], "address hint", "{events:?}");
    // Committed on the hint, before either address answer came in.
    let resolved = details(&events, "resolve");
    assert!(
        !resolved.iter().any(|d| d.starts_with("AAAA") || d.starts_with("A:")),
        "{resolved:?}"
    );
    assert_eq!(of(&events, "commit").len(), 1);
}

#[test]
fn an_alias_chain_is_followed_to_its_service() {
    let tb = testbed(Behaviour::Ok, Behaviour::Ok, true);
    let alias = HttpsRecord::Alias {
        target: "edge.wsgate.test".into(),
    };
    let edge = DnsRecord {
        name: "edge.wsgate.test".into(),
        v6: vec!["::1".parse().unwrap()],
        https: vec![HttpsRecord::Service(service(tb.port()))],
        ..DnsRecord::default()
    };
    let dns = dns(vec![alias], Duration::ZERO, vec![edge]);
    let (run, events) = run(&tb, &dns, &format!("wss://wsgate.test:{}/", closed_port()));
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(of(&events, "commit")[0]["addr"], format!("[::1]:{}", tb.port()));
    let queries = dns.queries();
    assert!(
        queries
            .iter()
            .any(|q| q.0.starts_with("edge.wsgate.test") && q.1 == "HTTPS"),
        "{queries:?}"
    );
}

#[test]
fn an_alias_loop_costs_only_the_https_answer() {
    let tb = testbed(Behaviour::Ok, Behaviour::Ok, true);
    let alias = HttpsRecord::Alias {
        target: "loop.wsgate.test".into(),
    };
    let back = DnsRecord {
        name: "loop.wsgate.test".into(),
        https: vec![HttpsRecord::Alias {
            target: "wsgate.test".into(),
        }],
        ..DnsRecord::default()
    };
    let dns = dns(vec![alias], Duration::ZERO, vec![back]);
    let (run, events) = run(&tb, &dns, &format!("wss://wsgate.test:{}/", tb.port()));
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        details(&events, "resolve").iter().any(|d| d.contains("loop")),
        "{events:?}"
    );
}
