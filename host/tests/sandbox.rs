//! Hostile plugins (`tests/hostile`, `tests/sockets-importer`) against the
//! sandbox, through the host library: each runs beside a well-behaved
//! echo plugin in the same runtime, on one thread, and each is contained
//! with a clear error while the echo finishes.
//!
//! One thread (tokio's current-thread runtime) is the hard case: a plugin
//! that spins without yielding would starve every other plugin there.

mod common;

use common::*;
use std::time::Duration;
use wsgate_host::{ConnectConfig, Error, ErrorKind, Limits, Outcome, Plugin, RunOptions, Runtime};
use wsgate_testbed::{DnsRecord, spawn_dns_in_thread};

/// The captured output of each plugin, at most.
const CAPTURE: usize = 1 << 20;

struct Fixture {
    runtime: Runtime,
    echo: Plugin,
    hostile: Plugin,
    /// A wss echo server on both loopbacks.
    tb: TestbedHandle,
}

impl Fixture {
    fn new() -> Self {
        let runtime = Runtime::with_cache(&cache_dir()).unwrap();
        let echo = runtime.load(&plugin("echo-client")).unwrap();
        let hostile = runtime.load(&plugin("hostile")).unwrap();
        let tb = testbed(Behaviour::Ok, Behaviour::Ok, true);
        Fixture {
            runtime,
            echo,
            hostile,
            tb,
        }
    }

    /// The echo plugin's configuration: loopback allowed, the testbed's CA.
    fn echo_config(&self) -> ConnectConfig {
        ConnectConfig::builder()
            .allow("*:*".parse().unwrap())
            .allow_private()
            .ca_file(self.tb.ca_path().unwrap())
            .build()
            .unwrap()
    }

    /// Runs the hostile plugin with `args` under `config` and `limits`,
    /// and at the same time the echo plugin, five messages over wss; checks
    /// the echo and returns the hostile plugin's result.
    fn hostile_beside_echo(&self, config: ConnectConfig, limits: Limits, args: &[&str]) -> Result<Outcome, Error> {
        let url = format!("wss://127.0.0.1:{}/", self.tb.port());
        let messages = ["one", "two", "three", "four", "five"];
        let mut echo_args = vec![url.as_str()];
        echo_args.extend(messages);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (hostile, echo) = rt.block_on(async {
            let hostile = self.runtime.run(
                &self.hostile,
                config,
                RunOptions::new(args.iter().copied())
                    .limits(limits)
                    .capture_output(CAPTURE),
            );
            let echo = async {
                // Start the echo once the hostile plugin is under way.
                tokio::time::sleep(Duration::from_millis(50)).await;
                self.runtime
                    .run(
                        &self.echo,
                        self.echo_config(),
                        RunOptions::new(echo_args).capture_output(CAPTURE),
                    )
                    .await
            };
            // Both are bounded: the hostile one by its limits, the echo by
            // its connect timeout and the testbed.
            tokio::time::timeout(Duration::from_secs(60), async { tokio::join!(hostile, echo) })
                .await
                .expect("the runs ended")
        });
        let echo = echo.expect("the echo plugin ran");
        assert_eq!(echo.exit_code(), 0, "{}", String::from_utf8_lossy(echo.stderr()));
        let lines: Vec<String> = String::from_utf8_lossy(echo.stdout())
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(lines, messages, "the echo plugin finished its echo");
        hostile
    }
}

/// Loopback allowed for everything (the hostile plugins' targets are on
/// loopback), so only the limits stand in their way.
fn open_config() -> ConnectConfig {
    ConnectConfig::builder()
        .allow("*:*".parse().unwrap())
        .allow_private()
        .build()
        .unwrap()
}

