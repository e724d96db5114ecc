//! The operator's configuration: a TOML file (`--config wsgate.toml`) and
//! the command line's flags, which have the same names.
//!
//! The file has four sections; every key is optional:
//!
//! ```toml
//! [policy]
//! allow = ["echo.example.com:443", "*.example.net:*", "10.1.0.0/16:8080"]
//! allow-private = false
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
//! range are refused when the file is read, naming the key and the reason.
//! A flag given on the command line replaces the file's value; list flags
//! (`--allow`, `--resolve`, `--ca-cert`) add to the file's lists.

use crate::connect::{ConnectConfig, ConnectConfigBuilder};
use crate::error::Error;
use crate::limits::Limits;
use crate::policy::Rule;
use crate::race::{CommitStage, RaceConfig};
use crate::resolve::Override;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The accepted range of each numeric setting, shared by the file and the
/// flags so that both refuse the same values.
pub mod range {
    use std::ops::RangeInclusive;

    /// `race.attempt-delay`, milliseconds (RFC 8305 §8: at least 10 ms,
    /// at most 2 s).
    pub const ATTEMPT_DELAY: RangeInclusive<u64> = 10..=2000;
    /// `race.resolution-delay`, milliseconds.
    pub const RESOLUTION_DELAY: RangeInclusive<u64> = 0..=2000;
    /// `race.first-family-count`.
    pub const FIRST_FAMILY_COUNT: RangeInclusive<u64> = 1..=64;
    /// `race.max-in-flight`.
    pub const MAX_IN_FLIGHT: RangeInclusive<u64> = 1..=64;
    /// `race.park-grace`, milliseconds.
    pub const PARK_GRACE: RangeInclusive<u64> = 0..=600_000;
    /// `race.tls-timeout`, milliseconds.
    pub const TLS_TIMEOUT: RangeInclusive<u64> = 1..=600_000;
    /// `race.memory-ttl`, seconds (a week at most).
    pub const MEMORY_TTL: RangeInclusive<u64> = 0..=604_800;
    /// `race.connect-timeout`, milliseconds.
    pub const CONNECT_TIMEOUT: RangeInclusive<u64> = 1..=600_000;
    /// `limits.memory`, MiB.
    pub const MEMORY: RangeInclusive<u64> = 1..=4096;
    /// `limits.cpu-time`, milliseconds; 0: no limit.
    pub const CPU_TIME: RangeInclusive<u64> = 0..=86_400_000;
    /// `limits.run-time`, seconds; 0: no limit.
    pub const RUN_TIME: RangeInclusive<u64> = 0..=604_800;
    /// `limits.connections`.
    pub const CONNECTIONS: RangeInclusive<u64> = 1..=65_536;
    /// `limits.connects-per-second`; 0: no limit.
    pub const CONNECTS_PER_SECOND: RangeInclusive<u64> = 0..=100_000;
    /// `limits.stream-buffer`, KiB.
    pub const STREAM_BUFFER: RangeInclusive<u64> = 1..=65_536;
}

/// Every setting of the file and the flags. `None` (or an empty list)
/// means "not set here": the default applies, or the other source's value
/// when merged.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `[policy] allow`, `--allow`: the egress allow rules.
    pub allow: Vec<Rule>,
    /// `[policy] allow-private`, `--allow-private`.
    pub allow_private: Option<bool>,
    /// `[race] cancel-after`, `--cancel-after`.
    pub cancel_after: Option<CommitStage>,
    /// `[race] attempt-delay`, milliseconds.
    pub attempt_delay: Option<u64>,
    /// `[race] resolution-delay`, milliseconds.
    pub resolution_delay: Option<u64>,
    /// `[race] first-family-count`.
    pub first_family_count: Option<u64>,
    /// `[race] max-in-flight`.
    pub max_in_flight: Option<u64>,
    /// `[race] park-grace`, milliseconds.
    pub park_grace: Option<u64>,
    /// `[race] tls-timeout`, milliseconds.
    pub tls_timeout: Option<u64>,
    /// `[race] memory-ttl`, seconds.
    pub memory_ttl: Option<u64>,
    /// `[race] connect-timeout`, milliseconds.
    pub connect_timeout: Option<u64>,
    /// `[race] dns-server`, `ADDR:PORT`.
    pub dns_server: Option<SocketAddr>,
    /// `[race] resolve`, `--resolve`: fixed answers instead of DNS.
    pub resolve: Vec<Override>,
    /// `[tls] ca-cert`, `--ca-cert`: extra trusted CA files.
    pub ca_cert: Vec<PathBuf>,
    /// `[tls] no-system-roots`, `--no-system-roots`.
    pub no_system_roots: Option<bool>,
    /// `[limits] memory`, MiB.
    pub memory: Option<u64>,
    /// `[limits] cpu-time`, milliseconds; 0: no limit.
    pub cpu_time: Option<u64>,
    /// `[limits] run-time`, seconds; 0: no limit.
    pub run_time: Option<u64>,
    /// `[limits] connections`.
    pub connections: Option<u64>,
    /// `[limits] connects-per-second`; 0: no limit.
    pub connects_per_second: Option<u64>,
    /// `[limits] stream-buffer`, KiB.
    pub stream_buffer: Option<u64>,
}

