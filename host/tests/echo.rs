//! End to end: the `wsgate` binary runs echo-client against the testbed (a
//! tokio-tungstenite server), over wss and ws, by name and by literal.

mod common;

use common::*;
use std::path::Path;

/// `wsgate run echo-client.wasm` with the testbed's CA and `extra` flags.
fn echo(tb: &TestbedHandle, extra: &[String], url: &str, messages: &[&str]) -> Run {
    let mut args = run_args("echo-client");
    if let Some(ca) = tb.ca_path() {
        args.push("--ca-cert".into());
        args.push(ca.display().to_string());
    }
    args.extend(extra.iter().cloned());
    args.push("--".into());
    args.push(url.into());
    args.extend(messages.iter().map(|m| m.to_string()));
    wsgate(args)
}

fn both_families(name: &str, port: u16) -> Vec<String> {
    vec!["--resolve".into(), format!("{name}:{port}:[::1],127.0.0.1")]
}

fn assert_echoed(run: &Run, messages: &[&str]) {
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.lines(), messages, "{run:?}");
}

fn race_log(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[test]
fn wss_by_name_with_both_families_commits_to_ipv6_after_tls() {
    let tb = testbed(Behaviour::Ok, Behaviour::Ok, true);
    let log = tempdir("log").join("race.jsonl");
    let mut extra = both_families("wsgate.test", tb.port());
    extra.extend(["--race-log".into(), log.display().to_string()]);
    let run = echo(
        &tb,
        &extra,
        &format!("wss://wsgate.test:{}/chat?room=1", tb.port()),
        &["hello", "wörld ✓", ""],
    );
    assert_echoed(&run, &["hello", "wörld ✓", ""]);
    // One connect, one upgrade, on IPv6 (preferred), none on IPv4.
    assert_eq!((tb.upgrades().v6, tb.upgrades().v4), (1, 0));

    let events = race_log(&log);
    let names: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["resolve", "resolve", "attempt", "tcp", "tls", "commit", "first-flight"]
    );
    let v6 = format!("[::1]:{}", tb.port());
    for e in &events[2..] {
        assert_eq!(e["addr"], v6.as_str(), "{e}");
    }
    assert_eq!(events[5]["stage"], "tls");
    let times: Vec<f64> = events.iter().map(|e| e["t_ms"].as_f64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
}

#[test]
fn wss_by_name_reaches_ipv4_when_ipv6_refuses() {
    let tb = testbed(Behaviour::Refused, Behaviour::Ok, true);
    let extra = both_families("wsgate.test", tb.port());
    let run = echo(&tb, &extra, &format!("wss://wsgate.test:{}/", tb.port()), &["over v4"]);
    assert_echoed(&run, &["over v4"]);
    assert_eq!((tb.upgrades().v6, tb.upgrades().v4), (0, 1));
}

#[test]
fn wss_by_ipv4_literal() {
    let tb = testbed(Behaviour::Ok, Behaviour::Ok, true);
    let run = echo(&tb, &[], &format!("wss://127.0.0.1:{}/", tb.port()), &["v4 literal"]);
    assert_echoed(&run, &["v4 literal"]);
    assert_eq!((tb.upgrades().v6, tb.upgrades().v4), (0, 1));
}

#[test]
fn wss_by_ipv6_literal() {
    let tb = testbed(Behaviour::Ok, Behaviour::Ok, true);
    let run = echo(&tb, &[], &format!("wss://[::1]:{}/", tb.port()), &["v6 literal"]);
    assert_echoed(&run, &["v6 literal"]);
    assert_eq!((tb.upgrades().v6, tb.upgrades().v4), (1, 0));
}

#[test]
fn ws_by_name_and_by_literals() {
    let tb = testbed(Behaviour::Ok, Behaviour::Ok, false);
    let extra = both_families("wsgate.test", tb.port());
    let run = echo(
        &tb,
        &extra,
        &format!("ws://wsgate.test:{}/", tb.port()),
        &["plain", "text"],
    );
    assert_echoed(&run, &["plain", "text"]);
    let run = echo(&tb, &[], &format!("ws://127.0.0.1:{}/", tb.port()), &["v4"]);
    assert_echoed(&run, &["v4"]);
    let run = echo(&tb, &[], &format!("ws://[::1]:{}/", tb.port()), &["v6"]);
    assert_echoed(&run, &["v6"]);
    assert_eq!((tb.upgrades().v6, tb.upgrades().v4), (2, 1));
}

#[test]
fn a_large_message_round_trips() {
    let tb = testbed(Behaviour::Ok, Behaviour::Ok, true);
    // Large enough to need several TLS records and host write budgets.
    let big = "x".repeat(100_000);
    let run = echo(&tb, &[], &format!("wss://[::1]:{}/", tb.port()), &[&big]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.lines(), [big.as_str()]);
}

#[test]
fn untrusted_certificate_fails_with_one_tls_line() {
    let tb = testbed(Behaviour::Ok, Behaviour::Ok, true);
    let mut args = run_args("echo-client");
    args.extend([
        "--no-system-roots".into(),
        "--".into(),
        format!("wss://127.0.0.1:{}/", tb.port()),
        "hi".into(),
    ]);
    let run = wsgate(args);
    run.assert_one_line_failure("TLS failed");
    assert_eq!(tb.upgrades().v4, 0, "no upgrade may go out before TLS is verified");
}

#[test]
fn upgrade_503_on_ipv6_falls_back_to_ipv4_with_one_upgrade_per_path() {
    let tb = testbed(Behaviour::Upgrade503, Behaviour::Ok, true);
    let log = tempdir("log").join("race.jsonl");
    let mut extra = both_families("wsgate.test", tb.port());
    extra.extend(["--race-log".into(), log.display().to_string()]);
    let run = echo(
        &tb,
        &extra,
        &format!("wss://wsgate.test:{}/", tb.port()),
        &["after fallback"],
    );
    assert_echoed(&run, &["after fallback"]);
    // The SDK saw 503 on IPv6, gave that connection up, and the host went
    // on to IPv4: one upgrade on each path, never two at once.
    assert_eq!((tb.upgrades().v6, tb.upgrades().v4), (1, 1));
    let events = race_log(&log);
    let names: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "resolve",
            "resolve",
            "attempt",
            "tcp",
            "tls",
            "commit",
            "first-flight",
            "fallback",
            "attempt",
            "tcp",
            "tls",
            "commit",
            "first-flight"
        ]
    );
    assert_eq!(events[7]["addr"], format!("[::1]:{}", tb.port()));
    assert_eq!(events[12]["addr"], format!("127.0.0.1:{}", tb.port()));
}

#[test]
fn a_definitive_refusal_is_not_retried_on_the_other_path() {
    let tb = testbed(Behaviour::Upgrade200, Behaviour::Ok, true);
    let extra = both_families("wsgate.test", tb.port());
    let run = echo(&tb, &extra, &format!("wss://wsgate.test:{}/", tb.port()), &["hi"]);
    run.assert_one_line_failure("200");
    assert_eq!((tb.upgrades().v6, tb.upgrades().v4), (1, 0));
}
