//! The sections of the settings, one struct each, every field defined once
//! for the file (serde) and the command line (clap).

use super::de::{self, Described};
use crate::connect::{ConnectConfigBuilder, ConnectTimeoutMs, MemoryTtlSecs};
use crate::limits::{Connections, ConnectsPerSecond, CpuTimeMs, Limits, MemoryMib, RunTimeSecs, StreamBufferKib};
use crate::nat64::Nat64Prefix;
use crate::policy::Rule;
use crate::race::{
    AttemptDelay, CommitStage, EchMode, FirstFamilyCount, MaxInFlight, ParkGrace, RaceConfig, ResolutionDelay,
    TlsTimeout,
};
use crate::resolve::Override;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// How a layer's value goes on top of the one below: a value replaces, a
/// list adds to the list.
pub(super) trait Layer {
    fn layer(&mut self, over: Self);
}

impl<T> Layer for Option<T> {
    fn layer(&mut self, over: Self) {
        if over.is_some() {
            *self = over;
        }
    }
}

impl<T> Layer for Vec<T> {
    fn layer(&mut self, over: Self) {
        self.extend(over);
    }
}

/// Declares a section: the struct (with serde's and clap's derives) and
/// its layering, from one list of fields.
macro_rules! section {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$field_meta:meta])* pub $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, clap::Args, serde::Deserialize)]
        #[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
        pub struct $name {
            $( $(#[$field_meta])* pub $field: $ty, )*
        }

        impl $name {
            /// This section with `over`'s values on top.
            pub(super) fn merge(&mut self, over: Self) {
                $( Layer::layer(&mut self.$field, over.$field); )*
            }
        }
    };
}

section! {
    /// `[policy]`: the egress allow-list.
    pub struct PolicySettings {
        /// Allow connects to what RULE matches: `host:port`, `host:*`,
        /// `*.domain:port`, `*:port`, an IP (`192.0.2.7`, `[2001:db8::7]:443`)
        /// or a CIDR (`10.1.0.0/16`). Nothing is allowed without a rule.
        /// Repeatable.
        #[arg(long, value_name = "RULE")]
        #[serde(deserialize_with = "de::list")]
        pub allow: Vec<Rule>,

        /// Allow loopback, private, link-local and unique-local addresses (for
        /// local testing). Names still need an --allow rule. `=false` turns off
        /// a config file's `allow-private = true`.
        #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        #[serde(deserialize_with = "de::switch")]
        pub allow_private: Option<bool>,
    }
}

section! {
    /// `[dns]`: where addresses come from.
    pub struct DnsSettings {
        /// Answer for HOST:PORT with these addresses instead of DNS (curl's
        /// form; IPv6 with or without brackets). Repeatable.
        #[arg(long, value_name = "HOST:PORT:ADDR[,ADDR...]")]
        #[serde(deserialize_with = "de::list")]
        pub resolve: Vec<Override>,

        /// Ask this DNS server (ADDR:PORT) instead of the system's.
        /// Repeatable.
        #[arg(long = "dns-server", value_name = "ADDR:PORT")]
        #[serde(deserialize_with = "de::list")]
        pub server: Vec<DnsServer>,

        /// Ask for HTTPS records (RFC 9460) beside AAAA and A, and follow
        /// their services, ports, hints and ECH configurations [default:
        /// true].
        #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        #[serde(deserialize_with = "de::switch")]
        pub https_records: Option<bool>,

        /// The network's NAT64 prefix (e.g. `64:ff9b::/96`), instead of
        /// discovering it (RFC 7050) on a host without IPv4 connectivity.
        #[arg(long, value_name = "PREFIX")]
        #[serde(deserialize_with = "de::text")]
        pub nat64_prefix: Option<Nat64Prefix>,
    }
}