/// `count()` once it reaches `expected` or after 5 s: the server counts a
/// connection when it accepts it, a moment after the client connected.
fn settled(count: impl Fn() -> u64, expected: u64) -> u64 {
    for _ in 0..500 {
        if count() >= expected {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    count()
}

fn stdout(outcome: &Outcome) -> String {
    String::from_utf8_lossy(outcome.stdout()).into_owned()
}

fn limit_error(result: Result<Outcome, Error>) -> String {
    let err = result.expect_err("the plugin was stopped");
    assert_eq!(err.kind(), ErrorKind::Limit, "{err}");
    err.to_string()
}

#[test]
fn an_infinite_loop_is_stopped_at_its_cpu_time() {
    let f = Fixture::new();
    let limits = Limits {
        cpu_time: Some(Duration::from_millis(300)),
        ..Limits::default()
    };
    let err = limit_error(f.hostile_beside_echo(open_config(), limits, &["spin"]));
    assert_eq!(err, "plugin stopped: `hostile.wasm` used its CPU time limit of 300 ms");
}

#[test]
fn a_loop_of_host_calls_is_stopped_at_its_cpu_time() {
    // The time inside host calls counts: a plugin cannot spin there. (Were
    // only the plugin's own code counted, a small part of this loop, the
    // run-time limit would end it first.)
    let f = Fixture::new();
    let limits = Limits {
        cpu_time: Some(Duration::from_millis(300)),
        run_time: Some(Duration::from_secs(3)),
        ..Limits::default()
    };
    let err = limit_error(f.hostile_beside_echo(open_config(), limits, &["spin-host"]));
    assert_eq!(err, "plugin stopped: `hostile.wasm` used its CPU time limit of 300 ms");
}

#[test]
fn a_memory_bomb_is_stopped_at_its_memory_limit() {
    let f = Fixture::new();
    let err = limit_error(f.hostile_beside_echo(open_config(), Limits::default(), &["memory"]));
    assert!(err.contains("`hostile.wasm` ran out of memory"), "{err}");
    assert!(err.ends_with("its limit is 64 MiB"), "{err}");
}

#[test]
fn a_connect_flood_is_refused_at_the_open_connections_limit() {
    let f = Fixture::new();
    let port = f.tb.port().to_string();
    let limits = Limits {
        connections: 8,
        connects_per_second: None,
        ..Limits::default()
    };
    let outcome = f
        .hostile_beside_echo(open_config(), limits, &["connect-flood", "127.0.0.1", &port, "1000"])
        .unwrap();
    assert_eq!(outcome.exit_code(), 3);
    let out = stdout(&outcome);
    assert!(
        out.starts_with("refused at 8: ") && out.contains("Limited(\"connections:"),
        "{out}"
    );
    // The eight the limit let through, and the echo's one.
    assert_eq!(
        settled(|| f.tb.connections().v4, 9),
        9,
        "exactly the allowed connections reached the server"
    );
}

#[test]
fn a_connect_flood_is_refused_at_the_connect_rate() {
    let f = Fixture::new();
    let port = f.tb.port().to_string();
    let limits = Limits {
        connections: 1000,
        connects_per_second: Some(2),
        ..Limits::default()
    };
    let outcome = f
        .hostile_beside_echo(open_config(), limits, &["connect-flood", "127.0.0.1", &port, "1000"])
        .unwrap();
    assert_eq!(outcome.exit_code(), 3);
    let out = stdout(&outcome);
    // The burst is the rate: 2 at once, and a third if the two took the
    // 500 ms a token takes to come back (a busy machine). The exact refill
    // times are tested on tokio's paused clock in `limits`.
    assert!(
        (out.starts_with("refused at 2: ") || out.starts_with("refused at 3: "))
            && out.contains("Limited(\"connects-per-second: the limit is 2"),
        "{out}"
    );
}

#[test]
fn a_host_not_allowed_is_denied_before_dns() {
    let f = Fixture::new();
    let dns = spawn_dns_in_thread(vec![]).unwrap();
    let config = ConnectConfig::builder()
        .allow("wsgate.test:443".parse().unwrap())
        .dns_server(dns.addr())
        .build()
        .unwrap();
    let outcome = f
        .hostile_beside_echo(config, Limits::default(), &["connect", "attacker.test", "443"])
        .unwrap();
    assert_eq!(outcome.exit_code(), 2);
    assert_eq!(
        stdout(&outcome).trim(),
        "error: ConnectError::Denied(\"no allow rule matches `attacker.test:443` (the policy allows: wsgate.test:443)\")"
    );
    assert!(dns.queries().is_empty(), "the name was not looked up");
}

#[test]
fn a_loopback_literal_is_denied() {
    let f = Fixture::new();
    let port = f.tb.port().to_string();
    let config = ConnectConfig::builder().allow("*:*".parse().unwrap()).build().unwrap();
    for host in ["127.0.0.1", "127.255.0.9", "::1", "::ffff:127.0.0.1"] {
        let outcome = f
            .hostile_beside_echo(config.clone(), Limits::default(), &["connect", host, &port])
            .unwrap();
        assert_eq!(outcome.exit_code(), 2, "{host}");
        let out = stdout(&outcome);
        assert!(
            out.contains("Denied(") && out.contains("loopback address"),
            "{host}: {out}"
        );
    }
    // The echo's own connections only: one per run, over IPv4.
    assert_eq!((f.tb.connections().v6, f.tb.connections().v4), (0, 4));
}

#[test]
fn a_name_resolving_to_loopback_is_denied() {
    let f = Fixture::new();
    let port = f.tb.port().to_string();
    let dns = spawn_dns_in_thread(vec![DnsRecord {
        name: "internal.attacker.test".into(),
        v6: vec!["::1".parse().unwrap()],
        v4: vec!["127.0.0.1".parse().unwrap()],
        aaaa_delay: Duration::ZERO,
        a_delay: Duration::ZERO,
        ..DnsRecord::default()
    }])
    .unwrap();
    let config = ConnectConfig::builder()
        .allow("*.attacker.test:*".parse().unwrap())
        .dns_server(dns.addr())
        .build()
        .unwrap();
    let outcome = f
        .hostile_beside_echo(config, Limits::default(), &["connect", "internal.attacker.test", &port])
        .unwrap();
    assert_eq!(outcome.exit_code(), 2);
    let out = stdout(&outcome);
    assert!(out.contains("Denied(") && out.contains("loopback address"), "{out}");
    assert!(
        !dns.queries().is_empty(),
        "the name was looked up, its addresses refused"
    );
    assert_eq!(
        (f.tb.connections().v6, f.tb.connections().v4),
        (0, 1),
        "only the echo's"
    );
}

#[test]
fn a_plugin_importing_wasi_sockets_is_refused_at_load() {
    let runtime = Runtime::with_cache(&cache_dir()).unwrap();
    let err = runtime.load(&plugin("sockets-importer")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Link, "{err}");
    let text = err.to_string();
    assert!(text.contains("sockets-importer.wasm` imports `wasi:sockets/"), "{text}");
    assert!(text.contains("wsgate:connect"), "{text}");
}

#[test]
fn a_plugin_finds_no_files_no_environment_and_only_its_arguments() {
    let f = Fixture::new();
    for path in ["/etc/passwd", "/", ".", "Cargo.toml"] {
        let outcome = f
            .hostile_beside_echo(open_config(), Limits::default(), &["read-file", path])
            .unwrap();
        assert_eq!(outcome.exit_code(), 2, "{path}: {}", stdout(&outcome));
        assert!(stdout(&outcome).starts_with("error: "), "{path}: {}", stdout(&outcome));
    }
    // SAFETY-free check of the environment: the test process has some.
    assert!(std::env::vars().count() > 0);
    let outcome = f
        .hostile_beside_echo(open_config(), Limits::default(), &["env", "given"])
        .unwrap();
    assert_eq!(outcome.exit_code(), 0);
    let out = stdout(&outcome);
    assert!(out.starts_with("env: 0 variables\n"), "{out}");
    assert!(out.contains("args: 3\nhostile.wasm\nenv\ngiven\n"), "{out}");
}

/// A TCP listener on 127.0.0.1 that never accepts: the kernel completes
/// the handshakes and buffers what arrives, and no one ever reads it.
fn sink() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    (listener, port)
}

/// What the sink's first connection holds unread (at most 64 MiB).
fn unread(listener: &std::net::TcpListener) -> usize {
    use std::io::Read;
    let (mut conn, _) = listener.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut buf = vec![0; 1 << 16];
    let mut total = 0;
    while total < 64 << 20 {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
    total
}

#[test]
fn a_writer_to_a_peer_that_never_reads_is_stopped_at_its_run_time() {
    let f = Fixture::new();
    let (sink, port) = sink();
    let limits = Limits {
        run_time: Some(Duration::from_secs(2)),
        stream_buffer: 64 * 1024,
        ..Limits::default()
    };
    let err = limit_error(f.hostile_beside_echo(open_config(), limits, &["write-flood", "127.0.0.1", &port]));
    assert_eq!(err, "plugin stopped: `hostile.wasm` ran past its run-time limit of 2 s");
    // The plugin did write, until the kernel's buffers and the host's
    // 64 KiB were full, and then waited.
    let received = unread(&sink);
    assert!(received > 64 * 1024, "{received} bytes");
}

#[test]
fn the_host_buffers_at_most_its_stream_buffer_for_a_peer_that_never_reads() {
    // Through the binary, whose stderr shows the plugin's progress: how
    // many MiB the host accepted before the run-time limit.
    let (_sink, port) = sink();
    let mut args = run_args("hostile");
    args.extend(
        [
            "--run-time",
            "2",
            "--stream-buffer",
            "64",
            "--",
            "write-flood",
            "127.0.0.1",
            &port,
        ]
        .map(String::from),
    );
    let run = wsgate(args);
    assert!(
        run.stderr
            .ends_with("wsgate: plugin stopped: `hostile.wasm` ran past its run-time limit of 2 s\n"),
        "{run:?}"
    );
    let accepted_mib = run
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("accepted ")?.strip_suffix(" MiB")?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    // The kernel's socket buffers (a few MiB on loopback) and the host's
    // 64 KiB: a host that buffered without bound would have taken
    // gigabytes in 2 s.
    assert!(accepted_mib <= 32, "the host took {accepted_mib} MiB: {run:?}");
}

#[test]
fn a_write_beyond_what_check_write_permits_traps() {
    let f = Fixture::new();
    let (_sink, port) = sink();
    let limits = Limits {
        stream_buffer: 64 * 1024,
        ..Limits::default()
    };
    let result = f.hostile_beside_echo(open_config(), limits, &["write-unchecked", "127.0.0.1", &port]);
    match result {
        // The host refuses the write: as a trap, or as a stream error the
        // plugin sees.
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Trap, "{e}");
            assert!(e.to_string().contains("write beyond the permitted budget"), "{e}");
        }
        Ok(outcome) => assert!(stdout(&outcome).contains("write error"), "{}", stdout(&outcome)),
    }
}

