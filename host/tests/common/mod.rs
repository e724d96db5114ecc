//! Shared pieces of the end-to-end tests: running the `wsgate` binary with
//! a bound on its time, finding the plugins, starting testbeds.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
pub use wsgate_testbed::{Behaviour, Config, TestbedHandle, spawn_in_thread};

/// The longest any one `wsgate` run may take in a test.
pub const RUN_LIMIT: Duration = Duration::from_secs(60);

/// What a finished `wsgate` run left.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Stdout's lines.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// Asserts a failure told in exactly one line on stderr containing
    /// `needle`, and returns that line.
    pub fn assert_one_line_failure(&self, needle: &str) -> String {
        assert_ne!(self.code, Some(0), "expected a failure: {self:?}");
        assert!(self.code.is_some(), "killed by a signal: {self:?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one line on stderr: {self:?}");
        assert!(lines[0].contains(needle), "expected `{needle}` in: {}", lines[0]);
        assert!(!self.stderr.contains("panicked"), "{self:?}");
        lines[0].to_owned()
    }
}

/// The directory holding the plugins built for wasm32-wasip2 (`make
/// plugins`), or `WSGATE_PLUGIN_DIR`.
pub fn plugin(name: &str) -> PathBuf {
    let dir = std::env::var_os("WSGATE_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/plugin"));
    let path = dir.join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: build the plugins first (`make plugins`, or `make test` which does it)",
        path.display()
    );
    path
}

/// A cache directory shared by the tests, so that each plugin is compiled
/// once per test run rather than once per test.
pub fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("wsgate-cache")
}

/// `wsgate run PLUGIN --cache-dir CACHE --allow '*:*' --allow-private`:
/// the start of every plugin run in these tests, to which a test adds its
/// flags and `-- ARGS`. The testbeds are on loopback, which the policy
/// denies by default; the policy's own tests use [`run_args_strict`].
pub fn run_args(plugin_name: &str) -> Vec<String> {
    let mut args = run_args_strict(plugin_name);
    args.extend(["--allow".into(), "*:*".into(), "--allow-private".into()]);
    args
}

/// `wsgate run PLUGIN --cache-dir CACHE`, under the default policy (which
/// allows nothing).
pub fn run_args_strict(plugin_name: &str) -> Vec<String> {
    vec![
        "run".into(),
        plugin(plugin_name).display().to_string(),
        "--cache-dir".into(),
        cache_dir().display().to_string(),
    ]
}

/// Runs `wsgate` with `args`, killing it after [`RUN_LIMIT`].
pub fn wsgate<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsgate"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wsgate");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for wsgate") {
            break status;
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("wsgate ran longer than {RUN_LIMIT:?}: {:?}", err.join());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        code: status.code(),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Starts a testbed with these behaviours, writing its CA under the test's
/// temporary directory.
pub fn testbed(v6: Behaviour, v4: Behaviour, tls: bool) -> TestbedHandle {
    let dir = tempdir("testbed");
    spawn_in_thread(Config {
        v6,
        v4,
        tls,
        cert_dir: Some(dir),
        ..Config::default()
    })
    .expect("start testbed")
}

/// A fresh directory under cargo's temporary directory for tests.
pub fn tempdir(what: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{what}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