impl Settings {
    /// Reads a configuration file.
    pub fn from_file(path: &Path) -> Result<Settings, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::config(format!("cannot read `{}`", path.display())).with_source(e))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Settings::from_toml(&text, base).map_err(|why| Error::config(format!("`{}`: {why}", path.display())))
    }

    /// Parses a configuration from TOML text; relative CA paths are taken
    /// from `base`. The error names the key and says what is wrong.
    pub fn from_toml(text: &str, base: &Path) -> Result<Settings, String> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            // toml's message spans lines (a snippet of the file); its
            // first line names the place, its last the problem.
            let msg = e.message().trim().to_owned();
            match e.span().map(|s| line_of(text, s.start)) {
                Some(line) => format!("line {line}: {msg}"),
                None => msg,
            }
        })?;
        let mut settings = Settings::default();
        for (name, value) in &table {
            let toml::Value::Table(section) = value else {
                return Err(format!(
                    "`{name}` must be a section ([policy], [race], [tls] or [limits]), not a {}",
                    value.type_str()
                ));
            };
            let mut s = Section::new(name, section);
            match name.as_str() {
                "policy" => {
                    settings.allow =
                        s.list("allow", "allow rules", |v| v.parse::<Rule>().map_err(|e| e.to_string()))?;
                    settings.allow_private = s.bool("allow-private")?;
                }
                "race" => {
                    settings.cancel_after = s.parsed("cancel-after", "a commit stage", |v| v.parse())?;
                    settings.attempt_delay = s.int("attempt-delay", range::ATTEMPT_DELAY, "milliseconds")?;
                    settings.resolution_delay = s.int("resolution-delay", range::RESOLUTION_DELAY, "milliseconds")?;
                    settings.first_family_count = s.int("first-family-count", range::FIRST_FAMILY_COUNT, "")?;
                    settings.max_in_flight = s.int("max-in-flight", range::MAX_IN_FLIGHT, "")?;
                    settings.park_grace = s.int("park-grace", range::PARK_GRACE, "milliseconds")?;
                    settings.tls_timeout = s.int("tls-timeout", range::TLS_TIMEOUT, "milliseconds")?;
                    settings.memory_ttl = s.int("memory-ttl", range::MEMORY_TTL, "seconds")?;
                    settings.connect_timeout = s.int("connect-timeout", range::CONNECT_TIMEOUT, "milliseconds")?;
                    settings.dns_server = s.parsed("dns-server", "an ADDR:PORT", |v| {
                        v.parse::<SocketAddr>()
                            .map_err(|_| format!("`{v}` is not an ADDR:PORT"))
                    })?;
                    settings.resolve = s.list("resolve", "HOST:PORT:ADDR entries", |v| {
                        v.parse::<Override>().map_err(|e| e.to_string())
                    })?;
                }
                "tls" => {
                    settings.ca_cert = s.list("ca-cert", "file paths", |v| Ok(base.join(v)))?;
                    settings.no_system_roots = s.bool("no-system-roots")?;
                }
                "limits" => {
                    settings.memory = s.int("memory", range::MEMORY, "MiB")?;
                    settings.cpu_time = s.int("cpu-time", range::CPU_TIME, "milliseconds, 0: no limit")?;
                    settings.run_time = s.int("run-time", range::RUN_TIME, "seconds, 0: no limit")?;
                    settings.connections = s.int("connections", range::CONNECTIONS, "")?;
                    settings.connects_per_second =
                        s.int("connects-per-second", range::CONNECTS_PER_SECOND, "0: no limit")?;
                    settings.stream_buffer = s.int("stream-buffer", range::STREAM_BUFFER, "KiB")?;
                }
                other => {
                    return Err(format!(
                        "unknown section `[{other}]` (expected [policy], [race], [tls] or [limits])"
                    ));
                }
            }
            s.finish()?;
        }
        Ok(settings)
    }

    /// These settings with `over`'s on top: a value set in `over` wins;
    /// lists are joined, `self`'s first.
    pub fn merge(mut self, over: Settings) -> Settings {
        fn pick<T>(base: &mut Option<T>, over: Option<T>) {
            if over.is_some() {
                *base = over;
            }
        }
        self.allow.extend(over.allow);
        self.resolve.extend(over.resolve);
        self.ca_cert.extend(over.ca_cert);
        pick(&mut self.allow_private, over.allow_private);
        pick(&mut self.cancel_after, over.cancel_after);
        pick(&mut self.attempt_delay, over.attempt_delay);
        pick(&mut self.resolution_delay, over.resolution_delay);
        pick(&mut self.first_family_count, over.first_family_count);
        pick(&mut self.max_in_flight, over.max_in_flight);
        pick(&mut self.park_grace, over.park_grace);
        pick(&mut self.tls_timeout, over.tls_timeout);
        pick(&mut self.memory_ttl, over.memory_ttl);
        pick(&mut self.connect_timeout, over.connect_timeout);
        pick(&mut self.dns_server, over.dns_server);
        pick(&mut self.no_system_roots, over.no_system_roots);
        pick(&mut self.memory, over.memory);
        pick(&mut self.cpu_time, over.cpu_time);
        pick(&mut self.run_time, over.run_time);
        pick(&mut self.connections, over.connections);
        pick(&mut self.connects_per_second, over.connects_per_second);
        pick(&mut self.stream_buffer, over.stream_buffer);
        self
    }

    /// The race's timing rules, defaults filled in.
    pub fn race_config(&self) -> RaceConfig {
        let d = RaceConfig::default();
        let ms = |v: Option<u64>, default: Duration| v.map_or(default, Duration::from_millis);
        RaceConfig {
            attempt_delay: ms(self.attempt_delay, d.attempt_delay),
            resolution_delay: ms(self.resolution_delay, d.resolution_delay),
            max_in_flight: self.max_in_flight.map_or(d.max_in_flight, to_usize),
            first_family_count: self.first_family_count.map_or(d.first_family_count, to_usize),
            park_grace: ms(self.park_grace, d.park_grace),
            tls_timeout: ms(self.tls_timeout, d.tls_timeout),
            ..d
        }
    }

    /// The per-instance limits, defaults filled in.
    pub fn limits(&self) -> Limits {
        let d = Limits::default();
        // 0 means no limit for the time and rate limits.
        let nonzero = |v: u64| (v != 0).then_some(v);
        Limits {
            memory: self.memory.map_or(d.memory, |mib| to_usize(mib) << 20),
            cpu_time: self
                .cpu_time
                .map_or(d.cpu_time, |ms| nonzero(ms).map(Duration::from_millis)),
            run_time: self
                .run_time
                .map_or(d.run_time, |s| nonzero(s).map(Duration::from_secs)),
            connections: self.connections.map_or(d.connections, to_usize),
            connects_per_second: self.connects_per_second.map_or(d.connects_per_second, |n| {
                nonzero(n).map(|n| u32::try_from(n).unwrap_or(u32::MAX))
            }),
            stream_buffer: self.stream_buffer.map_or(d.stream_buffer, |kib| to_usize(kib) << 10),
        }
    }

    /// A [`ConnectConfig`] builder with these settings, to which a caller
    /// adds what is not configuration (the race log, a summary sink).
    pub fn connect_builder(&self) -> ConnectConfigBuilder {
        let mut builder = ConnectConfig::builder()
            .system_roots(!self.no_system_roots.unwrap_or(false))
            .race(self.race_config());
        if let Some(ms) = self.connect_timeout {
            builder = builder.connect_timeout(Duration::from_millis(ms));
        }
        if let Some(s) = self.memory_ttl {
            builder = builder.memory_ttl(Duration::from_secs(s));
        }
        if let Some(stage) = self.cancel_after {
            builder = builder.cancel_after(stage);
        }
        if let Some(server) = self.dns_server {
            builder = builder.dns_server(server);
        }
        for entry in &self.resolve {
            builder = builder.resolve(entry.clone());
        }
        for path in &self.ca_cert {
            builder = builder.ca_file(path);
        }
        for rule in &self.allow {
            builder = builder.allow(rule.clone());
        }
        if self.allow_private == Some(true) {
            builder = builder.allow_private();
        }
        builder
    }
}

