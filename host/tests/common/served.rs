//! A `wsgate serve` process for the end-to-end tests: started with its
//! arguments, its standard error collected, stopped when dropped.

use super::cache_dir;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a test waits for the gateway to say it listens: a debug build
/// compiling a plugin on a busy machine takes a while (once: the cache
/// keeps it for the next).
pub const START_LIMIT: Duration = Duration::from_secs(180);
/// How long any one client exchange may take.
pub const EXCHANGE_LIMIT: Duration = Duration::from_secs(20);

/// A `wsgate serve` process, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Served {
    pub child: Child,
    pub addrs: Vec<SocketAddr>,
    stderr: Arc<Mutex<String>>,
}

impl Served {
    /// Starts `wsgate serve --cache-dir CACHE ARGS` and waits for its
    /// `listening on` lines (`listeners` of them).
    pub fn start(args: &[&str], listeners: usize) -> Served {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wsgate"))
            .arg("serve")
            // Before the test's arguments, which may end with `-- ARGS`.
            .arg("--cache-dir")
            .arg(cache_dir())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wsgate serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        let log = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                log.lock().unwrap().push_str(&format!("{line}\n"));
                // A human line or a JSON one (`--log-format json`).
                let rest = line
                    .strip_prefix("wsgate: listening on ")
                    .or_else(|| line.split_once("\"message\":\"listening on ").map(|(_, rest)| rest));
                if let Some(rest) = rest {
                    let addr = rest.split_whitespace().next().unwrap().parse::<SocketAddr>().unwrap();
                    let _ = tx.send(addr);
                }
            }
        });
        let mut addrs = Vec::new();
        let started = Instant::now();
        while addrs.len() < listeners {
            let left = START_LIMIT.saturating_sub(started.elapsed());
            match rx.recv_timeout(left) {
                Ok(addr) => addrs.push(addr),
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("wsgate serve did not start: {}", stderr.lock().unwrap());
                }
            }
        }
        Served { child, addrs, stderr }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr())
    }

    /// What the gateway said so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (bounded) until the gateway's output contains `needle`.
    pub fn wait_for(&self, needle: &str) -> String {
        let started = Instant::now();
        loop {
            let text = self.stderr();
            if text.contains(needle) {
                return text;
            }
            assert!(started.elapsed() < EXCHANGE_LIMIT, "no `{needle}` in:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The admin listener's address, from its `admin on` line.
    pub fn admin(&self) -> SocketAddr {
        let log = self.wait_for("wsgate: admin on http://");
        log.split("wsgate: admin on http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no admin address in:\n{log}"))
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: sends a signal to the child we started.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    /// Waits (bounded by `limit`) for the process to exit, with its status.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "still running after {limit:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        // SAFETY: sends a signal to the child we started.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