section! {
    /// `[race]`: the Happy Eyeballs race's rules.
    pub struct RaceSettings {
        /// When a race commits to an address: after `tcp`, after `tls` (the
        /// default for TLS targets), or after the first `response` (sends the
        /// first flight on every ready attempt). Plugins may ask for earlier.
        #[arg(long, value_name = "STAGE")]
        #[serde(deserialize_with = "de::text")]
        pub cancel_after: Option<CommitStage>,

        /// Connection Attempt Delay: milliseconds between attempt starts
        /// (10 to 2000) [default: 250].
        #[arg(long, value_name = "MS")]
        pub attempt_delay: Option<AttemptDelay>,

        /// Resolution Delay: how long to wait for AAAA once A answered, in
        /// milliseconds [default: 50].
        #[arg(long, value_name = "MS")]
        pub resolution_delay: Option<ResolutionDelay>,

        /// First Address Family Count: how many IPv6 addresses are tried
        /// before the first IPv4 one [default: 1].
        #[arg(long, value_name = "N")]
        pub first_family_count: Option<FirstFamilyCount>,

        /// At most this many attempts in flight at once [default: 4].
        #[arg(long, value_name = "N")]
        pub max_in_flight: Option<MaxInFlight>,

        /// How long attempts that reached the commit stage after the winner
        /// stay open for a fallback, in milliseconds [default: 2000].
        #[arg(long, value_name = "MS")]
        pub park_grace: Option<ParkGrace>,

        /// Bound on a TLS handshake done after a `tcp` commit, in milliseconds
        /// [default: 5000].
        #[arg(long, value_name = "MS")]
        pub tls_timeout: Option<TlsTimeout>,

        /// How long the race keeps what it learned of a path (round trips,
        /// failures), in seconds (0: nothing is kept) [default: 600].
        #[arg(long, value_name = "SECONDS")]
        pub memory_ttl: Option<MemoryTtlSecs>,

        /// Keep what the race learned in FILE across restarts: read at start,
        /// written at exit (and every minute while serving).
        #[arg(long, value_name = "FILE")]
        #[serde(deserialize_with = "de::text")]
        pub memory_file: Option<PathBuf>,

        /// Bound on each connect, in milliseconds [default: 10000].
        #[arg(long, value_name = "MS")]
        pub connect_timeout: Option<ConnectTimeoutMs>,

        /// The key of earlier releases for `dns.resolve` (file only).
        #[arg(skip)]
        #[serde(deserialize_with = "de::list")]
        #[doc(hidden)]
        pub resolve: Vec<Override>,

        /// The key of earlier releases for `dns.server` (file only).
        #[arg(skip)]
        #[serde(deserialize_with = "de::text")]
        #[doc(hidden)]
        pub dns_server: Option<DnsServer>,
    }
}

section! {
    /// `[tls]`: whom the host trusts.
    pub struct TlsSettings {
        /// Trust the CA certificates in this PEM file, besides the system's.
        /// Repeatable.
        #[arg(long, value_name = "FILE")]
        #[serde(deserialize_with = "de::list")]
        pub ca_cert: Vec<PathBuf>,

        /// Do not trust the system's root certificates (only --ca-cert).
        /// `=false` turns off a config file's `no-system-roots = true`.
        #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        #[serde(deserialize_with = "de::switch")]
        pub no_system_roots: Option<bool>,

        /// Encrypted Client Hello: `on` uses a service's ECH configuration
        /// from its HTTPS record (and nothing where there is none), `grease`
        /// sends GREASE on every handshake and never real ECH (TLS 1.3
        /// only), `off` sends nothing [default: on].
        #[arg(long, value_name = "MODE")]
        #[serde(deserialize_with = "de::text")]
        pub ech: Option<EchMode>,
    }
}

section! {
    /// `[limits]`: what one plugin instance may use.
    pub struct LimitsSettings {
        /// Linear memory per plugin instance, in MiB [default: 64].
        #[arg(long, value_name = "MIB")]
        pub memory: Option<MemoryMib>,

        /// CPU time the plugin may use, its host calls included (a
        /// connect's DNS, race and TLS aside), in milliseconds (0: no
        /// limit) [default: 60000].
        #[arg(long, value_name = "MS")]
        pub cpu_time: Option<CpuTimeMs>,

        /// Wall-clock bound on the whole run, in seconds (0: no limit)
        /// [default: 3600].
        #[arg(long, value_name = "SECONDS")]
        pub run_time: Option<RunTimeSecs>,

        /// Connections a plugin may hold open at once [default: 64].
        #[arg(long, value_name = "N")]
        pub connections: Option<Connections>,

        /// Connects a plugin may start per second (0: no limit) [default: 100].
        #[arg(long, value_name = "N")]
        pub connects_per_second: Option<ConnectsPerSecond>,

        /// Bytes the host holds for a plugin per output stream, in KiB
        /// [default: 256].
        #[arg(long, value_name = "KIB")]
        pub stream_buffer: Option<StreamBufferKib>,
    }
}

impl PolicySettings {
    pub(super) fn apply(&self, mut builder: ConnectConfigBuilder) -> ConnectConfigBuilder {
        for rule in &self.allow {
            builder = builder.allow(rule.clone());
        }
        if self.allow_private == Some(true) {
            builder = builder.allow_private();
        }
        builder
    }
}

impl PolicySettings {
    /// The policy these rules make, alone.
    pub(crate) fn policy(&self) -> crate::policy::Policy {
        let mut policy = crate::policy::Policy::new();
        for rule in &self.allow {
            policy.allow(rule.clone());
        }
        if self.allow_private == Some(true) {
            policy.allow_private();
        }
        policy
    }
}

