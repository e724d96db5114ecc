//! What the race learned from earlier connects (HEv3 draft §5.3 and §6).
//!
//! [`History`] is shared by every race of the process. It keeps:
//!
//! - per destination IP address: the smoothed TCP connect RTT and its
//!   variance (RFC 6298 §2), success and failure counts, the last success
//!   and the last update. The RTT orders addresses (the draft's rule
//!   between RFC 6724 rules 8 and 9), a past success is the "used address"
//!   rule after it, and the RTT estimate sets the Connection Attempt Delay
//!   after an attempt to the address ([`HistoryView::attempt_delay`]);
//! - per host name, port and family: the failures since the family's last
//!   success, to tell a family that keeps failing for this host
//!   ([`HistoryView::failing_family`]).
//!
//! Its bounds:
//!
//! - **Expiry**: an entry not updated for [`HistoryConfig::ttl`] is as if
//!   absent: ignored when read, reset when written, and swept out (every
//!   entry is checked at most once per TTL, on a read or write).
//! - **Capacity**: at most [`HistoryConfig::max_addresses`] addresses and
//!   [`HistoryConfig::max_hosts`] host:port entries; a new entry over the
//!   bound drops the expired ones, then the least recently updated.
//! - **Network**: every entry belongs to the [`NetworkId`] current when it
//!   was recorded. [`History::observe_network`] *flushes* everything when
//!   the id changes. The draft allows resuming the history of a network
//!   that can be "reliably" identified; a hash of prefixes and gateways is
//!   not that (two home networks both on 192.168.1.0/24 behind
//!   192.168.1.1 hash alike), so nothing is kept per network.
//! - **Convergence**: the draft requires that clients with different
//!   histories eventually behave alike. Every
//!   [`HistoryConfig::explore_every`]th [`History::view`] of a host:port
//!   explores: it answers as if there were no history, so the race tries
//!   addresses in their plain order and learns their RTTs afresh. The
//!   counter is deterministic, not random, so tests and operators can
//!   predict which connect explores.
//!
//! A race asks for one [`HistoryView`] when it starts (after
//! `observe_network` with the current network), sorts and paces its
//! attempts with it, and reports each attempt's TCP outcome with
//! [`History::record_success`] or [`History::record_failure`].
//!
//! With `--memory-file`, [`History::save`] and [`History::load`] carry the
//! history across restarts (JSON, wall-clock timestamps, so that entries
//! keep ageing while the process is down).

use super::family::{Family, PerFamily};
use crate::host_name::HostName;
use crate::network::NetworkId;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// The Minimum Connection Attempt Delay (draft §6) that a delay computed
/// from history never goes under: it keeps a lossy path from being
/// flooded with attempts.
pub const MIN_ATTEMPT_DELAY: Duration = Duration::from_millis(100);
/// The Maximum Connection Attempt Delay (draft §6): however slow an
/// address was, the next attempt starts within this.
pub const MAX_ATTEMPT_DELAY: Duration = Duration::from_secs(2);
/// RFC 6298's clock granularity *G* in `RTO = SRTT + max(G, 4·RTTVAR)`:
/// tokio's timers tick in milliseconds, so a delay finer than that means
/// nothing. It matters only when the RTT has been perfectly steady.
pub const CLOCK_GRANULARITY: Duration = Duration::from_millis(1);
/// A family fails for a host after this many failures in a row.
pub const FAILING_AFTER: u32 = 2;

/// The file format's version; a file of another version is refused.
const FILE_VERSION: u32 = 1;
/// A history file larger than this is refused rather than read: a full
/// history is a few megabytes.
const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// How long the history remembers, how big it grows, how often it explores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryConfig {
    /// An entry not updated for this long is forgotten (default 10 min).
    /// Zero turns the history off: nothing is recorded.
    pub ttl: Duration,
    /// Every this-many-th view of a host:port answers as if there were no
    /// history (default 16). 1 explores always (history never used); 0
    /// never explores.
    pub explore_every: u32,
    /// At most this many destination addresses (default 4096).
    pub max_addresses: usize,
    /// At most this many host:port entries (default 4096).
    pub max_hosts: usize,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            ttl: Duration::from_secs(600),
            explore_every: 16,
            max_addresses: 4096,
            max_hosts: 4096,
        }
    }
}

/// The race's learning memory, shared by every race of the process.
///
/// Cloning is cheap and shares the same memory (it is an `Arc` inside);
/// holding it behind another `Arc` works as well.
#[derive(Clone)]
pub struct History {
    config: HistoryConfig,
    state: Arc<Mutex<State>>,
}

/// What one race sees of the history: taken by [`History::view`].
///
/// Whether it explores and which family is failing are fixed when the view
/// is taken; per-address answers are read when asked, so a race also sees
/// what a concurrent race just learned.
#[derive(Clone)]
pub struct HistoryView {
    history: History,
    explore: bool,
    failing: Option<Family>,
}

/// What the history holds for one destination address
/// ([`HistoryView::address`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressStats {
    /// The smoothed TCP connect RTT, when a success is recent enough.
    pub srtt: Option<Duration>,
    /// Its variance, alongside `srtt`.
    pub rttvar: Option<Duration>,
    /// TCP connects that succeeded since the entry began.
    pub successes: u32,
    /// TCP connects that failed since the entry began.
    pub failures: u32,
    /// Time since the last success, when it is within the TTL.
    pub since_success: Option<Duration>,
    /// Time since the entry was last updated.
    pub since_update: Duration,
}

/// Why a history file could not be read or written. It travels inside the
/// `io::Error` [`History::load`] and [`History::save`] return (get it with
/// `get_ref()` and `downcast_ref`); the error's kind is `InvalidData` when
/// the file is not a history.
#[derive(Debug)]
pub struct HistoryFileError {
    path: PathBuf,
    detail: String,
}

impl HistoryFileError {
    /// The file.
    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(path: &Path, kind: io::ErrorKind, detail: impl fmt::Display) -> io::Error {
        io::Error::new(
            kind,
            HistoryFileError {
                path: path.to_path_buf(),
                detail: detail.to_string(),
            },
        )
    }

