//! The `wsgate:connect` capability: how plugins reach the network.
//!
//! Shaped as wasmtime-wasi shapes its own capabilities:
//!
//! - [`ConnectCtx`] holds the per-plugin state (the operator's
//!   [`ConnectConfig`], shared by all plugins of a host);
//! - [`ConnectView`] is implemented by the store's data type to give access
//!   to the context and the resource table;
//! - [`WsgateConnect`] is the [`HasData`] marker that
//!   [`add_to_linker`] uses to project a [`ConnectCtxView`] out of the store.

pub mod bindings;
mod host;
mod stream;
mod task;

pub(crate) use stream::{ReadStream, WriteStream};

use crate::error::{Error, LimitKind};
use crate::limits::{ConnectRate, Limits};
use crate::metrics::{Direction, Meter, NetMetrics, SessionTraffic};
use crate::nat64::{Nat64Prefix, Pref64};
use crate::network::NetworkWatch;
use crate::policy::{Policy, Rule};
use crate::race::{AddressCheck, CommitStage, EchMode, History, HistoryConfig, Race, RaceConfig, Replay, Transport};
use crate::range::{Millis, Ranged, Seconds};
use crate::report::LogSink;
use crate::resolve::{Override, Resolver};
use crate::tls::{TlsClient, TrustRoots};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{ReadHalf, WriteHalf};
use wasmtime::component::{HasData, Linker, ResourceTable};

/// The default bound on a whole connect.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the race's history of a path is kept.
pub const DEFAULT_MEMORY_TTL: Duration = Duration::from_secs(600);

/// The bounds of a whole connect's time, in milliseconds.
pub type ConnectTimeoutMs = Ranged<Millis, 1, 600_000>;
/// The bounds of the race history's time to live, in seconds (a week; 0:
/// nothing is remembered).
pub type MemoryTtlSecs = Ranged<Seconds, 0, 604_800>;

/// The operator's connection settings, shared by every plugin of a host.
///
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct ConnectConfig {
    inner: Arc<ConfigInner>,
    /// Apart from the rest, so that a gateway's routes can each have their
    /// own while sharing the resolver, the TLS roots and the race's memory.
    policy: Arc<Policy>,
    /// Where each connect reports its outcome and its race, and the
    /// connections their traffic; apart too, so that a gateway can give
    /// its own to a configuration built before it.
    metrics: Option<NetMetrics>,
    /// The gateway session whose connects these are: their traffic adds
    /// to its totals.
    session: Option<Arc<SessionTraffic>>,
}

#[derive(Debug)]
struct ConfigInner {
    resolver: Resolver,
    tls: TlsClient,
    race_log: Option<LogSink>,
    summary: Option<LogSink>,
    connect_timeout: Duration,
    race: RaceConfig,
    cancel_after: Option<CommitStage>,
    /// What the race learned of each path, shared by every connect.
    history: History,
    /// Where the history is saved, to survive a restart.
    memory_file: Option<PathBuf>,
    /// The local network: the history belongs to one, and NAT64 depends
    /// on it.
    network: NetworkWatch,
    pref64: Pref64,
    next_connect: AtomicU64,
}

/// The race checks every address it is about to dial against the
/// operator's policy.
impl AddressCheck for Policy {
    fn check(&self, addr: SocketAddr) -> Result<(), String> {
        self.check_addr(addr).map_err(|denied| denied.to_string())
    }
}

impl ConnectConfig {
    /// Starts a configuration with the defaults: a policy that allows
    /// nothing (add rules with [`allow`](ConnectConfigBuilder::allow)),
    /// system DNS, system trust roots, no race log, a 10 s connect timeout.
    pub fn builder() -> ConnectConfigBuilder {
        ConnectConfigBuilder::default()
    }

    /// This configuration under `policy` instead of its own: everything
    /// else (the resolver, the trust roots, the race's memory, the logs)
    /// is shared with `self`.
    pub(crate) fn with_policy(&self, policy: Policy) -> ConnectConfig {
        ConnectConfig {
            policy: Arc::new(policy),
            ..self.clone()
        }
    }