fn to_usize(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// The 1-based line of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

/// Reads the keys of one section, remembering which were read so that the
/// others can be refused as unknown.
struct Section<'a> {
    name: &'a str,
    table: &'a toml::Table,
    known: BTreeSet<&'static str>,
}

impl<'a> Section<'a> {
    fn new(name: &'a str, table: &'a toml::Table) -> Self {
        Section {
            name,
            table,
            known: BTreeSet::new(),
        }
    }

    fn get(&mut self, key: &'static str) -> Option<&'a toml::Value> {
        self.known.insert(key);
        self.table.get(key)
    }

    /// `section.key` for messages.
    fn path(&self, key: &str) -> String {
        format!("{}.{key}", self.name)
    }

    fn wrong_type(&self, key: &str, expected: &str, found: &toml::Value) -> String {
        format!("`{}` must be {expected}, not a {}", self.path(key), found.type_str())
    }

    fn int(&mut self, key: &'static str, range: RangeInclusive<u64>, unit: &str) -> Result<Option<u64>, String> {
        let Some(value) = self.get(key) else { return Ok(None) };
        let unit = if unit.is_empty() {
            String::new()
        } else {
            format!(" ({unit})")
        };
        let toml::Value::Integer(n) = value else {
            return Err(self.wrong_type(key, &format!("an integer{unit}"), value));
        };
        match u64::try_from(*n) {
            Ok(n) if range.contains(&n) => Ok(Some(n)),
            _ => Err(format!(
                "`{}` must be between {} and {}{unit}, not {n}",
                self.path(key),
                range.start(),
                range.end()
            )),
        }
    }

    fn bool(&mut self, key: &'static str) -> Result<Option<bool>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(toml::Value::Boolean(b)) => Ok(Some(*b)),
            Some(other) => Err(self.wrong_type(key, "true or false", other)),
        }
    }

