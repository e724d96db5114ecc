//! The settings read from files and layered with flags.

use super::*;
use crate::race::{AttemptDelay, CommitStage};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn parse(text: &str) -> Result<Settings, String> {
    Settings::from_toml(text, Path::new("/etc/wsgate")).map_err(|e| e.to_string())
}

#[test]
fn the_example_config_parses() {
    let text = include_str!("../../../examples/wsgate.toml");
    let settings = parse(text).unwrap();
    assert!(!settings.policy.allow.is_empty());
    assert!(settings.limits().validate().is_ok());
    assert_eq!(settings.race.race_config().validate(), Ok(()));
    assert_eq!(settings.warnings(), [] as [String; 0], "the example uses no old key");
}

#[test]
fn every_key_is_read() {
    let settings = parse(
        r#"
        [policy]
        allow = ["echo.example.com:443", "10.0.0.0/8"]
        allow-private = true
        [race]
        cancel-after = "response"
        attempt-delay = 100
        resolution-delay = 20
        first-family-count = 2
        max-in-flight = 3
        park-grace = 500
        tls-timeout = 700
        memory-ttl = 60
        memory-file = "race.json"
        connect-timeout = 3000
        [dns]
        server = ["127.0.0.1:5353", "[::1]:5353"]
        resolve = ["a.test:443:127.0.0.1,::1"]
        https-records = false
        nat64-prefix = "64:ff9b::/96"
        [tls]
        ca-cert = ["ca.pem", "/abs/ca.pem"]
        no-system-roots = true
        ech = "grease"
        [limits]
        memory = 32
        cpu-time = 0
        run-time = 30
        connections = 4
        connects-per-second = 2
        stream-buffer = 64
        "#,
    )
    .unwrap();
    assert_eq!(settings.policy.allow.len(), 2);
    assert_eq!(settings.race.cancel_after, Some(CommitStage::Response));
    assert_eq!(settings.dns.server.len(), 2);
    assert_eq!(settings.dns.resolve.len(), 1);
    assert_eq!(settings.dns.https_records, Some(false));
    assert_eq!(settings.dns.nat64_prefix, Some("64:ff9b::/96".parse().unwrap()));
    assert_eq!(settings.race.memory_file, Some(PathBuf::from("/etc/wsgate/race.json")));
    assert_eq!(settings.tls.ech, Some(crate::race::EchMode::Grease));
    assert_eq!(
        settings.tls.ca_cert,
        [PathBuf::from("/etc/wsgate/ca.pem"), PathBuf::from("/abs/ca.pem")]
    );
    let race = settings.race.race_config();
    assert_eq!(race.attempt_delay, Duration::from_millis(100));
    assert_eq!(race.max_in_flight, 3);
    let limits = settings.limits();
    assert_eq!(limits.memory, 32 << 20);
    assert_eq!(limits.cpu_time, None, "0 is no limit");
    assert_eq!(limits.run_time, Some(Duration::from_secs(30)));
    assert_eq!(limits.connects_per_second, Some(2));
    assert_eq!(limits.stream_buffer, 64 << 10);
}

