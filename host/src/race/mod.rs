//! The Happy Eyeballs race: from a host name to one committed connection.
//!
//! RFC 8305 and the Happy Eyeballs v3 draft (its sections are cited):
//!
//! - **Resolution** (§4): HTTPS, AAAA and A answers arrive each on its own
//!   time. Attempts start once an address is known and the preferred
//!   family's and the HTTPS answers are in, or the *Resolution Delay*
//!   (50 ms) after the first address; answers that come later join the
//!   race in progress. No failed lookup fails the connect by itself.
//! - **Order** (§5, [`Candidates`]): one group per HTTPS service, in
//!   priority order, on its port (hints standing in for answers not in
//!   yet), the name's unclaimed addresses last; within a group RFC 6724's
//!   destination rules, then round trip and use from the [`History`];
//!   then the families interleave, a failing or much slower one second.
//! - **Stagger** (§6): a new attempt every *Connection Attempt Delay*
//!   (from the address's round trip where known, else 250 ms), at once
//!   when one fails, at most a few in flight. When the race commits after
//!   TLS, an attempt whose TCP handshake is done gets up to one more delay
//!   for its TLS (§6.1), never more, so a stalled TLS handshake cannot
//!   hold the race. TLS waits for the HTTPS answer when it may carry an
//!   ECH configuration (§6.3).
//! - **Commit**: the first attempt to reach the commit stage wins: TCP
//!   established, TLS done, or (the `response` stage) first flight sent and
//!   a complete response head back. Under `tcp` and `tls` no byte of the
//!   plugin's goes out before the commit, and the first flight is written
//!   once, on the winner.
//! - **Cancel and park**: on commit, attempts still on their way are
//!   cancelled (the task is aborted: TLS state and TCP socket dropped);
//!   attempts that had reached the commit stage too are parked, idle and
//!   unwritten, for a grace period, so that a fallback gets one at once.
//! - **NAT64** (§8): DNS64 answers stand for the IPv4 address they embed;
//!   without an IPv4 route, IPv4 addresses are dialled through the prefix.
//!
//! The I/O of each attempt goes through a [`Dialer`], so that the timing
//! rules are tested with tokio's paused clock and a scripted dialer. Every
//! address goes through an [`AddressCheck`] before it is dialled: the race
//! has no notion of the operator's policy, only of a check that
//! [`Race::new`] cannot be called without.
//!
//! The pieces: `machine` ([`Race`], the state machine, and its `answers`,
//! what it does with each answer), `attempt` (one attempt's task), `park`
//! (attempts kept for a fallback), `order` (the endpoints and which one
//! next), `history` (what was learned of each path), `family` (IPv6 or
//! IPv4), `dial` and `transport` (the I/O seam and its streams), `error`
//! (how attempts and connects fail).

mod attempt;
mod dial;
mod error;
mod family;
mod history;
mod machine;
#[cfg(test)]
mod net_tests;
mod order;
mod park;
#[cfg(test)]
mod tests;
mod transport;

pub use dial::{Dialer, EchMode, EchOffer, EchRetry, EchStatus, NetDialer};
pub use error::{AttemptError, AttemptErrorKind, AttemptFailure, AttemptStage, ConnectError};
pub use history::{History, HistoryConfig, HistoryView};
pub use machine::Race;
pub use order::Candidates;
pub use transport::{Replay, Transport};

use crate::host_name::HostName;
use crate::range::{Count, Millis, Ranged};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// Decides whether the race may dial an address (compare wasmtime-wasi's
/// `SocketAddrCheck`). [`Race::new`] requires one, so that no race can
/// dial an address nobody checked; `connect` passes the operator's policy.
pub trait AddressCheck: Send + Sync {
    /// `Ok` if `addr` may be dialed, else why not, in one line.
    fn check(&self, addr: SocketAddr) -> Result<(), String>;
}

/// The Connection Attempt Delay's bounds (RFC 8305 §5: at least 10 ms,
/// at most 2 s), in milliseconds.
pub type AttemptDelay = Ranged<Millis, 10, 2000>;
/// The Resolution Delay's bounds, in milliseconds.
pub type ResolutionDelay = Ranged<Millis, 0, 2000>;
/// First Address Family Count's bounds.
pub type FirstFamilyCount = Ranged<Count, 1, 64>;
/// The bounds of the number of attempts in flight at once.
pub type MaxInFlight = Ranged<Count, 1, 64>;
/// The park grace's bounds, in milliseconds.
pub type ParkGrace = Ranged<Millis, 0, 600_000>;
/// The bounds of the TLS handshake's time after a `tcp` commit, in
/// milliseconds.
pub type TlsTimeout = Ranged<Millis, 1, 600_000>;

