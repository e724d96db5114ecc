//! Shared pieces of the end-to-end tests: running the `wsgate` binary with
//! a bound on its time, finding the plugins, starting testbeds.

#![allow(dead_code)]

pub mod in_process;
pub mod served;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
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

/// `NAME.wasm`, built for wasm32-wasip2: from `WSGATE_PLUGIN_DIR` (which
/// `make test` sets), else built here, once per test binary, by
/// [`plugin_dir`]. When it is not there, the test process says so in one
/// line and exits.
pub fn plugin(name: &str) -> PathBuf {
    let mut path = plugin_dir().join(format!("{name}.wasm"));
    if !path.is_file() {
        // A gateway plugin is a library, whose file name has `_` for `-`.
        path = plugin_dir().join(format!("{}.wasm", name.replace('-', "_")));
    }
    if !path.is_file() {
        unavailable(&format!("{} is missing", path.display()));
    }
    path
}

/// The workspace's root.
pub fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// `WSGATE_PLUGIN_DIR`, or, under a plain `cargo test`, the plugins built
/// with `cargo build --profile plugin --target wasm32-wasip2` into the
/// target directory these tests were built in, as `make plugins` does.
pub fn plugin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| match std::env::var_os("WSGATE_PLUGIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => build_plugins().unwrap_or_else(|why| unavailable(&why)),
    })
}

/// Builds the Makefile's `PLUGINS` and returns where they are.
fn build_plugins() -> Result<PathBuf, String> {
    // CARGO_TARGET_TMPDIR is `tmp` in the target directory cargo uses
    // (CARGO_TARGET_DIR, the config's, or the workspace's `target/`).
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is in the target directory");
    let makefile = std::fs::read_to_string(root().join("Makefile")).map_err(|e| format!("Makefile: {e}"))?;
    let plugins = makefile_plugins(&makefile).ok_or("the Makefile has no `PLUGINS :=` line")?;
    // Without the target's standard library the build would fail, but only
    // after building the plugins' build-time dependencies.
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let libdir = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", WASM_TARGET])
        .output()
        .map_err(|e| format!("cannot start rustc: {e}"))?;
    if !Path::new(String::from_utf8_lossy(&libdir.stdout).trim()).is_dir() {
        return Err(not_installed());
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(root())
        .args(["build", "--profile", "plugin", "--target", WASM_TARGET, "--target-dir"])
        .arg(target_dir)
        .args(plugins.iter().flat_map(|p| ["-p", p]))
        .stdin(Stdio::null());
    let out = command.output().map_err(|e| format!("cannot start cargo: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(if stderr.contains("target may not be installed") {
            not_installed()
        } else {
            let error = stderr
                .lines()
                .find(|l| l.starts_with("error"))
                .unwrap_or("no error line");
            format!("`cargo build --profile plugin --target {WASM_TARGET}` failed: {error}")
        });
    }
    Ok(target_dir.join(WASM_TARGET).join("plugin"))
}

fn not_installed() -> String {
    format!("the {WASM_TARGET} target is not installed: `rustup target add {WASM_TARGET}`")
}

/// The plugins' target.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// The names on the Makefile's `PLUGINS := ...` line.
pub fn makefile_plugins(makefile: &str) -> Option<Vec<&str>> {
    let names = makefile
        .lines()
        .find_map(|l| l.strip_prefix("PLUGINS")?.trim_start().strip_prefix(":="))?;
    Some(names.split_whitespace().collect())
}

/// Says in one line on standard error why the end-to-end tests cannot run
/// and exits the test process: a panic in each test would say it once per
/// test, with a backtrace hint.
fn unavailable(why: &str) -> ! {
    // Straight to the file descriptor: the test harness captures eprintln!.
    let _ = writeln!(
        std::io::stderr(),
        "wsgate tests: the plugins are not built and cannot be built here ({why}): run `make test`"
    );
    std::process::exit(2)
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
    wsgate_with(args, |_| {})
}

/// [`wsgate`], with the command set up further by `configure` (its working
/// directory, its environment).
pub fn wsgate_with<I, S>(args: I, configure: impl FnOnce(&mut Command)) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut command = Command::new(env!("CARGO_BIN_EXE_wsgate"));
    configure(&mut command);
    command.args(args);
    run_bounded(command)
}

/// Runs `command` to its end, killing it after [`RUN_LIMIT`].
pub fn run_bounded(mut command: Command) -> Run {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {program}: {e}"));
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
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{program} ran longer than {RUN_LIMIT:?}: {:?}", err.join());
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

/// The events of a race log file (`--race-log FILE`), one JSON value per
/// line; none when the run wrote none.
pub fn race_log(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("`{l}`: {e}")))
        .collect()
}
