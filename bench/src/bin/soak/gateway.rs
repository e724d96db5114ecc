//! The gateways: `wsgate serve` processes with the soak's configuration,
//! their standard error, what /proc says of them, their `/metrics`.

use anyhow::{Context, bail};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bound on a gateway's start (it compiles its plugins first).
const START_LIMIT: Duration = Duration::from_secs(180);
/// The lines of a gateway kept (the first ones; a ws-proxy session says
/// one at its end).
const MAX_LINES: usize = 100_000;

/// What the gateway's configuration file says.
pub(crate) struct GatewayConfig<'a> {
    pub(crate) proxy_plugin: &'a Path,
    pub(crate) probe_plugin: &'a Path,
    /// The upstream's name and port, resolved to `::1` and `127.0.0.1`.
    pub(crate) upstream_name: &'a str,
    pub(crate) upstream_port: u16,
    pub(crate) max_sessions: u32,
    pub(crate) head_timeout_ms: u64,
}

impl GatewayConfig<'_> {
    /// The `wsgate.toml`: a ws-proxy route for every path but the probe's
    /// `/trap-after-upgrade`, no limit a soak session could meet (CPU, run
    /// time, idle time, connects per second), an instance memory budget
    /// for thousands of ws-proxy instances (1.2 MiB of linear memory
    /// each), an admin listener.
    pub(crate) fn toml(&self) -> String {
        let up = format!("{}:{}", self.upstream_name, self.upstream_port);
        format!(
            "[serve]\nmax-sessions = {}\nmax-plugin-memory = 65536\nhead-timeout = {}\nidle-timeout = 0\n\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n\n\
             [limits]\ncpu-time = 0\nrun-time = 0\nconnects-per-second = 0\n\n\
             [policy]\nallow = [\"{up}\"]\nallow-private = true\n\n\
             [dns]\nresolve = [\"{up}:::1,127.0.0.1\"]\n\n\
             [[listener]]\naddress = \"127.0.0.1:0\"\n\n\
             [[route]]\nname = \"trap\"\npath = \"/trap-after-upgrade\"\nplugin = {:?}\n\n\
             [[route]]\nname = \"proxy\"\npath = \"/\"\nplugin = {:?}\nargs = [\"ws://{up}/\"]\n",
            self.max_sessions,
            self.head_timeout_ms,
            self.probe_plugin.display().to_string(),
            self.proxy_plugin.display().to_string(),
        )
    }
}

/// A `wsgate serve` child process.
pub(crate) struct Gateway {
    pub(crate) index: usize,
    child: Child,
    /// Where clients connect.
    pub(crate) addr: SocketAddr,
    /// Its admin listener.
    pub(crate) admin: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
    exited: Option<ExitStatus>,
}