/// The point at which a connect commits to an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CommitStage {
    /// TCP established.
    Tcp,
    /// TLS handshake done.
    Tls,
    /// First flight sent and a response head received.
    Response,
}

impl CommitStage {
    /// The stage's name, as in the race log and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            CommitStage::Tcp => "tcp",
            CommitStage::Tls => "tls",
            CommitStage::Response => "response",
        }
    }
}

impl std::str::FromStr for CommitStage {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tcp" => Ok(CommitStage::Tcp),
            "tls" => Ok(CommitStage::Tls),
            "response" => Ok(CommitStage::Response),
            other => Err(format!("`{other}` is not a commit stage (tcp, tls or response)")),
        }
    }
}

impl fmt::Display for CommitStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The race's timing and shape rules. [`RaceConfig::default`] has RFC
/// 8305's recommended values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaceConfig {
    /// Connection Attempt Delay: the time between attempt starts.
    pub attempt_delay: Duration,
    /// Resolution Delay: how long to wait for AAAA once A has answered.
    pub resolution_delay: Duration,
    /// At most this many attempts in flight at once.
    pub max_in_flight: usize,
    /// First Address Family Count: IPv6 addresses tried before the first
    /// IPv4 one.
    pub first_family_count: usize,
    /// How long attempts parked after the commit stay open for a fallback.
    pub park_grace: Duration,
    /// Bound on a TLS handshake done after a `tcp` commit.
    pub tls_timeout: Duration,
    /// Bound on a response head read at the `response` stage.
    pub max_response_head: usize,
    /// Whether TLS offers Encrypted Client Hello.
    pub ech: EchMode,
}

impl Default for RaceConfig {
    fn default() -> Self {
        RaceConfig {
            attempt_delay: Duration::from_millis(250),
            resolution_delay: Duration::from_millis(50),
            max_in_flight: 4,
            first_family_count: 1,
            park_grace: Duration::from_secs(2),
            tls_timeout: Duration::from_secs(5),
            max_response_head: 16 * 1024,
            ech: EchMode::On,
        }
    }
}

impl RaceConfig {
    /// Checks the values, naming the first one out of range. The bounds are
    /// those the settings use ([`AttemptDelay`] and its siblings).
    pub fn validate(&self) -> Result<(), String> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        if !AttemptDelay::contains(ms(self.attempt_delay)) {
            return Err(format!(
                "attempt delay {} ms is outside {}..={} ms",
                self.attempt_delay.as_millis(),
                AttemptDelay::MIN,
                AttemptDelay::MAX
            ));
        }
        if !ResolutionDelay::contains(ms(self.resolution_delay)) {
            return Err(format!(
                "resolution delay {} ms is above {} ms",
                self.resolution_delay.as_millis(),
                ResolutionDelay::MAX
            ));
        }
        if !MaxInFlight::contains(self.max_in_flight as u64) {
            return Err(format!(
                "{} attempts in flight is outside {}..={}",
                self.max_in_flight,
                MaxInFlight::MIN,
                MaxInFlight::MAX
            ));
        }
        if !FirstFamilyCount::contains(self.first_family_count as u64) {
            return Err(format!(
                "first address family count {} is outside {}..={}",
                self.first_family_count,
                FirstFamilyCount::MIN,
                FirstFamilyCount::MAX
            ));
        }
        if !ParkGrace::contains(ms(self.park_grace)) {
            return Err(format!("park grace {} ms is out of range", self.park_grace.as_millis()));
        }
        if !TlsTimeout::contains(ms(self.tls_timeout)) {
            return Err(format!(
                "the TLS timeout must be between {} and {} ms",
                TlsTimeout::MIN,
                TlsTimeout::MAX
            ));
        }
        if !(256..=1024 * 1024).contains(&self.max_response_head) {
            return Err(format!(
                "response head cap {} is outside 256..=1048576 bytes",
                self.max_response_head
            ));
        }
        Ok(())
    }
}

/// What a connect is to reach and how.
#[derive(Debug, Clone)]
pub struct Target {
    /// The host, in the one spelling connects use (for the log, errors,
    /// the memory and TLS).
    pub host: HostName,
    /// The port.
    pub port: u16,
    /// Whether to do TLS after TCP (the dialer knows how).
    pub tls: bool,
    /// Bytes to write once on the committed connection (under `tcp` and
    /// `tls`), or on every ready attempt (under `response`).
    pub first_flight: Option<Vec<u8>>,
    /// The stage at which the race commits.
    pub commit: CommitStage,
}

/// A connection the race committed to, with its first flight written.
#[derive(Debug)]
pub struct Committed<S> {
    /// The address that won.
    pub peer: SocketAddr,
    /// The stream, ready for the plugin.
    pub stream: S,
    /// Bytes already read from the stream (the response head, at the
    /// `response` stage), which the plugin must read first.
    pub prefix: Vec<u8>,
}
