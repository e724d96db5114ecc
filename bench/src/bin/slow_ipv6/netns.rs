//! A network namespace of this run: made with `ip netns add`, entered by
//! threads with `setns(2)`, run in by child processes with `ip netns exec`,
//! removed on drop.

use anyhow::{Context, bail};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

/// The names of this bench's namespaces begin with this, then the pid.
const PREFIX: &str = "wsgate-slow6-";

/// A network namespace, removed when dropped.
pub struct Netns {
    name: String,
}

impl Netns {
    /// `ip netns add` under a name unique to this process: `wsgate-slow6-PID-ROLE`.
    pub fn create(role: &str) -> anyhow::Result<Netns> {
        let name = format!("{PREFIX}{}-{role}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Netns { name };
        // Loopback down would leave the namespace's own sockets unreachable
        // to each other; up, it is a plain host.
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `ip -n NAME ARGS`: its standard output, or why it failed.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        run(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// `ip netns exec NAME PROGRAM`, to add arguments to.
    pub fn exec(&self, program: &std::path::Path) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Runs `f` on a new thread inside the namespace: the sockets it opens,
    /// the devices it makes and the threads it spawns are in the namespace.
    /// (A thread's network namespace is its own; the caller's is untouched.)
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
        let path = format!("/run/netns/{}", self.name);
        let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
        let thread = std::thread::Builder::new()
            .name(format!("in-{}", self.name))
            .spawn(move || {
                // SAFETY: a plain system call on a descriptor this closure
                // owns; it changes only this thread's network namespace.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(f())
            })
            .context("spawning a thread")?;
        match thread.join() {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(anyhow::Error::new(e).context(format!("setns into {path}"))),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

/// Removes the namespaces of earlier runs whose process is gone (a run
/// killed before its guards could run), so that they do not pile up.
pub fn remove_stale() {
    let Ok(list) = run(Command::new("ip").args(["netns", "list"])) else {
        return;
    };
    for line in list.lines().take(10_000) {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("wsgate-slow-ipv6: removing {name}, left by an earlier run");
            let _ = run(Command::new("ip").args(["netns", "del", name]));
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = run(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!("wsgate-slow-ipv6: removing network namespace {}: {e:#}", self.name);
        }
    }
}

/// Runs a short command to its end: its standard output, or why it failed.
pub fn run(command: &mut Command) -> anyhow::Result<String> {
    let line = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let out = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run `{line}`"))?;
    if !out.status.success() {
        bail!(
            "`{line}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
