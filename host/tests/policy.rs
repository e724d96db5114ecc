//! The operator's egress policy and configuration file, through the
//! `wsgate` binary: names checked before DNS, every address after, special
//! addresses denied unless a CIDR rule allows them, and a config file whose
//! mistakes are named.

mod common;

use common::*;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;
use wsgate_testbed::{DnsRecord, spawn_dns_in_thread};

/// `wsgate run echo-client` under the default (empty) policy plus `flags`,
/// trusting the testbed's CA, echoing `hello` over `url`.
fn echo_with(tb: &TestbedHandle, flags: &[&str], url: &str) -> Run {
    let mut args = run_args_strict("echo-client");
    args.extend(["--ca-cert".into(), tb.ca_path().unwrap().display().to_string()]);
    args.extend(flags.iter().map(|s| s.to_string()));
    args.extend(["--".into(), url.into(), "hello".into()]);
    wsgate(args)
}

/// A DNS server on loopback answering `name` with `v6` and `v4`.
fn dns(name: &str, v6: &[&str], v4: &[&str]) -> wsgate_testbed::DnsHandle {
    spawn_dns_in_thread(vec![DnsRecord {
        name: name.into(),
        v6: v6.iter().map(|a| a.parse().unwrap()).collect(),
        v4: v4.iter().map(|a| a.parse().unwrap()).collect(),
        aaaa_delay: Duration::ZERO,
        a_delay: Duration::ZERO,
        ..DnsRecord::default()
    }])
    .unwrap()
}

fn write_config(text: &str) -> PathBuf {
    let path = tempdir("config").join("wsgate.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn race_events(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn nothing_is_allowed_without_a_rule() {
    let tb = testbed(Behaviour::Ok, Behaviour::Ok, true);
    let port = tb.port();
    let resolve = format!("wsgate.test:{port}:[::1],127.0.0.1");
    let run = echo_with(&tb, &["--resolve", &resolve], &format!("wss://wsgate.test:{port}/"));
    let line = run.assert_one_line_failure("denied by the host's policy");
    assert!(
        line.contains(&format!(
            "no allow rule matches `wsgate.test:{port}` (the policy allows nothing)"
        )),
        "{line}"
    );
    // Denied before DNS: no connection reached the server.
    assert_eq!((tb.connections().v6, tb.connections().v4), (0, 0));
}

#[test]
fn a_name_rule_for_another_port_or_host_does_not_match() {
    let tb = testbed(Behaviour::Ok, Behaviour::Ok, true);
    let port = tb.port();
    let resolve = format!("wsgate.test:{port}:127.0.0.1");
    for rule in ["wsgate.test:1", "other.test:*", "*.wsgate.test:*"] {
        let run = echo_with(
            &tb,
            &["--resolve", &resolve, "--allow-private", "--allow", rule],
            &format!("wss://wsgate.test:{port}/"),
        );
        let line = run.assert_one_line_failure("no allow rule matches");
        assert!(line.contains(rule), "the rules are listed: {line}");
    }
    assert_eq!(tb.connections().v4, 0);
}

#[test]
fn an_allowed_name_that_resolves_to_loopback_is_denied_without_allow_private() {
    let tb = testbed(Behaviour::Ok, Behaviour::Ok, true);
    let port = tb.port();
    // Real DNS: the name is allowed, its addresses are not.
    let server = dns("evil.wsgate.test", &["::1"], &["127.0.0.1"]);
    let log = tempdir("log").join("race.jsonl");
    let run = echo_with(
        &tb,
        &[
            "--allow",
            "evil.wsgate.test:*",
            "--dns-server",
            &server.addr().to_string(),
            "--race-log",
            log.to_str().unwrap(),
        ],
        &format!("wss://evil.wsgate.test:{port}/"),
    );
    let line = run.assert_one_line_failure("denied by the host's policy");
    assert!(line.contains("is a loopback address"), "{line}");
    assert_eq!((tb.connections().v6, tb.connections().v4), (0, 0));
    // Both addresses were refused, and said so in the race log.
    let denied: Vec<&str> = race_events(&log)
        .iter()
        .filter(|e| e["event"] == "denied")
        .map(|e| e["addr"].as_str().unwrap().to_owned())
        .map(|a| if a.starts_with('[') { "v6" } else { "v4" })
        .collect();
    assert_eq!(denied.len(), 2, "{denied:?}");

    // The same with --allow-private gets through.
    let run = echo_with(
        &tb,
        &[
            "--allow",
            "evil.wsgate.test:*",
            "--allow-private",
            "--dns-server",
            &server.addr().to_string(),
        ],
        &format!("wss://evil.wsgate.test:{port}/"),
    );
    assert_eq!(run.lines(), ["hello"], "{run:?}");
}

#[test]
fn a_name_resolving_to_the_metadata_address_is_denied() {
    let server = dns("metadata.test", &[], &["169.254.169.254"]);
    let mut args = run_args_strict("echo-client");
    args.extend([
        "--allow".into(),
        "*:*".into(),
        "--dns-server".into(),
        server.addr().to_string(),
        "--".into(),
        "ws://metadata.test/latest/".into(),
        "x".into(),
    ]);
    let line = wsgate(args).assert_one_line_failure("denied by the host's policy");
    assert!(line.contains("169.254.169.254 is a link-local address"), "{line}");
}

#[test]
fn an_ip_literal_in_127_is_denied_even_by_a_wildcard() {
    let tb = testbed(Behaviour::Ok, Behaviour::Ok, false);
    let port = tb.port();
    for host in ["127.0.0.1", "127.1.2.3", "[::1]", "[::ffff:127.0.0.1]"] {
        let run = echo_with(&tb, &["--allow", "*:*"], &format!("ws://{host}:{port}/"));
        let line = run.assert_one_line_failure("denied by the host's policy");
        assert!(line.contains("loopback address"), "{host}: {line}");
    }
    assert_eq!((tb.connections().v6, tb.connections().v4), (0, 0));
}

#[test]
fn a_cidr_rule_allows_its_addresses_and_only_those() {
    let tb = testbed(Behaviour::Ok, Behaviour::Ok, true);
    let port = tb.port();
    // The name resolves to both loopbacks; only IPv4's is allowed, so the
    // race never dials IPv6.
    let resolve = format!("wsgate.test:{port}:[::1],127.0.0.1");
    let log = tempdir("log").join("race.jsonl");
    let run = echo_with(
        &tb,
        &[
            "--allow",
            "wsgate.test:*",
            "--allow",
            "127.0.0.0/8",
            "--resolve",
            &resolve,
            "--race-log",
            log.to_str().unwrap(),
        ],
        &format!("wss://wsgate.test:{port}/"),
    );
    assert_eq!(run.lines(), ["hello"], "{run:?}");
    assert_eq!((tb.connections().v6, tb.connections().v4), (0, 1));
    let events = race_events(&log);
    let denied: Vec<&Value> = events.iter().filter(|e| e["event"] == "denied").collect();
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["addr"], format!("[::1]:{port}").as_str());

    // An IP literal in the CIDR is allowed without a name rule.
    let run = echo_with(&tb, &["--allow", "127.0.0.0/8"], &format!("wss://127.0.0.1:{port}/"));
    assert_eq!(run.lines(), ["hello"], "{run:?}");
    // A port-bound CIDR rule does not allow another port.
    let run = echo_with(&tb, &["--allow", "127.0.0.0/8:1"], &format!("wss://127.0.0.1:{port}/"));
    run.assert_one_line_failure("denied by the host's policy");
}

