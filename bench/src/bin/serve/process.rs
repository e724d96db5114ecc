//! The bench's child processes: the servers, their commands, and what
//! /proc says of them; the scratch directory they share.

use super::{Bench, START_LIMIT, progress};
use anyhow::{Context, bail};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A scratch directory: the certificates, the gateway's cache, nginx's
/// prefix. Removed at the end.
pub(super) struct Scratch {
    pub(super) dir: PathBuf,
    pub(super) ca_pem: String,
    pub(super) cert: PathBuf,
    pub(super) key: PathBuf,
}

impl Scratch {
    pub(super) fn new() -> anyhow::Result<Scratch> {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let dir = std::env::temp_dir().join(format!("wsgate-serve-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // A CA and a leaf it signs (ECDSA P-256), as the testbed has: the
        // client validates a chain, as a real one does.
        let mut ca_params = CertificateParams::default();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "wsgate-serve-bench CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        let leaf_key = KeyPair::generate()?;
        let leaf =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?.signed_by(&leaf_key, &ca)?;
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, leaf.pem())?;
        std::fs::write(&key, leaf_key.serialize_pem())?;
        Ok(Scratch {
            dir,
            ca_pem: ca.pem(),
            cert,
            key,
        })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A server in a child process, its standard error collected line by line.
pub(super) struct Server {
    pub(super) name: &'static str,
    pub(super) child: Child,
    pub(super) addr: SocketAddr,
    pub(super) lines: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `command` and waits (bounded) for its `listening on ADDR` line.
    pub(super) fn start(name: &'static str, mut command: Command) -> anyhow::Result<Server> {
        // A backtrace captured for every error the host makes (a closed
        // stream, say) is a debugging setting, not serving: neither server
        // gets one.
        let mut child = command
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let stderr = child.stderr.take().context("no stderr")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<SocketAddr>();
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on ").nth(1)
                    && let Some(addr) = rest.split_whitespace().next().and_then(|a| a.parse().ok())
                {
                    let _ = ready_tx.send(addr);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Ok(addr) = ready_rx.recv_timeout(Duration::from_millis(50)) {
                return Ok(Server {
                    name,
                    child,
                    addr,
                    lines,
                });
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "{name} exited ({status}) before listening: {}",
                    lines.lock().unwrap().join("\n")
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{name} did not listen within {START_LIMIT:?}");
            }
        }
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The lines said so far, taken.
    pub(super) fn take_lines(&self) -> Vec<String> {
        std::mem::take(&mut *self.lines.lock().unwrap())
    }

    /// Waits (bounded) until `count` lines containing `needle` have come,
    /// then takes every line.
    pub(super) fn wait_lines(&self, needle: &str, count: usize, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.lines.lock().unwrap().iter().filter(|l| l.contains(needle)).count() >= count {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.take_lines()
    }

    /// SIGTERM, then (after 10 s) SIGKILL.
    pub(super) fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        // SAFETY: kill with the id of our own child, which we have not reaped.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        progress(format!("{} did not stop on SIGTERM within 10 s: killed", self.name));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// This binary, as the native peer.
pub(super) fn native_command(tls: Option<(&Path, &Path)>) -> anyhow::Result<Command> {
    let mut command = Command::new(std::env::current_exe().context("finding this binary")?);
    command.args(["native", "--listen", "127.0.0.1:0"]);
    if let Some((cert, key)) = tls {
        command.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
    }
    Ok(command)
}

/// `wsgate serve PLUGIN --listen 127.0.0.1:0 ...`, no limit that a bench
/// session could meet (CPU, run time, idle time).
pub(super) fn wsgate_command(cli: &Bench, scratch: &Scratch, plugin: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(&cli.wsgate);
    command
        .arg("serve")
        .arg(plugin)
        .args(["--listen", "127.0.0.1:0", "--cache-dir"])
        .arg(scratch.dir.join("cache"))
        .args(["--cpu-time", "0", "--run-time", "0", "--idle-timeout", "0"])
        .args(extra);
    command
}

/// Process CPU time (user + system) of `pid`, in seconds.
pub(super) fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // The fields after the command (which may hold spaces), from field 3.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return f64::NAN;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(f64::NAN);
    // utime is field 14, stime 15: indexes 11 and 12 after the command.
    // SAFETY: sysconf reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

/// VmRSS, RssAnon, RssFile and RssShmem of `pid`, in KiB.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Rss {
    pub(super) total: f64,
    pub(super) anon: f64,
    pub(super) file: f64,
    pub(super) shmem: f64,
}

pub(super) fn rss(pid: u32) -> Rss {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    Rss {
        total: field("VmRSS:"),
        anon: field("RssAnon:"),
        file: field("RssFile:"),
        shmem: field("RssShmem:"),
    }
}