impl DnsSettings {
    pub(super) fn apply(&self, mut builder: ConnectConfigBuilder) -> ConnectConfigBuilder {
        for entry in &self.resolve {
            builder = builder.resolve(entry.clone());
        }
        for server in &self.server {
            builder = builder.dns_server(server.0);
        }
        if let Some(on) = self.https_records {
            builder = builder.https_records(on);
        }
        if let Some(prefix) = self.nat64_prefix {
            builder = builder.nat64_prefix(prefix);
        }
        builder
    }
}

impl RaceSettings {
    /// The race's rules, defaults where not set.
    pub(crate) fn race_config(&self) -> RaceConfig {
        let d = RaceConfig::default();
        RaceConfig {
            attempt_delay: self.attempt_delay.map_or(d.attempt_delay, AttemptDelay::duration),
            resolution_delay: self
                .resolution_delay
                .map_or(d.resolution_delay, ResolutionDelay::duration),
            max_in_flight: self.max_in_flight.map_or(d.max_in_flight, MaxInFlight::count),
            first_family_count: self
                .first_family_count
                .map_or(d.first_family_count, FirstFamilyCount::count),
            park_grace: self.park_grace.map_or(d.park_grace, ParkGrace::duration),
            tls_timeout: self.tls_timeout.map_or(d.tls_timeout, TlsTimeout::duration),
            ..d
        }
    }

    pub(super) fn apply(&self, mut builder: ConnectConfigBuilder) -> ConnectConfigBuilder {
        builder = builder.race(self.race_config());
        if let Some(timeout) = self.connect_timeout {
            builder = builder.connect_timeout(timeout.duration());
        }
        if let Some(ttl) = self.memory_ttl {
            builder = builder.memory_ttl(ttl.duration());
        }
        if let Some(path) = &self.memory_file {
            builder = builder.memory_file(path);
        }
        if let Some(stage) = self.cancel_after {
            builder = builder.cancel_after(stage);
        }
        builder
    }
}

impl TlsSettings {
    pub(super) fn apply(&self, mut builder: ConnectConfigBuilder) -> ConnectConfigBuilder {
        builder = builder.system_roots(!self.no_system_roots.unwrap_or(false));
        for path in &self.ca_cert {
            builder = builder.ca_file(path);
        }
        if let Some(mode) = self.ech {
            builder = builder.ech(mode);
        }
        builder
    }
}

impl LimitsSettings {
    /// The limits, defaults where not set.
    pub(super) fn limits(&self) -> Limits {
        let d = Limits::default();
        Limits {
            memory: self.memory.map_or(d.memory, MemoryMib::bytes),
            cpu_time: self.cpu_time.map_or(d.cpu_time, CpuTimeMs::duration),
            run_time: self.run_time.map_or(d.run_time, RunTimeSecs::duration),
            connections: self.connections.map_or(d.connections, Connections::count),
            connects_per_second: self
                .connects_per_second
                .map_or(d.connects_per_second, ConnectsPerSecond::count),
            stream_buffer: self.stream_buffer.map_or(d.stream_buffer, StreamBufferKib::bytes),
        }
    }
}

/// A DNS server to ask: `ADDR:PORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsServer(pub SocketAddr);

impl std::str::FromStr for DnsServer {
    type Err = NotAnAddress;

    fn from_str(text: &str) -> Result<Self, NotAnAddress> {
        text.parse().map(DnsServer).map_err(|_| NotAnAddress(text.to_owned()))
    }
}

/// A text that is not `ADDR:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAnAddress(String);

impl fmt::Display for NotAnAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is not an ADDR:PORT", self.0.escape_debug())
    }
}

impl std::error::Error for NotAnAddress {}

impl Described for Rule {
    const WHAT: &'static str = "an allow rule";
    const WHAT_LIST: &'static str = "allow rules";
}

impl Described for Override {
    const WHAT: &'static str = "a HOST:PORT:ADDR entry";
    const WHAT_LIST: &'static str = "HOST:PORT:ADDR entries";
}

impl Described for DnsServer {
    const WHAT: &'static str = "an ADDR:PORT";
    const WHAT_LIST: &'static str = "ADDR:PORT entries";
}

impl Described for CommitStage {
    const WHAT: &'static str = "a commit stage";
    const WHAT_LIST: &'static str = "commit stages";
}

impl Described for Nat64Prefix {
    const WHAT: &'static str = "a NAT64 prefix (/32, /40, /48, /56, /64 or /96)";
    const WHAT_LIST: &'static str = "NAT64 prefixes";
}

impl Described for EchMode {
    const WHAT: &'static str = "an ECH mode (off, grease or on)";
    const WHAT_LIST: &'static str = "ECH modes";
}

impl Described for PathBuf {
    const WHAT: &'static str = "a file path";
    const WHAT_LIST: &'static str = "file paths";
}