    /// This configuration with its connects counted: each connect's
    /// outcome and race (winner, stage, times, attempts, fallbacks,
    /// denials) and its connection's bytes and messages, in metrics shared
    /// by every configuration made from the returned one. Already counted,
    /// it keeps its metrics. [`metrics_text`](Self::metrics_text) shows
    /// them.
    pub fn with_metrics(&self) -> ConnectConfig {
        self.counted_in(self.metrics.clone().unwrap_or_default())
    }

    /// The connect and traffic metrics, in the OpenMetrics text format
    /// (`# EOF` included); `None` when connects are not
    /// [counted](Self::with_metrics).
    pub fn metrics_text(&self) -> Option<String> {
        self.metrics.as_ref().map(NetMetrics::encode)
    }

    /// This configuration, its connects counted in `metrics`.
    pub(crate) fn counted_in(&self, metrics: NetMetrics) -> ConnectConfig {
        ConnectConfig {
            metrics: Some(metrics),
            ..self.clone()
        }
    }

    /// This configuration for the connects of one gateway session, whose
    /// upstream traffic adds to `traffic`.
    pub(crate) fn for_session(&self, traffic: Arc<SessionTraffic>) -> ConnectConfig {
        ConnectConfig {
            session: Some(traffic),
            ..self.clone()
        }
    }

    /// Where connects are counted, if anywhere.
    pub(crate) fn metrics(&self) -> Option<&NetMetrics> {
        self.metrics.as_ref()
    }

    /// The gateway session these connects are for, if any.
    fn session(&self) -> Option<&SessionTraffic> {
        self.session.as_deref()
    }

    /// The number of the gateway session these connects are for, if any.
    pub(crate) fn session_number(&self) -> Option<u64> {
        self.session.as_ref().map(|s| s.id())
    }

    /// A meter for one direction of an upstream connection; `None` when
    /// nothing counts it.
    fn meter(&self, direction: Direction) -> Option<Meter> {
        match (&self.metrics, &self.session) {
            (None, None) => None,
            (Some(metrics), session) => Some(metrics.meter(direction, session.clone())),
            (None, session) => Some(Meter::session_only(direction, session.clone())),
        }
    }

    /// Writes the race's history to the `--memory-file`, if there is one.
    pub fn save_memory(&self) -> Result<(), Error> {
        match &self.inner.memory_file {
            Some(path) => self.inner.history.save(path).map_err(|e| {
                Error::config(format!("cannot save the race memory to {}", path.display())).with_source(e)
            }),
            None => Ok(()),
        }
    }

