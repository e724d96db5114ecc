//! The connect and traffic metrics, through a real gateway: ws-proxy in
//! front of the testbed on loopback, each scripted connect moving each
//! counter by exactly what its race did; and `wsgate run --metrics-file`.
//!
//! Built plugins are needed (`make plugins`).

mod common;

use common::in_process::*;
use common::*;
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wsgate_host::{Gateway, Settings};

/// A gateway serving ws-proxy (one route per `(path, upstream)`), with an
/// admin listener, its connects allowed to the testbed's name (`wsgate.test`,
/// both loopback addresses) and `policy` more; serving in the background of
/// the current runtime. Its client address and its admin address.
fn start(tb: &TestbedHandle, policy: &str, routes: &[(&str, String)]) -> (SocketAddr, SocketAddr) {
    let port = tb.port();
    let proxy = plugin("ws-proxy").display().to_string();
    let mut toml = format!(
        "[serve]\nidle-timeout = 0\n\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [policy]\nallow = [\"wsgate.test:{port}\"]\n{policy}\n\n\
         [dns]\nresolve = [\"wsgate.test:{port}:[::1],127.0.0.1\", \"other.test:{port}:127.0.0.1\"]\n\n\
         [tls]\nca-cert = [{:?}]\n\n\
         [race]\nattempt-delay = 100\n\n\
         [[listener]]\naddress = \"127.0.0.1:0\"\n",
        tb.ca_path().expect("a TLS testbed").display().to_string(),
    );
    for (i, (path, upstream)) in routes.iter().enumerate() {
        toml.push_str(&format!(
            "\n[[route]]\nname = \"r{i}\"\npath = {path:?}\nplugin = {proxy:?}\nargs = [{upstream:?}]\n"
        ));
    }
    let settings = Settings::from_toml(&toml, Path::new("/")).expect("settings");
    let config = settings.connect_builder().build().expect("connect config");
    let gateway = Gateway::bind(&settings, config, Some(&cache_dir()), false).expect("gateway");
    let addr = gateway.addresses()[0];
    let admin = gateway.admin_address().expect("an admin listener");
    tokio::spawn(gateway.serve(std::future::pending()));
    (addr, admin)
}

/// Starts the gateway of [`start`] and runs `exchange` with its client and
/// admin addresses, on a runtime of two worker threads as the gateway's.
/// The exchange is bounded by [`EXCHANGE_LIMIT`]; the start is not: it
/// compiles the plugin, which on a busy machine with a cold cache takes
/// what it takes.
fn with_gateway<F: std::future::Future>(
    tb: &TestbedHandle,
    policy: &str,
    routes: &[(&str, String)],
    exchange: impl FnOnce(SocketAddr, SocketAddr) -> F,
) -> F::Output {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (addr, admin) = runtime.block_on(async { start(tb, policy, routes) });
    runtime.block_on(async {
        tokio::time::timeout(EXCHANGE_LIMIT, exchange(addr, admin))
            .await
            .expect("the exchange took too long")
    })
}

/// The testbed's URL, by name.
fn upstream(tb: &TestbedHandle) -> String {
    format!("wss://wsgate.test:{}/", tb.port())
}

/// `/metrics` once `ended` sessions of route `r{route}` are over: a session
/// ends just after its last frame leaves, so this reads until it is
/// counted, a bounded number of times (no timing asserted).
async fn settle(admin: SocketAddr, route: usize, ended: f64) -> String {
    let name = format!("wsgate_sessions_ended_total{{route=\"r{route}\",outcome=\"done\"}}");
    let mut text = metrics(admin).await;
    for _ in 0..500 {
        if sample(&text, &name) == Some(ended) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        text = metrics(admin).await;
    }
    panic!("{ended} sessions of r{route} never ended:\n{text}")
}

/// Asserts that every `(sample, value)` is in `text`; samples that must be
/// absent have `None`.
fn assert_samples(text: &str, expected: &[(&str, Option<f64>)]) {
    for (name, value) in expected {
        assert_eq!(sample(text, name), *value, "{name} in\n{text}");
    }
}