#[test]
fn a_config_file_sets_the_policy_and_flags_add_to_it() {
    let tb = testbed(Behaviour::Ok, Behaviour::Ok, true);
    let port = tb.port();
    let config = write_config(&format!(
        "[policy]\nallow = [\"wsgate.test:{port}\"]\nallow-private = true\n\
         [dns]\nresolve = [\"wsgate.test:{port}:127.0.0.1\"]\n\
         [race]\nattempt-delay = 100\n\
         [limits]\nmemory = 32\n"
    ));
    let config = config.to_str().unwrap();
    let run = echo_with(&tb, &["--config", config], &format!("wss://wsgate.test:{port}/"));
    assert_eq!(run.lines(), ["hello"], "{run:?}");
    assert_eq!(run.stderr, "", "{run:?}");
    // A flag's rule adds to the file's.
    let run = echo_with(
        &tb,
        &["--config", config, "--allow", "127.0.0.1"],
        &format!("wss://127.0.0.1:{port}/"),
    );
    assert_eq!(run.lines(), ["hello"], "{run:?}");
    // A flag's value replaces the file's: the same file with a flag out of
    // range is refused by the flag's name.
    let run = echo_with(
        &tb,
        &["--config", config, "--attempt-delay", "1"],
        &format!("wss://wsgate.test:{port}/"),
    );
    run.assert_one_line_failure("--attempt-delay");
    // A boolean flag turns the file's setting off as well as on.
    let run = echo_with(
        &tb,
        &["--config", config, "--allow-private=false"],
        &format!("wss://wsgate.test:{port}/"),
    );
    let line = run.assert_one_line_failure("denied by the host's policy");
    assert!(line.contains("loopback address"), "{line}");
}

#[test]
fn an_old_key_still_works_with_one_warning_line() {
    let tb = testbed(Behaviour::Ok, Behaviour::Ok, true);
    let port = tb.port();
    let config = write_config(&format!(
        "[policy]\nallow = [\"wsgate.test:{port}\"]\nallow-private = true\n\
         [race]\nresolve = [\"wsgate.test:{port}:127.0.0.1\"]\n"
    ));
    let run = echo_with(
        &tb,
        &["--config", config.to_str().unwrap()],
        &format!("wss://wsgate.test:{port}/"),
    );
    assert_eq!(run.lines(), ["hello"], "{run:?}");
    assert_eq!(
        run.stderr,
        "wsgate: warning: `race.resolve` is now `dns.resolve`: the old key is read in this release only\n"
    );
}

