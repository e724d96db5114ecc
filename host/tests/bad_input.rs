//! Bad input gets one clear line on stderr and a non-zero exit, never a
//! panic: bad files, bad flags, bad URLs, servers that do not upgrade.

mod common;

use common::*;
use std::net::TcpListener;
use std::path::PathBuf;

fn run_plugin(plugin: &std::path::Path, extra: &[&str]) -> Run {
    let mut args = vec!["run".to_string(), plugin.display().to_string()];
    args.extend(["--cache-dir".into(), cache_dir().display().to_string()]);
    args.extend(["--allow".into(), "*:*".into(), "--allow-private".into()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    wsgate(args)
}

fn write_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = tempdir("bad").join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A component exporting `wasi:cli/run` whose `run` body is `body`.
fn component(imports: &str, body: &str) -> PathBuf {
    let wat = format!(
        r#"(component
            {imports}
            (core module $m (func (export "run") (result i32) {body}))
            (core instance $i (instantiate $m))
            (func $run (result (result)) (canon lift (core func $i "run")))
            (instance $inst (export "run" (func $run)))
            (export "wasi:cli/run@0.2.12" (instance $inst)))"#
    );
    write_file("plugin.wasm", &wat::parse_str(wat).expect("valid component text"))
}

#[test]
fn missing_plugin_file() {
    run_plugin(&tempdir("bad").join("nope.wasm"), &[]).assert_one_line_failure("cannot read");
}

#[test]
fn unreadable_plugin_path() {
    // A directory cannot be read as a file, whoever runs the test.
    run_plugin(&tempdir("bad"), &[]).assert_one_line_failure("cannot read");
}

#[test]
fn core_module_instead_of_component() {
    let module = wat::parse_str("(module (func (export \"_start\")))").unwrap();
    let line = run_plugin(&write_file("core.wasm", &module), &[]).assert_one_line_failure("core WebAssembly module");
    assert!(line.contains("wasm32-wasip2"), "{line}");
}

#[test]
fn random_bytes_instead_of_component() {
    let bytes: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    run_plugin(&write_file("random.wasm", &bytes), &[]).assert_one_line_failure("is not WebAssembly");
}

#[test]
fn truncated_component() {
    let plugin = std::fs::read(plugin("echo-client")).unwrap();
    let path = write_file("truncated.wasm", &plugin[..plugin.len() / 2]);
    run_plugin(&path, &[]).assert_one_line_failure("is not a valid component");
}

#[test]
fn plugin_that_traps() {
    let line = run_plugin(&component("", "unreachable"), &[]).assert_one_line_failure("plugin trapped");
    assert!(line.contains("unreachable"), "{line}");
}

#[test]
fn plugin_whose_run_fails_exits_1_quietly() {
    let run = run_plugin(&component("", "i32.const 1"), &[]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(run.stderr, "");
}

#[test]
fn plugin_importing_what_the_host_does_not_provide() {
    let imports = r#"(import "acme:nope/thing@1.0.0" (instance (export "f" (func))))"#;
    let line = run_plugin(&component(imports, "i32.const 0"), &[]).assert_one_line_failure("is not a wsgate plugin");
    assert!(line.contains("acme:nope/thing"), "{line}");
}

#[test]
fn plugin_exit_status_is_passed_on() {
    // echo-client without a URL prints its usage and exits non-zero. WASI
    // 0.2's `exit` carries success or failure only, so any failure is 1.
    let run = run_plugin(&plugin("echo-client"), &[]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.starts_with("usage: echo-client"), "{run:?}");
}

#[test]
fn unknown_flag() {
    let run = wsgate(["run", "--frobnicate", "x.wasm"]);
    assert_eq!(run.code, Some(2));
    run.assert_one_line_failure("--frobnicate");
}

#[test]
fn missing_plugin_argument() {
    wsgate(["run"]).assert_one_line_failure("PLUGIN");
}

#[test]
fn malformed_resolve() {
    for (spec, why) in [
        ("wsgate.test:443", "missing field"),
        ("wsgate.test:99999:127.0.0.1", "bad port"),
        ("h:443:nope", "bad address"),
    ] {
        let run = wsgate(["run", "--resolve", spec, "x.wasm"]);
        let line = run.assert_one_line_failure(why);
        assert!(line.contains(spec), "{line}");
    }
}

#[test]
fn bad_ca_files() {
    let p = plugin("echo-client");
    for (text, why) in [
        (&b"no certificate here\n"[..], "holds no PEM certificate"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n", "is not valid PEM"),
        (
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "unusable certificate",
        ),
    ] {
        let path = write_file("ca.pem", text);
        let run = wsgate(["run".as_ref(), "--ca-cert".as_ref(), path.as_os_str(), p.as_os_str()]);
        run.assert_one_line_failure(why);
    }
    let missing = tempdir("bad").join("missing.pem");
    let run = wsgate(["run".as_ref(), "--ca-cert".as_ref(), missing.as_os_str(), p.as_os_str()]);
    run.assert_one_line_failure("cannot read CA file");
}

#[test]
fn urls_the_sdk_cannot_parse() {
    for (url, why) in [
        ("http://127.0.0.1/", "scheme"),
        ("wss://", "host"),
        ("ws://127.0.0.1:0/", "port"),
        ("ws://127.0.0.1/#frag", "fragment"),
        ("example.com/chat", "scheme"),
        ("wss://bad host/", "whitespace"),
    ] {
        let line = run_plugin(&plugin("echo-client"), &["--", url, "hi"]).assert_one_line_failure("echo-client:");
        assert!(line.to_lowercase().contains(why), "{url}: {line}");
    }
}

#[test]
fn nothing_listening_on_any_address() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("ws://wsgate.test:{port}/");
    let resolve = format!("wsgate.test:{port}:[::1],127.0.0.1");
    let line = run_plugin(&plugin("echo-client"), &["--resolve", &resolve, "--", &url, "hi"])
        .assert_one_line_failure("all attempts failed");
    assert!(
        line.contains(&format!("[::1]:{port}")) && line.contains(&format!("127.0.0.1:{port}")),
        "{line}"
    );
}

/// echo-client against a plain testbed whose IPv4 side answers the upgrade
/// with `behaviour`: one line on stderr containing `needle`, one upgrade.
fn upgrade_refused(behaviour: Behaviour, needle: &str) -> String {
    let tb = testbed(Behaviour::Refused, behaviour, false);
    let url = format!("ws://127.0.0.1:{}/", tb.port());
    let line = run_plugin(&plugin("echo-client"), &["--", &url, "hi"]).assert_one_line_failure(needle);
    assert_eq!(tb.upgrades().v4, 1, "exactly one upgrade request");
    line
}

#[test]
fn server_answering_200_instead_of_101() {
    let line = upgrade_refused(Behaviour::Upgrade200, "200");
    assert!(line.contains("101"), "{line}");
}

#[test]
fn server_with_a_wrong_accept_key() {
    upgrade_refused(Behaviour::BadAccept, "Sec-WebSocket-Accept");
}

#[test]
fn race_settings_out_of_range() {
    let p = plugin("echo-client");
    let p = p.to_str().unwrap();
    for (flags, why) in [
        (
            &["--attempt-delay", "5"][..],
            "'--attempt-delay <MS>': 5 is not in 10..=2000",
        ),
        (
            &["--attempt-delay", "2001"],
            "'--attempt-delay <MS>': 2001 is not in 10..=2000",
        ),
        (&["--max-in-flight", "0"], "'--max-in-flight <N>': 0 is not in 1..=64"),
        (&["--memory", "0"], "'--memory <MIB>': 0 is not in 1..=4096"),
        (
            &["--stream-buffer", "99999"],
            "'--stream-buffer <KIB>': 99999 is not in 1..=65536",
        ),
        (&["--allow", "example.com"], "--allow"),
        (
            &["--config", "/nonexistent/wsgate.toml"],
            "cannot read `/nonexistent/wsgate.toml`",
        ),
        (&["--cancel-after", "later"], "`later` is not a commit stage"),
        (&["--dns-server", "nowhere"], "--dns-server"),
    ] {
        let mut args = vec!["run"];
        args.extend(flags);
        args.push(p);
        wsgate(args).assert_one_line_failure(why);
    }
}
