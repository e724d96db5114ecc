//! The embedding example (`host/examples/embed.rs`) runs a plugin from
//! Rust under a configuration file, against the testbed.

mod common;

use common::*;
use std::path::PathBuf;
use std::process::Command;

/// The example's binary, which `cargo test` builds beside the tests.
fn embed_example() -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let path = deps.parent().unwrap().parent().unwrap().join("examples").join("embed");
    assert!(
        path.is_file(),
        "{} is missing: `cargo test -p wsgate-host` builds it (a lone `--test embed` does not)",
        path.display()
    );
    path
}

#[test]
fn the_embedding_example_runs_a_plugin_under_a_config_file() {
    let tb = testbed(Behaviour::Ok, Behaviour::Ok, true);
    let port = tb.port();
    let dir = tempdir("embed");
    let config = dir.join("wsgate.toml");
    std::fs::write(
        &config,
        format!(
            "[policy]\nallow = [\"wsgate.test:{port}\"]\nallow-private = true\n\
             [dns]\nresolve = [\"wsgate.test:{port}:[::1],127.0.0.1\"]\n\
             [tls]\nca-cert = [\"{}\"]\nno-system-roots = true\n",
            tb.ca_path().unwrap().display()
        ),
    )
    .unwrap();
    let mut command = Command::new(embed_example());
    command
        .arg(plugin("echo-client"))
        .arg(&config)
        .args([format!("wss://wsgate.test:{port}/"), "hello".into()]);
    let run = run_bounded(command);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.lines(), ["hello"], "{run:?}");
    assert!(run.stderr.contains(&format!("won by [::1]:{port}")), "{run:?}");
    assert_eq!(tb.upgrades().v6, 1);

    // A bad file is one line, with the kind first.
    std::fs::write(&config, "[race]\nattempt-delay = 1\n").unwrap();
    let mut command = Command::new(embed_example());
    command.arg(plugin("echo-client")).arg(&config);
    run_bounded(command).assert_one_line_failure("`race.attempt-delay` must be between 10 and 2000");
}