#[test]
fn a_bad_config_file_stops_wsgate_at_start_naming_the_key() {
    let tb = testbed(Behaviour::Ok, Behaviour::Ok, true);
    let url = format!("wss://127.0.0.1:{}/", tb.port());
    for (text, expected) in [
        ("[race]\nattempt-dealy = 100\n", "unknown key `race.attempt-dealy`"),
        ("[limtis]\nmemory = 1\n", "unknown section `[limtis]`"),
        (
            "[limits]\nmemory = \"64MiB\"\n",
            "`limits.memory` must be an integer (MiB), not a string",
        ),
        (
            "[limits]\nconnections = 0\n",
            "`limits.connections` must be between 1 and 65536, not 0",
        ),
        ("[policy]\nallow = [\"example.com\"]\n", "`policy.allow[0]`: "),
        ("[policy\n", "line 1: "),
    ] {
        let config = write_config(text);
        let run = echo_with(&tb, &["--config", config.to_str().unwrap()], &url);
        let line = run.assert_one_line_failure(expected);
        assert!(line.contains("wsgate.toml"), "the file is named: {line}");
    }
    assert_eq!((tb.connections().v6, tb.connections().v4), (0, 0));
}

#[test]
fn the_example_config_is_accepted() {
    // The example allows only example names: a connect to the testbed is
    // denied by it, which shows the file was read and applied.
    let tb = testbed(Behaviour::Ok, Behaviour::Ok, true);
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/wsgate.toml");
    let resolve = format!("wsgate.test:{}:127.0.0.1", tb.port());
    let run = echo_with(
        &tb,
        &["--config", example.to_str().unwrap(), "--resolve", &resolve],
        &format!("wss://wsgate.test:{}/", tb.port()),
    );
    let line = run.assert_one_line_failure("denied by the host's policy");
    assert!(line.contains("echo.example.com:443"), "{line}");
}

#[test]
fn a_plugin_may_ask_for_an_earlier_commit_stage_never_a_later_one() {
    let tb = testbed(Behaviour::Ok, Behaviour::Ok, true);
    let port = tb.port().to_string();
    // (the operator's stage, the plugin's request, the stage used)
    for (operator, plugin, used) in [
        (None, "response", "tls"),
        (None, "tcp", "tcp"),
        (Some("tcp"), "tls", "tcp"),
        (Some("tcp"), "response", "tcp"),
        (Some("response"), "response", "response"),
        (Some("response"), "tls", "tls"),
    ] {
        let mut args = run_args("hostile");
        args.extend(["--ca-cert".into(), tb.ca_path().unwrap().display().to_string()]);
        if let Some(stage) = operator {
            args.extend(["--cancel-after".into(), stage.into()]);
        }
        args.extend([
            "--".into(),
            "commit-at".into(),
            plugin.into(),
            "127.0.0.1".into(),
            port.clone(),
        ]);
        let run = wsgate(args);
        assert_eq!(
            run.lines(),
            [format!("committed at {used}")],
            "{operator:?} {plugin}: {run:?}"
        );
    }
}

/// `hostile connect HOST PORT` under rules for `wsgate.test` and
/// 127.0.0.1, with the pin `PIN:PORT:127.0.0.1` and a DNS server that knows
/// nothing, so that only the pin can answer.
fn connect_through_pin(pin: &str, host: &str, port: &str, dns: &wsgate_testbed::DnsHandle) -> Run {
    let mut args = run_args_strict("hostile");
    args.extend(
        [
            "--allow",
            "wsgate.test:*",
            "--allow",
            "127.0.0.1",
            "--resolve",
            &format!("{pin}:{port}:127.0.0.1"),
            "--dns-server",
            &dns.addr().to_string(),
            "--",
            "connect",
            host,
            port,
        ]
        .map(String::from),
    );
    wsgate(args)
}

#[test]
fn a_trailing_dot_or_capitals_do_not_get_around_a_pin() {
    let tb = testbed(Behaviour::Ok, Behaviour::Ok, false);
    let port = tb.port().to_string();
    let empty = spawn_dns_in_thread(vec![]).unwrap();
    for host in ["wsgate.test", "wsgate.test.", "WSGATE.Test.", "127.0.0.1."] {
        let run = connect_through_pin("wsgate.test", host, &port, &empty);
        assert_eq!(run.lines(), [format!("connected 127.0.0.1:{port}")], "{host}: {run:?}");
    }
    assert!(empty.queries().is_empty(), "no name went to DNS: {:?}", empty.queries());
}

#[test]
fn a_pin_written_with_or_without_a_trailing_dot_answers_for_the_name() {
    let tb = testbed(Behaviour::Ok, Behaviour::Ok, false);
    let port = tb.port().to_string();
    let empty = spawn_dns_in_thread(vec![]).unwrap();
    for pin in ["wsgate.test.", "WSGATE.test", "wsgate.test"] {
        for host in ["wsgate.test", "wsgate.test."] {
            let run = connect_through_pin(pin, host, &port, &empty);
            let expected = [format!("connected 127.0.0.1:{port}")];
            assert_eq!(run.lines(), expected, "pin {pin}, host {host}: {run:?}");
        }
    }
    assert!(empty.queries().is_empty(), "no name went to DNS: {:?}", empty.queries());
}
