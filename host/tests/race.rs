//! End to end: the race through the `wsgate` binary, with echo-client,
//! against the testbed's per-family behaviours on a name with both
//! addresses (and, for DNS, the testbed's DNS server).
//!
//! Only lower bounds on time are asserted here (a busy machine can make
//! things slower, never faster); the exact timing rules are tested with
//! the paused clock in the host's unit tests.

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;
use wsgate_testbed::{DnsRecord, spawn_dns_in_thread};

/// Runs echo-client through wsgate on `wsgate.test` (both addresses) with
/// `flags`, returning the run and its race log.
fn run(tb: &TestbedHandle, flags: &[&str], plugin_args: &[&str]) -> (Run, Vec<Value>) {
    let log = tempdir("race").join("race.jsonl");
    let mut args = run_args("echo-client");
    args.extend([
        "--resolve".into(),
        format!("wsgate.test:{}:[::1],127.0.0.1", tb.port()),
        "--race-log".into(),
        log.display().to_string(),
    ]);
    if let Some(ca) = tb.ca_path() {
        args.extend(["--ca-cert".into(), ca.display().to_string()]);
    }
    args.extend(flags.iter().map(|f| f.to_string()));
    args.push("--".into());
    let scheme = if tb.ca_path().is_some() { "wss" } else { "ws" };
    let url = format!("{scheme}://wsgate.test:{}/", tb.port());
    let mut plugin_args: Vec<String> = plugin_args.iter().map(|a| a.to_string()).collect();
    // `--connects N` goes before the URL.
    let at = if plugin_args.first().map(String::as_str) == Some("--connects") {
        2
    } else {
        0
    };
    plugin_args.insert(at, url);
    args.extend(plugin_args);
    let run = wsgate(args);
    (run, race_log(&log))
}

/// A DNS server on loopback answering `wsgate.test` with both loopbacks,
/// AAAA after `aaaa_ms` and A after `a_ms`.
fn dns_for_both(aaaa_ms: u64, a_ms: u64) -> wsgate_testbed::DnsHandle {
    spawn_dns_in_thread(vec![DnsRecord {
        name: "wsgate.test".into(),
        v6: vec!["::1".parse().unwrap()],
        v4: vec!["127.0.0.1".parse().unwrap()],
        aaaa_delay: Duration::from_millis(aaaa_ms),
        a_delay: Duration::from_millis(a_ms),
        ..DnsRecord::default()
    }])
    .unwrap()
}

/// The events of connect number `n`, as (event, t_ms, addr).
fn connect(events: &[Value], n: u64) -> Vec<(String, f64, String)> {
    events
        .iter()
        .filter(|e| e["connect"] == n)
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_owned(),
                e["t_ms"].as_f64().unwrap(),
                e["addr"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn first<'a>(events: &'a [(String, f64, String)], kind: &str) -> &'a (String, f64, String) {
    events
        .iter()
        .find(|e| e.0 == kind)
        .unwrap_or_else(|| panic!("no {kind} in {events:?}"))
}

fn count(events: &[Value], kind: &str) -> usize {
    events.iter().filter(|e| e["event"] == kind).count()
}

fn v6(tb: &TestbedHandle) -> String {
    format!("[::1]:{}", tb.port())
}

fn v4(tb: &TestbedHandle) -> String {
    format!("127.0.0.1:{}", tb.port())
}

