//! The `wsgate` client: one `wsgate run bench-client.wasm` process per run.

use crate::{HOST, Outcome, Target};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// A wsgate row: the operator's flags it runs with.
#[derive(Clone, Debug, Default)]
pub struct Variant {
    /// `--cancel-after STAGE`, if the row asks for one.
    pub cancel_after: Option<&'static str>,
    /// Other flags (`--connect-timeout 2000`...).
    pub extra: Vec<String>,
    /// `--attempt-delay MS`, from the harness's own flag.
    pub attempt_delay: Option<u64>,
}

impl Variant {
    /// wsgate with its defaults.
    pub fn default_row() -> Variant {
        Variant::default()
    }

    /// wsgate with `--cancel-after STAGE` and `extra` flags.
    pub fn cancel_after(stage: &'static str, extra: &[&str]) -> Variant {
        Variant {
            cancel_after: Some(stage),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            attempt_delay: None,
        }
    }

    /// The row's name in the table (as asked for, whatever was dropped).
    pub fn label(&self) -> String {
        let mut label = "wsgate".to_owned();
        if let Some(stage) = self.cancel_after {
            label.push_str(" --cancel-after ");
            label.push_str(stage);
        }
        for flag in &self.extra {
            label.push(' ');
            label.push_str(flag);
        }
        label
    }

    fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(stage) = self.cancel_after {
            args.extend(["--cancel-after".to_owned(), stage.to_owned()]);
        }
        if let Some(delay) = self.attempt_delay {
            args.extend(["--attempt-delay".to_owned(), delay.to_string()]);
        }
        args.extend(self.extra.iter().cloned());
        args
    }
}

/// A variant adapted to the wsgate at hand.
pub struct Planned {
    pub variant: Variant,
    pub not_run: Option<String>,
    pub note: Option<String>,
}

/// The wsgate binary, the plugin, and what flags the binary knows.
pub struct Env {
    wsgate: PathBuf,
    plugin: PathBuf,
    cache_dir: PathBuf,
    has_cancel_after: bool,
    has_attempt_delay: bool,
    attempt_delay: Option<u64>,
}

impl Env {
    /// Checks the files and asks `wsgate run --help` which flags it has.
    pub fn probe(wsgate: &Path, plugin: &Path, cache_dir: &Path, attempt_delay: Option<u64>) -> anyhow::Result<Env> {
        if !wsgate.is_file() {
            bail!(
                "no wsgate binary at `{}` (build it with `cargo build --release -p wsgate-host`, or pass --wsgate PATH; `make bench` does both)",
                wsgate.display()
            );
        }
        if !plugin.is_file() {
            bail!(
                "no bench-client plugin at `{}` (build it with `cargo build --profile plugin --target wasm32-wasip2 -p bench-client`, or pass --plugin PATH)",
                plugin.display()
            );
        }
        let help = std::process::Command::new(wsgate)
            .args(["run", "--help"])
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running `{} run --help`", wsgate.display()))?;
        let help = String::from_utf8_lossy(&help.stdout);
        std::fs::create_dir_all(cache_dir).with_context(|| format!("creating `{}`", cache_dir.display()))?;
        let env = Env {
            wsgate: std::path::absolute(wsgate).unwrap_or_else(|_| wsgate.to_owned()),
            plugin: std::path::absolute(plugin).unwrap_or_else(|_| plugin.to_owned()),
            cache_dir: cache_dir.to_owned(),
            has_cancel_after: help.contains("--cancel-after"),
            has_attempt_delay: help.contains("--attempt-delay"),
            attempt_delay,
        };
        eprintln!(
            "wsgate-bench: {} (--cancel-after: {}, --attempt-delay: {})",
            env.wsgate.display(),
            if env.has_cancel_after { "yes" } else { "missing" },
            if env.has_attempt_delay { "yes" } else { "missing" },
        );
        Ok(env)
    }

