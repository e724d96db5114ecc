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

mod cpu;
mod memory;
mod rate;

pub(crate) use cpu::{CpuExhausted, CpuMeter, Metered};
pub(crate) use memory::{MemoryBudget, MemoryLimiter};
pub(crate) use rate::ConnectRate;

use crate::error::Error;
use crate::range::{Count, CountOrOff, Kib, Mib, MillisOrOff, Ranged, SecondsOrOff};
use std::time::Duration;

/// The bounds of [`Limits::memory`], in MiB (4 GiB: all that a 32-bit
/// WebAssembly memory can address).
pub type MemoryMib = Ranged<Mib, 1, 4096>;
/// The bounds of [`Limits::cpu_time`], in milliseconds (0: no limit).
pub type CpuTimeMs = Ranged<MillisOrOff, 0, 86_400_000>;
/// The bounds of [`Limits::run_time`], in seconds (0: no limit).
pub type RunTimeSecs = Ranged<SecondsOrOff, 0, 604_800>;
/// The bounds of [`Limits::connections`].
pub type Connections = Ranged<Count, 1, 65_536>;
/// The bounds of [`Limits::connects_per_second`] (0: no limit).
pub type ConnectsPerSecond = Ranged<CountOrOff, 0, 100_000>;
/// The bounds of [`Limits::stream_buffer`], in KiB.
pub type StreamBufferKib = Ranged<Kib, 1, 65_536>;

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
    /// Enforced at the granularity of the engine's epoch tick (10 ms).
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
    /// not by its configuration key. The bounds are the settings' own
    /// ([`MemoryMib`](crate::settings::MemoryMib) and its siblings).
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |why: String| Err(Error::config(why));
        let within =
            |bytes: usize, unit: u32, min: u64, max: u64| (min << unit..=max << unit).contains(&(bytes as u64));
        if !within(self.memory, 20, MemoryMib::MIN, MemoryMib::MAX) {
            return bad(format!(
                "memory must be between {} and {}, not {}",
                bytes(to_usize(MemoryMib::MIN << 20)),
                bytes(to_usize(MemoryMib::MAX << 20)),
                bytes(self.memory)
            ));
        }
        if !Connections::contains(self.connections as u64) {
            return bad(format!(
                "connections must be between {} and {}, not {}",
                Connections::MIN,
                Connections::MAX,
                self.connections
            ));
        }
        if !within(self.stream_buffer, 10, StreamBufferKib::MIN, StreamBufferKib::MAX) {
            return bad(format!(
                "stream-buffer must be between {} and {}, not {}",
                bytes(to_usize(StreamBufferKib::MIN << 10)),
                bytes(to_usize(StreamBufferKib::MAX << 10)),
                bytes(self.stream_buffer)
            ));
        }
        for (key, value, max) in [
            ("cpu-time", self.cpu_time, Duration::from_millis(CpuTimeMs::MAX)),
            ("run-time", self.run_time, Duration::from_secs(RunTimeSecs::MAX)),
        ] {
            if value.is_some_and(|d| d.is_zero() || d > max) {
                return bad(format!(
                    "{key} must be above zero and at most {} (leave it out for no limit)",
                    human(max)
                ));
            }
        }
        if self
            .connects_per_second
            .is_some_and(|n| n == 0 || u64::from(n) > ConnectsPerSecond::MAX)
        {
            return bad(format!(
                "connects-per-second must be between 1 and {} (leave it out for no limit)",
                ConnectsPerSecond::MAX
            ));
        }
        Ok(())
    }
}

fn to_usize(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// A duration as an operator writes it: `1500 ms`, `3 s`, `1 h`.
pub(crate) fn human(d: Duration) -> String {
    if d.subsec_millis() != 0 || d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d.as_secs().is_multiple_of(3600) {
        format!("{} h", d.as_secs() / 3600)
    } else {
        format!("{} s", d.as_secs())
    }
}

/// A size as an operator writes it: `64 MiB`, `300 KiB`, `100 bytes`.
pub(crate) fn bytes(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(Limits::default().validate().is_ok());
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
            let err = limits.validate().unwrap_err().to_string();
            assert!(err.starts_with(&format!("invalid configuration: {key}")), "{err}");
        }
    }
}