    fn corrupt(path: &Path, detail: impl fmt::Display) -> io::Error {
        HistoryFileError::io(path, io::ErrorKind::InvalidData, detail)
    }
}

impl fmt::Display for HistoryFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "history file {}: {}", self.path.display(), self.detail)
    }
}

impl std::error::Error for HistoryFileError {}

struct State {
    /// The network the entries belong to; `None` until one is observed.
    network: Option<NetworkId>,
    addresses: HashMap<IpAddr, AddressEntry>,
    hosts: HashMap<(HostName, u16), HostEntry>,
    /// When expired entries were last swept out.
    swept: Instant,
}

#[derive(Debug, Clone, Copy)]
struct AddressEntry {
    rtt: Option<Rtt>,
    /// A round trip at least this long, from an attempt cancelled before
    /// its TCP handshake completed (it lost to a faster path); cleared by
    /// the next success.
    slow: Option<Duration>,
    successes: u32,
    failures: u32,
    last_success: Option<Instant>,
    updated: Instant,
}

/// RFC 6298 §2's estimator state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rtt {
    srtt: Duration,
    rttvar: Duration,
}

#[derive(Debug, Clone)]
struct HostEntry {
    /// Views taken, for the exploring one.
    views: u64,
    families: PerFamily<FamilyState>,
    /// Last view or record.
    touched: Instant,
}

#[derive(Debug, Clone, Copy, Default)]
struct FamilyState {
    /// Failures since the family's last success.
    consecutive_failures: u32,
    last_success: Option<Instant>,
    /// Last success or failure.
    updated: Option<Instant>,
}

/// Whether `at` is less than `ttl` before `now`.
fn fresh(at: Instant, now: Instant, ttl: Duration) -> bool {
    now.saturating_duration_since(at) < ttl
}

fn nanos(d: Duration) -> u128 {
    d.as_nanos()
}

fn from_nanos(n: u128) -> Duration {
    Duration::from_nanos(u64::try_from(n).unwrap_or(u64::MAX))
}

impl Rtt {
    /// RFC 6298 (2.2): the first measurement R gives SRTT = R, RTTVAR = R/2.
    fn first(r: Duration) -> Rtt {
        Rtt { srtt: r, rttvar: r / 2 }
    }

    /// RFC 6298 (2.3), α = 1/8 and β = 1/4, RTTVAR updated with the old SRTT:
    /// RTTVAR = 3/4·RTTVAR + 1/4·|SRTT − R|, then SRTT = 7/8·SRTT + 1/8·R.
    fn update(self, r: Duration) -> Rtt {
        let (srtt, rttvar, r) = (nanos(self.srtt), nanos(self.rttvar), nanos(r));
        Rtt {
            rttvar: from_nanos((3 * rttvar + srtt.abs_diff(r)) / 4),
            srtt: from_nanos((7 * srtt + r) / 8),
        }
    }

    /// RFC 6298's RTO, SRTT + max(G, 4·RTTVAR): when the first SYN would
    /// be sent again, which is when the draft (§6) wants the next attempt.
    fn rto(self) -> Duration {
        self.srtt
            .saturating_add(CLOCK_GRANULARITY.max(self.rttvar.saturating_mul(4)))
    }
}

impl AddressEntry {
    fn new(now: Instant) -> AddressEntry {
        AddressEntry {
            rtt: None,
            slow: None,
            successes: 0,
            failures: 0,
            last_success: None,
            updated: now,
        }
    }

    /// The RTT estimate, if a success is recent enough to trust it.
    fn live_rtt(&self, now: Instant, ttl: Duration) -> Option<Rtt> {
        self.rtt
            .filter(|_| self.last_success.is_some_and(|t| fresh(t, now, ttl)))
    }
}

impl HostEntry {
    fn new(now: Instant) -> HostEntry {
        HostEntry {
            views: 0,
            families: PerFamily::default(),
            touched: now,
        }
    }

    /// A family's state, or the empty one if it expired.
    fn family(&self, family: Family, now: Instant, ttl: Duration) -> FamilyState {
        let state = *self.families.get(family);
        match state.updated {
            Some(t) if fresh(t, now, ttl) => state,
            _ => FamilyState::default(),
        }
    }

    /// The family failing for this host: [`FAILING_AFTER`] or more
    /// failures in a row (the latest within the TTL, none followed by a
    /// success), while the other family has a success within the TTL and
    /// is not failing itself. At most one family answers: the other must
    /// have fewer failures in a row.
    fn failing(&self, now: Instant, ttl: Duration) -> Option<Family> {
        [Family::V6, Family::V4].into_iter().find(|&family| {
            let this = self.family(family, now, ttl);
            let other = self.family(family.other(), now, ttl);
            this.consecutive_failures >= FAILING_AFTER
                && other.consecutive_failures < FAILING_AFTER
                && other.last_success.is_some_and(|t| fresh(t, now, ttl))
        })
    }

    /// Resets an expired family state before it is written.
    fn family_mut(&mut self, family: Family, now: Instant, ttl: Duration) -> &mut FamilyState {
        let state = self.families.get_mut(family);
        if !state.updated.is_some_and(|t| fresh(t, now, ttl)) {
            *state = FamilyState::default();
        }
        state
    }
}

/// Makes room for one more entry in `map`, bounded by `cap`: drops the
/// expired entries, then, if still full, the least recently updated ones,
/// a sixteenth of `cap` beyond what is needed so that the sort is paid
/// once per many inserts rather than on each.
fn make_room<K: Eq + Hash + Clone, V>(
    map: &mut HashMap<K, V>,
    cap: usize,
    updated: impl Fn(&V) -> Instant,
    now: Instant,
    ttl: Duration,
) {
    if map.len() < cap {
        return;
    }
    map.retain(|_, v| fresh(updated(v), now, ttl));
    trim(map, cap.saturating_sub(1 + cap / 16), updated);
}