    fn next_connect_id(&self) -> u64 {
        self.inner.next_connect.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// Builds a [`ConnectConfig`].
#[derive(Debug, Default)]
pub struct ConnectConfigBuilder {
    overrides: Vec<Override>,
    roots: TrustRoots,
    race_log: Option<LogSink>,
    summary: Option<LogSink>,
    connect_timeout: Option<Duration>,
    race: RaceConfig,
    cancel_after: Option<CommitStage>,
    memory_ttl: Option<Duration>,
    memory_file: Option<PathBuf>,
    nat64_prefix: Option<Nat64Prefix>,
    dns_servers: Vec<SocketAddr>,
    policy: Policy,
    ech: Option<EchMode>,
    https_records: Option<bool>,
    /// The configuration this one follows on a reload: its race memory and
    /// its log sinks are kept.
    continuing: Option<ConnectConfig>,
}

impl ConnectConfigBuilder {
    /// A configuration that follows `previous` (a gateway's reload): what
    /// the race learned and the race log's and summary's sinks are
    /// `previous`'s, shared with the sessions still running under it,
    /// rather than read from the memory file and opened again. The rest
    /// comes from this builder.
    pub fn continuing(mut self, previous: &ConnectConfig) -> Self {
        self.continuing = Some(previous.clone());
        self
    }

    /// Answers for `host:port` with fixed addresses instead of DNS
    /// (`--resolve`).
    pub fn resolve(mut self, entry: Override) -> Self {
        self.overrides.push(entry);
        self
    }

    /// Trusts the CA certificates of a PEM file (`--ca-cert`), on top of the
    /// system's roots.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.roots.ca_files.push(path.into());
        self
    }

    /// Whether to trust the operating system's root certificates (default
    /// yes).
    pub fn system_roots(mut self, yes: bool) -> Self {
        self.roots.system = yes;
        self
    }

    /// Writes every race event as a JSON line to `sink` (`--race-log`).
    pub fn race_log(mut self, sink: LogSink) -> Self {
        self.race_log = Some(sink);
        self
    }

    /// Writes one human-readable line per committed connect to `sink`.
    pub fn summary(mut self, sink: LogSink) -> Self {
        self.summary = Some(sink);
        self
    }

    /// Bounds each connect (default 10 s). A plugin may ask for less.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// The race's timing rules (attempt delay, resolution delay, attempts
    /// in flight, park grace, TLS timeout). Checked by [`build`](Self::build).
    pub(crate) fn race(mut self, race: RaceConfig) -> Self {
        self.race = race;
        self
    }

    /// The stage at which races commit (`--cancel-after`): by default `tls`
    /// for TLS targets and `tcp` otherwise. A plugin may ask for an earlier
    /// stage, never a later one; `response` is only ever used when set
    /// here.
    pub fn cancel_after(mut self, stage: CommitStage) -> Self {
        self.cancel_after = Some(stage);
        self
    }

    /// How long the winner for a host and port is remembered and tried
    /// first (default 10 minutes; zero: never).
    pub fn memory_ttl(mut self, ttl: Duration) -> Self {
        self.memory_ttl = Some(ttl);
        self
    }

    /// Asks this DNS server (and the others given so) instead of the
    /// system's configuration (`--dns-server`).
    pub fn dns_server(mut self, server: SocketAddr) -> Self {
        self.dns_servers.push(server);
        self
    }

    /// Allows connects to what `rule` matches (`--allow`). With no rule,
    /// every connect is denied.
    pub fn allow(mut self, rule: Rule) -> Self {
        self.policy.allow(rule);
        self
    }

    /// Allows loopback, private, link-local and unique-local addresses
    /// (`--allow-private`), for local testing. Names still need a rule.
    pub fn allow_private(mut self) -> Self {
        self.policy.allow_private();
        self
    }

    /// Keeps the race's history in `path` across restarts (`--memory-file`):
    /// read at [`build`](Self::build), written by
    /// [`ConnectConfig::save_memory`].
    pub fn memory_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.memory_file = Some(path.into());
        self
    }

    /// Uses `prefix` for NAT64 instead of discovering it (`[dns]
    /// nat64-prefix`).
    pub fn nat64_prefix(mut self, prefix: Nat64Prefix) -> Self {
        self.nat64_prefix = Some(prefix);
        self
    }

    /// What TLS offers for Encrypted Client Hello (`[tls] ech`; by default
    /// [`EchMode::On`]).
    pub fn ech(mut self, mode: EchMode) -> Self {
        self.ech = Some(mode);
        self
    }

    /// Whether DNS is asked for HTTPS records beside AAAA and A (`[dns]
    /// https-records`; by default yes).
    pub fn https_records(mut self, on: bool) -> Self {
        self.https_records = Some(on);
        self
    }