/// Echoes `messages` through a session on `path`, then closes it with 1000.
async fn echo_session(addr: SocketAddr, path: &str, messages: &[&str]) {
    let mut ws = connect(addr, path).await;
    for text in messages {
        echo_once(&mut ws, text).await;
    }
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
    .await
    .unwrap();
    while let Some(Ok(_)) = ws.next().await {}
}

/// Opens a session on `path` whose upstream connect fails: ws-proxy
/// answers the upgrade with an error status.
async fn refused_session(addr: SocketAddr, path: &str) -> u16 {
    match tokio_tungstenite::connect_async(format!("ws://{addr}{path}")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("expected an HTTP refusal, got an upgrade"),
    }
}

#[test]
fn a_healthy_connect_and_its_traffic() {
    let tb = testbed(Behaviour::Ok, Behaviour::Ok, true);
    with_gateway(
        &tb,
        "allow-private = true",
        &[("/", upstream(&tb))],
        |addr, admin| async move {
            let before = metrics(admin).await;
            // Every direction is there, at zero, before the first session.
            assert_samples(
                &before,
                &[
                    ("wsgate_messages_total{direction=\"from-client\"}", Some(0.0)),
                    ("wsgate_bytes_total{direction=\"to-upstream\"}", Some(0.0)),
                    ("wsgate_connects_total{outcome=\"ok\"}", None),
                ],
            );
            let messages = ["one", "two", "three", &"x".repeat(300), &"y".repeat(70_000)];
            echo_session(addr, "/", &messages).await;
            let after = settle(admin, 0, 1.0).await;
            assert_samples(
                &after,
                &[
                    ("wsgate_connects_total{outcome=\"ok\"}", Some(1.0)),
                    ("wsgate_connect_commits_total{family=\"ipv6\",stage=\"tls\"}", Some(1.0)),
                    ("wsgate_connect_commits_total{family=\"ipv4\",stage=\"tls\"}", None),
                    ("wsgate_connect_attempts_count", Some(1.0)),
                    ("wsgate_connect_attempts_sum", Some(1.0)),
                    ("wsgate_connect_duration_seconds_count{family=\"ipv6\"}", Some(1.0)),
                    (
                        "wsgate_connect_time_to_commit_seconds_count{family=\"ipv6\"}",
                        Some(1.0),
                    ),
                    ("wsgate_connect_fallbacks_total{outcome=\"ok\"}", None),
                    ("wsgate_connect_parked_used_total", Some(0.0)),
                    ("wsgate_connect_duplicate_first_flights_total", Some(0.0)),
                    // Each message went each way once.
                    ("wsgate_messages_total{direction=\"from-client\"}", Some(5.0)),
                    ("wsgate_messages_total{direction=\"to-upstream\"}", Some(5.0)),
                    ("wsgate_messages_total{direction=\"from-upstream\"}", Some(5.0)),
                    ("wsgate_messages_total{direction=\"to-client\"}", Some(5.0)),
                    // The client's Close 1000 went through and came back.
                    (
                        "wsgate_closes_total{direction=\"from-client\",code=\"1000\"}",
                        Some(1.0),
                    ),
                    (
                        "wsgate_closes_total{direction=\"to-upstream\",code=\"1000\"}",
                        Some(1.0),
                    ),
                    (
                        "wsgate_closes_total{direction=\"from-upstream\",code=\"1000\"}",
                        Some(1.0),
                    ),
                    ("wsgate_closes_total{direction=\"to-client\",code=\"1000\"}", Some(1.0)),
                ],
            );
            // Bytes: at least the payloads (headers, masks, the upgrade heads and,
            // upstream, the plaintext under TLS on top).
            let payload: usize = messages.iter().map(|m| m.len()).sum();
            for direction in ["from-client", "to-client", "from-upstream", "to-upstream"] {
                let name = format!("wsgate_bytes_total{{direction=\"{direction}\"}}");
                let bytes = sample(&after, &name).unwrap_or_else(|| panic!("no {name}"));
                assert!(bytes >= payload as f64, "{name} {bytes} < {payload}");
            }
            assert!(
                after.contains("# TYPE wsgate_connect_duration_seconds histogram\n"),
                "{after}"
            );
        },
    );
    tb.stop();
}