/// Drops the least recently updated entries of `map` until at most `keep`
/// are left.
fn trim<K: Eq + Hash + Clone, V>(map: &mut HashMap<K, V>, keep: usize, updated: impl Fn(&V) -> Instant) {
    if map.len() <= keep {
        return;
    }
    let evict = map.len() - keep;
    let mut ages: Vec<(Instant, K)> = map.iter().map(|(k, v)| (updated(v), k.clone())).collect();
    ages.select_nth_unstable_by_key(evict - 1, |(t, _)| *t);
    for (_, key) in &ages[..evict] {
        map.remove(key);
    }
}

impl State {
    fn new(now: Instant) -> State {
        State {
            network: None,
            addresses: HashMap::new(),
            hosts: HashMap::new(),
            swept: now,
        }
    }

    /// Drops expired entries, at most once per TTL.
    fn sweep(&mut self, now: Instant, ttl: Duration) {
        if now.saturating_duration_since(self.swept) < ttl {
            return;
        }
        self.swept = now;
        self.addresses.retain(|_, e| fresh(e.updated, now, ttl));
        self.hosts.retain(|_, e| fresh(e.touched, now, ttl));
    }

    /// The entry of `ip`, made (and room made for it) if missing, reset if
    /// expired.
    fn address_mut(&mut self, ip: IpAddr, config: &HistoryConfig, now: Instant) -> &mut AddressEntry {
        if !self.addresses.contains_key(&ip) {
            make_room(
                &mut self.addresses,
                config.max_addresses,
                |e| e.updated,
                now,
                config.ttl,
            );
        }
        let entry = self.addresses.entry(ip).or_insert_with(|| AddressEntry::new(now));
        if !fresh(entry.updated, now, config.ttl) {
            *entry = AddressEntry::new(now);
        }
        entry.updated = now;
        entry
    }

    /// The entry of `host:port`, made (and room made for it) if missing,
    /// touched.
    fn host_mut(&mut self, host: &HostName, port: u16, config: &HistoryConfig, now: Instant) -> &mut HostEntry {
        let key = (host.clone(), port);
        if !self.hosts.contains_key(&key) {
            make_room(&mut self.hosts, config.max_hosts, |e| e.touched, now, config.ttl);
        }
        let entry = self.hosts.entry(key).or_insert_with(|| HostEntry::new(now));
        if !fresh(entry.touched, now, config.ttl) {
            *entry = HostEntry::new(now);
        }
        entry.touched = now;
        entry
    }
}

impl History {
    /// An empty history.
    pub fn new(config: HistoryConfig) -> History {
        History {
            config,
            state: Arc::new(Mutex::new(State::new(Instant::now()))),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while the lock is held; if something did, the
        // tables are still well-formed, only perhaps missing an update.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether anything is recorded at all.
    fn enabled(&self) -> bool {
        !self.config.ttl.is_zero() && self.config.max_addresses > 0 && self.config.max_hosts > 0
    }

    /// Tells the history which network the host is on (call it with
    /// `NetworkWatch::current()` before each [`view`](Self::view)). When
    /// the id differs from the one the entries belong to, every entry is
    /// dropped; returns whether that happened. Entries recorded before any
    /// network was observed (or loaded from a file that named none) are
    /// taken to belong to the first network observed.
    pub fn observe_network(&self, id: NetworkId) -> bool {
        let mut state = self.lock();
        match state.network {
            Some(current) if current == id => false,
            None => {
                state.network = Some(id);
                false
            }
            Some(_) => {
                state.network = Some(id);
                state.addresses.clear();
                state.hosts.clear();
                true
            }
        }
    }

    #[cfg(test)]
    /// The network the entries belong to, once one was observed or loaded.
    pub fn network(&self) -> Option<NetworkId> {
        self.lock().network
    }

    #[cfg(test)]
    /// How many destination addresses are held (expired ones not yet swept
    /// out included).
    pub fn address_count(&self) -> usize {
        self.lock().addresses.len()
    }

    #[cfg(test)]
    /// How many host:port entries are held (as [`address_count`](Self::address_count)).
    pub fn host_count(&self) -> usize {
        self.lock().hosts.len()
    }

    /// The view one race of `host:port` uses. Counts the view: every
    /// [`HistoryConfig::explore_every`]th one explores.
    pub fn view(&self, host: &HostName, port: u16) -> HistoryView {
        let mut view = HistoryView {
            history: self.clone(),
            explore: false,
            failing: None,
        };
        if !self.enabled() {
            return view;
        }
        let now = Instant::now();
        let mut state = self.lock();
        state.sweep(now, self.config.ttl);
        let entry = state.host_mut(host, port, &self.config, now);
        entry.views = entry.views.wrapping_add(1);
        let every = u64::from(self.config.explore_every);
        view.explore = every > 0 && entry.views.is_multiple_of(every);
        if !view.explore {
            view.failing = entry.failing(now, self.config.ttl);
        }
        view
    }

    /// Records that a TCP connect to `addr`, for `host:port`, succeeded
    /// after `tcp_rtt` (SYN sent to SYN-ACK received, as near as the
    /// caller can tell: the time `connect` took).
    pub fn record_success(&self, host: &HostName, port: u16, addr: SocketAddr, tcp_rtt: Duration) {
        if !self.enabled() {
            return;
        }
        let (config, now) = (self.config, Instant::now());
        let mut state = self.lock();
        state.sweep(now, config.ttl);
        let entry = state.address_mut(addr.ip(), &config, now);
        entry.rtt = Some(match entry.live_rtt(now, config.ttl) {
            // A round trip four times shorter than the estimate is a new
            // path (a repaired route, a recovered family): the estimate
            // starts over instead of taking a dozen samples to follow.
            Some(rtt) if tcp_rtt < rtt.srtt / 4 => Rtt::first(tcp_rtt),
            Some(rtt) => rtt.update(tcp_rtt),
            None => Rtt::first(tcp_rtt),
        });
        entry.slow = None;
        entry.successes = entry.successes.saturating_add(1);
        entry.last_success = Some(now);
        let family = state
            .host_mut(host, port, &config, now)
            .family_mut(Family::of(addr), now, config.ttl);
        family.consecutive_failures = 0;
        family.last_success = Some(now);
        family.updated = Some(now);
    }

    /// Records that a TCP connect to `addr`, for `host:port`, failed:
    /// refused, unreachable, or timed out. Only the transport's failures
    /// say something about the address and its family; the caller does not
    /// record TLS or application failures (the path worked), nor attempts
    /// cancelled because another won (nothing was learned).
    pub fn record_failure(&self, host: &HostName, port: u16, addr: SocketAddr) {
        if !self.enabled() {
            return;
        }
        let (config, now) = (self.config, Instant::now());
        let mut state = self.lock();
        state.sweep(now, config.ttl);
        let entry = state.address_mut(addr.ip(), &config, now);
        entry.failures = entry.failures.saturating_add(1);
        let family = state
            .host_mut(host, port, &config, now)
            .family_mut(Family::of(addr), now, config.ttl);
        family.consecutive_failures = family.consecutive_failures.saturating_add(1);
        family.updated = Some(now);
    }

    /// Records that an attempt to `addr` ran `at_least` without completing
    /// its TCP handshake before the race was won elsewhere: its round trip
    /// is at least that. A censored sample, kept apart from the RTT
    /// estimate; it makes [`HistoryView::srtt`] no lower, so that a family
    /// much slower than the other goes second next time. Neither a success
    /// nor a failure.
    pub fn record_slow(&self, addr: SocketAddr, at_least: Duration) {
        if !self.enabled() {
            return;
        }
        let (config, now) = (self.config, Instant::now());
        let mut state = self.lock();
        state.sweep(now, config.ttl);
        let entry = state.address_mut(addr.ip(), &config, now);
        entry.slow = Some(entry.slow.map_or(at_least, |s| s.max(at_least)));
    }

    /// Reads a history saved by [`save`](Self::save). A missing file is an
    /// empty history; a file that is not a history (bad JSON, another
    /// version, a bad host name, over 32 MiB) is an `InvalidData` error
    /// naming the file, and the caller decides whether to go on without.
    ///
    /// Timestamps are wall-clock in the file and become ages again, so an
    /// entry saved 8 minutes before a restart expires 2 minutes after it
    /// (with the default TTL); entries already expired are not loaded, nor
    /// those older than the monotonic clock can express (a host that booted
    /// less than their age ago). The file's network is kept: its entries
    /// are dropped by the first [`observe_network`](Self::observe_network)
    /// naming another network. Entries over the capacity are dropped
    /// oldest first.
    pub fn load(path: &Path, config: HistoryConfig) -> io::Result<History> {
        History::load_at(path, config, SystemTime::now())
    }

    fn load_at(path: &Path, config: HistoryConfig, wall_now: SystemTime) -> io::Result<History> {
        let text = match read_bounded(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(History::new(config)),
            Err(e) => return Err(e),
        };
        let file: HistoryFile = serde_json::from_str(&text).map_err(|e| HistoryFileError::corrupt(path, e))?;
        let history = History::new(config);
        history
            .restore(file, Instant::now(), wall_now)
            .map_err(|e| HistoryFileError::corrupt(path, e))?;
        Ok(history)
    }

    /// Writes the history to `path`, as JSON, through a temporary file in
    /// the same directory renamed over it, so that a crash leaves the old
    /// file or the new one, never half of one. The file is readable by its
    /// owner only (on Unix): it lists the hosts this gateway talks to.
    ///
    /// This is blocking I/O: call it from `spawn_blocking` or at shutdown.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        self.save_at(path, SystemTime::now())
    }

    fn save_at(&self, path: &Path, wall_now: SystemTime) -> io::Result<()> {
        // The lock is held only to copy the tables, not for the I/O.
        let file = self.to_file(Instant::now(), wall_now);
        let json = serde_json::to_vec(&file).map_err(|e| HistoryFileError::io(path, io::ErrorKind::Other, e))?;
        let tmp = temp_path(path)?;
        let written = write_file(&tmp, &json).and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(HistoryFileError::io(path, e.kind(), e));
        }
        Ok(())
    }

