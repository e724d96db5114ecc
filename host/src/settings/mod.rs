//! The operator's settings: defaults, then a TOML file (`--config
//! wsgate.toml`), then the command line's flags, layered into one
//! [`Settings`] value.
//!
//! Each setting is defined once, as a field of its section below: the
//! field's type carries its bounds and unit (the same type checks the file's
//! value and the flag's), its doc comment is the flag's help, and its name
//! is both the key (`attempt-delay` in `[race]`) and the flag
//! (`--attempt-delay`). Reading the file (serde), the flags (clap) and
//! layering the two all follow from that definition.
//!
//! ```toml
//! [policy]
//! allow = ["echo.example.com:443", "*.example.net:*", "10.1.0.0/16:8080"]
//! allow-private = false
//!
//! [dns]
//! resolve = ["echo.example.com:443:192.0.2.7,2001:db8::7"]
//! server = ["192.0.2.53:53"]
//!
//! [race]
//! cancel-after = "tls"
//! attempt-delay = 250        # milliseconds
//!
//! [tls]
//! ca-cert = ["ca.pem"]       # relative to the file's directory
//!
//! [limits]
//! memory = 64                # MiB
//! cpu-time = 60000           # milliseconds, 0: no limit
//! ```
//!
//! An unknown section or key, a value of the wrong type and a value out of
//! range are refused when the file is read, in one line naming the key. A
//! flag replaces the file's value; list flags (`--allow`, `--resolve`,
//! `--dns-server`, `--ca-cert`) add to the file's lists.
//!
//! The keys `race.resolve` and `race.dns-server` of earlier releases are
//! read as `dns.resolve` and `dns.server`, with a [warning](Settings::warnings),
//! for this release.

mod de;
#[macro_use]
mod sections;
mod serve;
#[cfg(test)]
mod tests;

pub use sections::{DnsServer, DnsSettings, LimitsSettings, NotAnAddress, PolicySettings, RaceSettings, TlsSettings};
pub use serve::{
    AdminSettings, CertificateSettings, DrainTimeoutSecs, HeadTimeoutMs, IdleTimeoutSecs, ListenAddress,
    ListenerSettings, MaxHeadKib, MaxSessions, PluginMemoryMib, RouteSettings, ServeSettings,
};
pub(crate) use serve::{
    DEFAULT_DRAIN_TIMEOUT, DEFAULT_HEAD_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_HEAD, DEFAULT_MAX_SESSIONS,
    DEFAULT_PLUGIN_MEMORY,
};

/// The bounded types of the settings, each named for its setting.
pub use crate::connect::{ConnectTimeoutMs, MemoryTtlSecs};
pub use crate::limits::{Connections, ConnectsPerSecond, CpuTimeMs, MemoryMib, RunTimeSecs, StreamBufferKib};
pub use crate::race::{AttemptDelay, FirstFamilyCount, MaxInFlight, ParkGrace, ResolutionDelay, TlsTimeout};

use crate::connect::{ConnectConfig, ConnectConfigBuilder};
use crate::error::Error;
use crate::limits::Limits;
use std::path::Path;

/// The sections of the file, in the order an operator reads them.
const SECTIONS: &[&str] = &[
    "policy", "dns", "race", "tls", "limits", "serve", "admin", "listener", "route",
];

/// The sections that are lists of tables (`[[listener]]`).
const LISTS: &[&str] = &["listener", "route"];

/// Every setting, by section. A value not set (`None`, or an empty list)
/// takes its default, or the lower layer's value when layered.
#[derive(Debug, Clone, Default, clap::Args, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// `[policy]`: where plugins may connect.
    #[command(flatten, next_help_heading = "Policy")]
    pub policy: PolicySettings,
    /// `[dns]`: how names are resolved.
    #[command(flatten, next_help_heading = "DNS")]
    pub dns: DnsSettings,
    /// `[race]`: the Happy Eyeballs race.
    #[command(flatten, next_help_heading = "Race")]
    pub race: RaceSettings,
    /// `[tls]`: whom the host trusts.
    #[command(flatten, next_help_heading = "TLS")]
    pub tls: TlsSettings,
    /// `[limits]`: what one plugin instance may use.
    #[command(flatten, next_help_heading = "Limits")]
    pub limits: LimitsSettings,
    /// `[serve]`: the gateway's bounds (`wsgate serve`; its flags are that
    /// command's).
    #[arg(skip)]
    pub serve: ServeSettings,
    /// `[admin]`: the gateway's admin listener (`wsgate serve`).
    #[arg(skip)]
    pub admin: AdminSettings,
    /// `[[listener]]`: where the gateway listens, one entry each.
    #[arg(skip)]
    pub listener: Vec<ListenerSettings>,
    /// `[[route]]`: which plugin serves which requests, first match first.
    #[arg(skip)]
    pub route: Vec<RouteSettings>,
    #[arg(skip)]
    #[serde(skip)]
    warnings: Vec<String>,
}

