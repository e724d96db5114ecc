//! What one plugin instance may use of the host.
//!
//! A plugin is untrusted code running inside the gateway's process: it must
//! not be able to take the host's memory, hold a worker thread, open
//! sockets without end or keep the host buffering for a peer that does not
//! read. [`Limits`] bounds each of those per instance; the runtime and the
//! `connect` capability enforce them.
//!
//! | limit | over it |
//! |---|---|
//! | [`memory`](Limits::memory) | `memory.grow` fails, the plugin traps; the run ends with [`ErrorKind::Limit`](crate::ErrorKind::Limit) |
//! | [`cpu_time`](Limits::cpu_time) | the plugin is stopped at the next epoch tick |
//! | [`run_time`](Limits::run_time) | the plugin is stopped wherever it is (running, or waiting on the network) |
//! | [`connections`](Limits::connections) | `connect` returns `limited` |
//! | [`connects_per_second`](Limits::connects_per_second) | `connect` returns `limited` |
//! | [`stream_buffer`](Limits::stream_buffer) | the output stream's `check-write` says 0 until the peer reads |

use std::time::Duration;
use tokio::time::Instant;

/// Default linear memory per plugin instance: 64 MiB.
pub const DEFAULT_MEMORY: usize = 64 << 20;
/// Default CPU time per plugin instance: 60 s.
pub const DEFAULT_CPU_TIME: Duration = Duration::from_secs(60);
/// Default wall-clock time per plugin run: one hour.
pub const DEFAULT_RUN_TIME: Duration = Duration::from_secs(3600);
/// Default number of connections a plugin instance may hold open.
pub const DEFAULT_CONNECTIONS: usize = 64;
/// Default connects per second (and burst) per plugin instance.
pub const DEFAULT_CONNECTS_PER_SECOND: u32 = 100;
/// Default bytes the host buffers per output stream on a plugin's behalf.
pub const DEFAULT_STREAM_BUFFER: usize = 256 * 1024;

/// The largest linear memory the configuration accepts: 4 GiB, all that a
/// 32-bit WebAssembly memory can address.
pub const MAX_MEMORY: usize = 4 << 30;

/// The largest per-stream buffer the configuration accepts: 64 MiB.
pub const MAX_STREAM_BUFFER: usize = 64 << 20;

/// How often the engine's epoch advances: the granularity of the CPU limit
/// and how long a spinning plugin holds a worker thread before it yields.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Per-instance limits. `None` for a time limit means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of linear memory (all memories of the instance together).
    pub memory: usize,
    /// CPU time of the plugin's run: its own code and the host's work inside
    /// its calls, on the CPU clock of the thread running it, so that waiting
    /// (on the network, or for a core on a busy host) is not counted.
    /// Enforced at [`EPOCH_TICK`] granularity.
    pub cpu_time: Option<Duration>,
    /// Wall-clock bound on a whole run, instantiation included.
    pub run_time: Option<Duration>,
    /// Connections open at once (connects in progress count).
    pub connections: usize,
    /// Connects started per second, with a burst of as many. `None`: no
    /// limit. Fallbacks within a connect are not counted.
    pub connects_per_second: Option<u32>,
    /// Bytes a plugin may have written to a connection that the host still
    /// holds (not yet taken by the kernel).
    pub stream_buffer: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: DEFAULT_MEMORY,
            cpu_time: Some(DEFAULT_CPU_TIME),
            run_time: Some(DEFAULT_RUN_TIME),
            connections: DEFAULT_CONNECTIONS,
            connects_per_second: Some(DEFAULT_CONNECTS_PER_SECOND),
            stream_buffer: DEFAULT_STREAM_BUFFER,
        }
    }
}

impl Limits {
    /// Checks that every value is possible, naming the first one that is
    /// not by its configuration key.
    pub fn validate(&self) -> Result<(), String> {
        if self.memory < (1 << 16) || self.memory > MAX_MEMORY {
            return Err(format!(
                "memory must be between 64 KiB (one WebAssembly page) and 4 GiB, not {} bytes",
                self.memory
            ));
        }
        if self.connections == 0 {
            return Err("connections must be at least 1".into());
        }
        if self.stream_buffer < 1024 || self.stream_buffer > MAX_STREAM_BUFFER {
            return Err(format!(
                "stream-buffer must be between 1 KiB and 64 MiB, not {} bytes",
                self.stream_buffer
            ));
        }
        for (key, value) in [("cpu-time", self.cpu_time), ("run-time", self.run_time)] {
            if value.is_some_and(|d| d.is_zero()) {
                return Err(format!("{key} must be above zero (leave it out for no limit)"));
            }
        }
        if self.connects_per_second == Some(0) {
            return Err("connects-per-second must be above zero (leave it out for no limit)".into());
        }
        Ok(())
    }
}

/// A token bucket for connects: `rate` tokens per second, holding at most
/// `rate`. Runs on tokio's clock so that tests can pause it.
#[derive(Debug)]
pub(crate) struct ConnectRate {
    rate: u32,
    tokens: f64,
    last: Instant,
}

impl ConnectRate {
    pub(crate) fn new(rate: u32) -> Self {
        ConnectRate {
            rate,
            tokens: f64::from(rate),
            last: Instant::now(),
        }
    }

    /// The rate, in connects per second.
    pub(crate) fn rate(&self) -> u32 {
        self.rate
    }

    /// Takes a token if there is one.
    pub(crate) fn try_take(&mut self) -> bool {
        let now = Instant::now();
        let rate = f64::from(self.rate);
        let refill = now.duration_since(self.last).as_secs_f64() * rate;
        self.tokens = (self.tokens + refill).min(rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Limits::default().validate(), Ok(()));
        assert_eq!(Limits::default().memory, 64 << 20);
    }

    #[test]
    fn impossible_values_are_named() {
        let cases = [
            (
                Limits {
                    memory: 100,
                    ..Limits::default()
                },
                "memory",
            ),
            (
                Limits {
                    connections: 0,
                    ..Limits::default()
                },
                "connections",
            ),
            (
                Limits {
                    stream_buffer: 10,
                    ..Limits::default()
                },
                "stream-buffer",
            ),
            (
                Limits {
                    cpu_time: Some(Duration::ZERO),
                    ..Limits::default()
                },
                "cpu-time",
            ),
            (
                Limits {
                    connects_per_second: Some(0),
                    ..Limits::default()
                },
                "connects-per-second",
            ),
        ];
        for (limits, key) in cases {
            let err = limits.validate().unwrap_err();
            assert!(err.starts_with(key), "{err}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn connect_rate_refills_over_time() {
        let mut rate = ConnectRate::new(5);
        for _ in 0..5 {
            assert!(rate.try_take());
        }
        assert!(!rate.try_take(), "the burst is the rate");
        tokio::time::advance(Duration::from_millis(199)).await;
        assert!(!rate.try_take(), "one token takes 200 ms");
        tokio::time::advance(Duration::from_millis(2)).await;
        assert!(rate.try_take());
        tokio::time::advance(Duration::from_secs(60)).await;
        for _ in 0..5 {
            assert!(rate.try_take());
        }
        assert!(!rate.try_take(), "tokens do not pile up beyond the burst");
    }
}