#[test]
fn ipv6_blackholed_is_won_by_ipv4_on_the_second_attempt() {
    let tb = testbed(Behaviour::Blackhole, Behaviour::Ok, true);
    with_gateway(
        &tb,
        "allow-private = true",
        &[("/", upstream(&tb))],
        |addr, admin| async move {
            echo_session(addr, "/", &["through v4"]).await;
            let after = settle(admin, 0, 1.0).await;
            assert_samples(
                &after,
                &[
                    ("wsgate_connects_total{outcome=\"ok\"}", Some(1.0)),
                    ("wsgate_connect_commits_total{family=\"ipv4\",stage=\"tls\"}", Some(1.0)),
                    ("wsgate_connect_commits_total{family=\"ipv6\",stage=\"tls\"}", None),
                    ("wsgate_connect_attempts_count", Some(1.0)),
                    ("wsgate_connect_attempts_sum", Some(2.0)),
                    // 2 attempts fall in the bucket of at most 2, not of 1.
                    ("wsgate_connect_attempts_bucket{le=\"1.0\"}", Some(0.0)),
                    ("wsgate_connect_attempts_bucket{le=\"2.0\"}", Some(1.0)),
                    ("wsgate_connect_duration_seconds_count{family=\"ipv4\"}", Some(1.0)),
                    ("wsgate_messages_total{direction=\"to-upstream\"}", Some(1.0)),
                ],
            );
        },
    );
    tb.stop();
}

#[test]
fn a_503_upstream_is_given_up_for_the_other_family() {
    let tb = testbed(Behaviour::Upgrade503, Behaviour::Ok, true);
    with_gateway(
        &tb,
        "allow-private = true",
        &[("/", upstream(&tb))],
        |addr, admin| async move {
            echo_session(addr, "/", &["after fallback"]).await;
            let after = settle(admin, 0, 1.0).await;
            assert_samples(
                &after,
                &[
                    // The connect won on IPv6, whose 503 the SDK gave up: the
                    // fallback raced on and won on IPv4. No attempt had been
                    // parked (IPv4's starts an attempt delay later).
                    ("wsgate_connects_total{outcome=\"ok\"}", Some(1.0)),
                    ("wsgate_connect_fallbacks_total{outcome=\"ok\"}", Some(1.0)),
                    ("wsgate_connect_commits_total{family=\"ipv6\",stage=\"tls\"}", Some(1.0)),
                    ("wsgate_connect_commits_total{family=\"ipv4\",stage=\"tls\"}", Some(1.0)),
                    ("wsgate_connect_parked_used_total", Some(0.0)),
                    ("wsgate_connect_duplicate_first_flights_total", Some(0.0)),
                    // The fallback's attempts are not the connect's.
                    ("wsgate_connect_attempts_count", Some(1.0)),
                    ("wsgate_connect_attempts_sum", Some(1.0)),
                    ("wsgate_connect_duration_seconds_count{family=\"ipv6\"}", Some(1.0)),
                    ("wsgate_connect_duration_seconds_count{family=\"ipv4\"}", Some(1.0)),
                    // The one message went through IPv4 only.
                    ("wsgate_messages_total{direction=\"to-upstream\"}", Some(1.0)),
                    ("wsgate_messages_total{direction=\"from-upstream\"}", Some(1.0)),
                ],
            );
        },
    );
    assert_eq!((tb.upgrades().v6, tb.upgrades().v4), (1, 1));
    tb.stop();
}

#[test]
fn denied_connects_are_counted_by_what_was_checked() {
    let tb = testbed(Behaviour::Ok, Behaviour::Ok, true);
    // No `allow-private`: `wsgate.test` is allowed by name, but its
    // loopback addresses are not; `other.test` is not allowed at all.
    let routes = [
        ("/address", upstream(&tb)),
        ("/name", format!("wss://other.test:{}/", tb.port())),
    ];
    with_gateway(&tb, "", &routes, |addr, admin| async move {
        assert_eq!(refused_session(addr, "/address").await, 502);
        assert_eq!(refused_session(addr, "/name").await, 502);
        let after = metrics(admin).await;
        assert_samples(
            &after,
            &[
                ("wsgate_connects_total{outcome=\"denied\"}", Some(2.0)),
                ("wsgate_connects_total{outcome=\"ok\"}", None),
                // Both of wsgate.test's addresses, loopback ones;
                // other.test before DNS.
                ("wsgate_connect_denials_total{kind=\"loopback\"}", Some(2.0)),
                ("wsgate_connect_denials_total{kind=\"name\"}", Some(1.0)),
                // The denied race still counts its (zero) attempts; the
                // name never got a race.
                ("wsgate_connect_attempts_count", Some(1.0)),
                ("wsgate_connect_attempts_sum", Some(0.0)),
                ("wsgate_bytes_total{direction=\"to-upstream\"}", Some(0.0)),
            ],
        );
    });
    assert_eq!(tb.connections().v4 + tb.connections().v6, 0);
    tb.stop();
}