#[test]
fn ipv6_blackholed_ipv4_wins_after_an_attempt_delay_then_at_once_from_memory() {
    let tb = testbed(Behaviour::Blackhole, Behaviour::Ok, true);
    let (run, events) = run(&tb, &[], &["--connects", "2", "hello"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.lines(), ["hello", "hello"]);

    let one = connect(&events, 1);
    assert_eq!(first(&one, "attempt").2, v6(&tb), "IPv6 is tried first");
    let v4_attempt = one
        .iter()
        .find(|e| e.0 == "attempt" && e.2 == v4(&tb))
        .expect("an IPv4 attempt");
    assert!(v4_attempt.1 >= 250.0, "IPv4 starts one attempt delay later: {one:?}");
    assert_eq!(first(&one, "commit").2, v4(&tb));
    assert!(
        one.iter().any(|e| e.0 == "cancel" && e.2 == v6(&tb)),
        "the IPv6 attempt is cancelled: {one:?}"
    );

    // The second connect goes straight to the address that won.
    let two = connect(&events, 2);
    let attempts: Vec<&str> = two.iter().filter(|e| e.0 == "attempt").map(|e| e.2.as_str()).collect();
    assert_eq!(attempts, [v4(&tb)], "{two:?}");
    assert_eq!((tb.upgrades().v6, tb.upgrades().v4), (0, 2));
}

#[test]
fn the_memory_file_carries_what_was_learned_into_the_next_run() {
    let tb = testbed(Behaviour::Blackhole, Behaviour::Ok, true);
    let file = tempdir("race-memory").join("memory.json");
    let memory = ["--memory-file", file.to_str().unwrap()];
    let (run1, events) = run(&tb, &memory, &["hello"]);
    assert_eq!(run1.code, Some(0), "{run1:?}");
    assert_eq!(first(&connect(&events, 1), "commit").2, v4(&tb));
    let saved = std::fs::read_to_string(&file).expect("the history was saved at exit");
    assert!(saved.contains("127.0.0.1"), "{saved}");

    // A new process: IPv6 lost the first run's race before its TCP was
    // up, so IPv4, much faster, goes first.
    let (run2, events) = run(&tb, &memory, &["hello"]);
    assert_eq!(run2.code, Some(0), "{run2:?}");
    let attempts: Vec<String> = connect(&events, 1)
        .into_iter()
        .filter(|e| e.0 == "attempt")
        .map(|e| e.2)
        .collect();
    assert_eq!(attempts, [v4(&tb)], "{events:?}");

    // Without the file, the next process knows nothing.
    let (run3, events) = run(&tb, &[], &["hello"]);
    assert_eq!(run3.code, Some(0), "{run3:?}");
    assert_eq!(first(&connect(&events, 1), "attempt").2, v6(&tb));
}

#[test]
fn ipv6_refused_ipv4_starts_at_once() {
    let tb = testbed(Behaviour::Refused, Behaviour::Ok, true);
    // A long attempt delay makes "at once" plain: were IPv4 waiting for
    // the timer, it would start at 2000 ms.
    let (run, events) = run(&tb, &["--attempt-delay", "2000"], &["hi"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    let one = connect(&events, 1);
    let failed = first(&one, "failed");
    assert_eq!(failed.2, v6(&tb));
    let v4_attempt = one.iter().find(|e| e.0 == "attempt" && e.2 == v4(&tb)).unwrap();
    assert!(v4_attempt.1 >= failed.1 && v4_attempt.1 < 2000.0, "{one:?}");
    assert_eq!(first(&one, "commit").2, v4(&tb));
}

#[test]
fn ipv6_tls_stalled_commit_at_tls_wins_on_ipv4() {
    let tb = testbed(Behaviour::TlsStall, Behaviour::Ok, true);
    let (run, events) = run(&tb, &["--cancel-after", "tls"], &["hi"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    let one = connect(&events, 1);
    assert!(
        one.iter().any(|e| e.0 == "tcp" && e.2 == v6(&tb)),
        "IPv6 TCP is up: {one:?}"
    );
    assert_eq!(first(&one, "commit").2, v4(&tb));
    assert!(one.iter().any(|e| e.0 == "cancel" && e.2 == v6(&tb)), "{one:?}");
    assert_eq!((tb.upgrades().v6, tb.upgrades().v4), (0, 1));
}

#[test]
fn ipv6_tls_stalled_commit_at_tcp_waits_for_the_tls_timeout() {
    let tb = testbed(Behaviour::TlsStall, Behaviour::Ok, true);
    let (run, events) = run(&tb, &["--cancel-after", "tcp", "--tls-timeout", "1500"], &["hi"]);
    let one = connect(&events, 1);
    // Committed to IPv6 at TCP, then stuck in its TLS handshake: nothing
    // can succeed before the TLS timeout, whatever happens after.
    let commit = first(&one, "commit");
    assert_eq!(commit.2, v6(&tb));
    let failed = first(&one, "failed");
    assert_eq!(failed.2, v6(&tb));
    assert!(failed.1 >= 1500.0, "{one:?}");
    // The race then went on to IPv4, which connected.
    assert_eq!(run.code, Some(0), "{run:?}");
    let last_commit = one.iter().rev().find(|e| e.0 == "commit").unwrap();
    assert_eq!(last_commit.2, v4(&tb));
    assert!(last_commit.1 >= 1500.0);
    assert_eq!((tb.upgrades().v6, tb.upgrades().v4), (0, 1));
}

fn slow_testbed(v6: Behaviour, v4: Behaviour) -> TestbedHandle {
    let dir = tempdir("testbed");
    spawn_in_thread(Config {
        v6,
        v4,
        tls: true,
        cert_dir: Some(dir),
        slow_upgrade: Duration::from_millis(40),
        ..Config::default()
    })
    .expect("start testbed")
}

#[test]
fn both_slow_tls_and_tcp_send_one_upgrade_per_connect() {
    for stage in ["tls", "tcp"] {
        let tb = slow_testbed(Behaviour::SlowUpgrade, Behaviour::SlowUpgrade);
        let (run, events) = run(
            &tb,
            &["--cancel-after", stage, "--attempt-delay", "10"],
            &["--connects", "50", "x"],
        );
        assert_eq!(run.code, Some(0), "{stage}: {run:?}");
        assert_eq!(run.lines().len(), 50);
        let upgrades = tb.upgrades();
        assert_eq!(
            upgrades.v6 + upgrades.v4,
            50,
            "{stage}: exactly one upgrade per connect: {upgrades:?}"
        );
        assert_eq!(count(&events, "first-flight"), 50, "{stage}");
    }
}

#[test]
fn both_slow_response_reports_every_first_flight_the_servers_saw() {
    let tb = slow_testbed(Behaviour::SlowUpgrade, Behaviour::SlowUpgrade);
    let (run, events) = run(
        &tb,
        &["--cancel-after", "response", "--attempt-delay", "10"],
        &["--connects", "20", "x"],
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    let upgrades = tb.upgrades();
    // Both paths are ready within the slow upgrade, so both get the
    // upgrade: the duplicates the `response` stage exists to show.
    assert_eq!(
        count(&events, "first-flight") as u64,
        upgrades.v6 + upgrades.v4,
        "{upgrades:?}"
    );
    assert!(upgrades.v6 + upgrades.v4 > 20, "duplicates are sent: {upgrades:?}");
    assert!(
        events
            .iter()
            .filter(|e| e["event"] == "commit")
            .all(|e| e["stage"] == "response")
    );
}

#[test]
fn dns_resolution_delay_starts_on_a_then_late_aaaa_joins() {
    let tb = testbed(Behaviour::Blackhole, Behaviour::Blackhole, true);
    let dns = dns_for_both(300, 0);
    let log = tempdir("race").join("race.jsonl");
    let args = [
        run_args("echo-client"),
        vec![
            "--dns-server".into(),
            dns.addr().to_string(),
            "--connect-timeout".into(),
            "1000".into(),
            "--race-log".into(),
            log.display().to_string(),
            "--".into(),
            format!("wss://wsgate.test:{}/", tb.port()),
            "hi".into(),
        ],
    ]
    .concat();
    let run = wsgate(args);
    run.assert_one_line_failure("timed out");
    let events = race_log(&log);
    let one = connect(&events, 1);
    // The address answers, A then AAAA (the HTTPS answer, empty, aside).
    let answers: Vec<f64> = events
        .iter()
        .filter(|e| e["event"] == "resolve")
        .filter(|e| e["detail"].as_str().is_some_and(|d| d.starts_with("A")))
        .map(|e| e["t_ms"].as_f64().unwrap())
        .collect();
    let resolves: Vec<(String, f64, String)> = answers
        .iter()
        .map(|t| ("resolve".to_owned(), *t, String::new()))
        .collect();
    assert_eq!(resolves.len(), 2, "{one:?}");
    let attempts: Vec<&(String, f64, String)> = one.iter().filter(|e| e.0 == "attempt").collect();
    // A answered first; the race started on it after the Resolution Delay,
    // before AAAA answered; IPv6 joined when AAAA came.
    assert_eq!(attempts[0].2, v4(&tb), "{one:?}");
    assert!(attempts[0].1 >= resolves[0].1 + 50.0, "{one:?}");
    assert!(attempts[0].1 < resolves[1].1, "{one:?}");
    assert_eq!(attempts[1].2, v6(&tb), "{one:?}");
    assert!(attempts[1].1 >= resolves[1].1, "{one:?}");
    let queries = dns.queries();
    assert!(
        queries.iter().any(|q| q.1 == "AAAA") && queries.iter().any(|q| q.1 == "A"),
        "{queries:?}"
    );
}

#[test]
fn dns_aaaa_first_wins_on_ipv6() {
    let tb = testbed(Behaviour::Ok, Behaviour::Ok, true);
    let dns = dns_for_both(0, 200);
    let args = [
        run_args("echo-client"),
        vec![
            "--dns-server".into(),
            dns.addr().to_string(),
            "--ca-cert".into(),
            tb.ca_path().unwrap().display().to_string(),
            "--".into(),
            format!("wss://wsgate.test:{}/", tb.port()),
            "over dns".into(),
        ],
    ]
    .concat();
    let run = wsgate(args);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.lines(), ["over dns"]);
    assert_eq!((tb.upgrades().v6, tb.upgrades().v4), (1, 0));
}

#[test]
fn unknown_name_is_a_dns_error() {
    let dns = spawn_dns_in_thread(vec![]).unwrap();
    let args = [
        run_args("echo-client"),
        vec![
            "--dns-server".into(),
            dns.addr().to_string(),
            "--".into(),
            "wss://nowhere.wsgate.test/".into(),
            "hi".into(),
        ],
    ]
    .concat();
    wsgate(args).assert_one_line_failure("cannot resolve `nowhere.wsgate.test`");
}

#[test]
fn the_plugin_reads_the_race_report_through_the_connection() {
    // bench-client prints what `connection.report()` and `peer()` gave it.
    let tb = testbed(Behaviour::Blackhole, Behaviour::Ok, true);
    let args = [
        run_args("bench-client"),
        vec![
            "--resolve".into(),
            format!("wsgate.test:{}:[::1],127.0.0.1", tb.port()),
            "--ca-cert".into(),
            tb.ca_path().unwrap().display().to_string(),
            "--".into(),
            format!("wss://wsgate.test:{}/", tb.port()),
        ],
    ]
    .concat();
    let run = wsgate(args);
    assert_eq!(run.code, Some(0), "{run:?}");
    let line: Value = serde_json::from_str(run.lines()[0]).unwrap();
    assert_eq!(line["peer"], v4(&tb));
    assert_eq!(line["first_flights"], 1);
    assert!(line["commit_ms"].as_f64().unwrap() >= 250.0, "{line}");
}