#[test]
fn the_binary_reports_a_limit_in_one_line() {
    let mut args = run_args("hostile");
    args.extend(["--cpu-time".into(), "200".into(), "--".into(), "spin".into()]);
    let line = wsgate(args).assert_one_line_failure("plugin stopped");
    assert_eq!(
        line,
        "wsgate: plugin stopped: `hostile.wasm` used its CPU time limit of 200 ms"
    );

    let mut args = run_args("hostile");
    args.extend(["--memory".into(), "16".into(), "--".into(), "memory".into()]);
    let run = wsgate(args);
    // The plugin's own progress lines come first on stderr; wsgate's last.
    let last = run.stderr.lines().last().unwrap_or_default().to_owned();
    assert_ne!(run.code, Some(0));
    assert!(
        last.starts_with("wsgate: plugin stopped: `hostile.wasm` ran out of memory")
            && last.ends_with("its limit is 16 MiB"),
        "{run:?}"
    );

    let args = run_args_strict("sockets-importer");
    wsgate(args).assert_one_line_failure("imports `wasi:sockets/");
}

/// A component whose `run` grows linear memory by 40 MiB twice: in two
/// core instances of one module, or in two memories of one module.
fn two_memories(separate_instances: bool) -> std::path::PathBuf {
    const GROW: &str = "(if (i32.eq (memory.grow {m} (i32.const 640)) (i32.const -1)) (then unreachable))";
    let grow = |m: &str| GROW.replace("{m}", m);
    let core = if separate_instances {
        format!(
            r#"(core module $m (memory 1) (func (export "grow") {}))
            (core instance $a (instantiate $m))
            (core instance $b (instantiate $m))
            (core module $main
                (import "a" "grow" (func $ga))
                (import "b" "grow" (func $gb))
                (func (export "run") (result i32) (call $ga) (call $gb) (i32.const 0)))
            (core instance $i (instantiate $main (with "a" (instance $a)) (with "b" (instance $b))))"#,
            grow("")
        )
    } else {
        format!(
            r#"(core module $main (memory $x 1) (memory $y 1)
                (func (export "run") (result i32) {} {} (i32.const 0)))
            (core instance $i (instantiate $main))"#,
            grow("$x"),
            grow("$y")
        )
    };
    let wat = format!(
        r#"(component
            {core}
            (func $run (result (result)) (canon lift (core func $i "run")))
            (instance $inst (export "run" (func $run)))
            (export "wasi:cli/run@0.2.12" (instance $inst)))"#
    );
    let name = if separate_instances {
        "instances.wasm"
    } else {
        "memories.wasm"
    };
    let path = tempdir("memory").join(name);
    std::fs::write(&path, wat::parse_str(wat).expect("valid component text")).unwrap();
    path
}

#[test]
fn the_memory_limit_counts_every_memory_of_the_plugin() {
    for separate_instances in [true, false] {
        let plugin = two_memories(separate_instances);
        let run = |memory: &str| wsgate(["run", plugin.to_str().unwrap(), "--no-cache", "--memory", memory]);
        // 2 × 40 MiB fit in 128 MiB...
        let fits = run("128");
        assert_eq!(fits.code, Some(0), "{fits:?}");
        // ...not in 64, though each memory alone would.
        let line = run("64").assert_one_line_failure("ran out of memory");
        assert!(line.ends_with("in all, its limit is 64 MiB"), "{line}");
    }
}