impl Gateway {
    /// Starts `wsgate serve --config CONFIG` and waits (bounded) for its
    /// `listening on` and `admin on http://` lines.
    pub(crate) fn start(
        index: usize,
        wsgate: &Path,
        config: &Path,
        cache: &Path,
        extra: &[String],
    ) -> anyhow::Result<Gateway> {
        let mut command = Command::new(wsgate);
        command
            .arg("serve")
            .arg("--config")
            .arg(config)
            .arg("--cache-dir")
            .arg(cache)
            .args(extra)
            // A backtrace captured for every error is a debugging setting.
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", wsgate.display()))?;
        let stderr = child.stderr.take().context("no stderr")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut lines = sink.lock().unwrap();
                // The last word (the drain's line) is kept whatever came before.
                if lines.len() < MAX_LINES || line.contains("drained:") {
                    lines.push(line);
                }
            }
        });
        let deadline = Instant::now() + START_LIMIT;
        loop {
            let (addr, admin) = {
                let lines = lines.lock().unwrap();
                let after = |needle: &str| {
                    lines.iter().find_map(|l| {
                        l.split(needle)
                            .nth(1)?
                            .split_whitespace()
                            .next()?
                            .trim_end_matches('/')
                            .parse::<SocketAddr>()
                            .ok()
                    })
                };
                (after("listening on "), after("admin on http://"))
            };
            if let (Some(addr), Some(admin)) = (addr, admin) {
                return Ok(Gateway {
                    index,
                    child,
                    addr,
                    admin,
                    lines,
                    exited: None,
                });
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "gateway {index} exited ({status}) before listening: {}",
                    lines.lock().unwrap().join(" / ")
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("gateway {index} did not listen within {START_LIMIT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its open files (/proc/PID/fd).
    pub(crate) fn files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map_or(0, |d| d.count())
    }

    /// What its open files are (`/proc/PID/fd/N` → target), for saying
    /// which ones a leak left.
    pub(crate) fn file_names(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{}/fd", self.pid())) else {
            return Vec::new();
        };
        let mut names: Vec<String> = dir
            .filter_map(Result::ok)
            .map(|e| {
                let target = std::fs::read_link(e.path()).map_or("?".into(), |t| t.display().to_string());
                // Sockets and pipes differ by inode only: their kind is
                // what compares.
                match target.split_once(":[") {
                    Some((kind, _)) => kind.to_owned(),
                    None => target,
                }
            })
            .collect();
        names.sort();
        names
    }

    /// Its VmRSS, in KiB.
    pub(crate) fn rss_kib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    }

    /// The lines it said that contain `needle`.
    pub(crate) fn lines_with(&self, needle: &str) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    /// Sends SIGTERM.
    pub(crate) fn terminate(&self) {
        // SAFETY: kill with the id of our own child, not yet reaped.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
    }

    /// Its exit status, once it has exited (waiting at most `limit`).
    pub(crate) async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while self.exited.is_none() && Instant::now() < deadline {
            self.exited = self.child.try_wait().ok().flatten();
            if self.exited.is_none() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        self.exited
    }

    /// `/metrics`' body.
    pub(crate) async fn metrics(&self) -> anyhow::Result<Metrics> {
        let answer = tokio::time::timeout(Duration::from_secs(10), http_get(self.admin, "/metrics"))
            .await
            .context("/metrics: no answer within 10 s")??;
        let Some((head, body)) = answer.split_once("\r\n\r\n") else {
            bail!("/metrics: no head in {answer:?}");
        };
        if !head.starts_with("HTTP/1.1 200") {
            bail!("/metrics answered {}", head.lines().next().unwrap_or(""));
        }
        Ok(Metrics(body.to_owned()))
    }
}

/// Waits at most `grace` for `child` to exit (it was told to), then kills
/// it; reaped either way.
pub(crate) fn end_within(child: &mut Child, grace: Duration) {
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.exited.is_some() || self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        self.terminate();
        end_within(&mut self.child, Duration::from_secs(10));
    }
}

/// A plain HTTP/1.1 GET of `path`, its whole answer.
pub(crate) async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// An OpenMetrics text.
pub(crate) struct Metrics(pub(crate) String);

impl Metrics {
    /// The value of the sample `name` with exactly these labels (`{...}`
    /// included), if there is one.
    pub(crate) fn sample(&self, name: &str) -> Option<f64> {
        self.0
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    }

    /// The sum of the samples of `family` whatever their labels
    /// (`wsgate_sessions_total` over its routes).
    pub(crate) fn sum(&self, family: &str) -> f64 {
        self.0
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix(family)?;
                let rest = if rest.starts_with('{') {
                    &rest[rest.find('}')? + 1..]
                } else {
                    rest
                };
                rest.strip_prefix(' ')?.split_whitespace().next()?.parse::<f64>().ok()
            })
            .sum()
    }
}

/// The scratch directory: the configuration, the plugin cache. Removed at
/// the end.
pub(crate) struct Scratch {
    pub(crate) dir: PathBuf,
}

impl Scratch {
    pub(crate) fn new() -> anyhow::Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("wsgate-soak-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Scratch { dir })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::Metrics;

    const TEXT: &str = "# TYPE wsgate_sessions counter\n\
        wsgate_sessions_total{route=\"trap\"} 102\n\
        wsgate_sessions_total{route=\"proxy\"} 10002\n\
        wsgate_sessions_active{route=\"proxy\"} 0\n\
        wsgate_host_answers_total{status=\"503\"} 500\n\
        wsgate_sessions_totally_other 7\n\
        # EOF\n";

    #[test]
    fn samples_are_read_by_their_exact_labels() {
        let m = Metrics(TEXT.into());
        assert_eq!(m.sample("wsgate_host_answers_total{status=\"503\"}"), Some(500.0));
        assert_eq!(m.sample("wsgate_host_answers_total{status=\"408\"}"), None);
        assert_eq!(m.sample("wsgate_sessions_total{route=\"trap\"}"), Some(102.0));
    }

    #[test]
    fn a_family_sums_over_its_labels_only() {
        let m = Metrics(TEXT.into());
        assert_eq!(m.sum("wsgate_sessions_total"), 10104.0);
        assert_eq!(m.sum("wsgate_sessions_active"), 0.0);
        assert_eq!(m.sum("wsgate_nothing"), 0.0);
    }
}