    fn parsed<T>(
        &mut self,
        key: &'static str,
        what: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => parse(s).map(Some).map_err(|why| format!("`{}`: {why}", self.path(key))),
            Some(other) => Err(self.wrong_type(key, &format!("a string ({what})"), other)),
        }
    }

    fn list<T>(
        &mut self,
        key: &'static str,
        what: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Vec<T>, String> {
        let Some(value) = self.get(key) else {
            return Ok(Vec::new());
        };
        let toml::Value::Array(items) = value else {
            return Err(self.wrong_type(key, &format!("a list of strings ({what})"), value));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                toml::Value::String(s) => parse(s).map_err(|why| format!("`{}[{i}]`: {why}", self.path(key))),
                other => Err(format!(
                    "`{}[{i}]` must be a string, not a {}",
                    self.path(key),
                    other.type_str()
                )),
            })
            .collect()
    }

    /// Refuses the keys no one asked for, naming them and the known ones.
    fn finish(self) -> Result<(), String> {
        match self.table.keys().find(|k| !self.known.contains(k.as_str())) {
            Some(unknown) => Err(format!(
                "unknown key `{}` (known in [{}]: {})",
                self.path(unknown),
                self.name,
                self.known.iter().copied().collect::<Vec<_>>().join(", ")
            )),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, String> {
        Settings::from_toml(text, Path::new("/etc/wsgate"))
    }

    #[test]
    fn the_example_config_parses() {
        let text = include_str!("../../examples/wsgate.toml");
        let settings = parse(text).unwrap();
        assert!(!settings.allow.is_empty());
        assert_eq!(settings.limits().validate(), Ok(()));
        assert_eq!(settings.race_config().validate(), Ok(()));
    }

    #[test]
    fn every_key_is_read() {
        let settings = parse(
            r#"
            [policy]
            allow = ["echo.example.com:443", "10.0.0.0/8"]
            allow-private = true
            [race]
            cancel-after = "response"
            attempt-delay = 100
            resolution-delay = 20
            first-family-count = 2
            max-in-flight = 3
            park-grace = 500
            tls-timeout = 700
            memory-ttl = 60
            connect-timeout = 3000
            dns-server = "127.0.0.1:5353"
            resolve = ["a.test:443:127.0.0.1,::1"]
            [tls]
            ca-cert = ["ca.pem", "/abs/ca.pem"]
            no-system-roots = true
            [limits]
            memory = 32
            cpu-time = 0
            run-time = 30
            connections = 4
            connects-per-second = 2
            stream-buffer = 64
            "#,
        )
        .unwrap();
        assert_eq!(settings.allow.len(), 2);
        assert_eq!(settings.cancel_after, Some(CommitStage::Response));
        assert_eq!(
            settings.ca_cert,
            [PathBuf::from("/etc/wsgate/ca.pem"), PathBuf::from("/abs/ca.pem")]
        );
        let race = settings.race_config();
        assert_eq!(race.attempt_delay, Duration::from_millis(100));
        assert_eq!(race.max_in_flight, 3);
        let limits = settings.limits();
        assert_eq!(limits.memory, 32 << 20);
        assert_eq!(limits.cpu_time, None, "0 is no limit");
        assert_eq!(limits.run_time, Some(Duration::from_secs(30)));
        assert_eq!(limits.connects_per_second, Some(2));
        assert_eq!(limits.stream_buffer, 64 << 10);
    }

    #[test]
    fn each_kind_of_bad_input_names_the_key() {
        let cases = [
            // Unknown keys and sections.
            ("[race]\nattempt-dealy = 100", "unknown key `race.attempt-dealy`"),
            ("[limits]\nmemroy = 1", "unknown key `limits.memroy`"),
            ("[proxy]\nx = 1", "unknown section `[proxy]`"),
            ("allow = [\"x:1\"]", "`allow` must be a section"),
            // Wrong types.
            (
                "[race]\nattempt-delay = \"fast\"",
                "`race.attempt-delay` must be an integer (milliseconds), not a string",
            ),
            (
                "[race]\nattempt-delay = 2.5",
                "`race.attempt-delay` must be an integer (milliseconds), not a float",
            ),
            (
                "[policy]\nallow-private = \"yes\"",
                "`policy.allow-private` must be true or false, not a string",
            ),
            (
                "[policy]\nallow = \"example.com:443\"",
                "`policy.allow` must be a list of strings",
            ),
            (
                "[policy]\nallow = [443]",
                "`policy.allow[0]` must be a string, not a integer",
            ),
            ("[race]\ncancel-after = 1", "`race.cancel-after` must be a string"),
            // Impossible values.
            (
                "[race]\nattempt-delay = 5",
                "`race.attempt-delay` must be between 10 and 2000 (milliseconds), not 5",
            ),
            (
                "[race]\nmax-in-flight = 0",
                "`race.max-in-flight` must be between 1 and 64, not 0",
            ),
            (
                "[limits]\nmemory = 0",
                "`limits.memory` must be between 1 and 4096 (MiB), not 0",
            ),
            (
                "[limits]\nmemory = -1",
                "`limits.memory` must be between 1 and 4096 (MiB), not -1",
            ),
            (
                "[limits]\nconnections = 0",
                "`limits.connections` must be between 1 and 65536, not 0",
            ),
            (
                "[limits]\nstream-buffer = 100000",
                "`limits.stream-buffer` must be between 1 and 65536 (KiB)",
            ),
            (
                "[race]\ncancel-after = \"never\"",
                "`race.cancel-after`: `never` is not a commit stage",
            ),
            (
                "[race]\ndns-server = \"localhost\"",
                "`race.dns-server`: `localhost` is not an ADDR:PORT",
            ),
            (
                "[race]\nresolve = [\"a.test:0:127.0.0.1\"]",
                "`race.resolve[0]`: bad port `0`",
            ),
            (
                "[policy]\nallow = [\"ok.example:443\", \"example.com\"]",
                "`policy.allow[1]`: ",
            ),
            // Not TOML.
            ("[race\nattempt-delay = 1", "line 1: "),
            ("[race]\nattempt-delay = 100\nattempt-delay = 200", "line 3: "),
        ];
        for (text, expected) in cases {
            let err = parse(text).expect_err(text);
            assert!(err.contains(expected), "for {text:?}: expected `{expected}` in `{err}`");
            assert!(!err.contains('\n'), "one line: {err:?}");
        }
    }

    #[test]
    fn flags_override_the_file_and_lists_add_up() {
        let file =
            parse("[race]\nattempt-delay = 100\ntls-timeout = 900\n[policy]\nallow = [\"a.example:443\"]").unwrap();
        let flags = Settings {
            attempt_delay: Some(300),
            allow: vec!["b.example:443".parse().unwrap()],
            ..Settings::default()
        };
        let merged = file.merge(flags);
        assert_eq!(merged.attempt_delay, Some(300));
        assert_eq!(merged.tls_timeout, Some(900));
        assert_eq!(merged.allow.len(), 2);
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = Settings::from_file(Path::new("/nonexistent/wsgate.toml")).unwrap_err();
        assert!(
            err.to_string().contains("cannot read `/nonexistent/wsgate.toml`"),
            "{err}"
        );
    }
}