    /// The tables as the file holds them, sorted so that saves diff well.
    fn to_file(&self, now: Instant, wall_now: SystemTime) -> HistoryFile {
        let ttl = self.config.ttl;
        let wall = |t: Instant| to_wall(t, now, wall_now);
        let state = self.lock();
        let mut addresses: Vec<FileAddress> = state
            .addresses
            .iter()
            .filter(|(_, e)| fresh(e.updated, now, ttl))
            .map(|(ip, e)| FileAddress {
                ip: *ip,
                srtt_ns: e.rtt.map(|r| duration_ns(r.srtt)),
                slow_ns: e.slow.map(duration_ns),
                rttvar_ns: e.rtt.map(|r| duration_ns(r.rttvar)),
                successes: e.successes,
                failures: e.failures,
                last_success: e.last_success.map(wall),
                updated: wall(e.updated),
            })
            .collect();
        addresses.sort_by_key(|a| a.ip);
        let family = |f: &FamilyState| FileFamily {
            consecutive_failures: f.consecutive_failures,
            last_success: f.last_success.map(wall),
            updated: f.updated.map(wall),
        };
        let mut hosts: Vec<FileHost> = state
            .hosts
            .iter()
            .filter(|(_, e)| fresh(e.touched, now, ttl))
            .map(|((host, port), e)| FileHost {
                host: host.as_str().to_string(),
                port: *port,
                v6: family(&e.families.v6),
                v4: family(&e.families.v4),
                touched: wall(e.touched),
            })
            .collect();
        hosts.sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
        HistoryFile {
            version: FILE_VERSION,
            network: state.network.map(|n| n.to_string()),
            addresses,
            hosts,
        }
    }

