//! The CPU-time limit: the thread CPU time of every poll of a plugin's
//! run, its host calls included. A connect's own work (DNS, the race, TLS
//! handshakes) runs as a task beside the plugin and is bounded by the
//! connect's timeout and the connect limits instead.

use super::human;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

/// Counts the CPU time a plugin's run takes: the time its store's future
/// spends being polled (the plugin's code, and the host's work inside its
/// calls: a loop of cheap host calls is spinning too), read from the
/// polling thread's CPU clock. Waiting (on the network, or for a core on a
/// busy host) happens between polls or off the CPU, so it does not count.
///
/// The future is wrapped in [`Metered`]; the epoch callback reads the
/// clock from inside a poll, on the same thread.
#[derive(Debug)]
pub(crate) struct CpuMeter {
    budget: Option<Duration>,
    /// CPU time of the polls that ended.
    used: AtomicU64,
    /// The thread's CPU clock when the current poll began; `u64::MAX`
    /// between polls.
    poll_began: AtomicU64,
}

impl CpuMeter {
    const NOT_POLLING: u64 = u64::MAX;

    pub(crate) fn new(budget: Option<Duration>) -> Self {
        CpuMeter {
            budget,
            used: AtomicU64::new(0),
            poll_began: AtomicU64::new(Self::NOT_POLLING),
        }
    }

    /// Whether the budget is spent: the epoch callback then stops the
    /// plugin with [`CpuExhausted`].
    pub(crate) fn exhausted(&self) -> Option<CpuExhausted> {
        let budget = self.budget?;
        (self.used() >= budget).then_some(CpuExhausted(budget))
    }

    /// The CPU time used so far, the current poll included.
    pub(crate) fn used(&self) -> Duration {
        let mut used = self.used.load(Ordering::Relaxed);
        let began = self.poll_began.load(Ordering::Relaxed);
        if began != Self::NOT_POLLING {
            used += thread_cpu_ns().saturating_sub(began);
        }
        Duration::from_nanos(used)
    }
}

/// A future whose polls are charged to a [`CpuMeter`].
pub(crate) struct Metered<F: Future> {
    inner: Pin<Box<F>>,
    meter: Arc<CpuMeter>,
}

impl<F: Future> Metered<F> {
    /// `inner`, its polls charged to `meter`.
    pub(crate) fn new(inner: F, meter: Arc<CpuMeter>) -> Self {
        Metered {
            inner: Box::pin(inner),
            meter,
        }
    }
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let began = thread_cpu_ns();
        self.meter.poll_began.store(began, Ordering::Relaxed);
        let polled = self.inner.as_mut().poll(cx);
        let spent = thread_cpu_ns().saturating_sub(began);
        self.meter.used.fetch_add(spent, Ordering::Relaxed);
        self.meter.poll_began.store(CpuMeter::NOT_POLLING, Ordering::Relaxed);
        polled
    }
}

/// The calling thread's CPU time, in nanoseconds.
#[cfg(unix)]
#[allow(unsafe_code)]
fn thread_cpu_ns() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `clock_gettime` writes a `timespec` through a pointer to one
    // that lives for the call; CLOCK_THREAD_CPUTIME_ID exists on every Unix
    // wsgate builds for. On failure `now` stays zero.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    u64::try_from(now.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(now.tv_nsec).unwrap_or(0)
}

/// Elsewhere, wall-clock time inside polls (which also counts the time the
/// OS gives the thread to others).
#[cfg(not(unix))]
fn thread_cpu_ns() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// The error an epoch callback stops a plugin with when its CPU budget is
/// spent.
#[derive(Debug)]
pub(crate) struct CpuExhausted(pub(crate) Duration);

impl std::fmt::Display for CpuExhausted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "used its CPU time limit of {}", human(self.0))
    }
}

impl std::error::Error for CpuExhausted {}