#[test]
fn run_writes_its_metrics_file_at_exit() {
    let tb = testbed(Behaviour::Ok, Behaviour::Ok, true);
    let file = tempdir("metrics").join("run.om");
    let mut args = run_args("echo-client");
    args.extend([
        "--metrics-file".to_owned(),
        file.display().to_string(),
        "--ca-cert".to_owned(),
        tb.ca_path().unwrap().display().to_string(),
        "--resolve".to_owned(),
        format!("wsgate.test:{}:[::1],127.0.0.1", tb.port()),
        "--".to_owned(),
        upstream(&tb),
        "hello".to_owned(),
        "world".to_owned(),
    ]);
    let run = wsgate(args);
    assert_eq!(run.code, Some(0), "{run:?}");
    let text = std::fs::read_to_string(&file).expect("the metrics file");
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert_samples(
        &text,
        &[
            ("wsgate_connects_total{outcome=\"ok\"}", Some(1.0)),
            ("wsgate_connect_commits_total{family=\"ipv6\",stage=\"tls\"}", Some(1.0)),
            ("wsgate_connect_attempts_sum", Some(1.0)),
            ("wsgate_messages_total{direction=\"to-upstream\"}", Some(2.0)),
            ("wsgate_messages_total{direction=\"from-upstream\"}", Some(2.0)),
            // No client in a run.
            ("wsgate_messages_total{direction=\"from-client\"}", Some(0.0)),
            // Nor any session metric.
            ("wsgate_sessions_total{route=\"echo-client\"}", None),
        ],
    );
    tb.stop();
}

#[test]
fn a_run_counts_the_limits_it_was_held_to() {
    let tb = testbed(Behaviour::Ok, Behaviour::Ok, false);
    let dir = tempdir("metrics-limits");
    // Refused at the connect rate: the plugin says so and exits 3.
    let flood = dir.join("flood.om");
    let mut args = run_args("hostile");
    args.extend([
        "--metrics-file".to_owned(),
        flood.display().to_string(),
        "--connects-per-second".to_owned(),
        "2".to_owned(),
        "--".to_owned(),
        "connect-flood".to_owned(),
        "127.0.0.1".to_owned(),
        tb.port().to_string(),
        "1000".to_owned(),
    ]);
    let run = wsgate(args);
    assert_eq!(run.code, Some(3), "{run:?}");
    let text = std::fs::read_to_string(&flood).expect("the metrics file");
    assert_samples(
        &text,
        &[
            ("wsgate_limits_hit_total{kind=\"connects-per-second\"}", Some(1.0)),
            ("wsgate_connects_total{outcome=\"limited\"}", Some(1.0)),
            ("wsgate_limits_hit_total{kind=\"connections\"}", None),
        ],
    );
    // Stopped at its CPU time: counted too, though the run failed.
    let spin = dir.join("spin.om");
    let mut args = run_args("hostile");
    args.extend([
        "--metrics-file".to_owned(),
        spin.display().to_string(),
        "--cpu-time".to_owned(),
        "300".to_owned(),
        "--".to_owned(),
        "spin".to_owned(),
    ]);
    let run = wsgate(args);
    assert_ne!(run.code, Some(0), "{run:?}");
    let text = std::fs::read_to_string(&spin).expect("the metrics file");
    assert_samples(&text, &[("wsgate_limits_hit_total{kind=\"cpu-time\"}", Some(1.0))]);
    tb.stop();
}