    /// Fills an empty history from a file's contents.
    fn restore(&self, file: HistoryFile, now: Instant, wall_now: SystemTime) -> Result<(), String> {
        if file.version != FILE_VERSION {
            return Err(format!("version {} (this build reads {FILE_VERSION})", file.version));
        }
        let network = match file.network {
            None => None,
            Some(hex) => Some(NetworkId(
                u64::from_str_radix(&hex, 16).map_err(|_| format!("`{hex}` is not a network id"))?,
            )),
        };
        let ttl = self.config.ttl;
        // An instant within the TTL, or None (expired, or not expressible).
        let instant = |secs: f64| from_wall(secs, now, wall_now).filter(|t| fresh(*t, now, ttl));
        let mut state = self.lock();
        state.network = network;
        for a in file.addresses {
            let Some(updated) = instant(a.updated) else { continue };
            let rtt = match (a.srtt_ns, a.rttvar_ns) {
                (Some(s), Some(v)) => Some(Rtt {
                    srtt: Duration::from_nanos(s),
                    rttvar: Duration::from_nanos(v),
                }),
                (None, None) => None,
                _ => return Err(format!("{}: an RTT without its variance", a.ip)),
            };
            let entry = AddressEntry {
                slow: a.slow_ns.map(Duration::from_nanos),
                rtt,
                successes: a.successes,
                failures: a.failures,
                last_success: a.last_success.and_then(instant),
                updated,
            };
            state.addresses.insert(a.ip, entry);
        }
        for h in file.hosts {
            let host: HostName = h.host.parse().map_err(|e| format!("host `{}`: {e}", h.host))?;
            let Some(touched) = instant(h.touched) else { continue };
            let family = |f: &FileFamily| FamilyState {
                consecutive_failures: f.consecutive_failures,
                last_success: f.last_success.and_then(instant),
                updated: f.updated.and_then(instant),
            };
            let entry = HostEntry {
                views: 0,
                families: PerFamily {
                    v6: family(&h.v6),
                    v4: family(&h.v4),
                },
                touched,
            };
            state.hosts.insert((host, h.port), entry);
        }
        trim(&mut state.addresses, self.config.max_addresses, |e| e.updated);
        trim(&mut state.hosts, self.config.max_hosts, |e| e.touched);
        Ok(())
    }
}

impl fmt::Debug for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("History")
            .field("config", &self.config)
            .field("network", &state.network)
            .field("addresses", &state.addresses.len())
            .field("hosts", &state.hosts.len())
            .finish()
    }
}

impl HistoryView {
    /// Whether this view explores: it then answers as if there were no
    /// history.
    pub fn explore(&self) -> bool {
        self.explore
    }

    /// What the history holds for `ip`, unless it expired or the view
    /// explores.
    pub fn address(&self, ip: IpAddr) -> Option<AddressStats> {
        if self.explore {
            return None;
        }
        let (ttl, now) = (self.history.config.ttl, Instant::now());
        let state = self.history.lock();
        let entry = state.addresses.get(&ip).filter(|e| fresh(e.updated, now, ttl))?;
        let rtt = entry.live_rtt(now, ttl);
        Some(AddressStats {
            srtt: rtt.map(|r| r.srtt),
            rttvar: rtt.map(|r| r.rttvar),
            successes: entry.successes,
            failures: entry.failures,
            since_success: entry
                .last_success
                .filter(|t| fresh(*t, now, ttl))
                .map(|t| now.saturating_duration_since(t)),
            since_update: now.saturating_duration_since(entry.updated),
        })
    }

    /// The smoothed TCP connect RTT to `ip`, for the draft's "prefer lower
    /// RTT" sorting rule.
    /// An address that lost a race before its TCP completed answers at
    /// least the time it ran ([`History::record_slow`]).
    pub fn srtt(&self, ip: IpAddr) -> Option<Duration> {
        if self.explore {
            return None;
        }
        let slow = {
            let (ttl, now) = (self.history.config.ttl, Instant::now());
            let state = self.history.lock();
            state
                .addresses
                .get(&ip)
                .filter(|e| fresh(e.updated, now, ttl))
                .and_then(|e| e.slow)
        };
        let srtt = self.address(ip).and_then(|a| a.srtt);
        match (srtt, slow) {
            (Some(srtt), Some(slow)) => Some(srtt.max(slow)),
            (srtt, slow) => srtt.or(slow),
        }
    }

    /// Whether a TCP connect to `ip` succeeded within the TTL, for the
    /// draft's "prefer used addresses" rule.
    pub fn used(&self, ip: IpAddr) -> bool {
        self.address(ip).is_some_and(|a| a.since_success.is_some())
    }

    /// The family that keeps failing for this host:port while the other
    /// works: [`FAILING_AFTER`] or more TCP failures in a row, the latest
    /// within the TTL and no success since, while the other family had a
    /// success within the TTL and fewer than [`FAILING_AFTER`] failures
    /// since it. `None` when exploring.
    pub fn failing_family(&self) -> Option<Family> {
        self.failing
    }

    /// The Connection Attempt Delay after starting an attempt to `ip`: the
    /// RTO estimate from its RTT history (SRTT + max(G, 4·RTTVAR), see
    /// [`CLOCK_GRANULARITY`]), within [`MIN_ATTEMPT_DELAY`] and
    /// [`MAX_ATTEMPT_DELAY`]; `configured`, unchanged, when there is no RTT
    /// for `ip` or the view explores.
    pub fn attempt_delay(&self, ip: IpAddr, configured: Duration) -> Duration {
        if self.explore {
            return configured;
        }
        let (ttl, now) = (self.history.config.ttl, Instant::now());
        let state = self.history.lock();
        let rtt = state
            .addresses
            .get(&ip)
            .filter(|e| fresh(e.updated, now, ttl))
            .and_then(|e| e.live_rtt(now, ttl));
        match rtt {
            Some(rtt) => rtt.rto().clamp(MIN_ATTEMPT_DELAY, MAX_ATTEMPT_DELAY),
            None => configured,
        }
    }
}

impl fmt::Debug for HistoryView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HistoryView")
            .field("explore", &self.explore)
            .field("failing", &self.failing)
            .finish_non_exhaustive()
    }
}

