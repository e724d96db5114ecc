//! The settings of `wsgate serve`: `[serve]` (the gateway's own bounds),
//! `[[listener]]` (where clients connect) and `[[route]]` (which plugin
//! serves them).

use super::de::{self, Described};
use super::sections::{Layer, LimitsSettings, PolicySettings};
use crate::range::{Count, Kib, Mib, Millis, Ranged, Seconds, SecondsOrOff};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The bounds of [`ServeSettings::max_sessions`] and of a route's. The
/// instance pool has one slot per session and reserves its slots' address
/// space up front (about 8 GiB per session, for guard-page bounds checks):
/// 10,000 sessions take 80 TiB of the 128 TiB a 64-bit process has. Only
/// what a session touches is resident, and given back when it ends.
pub type MaxSessions = Ranged<Count, 1, 10_000>;
/// The bounds of [`ServeSettings::max_plugin_memory`], in MiB.
pub type PluginMemoryMib = Ranged<Mib, 1, 1_048_576>;
/// The bounds of [`ServeSettings::max_head`], in KiB.
pub type MaxHeadKib = Ranged<Kib, 1, 1024>;
/// The bounds of [`ServeSettings::head_timeout`], in milliseconds.
pub type HeadTimeoutMs = Ranged<Millis, 10, 600_000>;
/// The bounds of [`ServeSettings::idle_timeout`], in seconds (0: never).
pub type IdleTimeoutSecs = Ranged<SecondsOrOff, 0, 604_800>;
/// The bounds of [`ServeSettings::drain_timeout`], in seconds (an hour; 0:
/// close every session at once).
pub type DrainTimeoutSecs = Ranged<Seconds, 0, 3600>;

/// Default sessions open at once, all routes together.
pub const DEFAULT_MAX_SESSIONS: usize = 1000;
/// Default linear memory of all plugin instances together: 4 GiB.
pub const DEFAULT_PLUGIN_MEMORY: usize = 4 << 30;
/// Default bound on a request head: 16 KiB.
pub const DEFAULT_MAX_HEAD: usize = 16 * 1024;
/// Default time a client has to send its request head: 10 s.
pub const DEFAULT_HEAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Default time a session may go without a byte either way: 5 minutes.
pub const DEFAULT_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);
/// Default time a drain waits for sessions to end by themselves: 30 s.
pub const DEFAULT_DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

section! {
    /// `[serve]`: the gateway's bounds, all listeners and routes together.
    pub struct ServeSettings {
        /// Sessions open at once, all routes together; a request beyond it
        /// is answered 503 [default: 1000].
        #[arg(long, value_name = "N")]
        pub max_sessions: Option<MaxSessions>,

        /// Linear memory of all plugin instances together, in MiB: an
        /// instance's growth beyond it fails as over its own limit
        /// [default: 4096].
        #[arg(long, value_name = "MIB")]
        pub max_plugin_memory: Option<PluginMemoryMib>,

        /// The largest request head the host reads, in KiB; a larger one is
        /// answered 431 [default: 16].
        #[arg(long, value_name = "KIB")]
        pub max_head: Option<MaxHeadKib>,

        /// How long a client has to send its request head (and finish TLS),
        /// in milliseconds; a slower one is answered 408 [default: 10000].
        #[arg(long, value_name = "MS")]
        pub head_timeout: Option<HeadTimeoutMs>,

        /// Seconds a session may go without a byte either way on the
        /// client's connection before the host closes it (0: never)
        /// [default: 300].
        #[arg(long, value_name = "SECONDS")]
        pub idle_timeout: Option<IdleTimeoutSecs>,

        /// At SIGTERM the gateway stops accepting and tells every session's
        /// plugin it is going away (a Close 1001 to the client); the
        /// sessions still open after this many seconds are closed
        /// [default: 30].
        #[arg(long, value_name = "SECONDS")]
        pub drain_timeout: Option<DrainTimeoutSecs>,

        /// One line per session at its end, on the log (target
        /// `wsgate::access`): route, client, upstream, commit stage,
        /// outcome, duration, bytes, messages and close codes both ways.
        /// `=false` turns it off [default: true].
        #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        #[serde(deserialize_with = "de::switch")]
        pub access_log: Option<bool>,
    }
}

section! {
    /// `[admin]`: the gateway's admin listener, for its operators' tools.
    pub struct AdminSettings {
        /// Serve `/metrics` (OpenMetrics), `/healthz` and `/readyz` over
        /// plain HTTP on ADDR:PORT; keep it on loopback or an operators'
        /// network [default: off].
        #[arg(long = "admin-listen", id = "admin_listen", value_name = "ADDR:PORT")]
        #[serde(deserialize_with = "de::text")]
        pub listen: Option<ListenAddress>,
    }
}

/// `[[listener]]`: an address clients connect to.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ListenerSettings {
    /// `ADDR:PORT` to listen on; `[::]:PORT` for IPv6 and IPv4.
    #[serde(deserialize_with = "de::text")]
    pub address: Option<ListenAddress>,
    /// The certificates to serve `wss://` with, SNI choosing among them
    /// (the first when no name matches). None: plain `ws://`.
    pub tls: Vec<CertificateSettings>,
}

/// A certificate chain and its key, both PEM files.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct CertificateSettings {
    /// The chain, the server's certificate first.
    #[serde(deserialize_with = "de::text")]
    pub cert: Option<PathBuf>,
    /// The private key of the chain's first certificate.
    #[serde(deserialize_with = "de::text")]
    pub key: Option<PathBuf>,
}

/// `[[route]]`: which requests a plugin serves.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RouteSettings {
    /// The route's name, as logs and the plugin see it [default: its
    /// plugin's file name].
    pub name: Option<String>,
    /// The `Host` the route serves: a name, `*.domain`, or `*` for any
    /// [default: any].
    pub host: Option<String>,
    /// The path prefix the route serves, on whole segments [default: `/`].
    pub path: Option<String>,
    /// The plugin, a component of the `gateway` world.
    #[serde(deserialize_with = "de::text")]
    pub plugin: Option<PathBuf>,
    /// The plugin's arguments (after `argv[0]`, its file name).
    pub args: Vec<String>,
    /// Sessions of this route open at once [default: the gateway's].
    pub max_sessions: Option<MaxSessions>,
    /// This route's idle timeout [default: the gateway's].
    pub idle_timeout: Option<IdleTimeoutSecs>,
    /// This route's own egress policy, instead of `[policy]`: a route
    /// with one reaches only what it allows.
    pub policy: Option<PolicySettings>,
    /// This route's limits, on top of `[limits]`.
    pub limits: LimitsSettings,
}

/// `ADDR:PORT` to listen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddress(pub SocketAddr);

impl std::str::FromStr for ListenAddress {
    type Err = super::NotAnAddress;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.parse::<super::DnsServer>().map(|d| ListenAddress(d.0))
    }
}

impl Described for ListenAddress {
    const WHAT: &'static str = "an ADDR:PORT";
    const WHAT_LIST: &'static str = "ADDR:PORT entries";
}

/// Takes the file's relative paths from `base`, its directory.
pub(super) fn resolve_paths(listeners: &mut [ListenerSettings], routes: &mut [RouteSettings], base: &Path) {
    let join = |p: &mut Option<PathBuf>| {
        if let Some(path) = p {
            *path = base.join(&*path);
        }
    };
    for listener in listeners {
        for cert in &mut listener.tls {
            join(&mut cert.cert);
            join(&mut cert.key);
        }
    }
    for route in routes {
        join(&mut route.plugin);
    }
}