#[test]
fn each_kind_of_bad_input_names_the_key() {
    let cases = [
        // Unknown keys and sections.
        ("[race]\nattempt-dealy = 100", "unknown key `race.attempt-dealy`"),
        ("[limits]\nmemroy = 1", "unknown key `limits.memroy`"),
        ("[proxy]\nx = 1", "unknown section `[proxy]`"),
        ("[tls]\nech = \"maybe\"", "`maybe` is not an ECH mode"),
        ("[dns]\nnat64-prefix = \"64:ff9b::/95\"", "nat64-prefix"),
        ("allow = [\"x:1\"]", "`allow` must be a section"),
        // Wrong types.
        (
            "[race]\nattempt-delay = \"fast\"",
            "`race.attempt-delay` must be an integer (milliseconds), not a string",
        ),
        (
            "[race]\nattempt-delay = 2.5",
            "`race.attempt-delay` must be an integer (milliseconds), not a float",
        ),
        (
            "[policy]\nallow-private = \"yes\"",
            "`policy.allow-private` must be true or false, not a string",
        ),
        (
            "[policy]\nallow = \"example.com:443\"",
            "`policy.allow` must be a list of strings",
        ),
        (
            "[policy]\nallow = [443]",
            "`policy.allow[0]` must be a string, not a integer",
        ),
        ("[race]\ncancel-after = 1", "`race.cancel-after` must be a string"),
        // Impossible values.
        (
            "[race]\nattempt-delay = 5",
            "`race.attempt-delay` must be between 10 and 2000 (milliseconds), not 5",
        ),
        (
            "[race]\nmax-in-flight = 0",
            "`race.max-in-flight` must be between 1 and 64, not 0",
        ),
        (
            "[limits]\nmemory = 0",
            "`limits.memory` must be between 1 and 4096 (MiB), not 0",
        ),
        (
            "[limits]\nmemory = -1",
            "`limits.memory` must be between 1 and 4096 (MiB), not -1",
        ),
        (
            "[limits]\nconnections = 0",
            "`limits.connections` must be between 1 and 65536, not 0",
        ),
        (
            "[limits]\nstream-buffer = 100000",
            "`limits.stream-buffer` must be between 1 and 65536 (KiB)",
        ),
        (
            "[race]\ncancel-after = \"never\"",
            "`race.cancel-after`: `never` is not a commit stage",
        ),
        (
            "[race]\ndns-server = \"localhost\"",
            "`race.dns-server`: `localhost` is not an ADDR:PORT",
        ),
        (
            "[race]\nresolve = [\"a.test:0:127.0.0.1\"]",
            "`race.resolve[0]`: bad port `0`",
        ),
        (
            "[dns]\nserver = [\"localhost\"]",
            "`dns.server[0]`: `localhost` is not an ADDR:PORT",
        ),
        (
            "[dns]\nserver = \"127.0.0.1:53\"",
            "`dns.server` must be a list of strings (ADDR:PORT entries), not a string",
        ),
        (
            "[dns]\nresolve = [\"a.test:0:127.0.0.1\"]",
            "`dns.resolve[0]`: bad port `0`",
        ),
        ("[dns]\nservers = []", "unknown key `dns.servers`"),
        (
            "[tls]\nno-system-roots = 1",
            "`tls.no-system-roots` must be true or false, not a integer",
        ),
        (
            "[policy]\nallow = [\"ok.example:443\", \"example.com\"]",
            "`policy.allow[1]`: ",
        ),
        // Not TOML.
        ("[race\nattempt-delay = 1", "line 1: "),
        ("[race]\nattempt-delay = 100\nattempt-delay = 200", "line 3: "),
    ];
    for (text, expected) in cases {
        let err = parse(text).expect_err(text);
        assert!(err.contains(expected), "for {text:?}: expected `{expected}` in `{err}`");
        assert!(!err.contains('\n'), "one line: {err:?}");
    }
}

#[test]
fn flags_override_the_file_and_lists_add_up() {
    let file = parse("[race]\nattempt-delay = 100\ntls-timeout = 900\n[policy]\nallow = [\"a.example:443\"]").unwrap();
    let mut flags = Settings::default();
    flags.race.attempt_delay = Some(AttemptDelay::new(300).unwrap());
    flags.policy.allow = vec!["b.example:443".parse().unwrap()];
    let merged = file.merge(flags);
    assert_eq!(merged.race.race_config().attempt_delay, Duration::from_millis(300));
    assert_eq!(merged.race.race_config().tls_timeout, Duration::from_millis(900));
    assert_eq!(merged.policy.allow.len(), 2);
}

#[test]
fn a_bad_file_is_named_once_with_its_problem() {
    let path = std::env::temp_dir().join(format!("wsgate-settings-{}.toml", std::process::id()));
    std::fs::write(&path, "[race]\nattempt-delay = 1\n").unwrap();
    let err = Settings::from_file(&path).unwrap_err().to_string();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        err,
        format!(
            "invalid configuration: `{}`: `race.attempt-delay` must be between 10 and 2000 (milliseconds), not 1",
            path.display()
        )
    );
}

#[test]
fn a_missing_file_is_named() {
    let err = Settings::from_file(Path::new("/nonexistent/wsgate.toml")).unwrap_err();
    assert!(
        err.to_string().contains("cannot read `/nonexistent/wsgate.toml`"),
        "{err}"
    );
}

#[test]
fn old_keys_are_read_with_a_warning() {
    let settings = parse(
        "[race]\nresolve = [\"a.test:443:127.0.0.1\"]\ndns-server = \"127.0.0.1:5353\"\n\
         [dns]\nresolve = [\"b.test:443:127.0.0.2\"]",
    )
    .unwrap();
    let hosts: Vec<&str> = settings.dns.resolve.iter().map(|o| o.host.as_str()).collect();
    assert_eq!(hosts, ["a.test", "b.test"]);
    assert_eq!(settings.dns.server, [DnsServer("127.0.0.1:5353".parse().unwrap())]);
    assert_eq!(
        settings.warnings(),
        [
            "`race.resolve` is now `dns.resolve`: the old key is read in this release only",
            "`race.dns-server` is now `dns.server`: the old key is read in this release only",
        ]
    );
}