/// The file: `{"version":1,"network":"…","addresses":[…],"hosts":[…]}`.
/// Timestamps are seconds since the Unix epoch (wall clock, fractional).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryFile {
    version: u32,
    /// The [`NetworkId`] in hex, or null.
    network: Option<String>,
    addresses: Vec<FileAddress>,
    hosts: Vec<FileHost>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAddress {
    ip: IpAddr,
    srtt_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    slow_ns: Option<u64>,
    rttvar_ns: Option<u64>,
    successes: u32,
    failures: u32,
    last_success: Option<f64>,
    updated: f64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHost {
    host: String,
    port: u16,
    v6: FileFamily,
    v4: FileFamily,
    touched: f64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFamily {
    consecutive_failures: u32,
    last_success: Option<f64>,
    updated: Option<f64>,
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// `t` as wall-clock seconds since the epoch, `now` being `wall_now`.
fn to_wall(t: Instant, now: Instant, wall_now: SystemTime) -> f64 {
    let wall = wall_now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    wall - now.saturating_duration_since(t).as_secs_f64()
}

/// The instant of wall-clock `secs`, `now` being `wall_now`: a time in the
/// future (the clock was set back) is now; one further back than the
/// monotonic clock reaches is `None`.
fn from_wall(secs: f64, now: Instant, wall_now: SystemTime) -> Option<Instant> {
    let wall = wall_now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    let age = Duration::try_from_secs_f64((wall - secs).max(0.0)).ok()?;
    now.checked_sub(age)
}

fn read_bounded(path: &Path) -> io::Result<String> {
    use std::io::Read;
    // The kind is kept (the caller tells a missing file by it); the path
    // is added.
    let file = std::fs::File::open(path).map_err(|e| HistoryFileError::io(path, e.kind(), e))?;
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData => HistoryFileError::corrupt(path, "not UTF-8"),
            kind => HistoryFileError::io(path, kind, e),
        })?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(HistoryFileError::corrupt(
            path,
            format!("larger than {MAX_FILE_BYTES} bytes"),
        ));
    }
    Ok(text)
}

/// A temporary name next to `path`, unique within the process and among
/// processes, so that concurrent saves do not write into one file.
fn temp_path(path: &Path) -> io::Result<PathBuf> {
    static SAVES: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| HistoryFileError::io(path, io::ErrorKind::InvalidInput, "names no file"))?;
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        SAVES.fetch_add(1, Ordering::Relaxed)
    ));
    Ok(path.with_file_name(tmp))
}

fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    // On disk before the rename makes it the history.
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    const MS: Duration = Duration::from_millis(1);

    fn host(name: &str) -> HostName {
        name.parse().unwrap()
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A config that never explores, for tests of everything else.
    fn steady() -> HistoryConfig {
        HistoryConfig {
            explore_every: 0,
            ..HistoryConfig::default()
        }
    }

    #[test]
    fn is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<History>();
        check::<HistoryView>();
    }

    #[tokio::test(start_paused = true)]
    async fn rtt_follows_rfc_6298() {
        let h = History::new(steady());
        let (name, a) = (host("rtt.test"), sa("192.0.2.1:443"));
        let view = h.view(&name, 443);

        h.record_success(&name, 443, a, 100 * MS);
        let s = view.address(a.ip()).unwrap();
        assert_eq!((s.srtt, s.rttvar), (Some(100 * MS), Some(50 * MS)));

        // RTTVAR = 3/4·50 + 1/4·|100 − 200| = 62.5; SRTT = 7/8·100 + 1/8·200 = 112.5.
        h.record_success(&name, 443, a, 200 * MS);
        let s = view.address(a.ip()).unwrap();
        assert_eq!(s.srtt, Some(Duration::from_micros(112_500)));
        assert_eq!(s.rttvar, Some(Duration::from_micros(62_500)));

        // RTTVAR = 3/4·62.5 + 1/4·|112.5 − 50| = 62.5; SRTT = 7/8·112.5 + 1/8·50.
        h.record_success(&name, 443, a, 50 * MS);
        let s = view.address(a.ip()).unwrap();
        assert_eq!(s.srtt, Some(Duration::from_nanos(104_687_500)));
        assert_eq!(s.rttvar, Some(Duration::from_micros(62_500)));
        assert_eq!(s.successes, 3);
        assert_eq!(view.srtt(a.ip()), s.srtt);

        // RTO = SRTT + 4·RTTVAR.
        assert_eq!(view.attempt_delay(a.ip(), 250 * MS), Duration::from_nanos(354_687_500));
    }

    #[tokio::test(start_paused = true)]
    async fn attempt_delay_is_clamped_and_falls_back() {
        let h = History::new(steady());
        let name = host("delay.test");
        let (fast, slow, steady_ip, unknown) = (
            sa("192.0.2.1:1"),
            sa("192.0.2.2:1"),
            sa("[2001:db8::1]:1"),
            ip("192.0.2.99"),
        );
        h.record_success(&name, 1, fast, MS);
        h.record_success(&name, 1, slow, Duration::from_secs(3));
        // A perfectly steady RTT: RTTVAR decays below G/4, so G counts.
        for _ in 0..30 {
            h.record_success(&name, 1, steady_ip, 150 * MS);
        }
        let view = h.view(&name, 1);
        assert_eq!(view.attempt_delay(fast.ip(), 250 * MS), MIN_ATTEMPT_DELAY);
        assert_eq!(view.attempt_delay(slow.ip(), 250 * MS), MAX_ATTEMPT_DELAY);
        assert_eq!(view.attempt_delay(steady_ip.ip(), 250 * MS), 151 * MS);
        // No history: the configured delay, unclamped.
        assert_eq!(view.attempt_delay(unknown, 250 * MS), 250 * MS);
        assert_eq!(view.attempt_delay(unknown, 30 * MS), 30 * MS);
        // Failures alone give no RTT.
        h.record_failure(&name, 1, SocketAddr::new(unknown, 1));
        assert_eq!(view.attempt_delay(unknown, 250 * MS), 250 * MS);
        assert_eq!(view.srtt(unknown), None);
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_the_ttl() {
        let config = HistoryConfig {
            ttl: Duration::from_secs(60),
            ..steady()
        };
        let h = History::new(config);
        let (name, a) = (host("ttl.test"), sa("192.0.2.1:443"));
        h.record_success(&name, 443, a, 40 * MS);
        advance(Duration::from_secs(59)).await;
        let view = h.view(&name, 443);
        assert_eq!(view.srtt(a.ip()), Some(40 * MS));
        assert!(view.used(a.ip()));
        advance(Duration::from_secs(1)).await;
        assert_eq!(view.address(a.ip()), None);
        assert!(!view.used(a.ip()));
        assert_eq!(view.attempt_delay(a.ip(), 250 * MS), 250 * MS);

        // A new sample after expiry starts the estimator afresh.
        h.record_success(&name, 443, a, 80 * MS);
        let s = h.view(&name, 443).address(a.ip()).unwrap();
        assert_eq!((s.srtt, s.rttvar, s.successes), (Some(80 * MS), Some(40 * MS), 1));

        // Expired entries are swept out, not only ignored.
        h.record_success(&name, 443, sa("192.0.2.2:443"), 80 * MS);
        assert_eq!(h.address_count(), 2);
        advance(Duration::from_secs(61)).await;
        h.view(&host("other.test"), 443);
        assert_eq!(h.address_count(), 0);
        assert_eq!(h.host_count(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn capacity_holds_and_drops_the_oldest() {
        let h = History::new(steady());
        let addr = |i: u32| SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i)), 443);
        let name = |i: u32| host(&format!("h{i}.test"));
        for i in 0..10_000 {
            h.record_success(&name(i), 443, addr(i), 10 * MS);
            assert!(h.address_count() <= 4096 && h.host_count() <= 4096);
            advance(MS).await;
        }
        let view = h.view(&name(9_999), 443);
        assert!((9_000..10_000).all(|i| view.used(addr(i).ip())));
        assert!((0..5_000).all(|i| !view.used(addr(i).ip())));
        assert!(h.address_count() > 3_000);

        // Hosts are bounded too, views included.
        for i in 0..10_000 {
            h.view(&host(&format!("v{i}.test")), 1);
        }
        assert!(h.host_count() <= 4096);
    }

    #[tokio::test(start_paused = true)]
    async fn failing_family_needs_failures_and_a_working_other() {
        let h = History::new(steady());
        let name = host("fail.test");
        let (v6, v4) = (sa("[2001:db8::1]:443"), sa("192.0.2.1:443"));
        let failing = || h.view(&name, 443).failing_family();

        // IPv6 fails twice, but IPv4 never worked: nothing to prefer.
        h.record_failure(&name, 443, v6);
        h.record_failure(&name, 443, v6);
        assert_eq!(failing(), None);
        h.record_success(&name, 443, v4, 20 * MS);
        assert_eq!(failing(), Some(Family::V6));
        // Another port is another entry.
        assert_eq!(h.view(&name, 80).failing_family(), None);

        // One IPv6 success clears it; one failure is not enough.
        h.record_success(&name, 443, v6, 20 * MS);
        assert_eq!(failing(), None);
        h.record_failure(&name, 443, v6);
        assert_eq!(failing(), None);
        h.record_failure(&name, 443, v6);
        assert_eq!(failing(), Some(Family::V6));

        // IPv4 failing too: neither is preferred.
        h.record_failure(&name, 443, v4);
        h.record_failure(&name, 443, v4);
        assert_eq!(failing(), None);
        // IPv6 recovers: now IPv4 is the failing one.
        h.record_success(&name, 443, v6, 20 * MS);
        assert_eq!(failing(), Some(Family::V4));

        // It all expires.
        advance(HistoryConfig::default().ttl).await;
        assert_eq!(failing(), None);
        h.record_failure(&name, 443, v4);
        h.record_success(&name, 443, v6, 20 * MS);
        assert_eq!(failing(), None, "the old IPv4 failures do not count");
    }

    #[tokio::test(start_paused = true)]
    async fn every_nth_view_explores() {
        let h = History::new(HistoryConfig {
            explore_every: 4,
            ..HistoryConfig::default()
        });
        let name = host("explore.test");
        let (v6, v4) = (sa("[2001:db8::1]:443"), sa("192.0.2.1:443"));
        h.record_success(&name, 443, v4, 30 * MS);
        h.record_failure(&name, 443, v6);
        h.record_failure(&name, 443, v6);
        let explored: Vec<bool> = (1..=12).map(|_| h.view(&name, 443).explore()).collect();
        assert_eq!(
            explored,
            [
                false, false, false, true, false, false, false, true, false, false, false, true
            ]
        );
        // Counters are per host:port.
        assert!(!h.view(&name, 80).explore());

        let normal = h.view(&name, 443);
        assert!(!normal.explore());
        assert_eq!(normal.failing_family(), Some(Family::V6));
        assert!(normal.used(v4.ip()));
        for _ in 0..2 {
            h.view(&name, 443);
        }
        let exploring = h.view(&name, 443);
        assert!(exploring.explore());
        assert_eq!(exploring.srtt(v4.ip()), None);
        assert!(!exploring.used(v4.ip()));
        assert_eq!(exploring.failing_family(), None);
        assert_eq!(exploring.attempt_delay(v4.ip(), 250 * MS), 250 * MS);

        // 0 never explores, 1 always does.
        let never = History::new(steady());
        assert!((0..100).all(|_| !never.view(&name, 443).explore()));
        let always = History::new(HistoryConfig {
            explore_every: 1,
            ..HistoryConfig::default()
        });
        assert!((0..5).all(|_| always.view(&name, 443).explore()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_network_flushes() {
        let h = History::new(steady());
        let (name, a) = (host("net.test"), sa("192.0.2.1:443"));
        // The first network observed adopts what was recorded before.
        h.record_success(&name, 443, a, 30 * MS);
        assert!(!h.observe_network(NetworkId(1)));
        assert_eq!(h.network(), Some(NetworkId(1)));
        assert!(h.view(&name, 443).used(a.ip()));
        assert!(!h.observe_network(NetworkId(1)));
        assert!(h.view(&name, 443).used(a.ip()));

        assert!(h.observe_network(NetworkId(2)));
        assert_eq!((h.address_count(), h.host_count()), (0, 0));
        assert!(!h.view(&name, 443).used(a.ip()));
        // Going back does not bring the old entries back.
        assert!(h.observe_network(NetworkId(1)));
        assert_eq!(h.view(&name, 443).srtt(a.ip()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn used_means_a_recent_success() {
        let h = History::new(steady());
        let name = host("used.test");
        let (good, bad) = (sa("192.0.2.1:443"), sa("192.0.2.2:443"));
        h.record_success(&name, 443, good, 30 * MS);
        h.record_failure(&name, 443, bad);
        let view = h.view(&host("another-name.test"), 8443);
        // Per address: another host name and port on the same IP count.
        assert!(view.used(good.ip()));
        assert!(!view.used(bad.ip()));
        assert!(!view.used(ip("192.0.2.3")));
        let s = view.address(bad.ip()).unwrap();
        assert_eq!((s.successes, s.failures, s.srtt, s.since_success), (0, 1, None, None));
        // A failure after the success keeps it used.
        h.record_failure(&name, 443, good);
        assert!(view.used(good.ip()));
    }

    #[tokio::test(start_paused = true)]
    async fn ttl_zero_records_nothing() {
        let h = History::new(HistoryConfig {
            ttl: Duration::ZERO,
            ..steady()
        });
        let (name, a) = (host("off.test"), sa("192.0.2.1:443"));
        h.record_success(&name, 443, a, 30 * MS);
        h.record_failure(&name, 443, a);
        assert_eq!((h.address_count(), h.host_count()), (0, 0));
        assert_eq!(h.view(&name, 443).attempt_delay(a.ip(), 250 * MS), 250 * MS);
    }

    /// A path under the temp dir no other test or run uses.
    fn temp_file(tag: &str) -> PathBuf {
        static N: AtomicU64 = AtomicU64::new(0);
        std::env::temp_dir().join(format!(
            "wsgate-history-{tag}-{}-{}.json",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
    }

    fn close(a: Option<Duration>, b: Option<Duration>) -> bool {
        match (a, b) {
            (Some(a), Some(b)) => a.abs_diff(b) < MS,
            (None, None) => true,
            _ => false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn save_and_load_keep_rtts_and_ages() {
        let path = temp_file("roundtrip");
        let h = History::new(steady());
        h.observe_network(NetworkId(0xfeed));
        let name = host("save.test");
        let (v6, v4) = (sa("[2001:db8::1]:443"), sa("192.0.2.1:443"));
        h.record_success(&name, 443, v4, 30 * MS);
        h.record_success(&name, 443, v4, 50 * MS);
        advance(Duration::from_secs(30)).await;
        h.record_failure(&name, 443, v6);
        h.record_failure(&name, 443, v6);
        advance(Duration::from_secs(10)).await;

        let wall = SystemTime::now();
        h.save_at(&path, wall).unwrap();
        let before = h.view(&name, 443);
        // A restart 5 minutes later: the entries aged meanwhile.
        let later = Duration::from_secs(300);
        let loaded = History::load_at(&path, steady(), wall + later).unwrap();
        let after = loaded.view(&name, 443);
        assert_eq!(loaded.network(), Some(NetworkId(0xfeed)));
        for a in [v6.ip(), v4.ip()] {
            let (b, l) = (before.address(a).unwrap(), after.address(a).unwrap());
            assert_eq!((l.srtt, l.rttvar), (b.srtt, b.rttvar));
            assert_eq!((l.successes, l.failures), (b.successes, b.failures));
            assert!(close(l.since_success, b.since_success.map(|d| d + later)));
            assert!(close(Some(l.since_update), Some(b.since_update + later)));
        }
        assert!(close(
            Some(after.address(v4.ip()).unwrap().since_update),
            Some(Duration::from_secs(340))
        ));
        assert_eq!(after.failing_family(), Some(Family::V6));
        assert_eq!(
            after.attempt_delay(v4.ip(), 250 * MS),
            before.attempt_delay(v4.ip(), 250 * MS)
        );

        // Restarted after the TTL: nothing left.
        let expired = History::load_at(&path, steady(), wall + Duration::from_secs(600)).unwrap();
        assert_eq!((expired.address_count(), expired.host_count()), (0, 0));

        // Loaded on another network: dropped at the first observation.
        assert!(loaded.observe_network(NetworkId(0xbeef)));
        assert_eq!(loaded.address_count(), 0);

        // Through the public pair, with the real clock.
        h.save(&path).unwrap();
        let again = History::load(&path, steady()).unwrap();
        assert_eq!(again.view(&name, 443).srtt(v4.ip()), before.srtt(v4.ip()));
        std::fs::remove_file(&path).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn loading_trims_to_capacity() {
        let path = temp_file("trim");
        let h = History::new(steady());
        for i in 0..10u8 {
            h.record_success(&host("trim.test"), 443, SocketAddr::from(([192, 0, 2, i], 1)), MS);
            advance(MS).await;
        }
        h.save(&path).unwrap();
        let small = History::load(
            &path,
            HistoryConfig {
                max_addresses: 3,
                ..steady()
            },
        )
        .unwrap();
        assert_eq!(small.address_count(), 3);
        let view = small.view(&host("trim.test"), 443);
        assert!((7..10).all(|i| view.used(IpAddr::from([192, 0, 2, i]))));
        std::fs::remove_file(&path).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_file_is_empty_and_a_corrupt_one_an_error() {
        let missing = temp_file("missing");
        let h = History::load(&missing, steady()).unwrap();
        assert_eq!((h.address_count(), h.host_count(), h.network()), (0, 0, None));

        let path = temp_file("corrupt");
        let bad_host = r#"{"version":1,"network":null,"addresses":[],"hosts":[{"host":"bad host","port":1,
            "v6":{"consecutive_failures":0,"last_success":null,"updated":null},
            "v4":{"consecutive_failures":0,"last_success":null,"updated":null},"touched":0}]}"#;
        for text in [
            "{not json",
            r#"{"version":2,"network":null,"addresses":[],"hosts":[]}"#,
            bad_host,
        ] {
            std::fs::write(&path, text).unwrap();
            let err = History::load(&path, steady()).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            assert!(err.to_string().contains(&path.display().to_string()), "{err}");
            let inner = err
                .get_ref()
                .and_then(|e| e.downcast_ref::<HistoryFileError>())
                .unwrap();
            assert_eq!(inner.path(), path);
        }
        std::fs::remove_file(&path).unwrap();

        // Not a file at all: an I/O error, which names the path too.
        let dir = std::env::temp_dir();
        let err = History::load(&dir, steady()).unwrap_err();
        assert_ne!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains(&dir.display().to_string()), "{err}");
    }
}