    /// Replaces the egress policy with `policy`.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Builds the configuration: checks the values and loads the trust
    /// roots.
    pub fn build(self) -> Result<ConnectConfig, Error> {
        let connect_timeout = self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        if connect_timeout.is_zero() {
            return Err(Error::config("the connect timeout must be above zero"));
        }
        let mut race = self.race;
        if let Some(mode) = self.ech {
            race.ech = mode;
        }
        race.validate().map_err(Error::config)?;
        let history_config = HistoryConfig {
            ttl: self.memory_ttl.unwrap_or(DEFAULT_MEMORY_TTL),
            ..HistoryConfig::default()
        };
        let history = match (&self.continuing, &self.memory_file) {
            (Some(previous), _) => previous.inner.history.clone(),
            (None, Some(path)) => History::load(path, history_config).unwrap_or_else(|e| {
                // The history is only a hint: a bad file costs what was
                // learned, not the service.
                tracing::warn!("{e}; the race starts with no history");
                History::new(history_config)
            }),
            (None, None) => History::new(history_config),
        };
        let (race_log, summary) = match &self.continuing {
            Some(previous) => (previous.inner.race_log.clone(), previous.inner.summary.clone()),
            None => (self.race_log, self.summary),
        };
        Ok(ConnectConfig {
            inner: Arc::new(ConfigInner {
                resolver: Resolver::new(self.overrides, self.dns_servers)
                    .with_https(self.https_records.unwrap_or(true)),
                tls: TlsClient::new(&self.roots)?,
                race_log,
                summary,
                connect_timeout,
                race,
                cancel_after: self.cancel_after,
                history,
                memory_file: self.memory_file,
                network: NetworkWatch::new(),
                pref64: Pref64::new(self.nat64_prefix),
                next_connect: AtomicU64::new(0),
            }),
            policy: Arc::new(self.policy),
            metrics: None,
            session: None,
        })
    }
}

/// The per-plugin state of the capability: the operator's configuration
/// and the instance's own connection limits.
#[derive(Debug)]
pub struct ConnectCtx {
    config: ConnectConfig,
    open: Arc<AtomicUsize>,
    max_open: usize,
    rate: Option<ConnectRate>,
    stream_buffer: usize,
}

impl ConnectCtx {
    /// A context for one plugin instance under `config` and `limits`
    /// (open connections, connects per second, stream buffer).
    pub fn with_limits(config: ConnectConfig, limits: &Limits) -> Self {
        ConnectCtx {
            config,
            open: Arc::new(AtomicUsize::new(0)),
            max_open: limits.connections,
            rate: limits.connects_per_second.map(ConnectRate::new),
            stream_buffer: limits.stream_buffer,
        }
    }

    /// Takes a slot for a new connect, or says which limit refuses it.
    fn admit(&mut self) -> Result<OpenSlot, (LimitKind, String)> {
        if self.open.load(Ordering::Relaxed) >= self.max_open {
            let why = format!("connections: the limit is {} open at once", self.max_open);
            return Err((LimitKind::Connections, why));
        }
        if let Some(rate) = &mut self.rate
            && !rate.try_take()
        {
            let why = format!("connects-per-second: the limit is {}", rate.rate());
            return Err((LimitKind::ConnectsPerSecond, why));
        }
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(OpenSlot(self.open.clone()))
    }
}

/// One of an instance's open connections, given back when dropped (with
/// the connection, or with a connect that failed).
#[derive(Debug)]
struct OpenSlot(Arc<AtomicUsize>);

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the host functions work on: the context and the resource table
/// (where connections and their streams live).
pub struct ConnectCtxView<'a> {
    /// The plugin's connect state.
    pub ctx: &'a mut ConnectCtx,
    /// The store's resource table.
    pub table: &'a mut ResourceTable,
}

/// Implemented by a store's data type that offers the capability.
pub trait ConnectView: Send {
    /// Projects the capability's view out of the store's data.
    fn connect(&mut self) -> ConnectCtxView<'_>;
}

/// The [`HasData`] marker for [`add_to_linker`].
pub struct WsgateConnect;

impl HasData for WsgateConnect {
    type Data<'a> = ConnectCtxView<'a>;
}

/// Adds `wsgate:connect/types` to `linker`.
pub fn add_to_linker<T: ConnectView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    bindings::types::add_to_linker::<T, WsgateConnect>(linker, T::connect)
}

/// A committed connection, as a plugin holds it.
///
/// Its read and write halves are taken out as `wasi:io` streams; the race
/// stays with it so that `report()` and `fallback()` can use it.
pub struct Connection {
    peer: SocketAddr,
    reader: Option<Replay<ReadHalf<Transport>>>,
    writer: Option<WriteHalf<Transport>>,
    race: Race,
    /// How many of the race's events the metrics have had.
    reported: usize,
    _slot: OpenSlot,
}