#[test]
fn a_flag_and_a_key_share_one_definition() {
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        settings: Settings,
    }
    // Every key of the file is a flag of the same name (but the old keys,
    // and `dns.server`, whose flag says what server it is).
    let flags = Flags::try_parse_from([
        "wsgate",
        "--allow",
        "a.example:443",
        "--attempt-delay",
        "100",
        "--dns-server",
        "127.0.0.1:53",
        "--memory",
        "32",
        "--no-system-roots",
    ])
    .unwrap()
    .settings;
    let file = parse(
        "[policy]\nallow = [\"a.example:443\"]\n[race]\nattempt-delay = 100\n\
         [dns]\nserver = [\"127.0.0.1:53\"]\n[limits]\nmemory = 32\n[tls]\nno-system-roots = true",
    )
    .unwrap();
    assert_eq!(flags.race.race_config(), file.race.race_config());
    assert_eq!(flags.limits(), file.limits());
    assert_eq!(flags.dns.server, file.dns.server);
    assert_eq!(flags.policy.allow, file.policy.allow);
    assert_eq!(flags.tls.no_system_roots, file.tls.no_system_roots);
    // The same bounds refuse the same value, in the flag's words.
    let err = Flags::try_parse_from(["wsgate", "--attempt-delay", "5"]).err().unwrap();
    assert!(err.to_string().contains("5 is not in 10..=2000"), "{err}");
}

/// The gateway's sections, as the README shows them.
#[test]
fn the_readme_gateway_config_parses() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let (_, rest) = readme.split_once("## Serving: `wsgate serve`").unwrap();
    let (_, rest) = rest.split_once("```toml\n").unwrap();
    let (text, _) = rest.split_once("```").unwrap();
    let settings = Settings::from_toml(text, Path::new("/etc/wsgate")).unwrap();
    assert_eq!(settings.serve.max_sessions.map(|n| n.count()), Some(1000));
    assert_eq!(
        settings.serve.head_timeout.map(|t| t.duration()),
        Some(Duration::from_secs(10))
    );
    assert_eq!(settings.listener.len(), 2);
    assert_eq!(settings.listener[0].address.unwrap().0, "[::]:8443".parse().unwrap());
    assert_eq!(
        settings.listener[0].tls[1].key.as_deref(),
        Some(Path::new("/etc/wsgate/example.net.key"))
    );
    assert!(settings.listener[1].tls.is_empty());
    let [chat, echo] = &settings.route[..] else {
        panic!("two routes: {:?}", settings.route)
    };
    assert_eq!(chat.name.as_deref(), Some("chat"));
    assert_eq!(chat.plugin.as_deref(), Some(Path::new("/etc/wsgate/ws_proxy.wasm")));
    assert_eq!(chat.args, ["wss://chat.internal.example:443/"]);
    assert_eq!(chat.policy.as_ref().unwrap().allow.len(), 1);
    assert_eq!(settings.route_limits(chat).memory, 32 << 20);
    assert_eq!(settings.route_limits(echo), settings.limits());
    assert!(echo.policy.is_none());
}

#[test]
fn gateway_keys_are_checked_like_the_others() {
    let err = parse("[[route]]\nplugin = \"a.wasm\"\ncolour = \"blue\"").unwrap_err();
    assert!(err.contains("colour"), "{err}");
    let err = parse("[[listener]]\naddress = \"nowhere\"").unwrap_err();
    assert!(err.contains("listener") && err.contains("nowhere"), "{err}");
    let err = parse("[serve]\nmax-head = 0").unwrap_err();
    assert!(err.contains("serve.max-head"), "{err}");
    let err = parse("listener = 3").unwrap_err();
    assert!(err.contains("must be a section"), "{err}");
}

#[test]
fn the_admin_listener_is_read_and_checked() {
    let settings = parse("[admin]\nlisten = \"127.0.0.1:9090\"").unwrap();
    assert_eq!(
        settings.admin.listen.map(|a| a.0),
        Some("127.0.0.1:9090".parse().unwrap())
    );
    let err = parse("[admin]\nlisten = \"nowhere\"").unwrap_err();
    assert!(err.contains("admin.listen") && err.contains("nowhere"), "{err}");
    let err = parse("[admin]\nport = 9090").unwrap_err();
    assert!(err.contains("port"), "{err}");
    // The flag is `--admin-listen`, not the listeners' `--listen`.
    let flags = <AdminSettings as clap::Args>::augment_args(clap::Command::new("t"));
    let names: Vec<_> = flags.get_arguments().filter_map(|a| a.get_long()).collect();
    assert_eq!(names, ["admin-listen"]);
}