    /// Adapts `variant` to this wsgate: a missing flag makes the row
    /// "n/a", except `--cancel-after tls`, the default stage for `wss://`,
    /// which is then dropped (and the row says so).
    pub fn plan(&self, variant: &Variant) -> Planned {
        let mut variant = variant.clone();
        let mut note = None;
        if let Some(stage) = variant.cancel_after
            && !self.has_cancel_after
        {
            if stage == "tls" {
                variant.cancel_after = None;
                note = Some("no --cancel-after in this wsgate: ran at its default stage for wss (tls)".to_owned());
            } else {
                return Planned {
                    variant,
                    not_run: Some("n/a (flag missing)".to_owned()),
                    note: None,
                };
            }
        }
        if let Some(delay) = self.attempt_delay {
            if !self.has_attempt_delay {
                return Planned {
                    variant,
                    not_run: Some("n/a (flag missing)".to_owned()),
                    note: None,
                };
            }
            variant.attempt_delay = Some(delay);
        }
        Planned {
            variant,
            not_run: None,
            note,
        }
    }

    /// One process: `wsgate run bench-client.wasm ... -- wss://wsgate.test:P/ ping`.
    pub async fn run(&self, variant: &Variant, target: &Target, timeout: Duration) -> Outcome {
        let mut command = tokio::process::Command::new(&self.wsgate);
        command
            .arg("run")
            .arg(&self.plugin)
            .arg("--resolve")
            .arg(format!("{HOST}:{}:[::1],127.0.0.1", target.port))
            .arg("--ca-cert")
            .arg(&target.ca_path)
            .arg("--cache-dir")
            .arg(&self.cache_dir)
            // The testbed is on loopback: allow it, as an operator would
            // allow the gateway's real upstreams.
            .args(["--allow", &format!("{HOST}:*"), "--allow-private"])
            .args(variant.args())
            .arg("--")
            .arg(target.url())
            .arg("ping")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                return Outcome::failed(format!("cannot start `{}`: {e}", self.wsgate.display()));
            }
        };
        let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => return Outcome::failed(format!("waiting for wsgate: {e}")),
            Err(_) => {
                // Dropping the future dropped the child: killed.
                return Outcome {
                    error: Some(format!("stalled: no echo within {} ms", timeout.as_millis())),
                    stalled: true,
                    ..Outcome::default()
                };
            }
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            let line = stderr
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("no message");
            let flag_missing = (line.contains("--cancel-after") || line.contains("--attempt-delay"))
                && (line.contains("unexpected") || line.contains("unknown") || line.contains("invalid"));
            return Outcome {
                error: Some(format!(
                    "exit {}: {}",
                    output.status.code().map_or("signal".into(), |c| c.to_string()),
                    line
                )),
                flag_missing,
                ..Outcome::default()
            };
        }
        parse_line(&stdout)
    }
}

/// The plugin's JSON line.
fn parse_line(stdout: &str) -> Outcome {
    let Some(value) = stdout
        .lines()
        .rev()
        .filter(|l| l.trim_start().starts_with('{'))
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
    else {
        return Outcome::failed(format!("no JSON line from bench-client (stdout: {:?})", stdout.trim()));
    };
    let Some(echo_ms) = value["echo_ms"].as_f64() else {
        return Outcome::failed(format!("no echo_ms in {value}"));
    };
    Outcome {
        commit_ms: value["commit_ms"].as_f64(),
        echo_ms: Some(echo_ms),
        peer: value["peer"].as_str().map(str::to_owned),
        first_flights: value["first_flights"].as_u64(),
        ..Outcome::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_plugin_line() {
        let out = parse_line("{\"commit_ms\":1.5,\"echo_ms\":3.25,\"peer\":\"[::1]:1\",\"first_flights\":1}\n");
        assert_eq!(out.commit_ms, Some(1.5));
        assert_eq!(out.echo_ms, Some(3.25));
        assert_eq!(out.peer.as_deref(), Some("[::1]:1"));
        assert_eq!(out.first_flights, Some(1));
        assert!(out.error.is_none());
        let out = parse_line("{\"commit_ms\":null,\"echo_ms\":3,\"peer\":\"x\",\"first_flights\":0}");
        assert_eq!(out.commit_ms, None);
        assert!(parse_line("hello\n").error.is_some());
    }

    #[test]
    fn labels_say_what_was_asked() {
        assert_eq!(Variant::default_row().label(), "wsgate");
        assert_eq!(
            Variant::cancel_after("tcp", &["--connect-timeout", "2000"]).label(),
            "wsgate --cancel-after tcp --connect-timeout 2000"
        );
    }
}