impl Settings {
    /// Reads a configuration file.
    pub fn from_file(path: &Path) -> Result<Settings, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::config(format!("cannot read `{}`", path.display())).with_source(e))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Settings::parse(&text, base).map_err(|why| Error::config(format!("`{}`: {why}", path.display())))
    }

    /// Parses a configuration from TOML text; relative CA paths are taken
    /// from `base`. The error is one line that names the key and says what
    /// is wrong.
    pub fn from_toml(text: &str, base: &Path) -> Result<Settings, Error> {
        Settings::parse(text, base).map_err(Error::config)
    }

    fn parse(text: &str, base: &Path) -> Result<Settings, String> {
        let value: toml::Value = text.parse::<toml::Table>().map(toml::Value::Table).map_err(|e| {
            // toml's message spans lines (a snippet of the file); its
            // first line names the place, its last the problem.
            let msg = e.message().trim().to_owned();
            match e.span().map(|s| line_of(text, s.start)) {
                Some(line) => format!("line {line}: {msg}"),
                None => msg,
            }
        })?;
        if let toml::Value::Table(table) = &value
            && let Some((name, other)) = table
                .iter()
                .find(|(name, v)| !(v.is_table() || LISTS.contains(&name.as_str()) && v.is_array()))
        {
            return Err(format!(
                "`{name}` must be a section ({}), not a {}",
                de::sections(SECTIONS),
                other.type_str()
            ));
        }
        let mut settings: Settings = de::from_value(&value).map_err(|e| e.to_string())?;
        settings.tls.ca_cert = settings.tls.ca_cert.iter().map(|p| base.join(p)).collect();
        if let Some(path) = &mut settings.race.memory_file {
            *path = base.join(&*path);
        }
        serve::resolve_paths(&mut settings.listener, &mut settings.route, base);
        settings.move_old_keys();
        Ok(settings)
    }

    /// Reads `race.resolve` and `race.dns-server` as their new keys, with a
    /// warning each.
    fn move_old_keys(&mut self) {
        let old_resolve = std::mem::take(&mut self.race.resolve);
        if !old_resolve.is_empty() {
            self.warnings.push(moved("race.resolve", "dns.resolve"));
            self.dns.resolve.splice(0..0, old_resolve);
        }
        if let Some(server) = self.race.dns_server.take() {
            self.warnings.push(moved("race.dns-server", "dns.server"));
            self.dns.server.insert(0, server);
        }
    }

    /// What was accepted but should be changed: keys of earlier releases.
    /// One line each.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// These settings with `over`'s on top: a value set in `over` wins;
    /// lists are joined, `self`'s first.
    pub fn merge(mut self, over: Settings) -> Settings {
        self.policy.merge(over.policy);
        self.dns.merge(over.dns);
        self.race.merge(over.race);
        self.tls.merge(over.tls);
        self.limits.merge(over.limits);
        self.serve.merge(over.serve);
        self.admin.merge(over.admin);
        self.listener.extend(over.listener);
        self.route.extend(over.route);
        self.warnings.extend(over.warnings);
        self
    }

    /// The per-instance limits, defaults filled in.
    pub fn limits(&self) -> Limits {
        self.limits.limits()
    }

    /// The limits of `route`'s instances: its own on top of `[limits]`.
    pub(crate) fn route_limits(&self, route: &RouteSettings) -> Limits {
        let mut limits = self.limits.clone();
        limits.merge(route.limits.clone());
        limits.limits()
    }

    /// A [`ConnectConfig`] builder with these settings, to which a caller
    /// adds what is not configuration (the race log, a summary sink).
    pub fn connect_builder(&self) -> ConnectConfigBuilder {
        let mut builder = ConnectConfig::builder();
        builder = self.policy.apply(builder);
        builder = self.dns.apply(builder);
        builder = self.race.apply(builder);
        self.tls.apply(builder)
    }
}

fn moved(old: &str, new: &str) -> String {
    format!("`{old}` is now `{new}`: the old key is read in this release only")
}

/// The 1-based line of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}
