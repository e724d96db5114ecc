//! HTTPS records (RFC 9460) as the race uses them: the services a name
//! offers, each with its priority, port, address hints, ALPN set and ECH
//! configuration.
//!
//! The resolver follows AliasMode records itself (with a bound on the
//! chain) and hands the race only ServiceMode records, in priority order.

use crate::host_name::HostName;
use std::net::IpAddr;
use std::sync::Arc;

/// One ServiceMode HTTPS record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// SvcPriority: lower goes first; never 0 (0 is AliasMode).
    pub priority: u16,
    /// The name whose A and AAAA answers belong to this service (a
    /// TargetName of `.` is the record's owner).
    pub target: HostName,
    /// The `port` parameter: where the service listens instead of the
    /// URL's port.
    pub port: Option<u16>,
    /// The `alpn` parameter, as given.
    pub alpn: Vec<String>,
    /// The `no-default-alpn` parameter: the default protocol (`http/1.1`
    /// for HTTPS records) is not spoken unless `alpn` names it.
    pub no_default_alpn: bool,
    /// The `ipv6hint` and `ipv4hint` parameters, IPv6 first.
    pub hints: Vec<IpAddr>,
    /// The `ech` parameter: an ECHConfigList, as the record carries it.
    pub ech: Option<Arc<[u8]>>,
    /// The target's own A and AAAA answers, when the target is not the
    /// name the connect asked for (the HTTPS lookup resolves them);
    /// `None` when the target is that name, whose answers are the race's
    /// own lookups.
    pub addresses: Option<Vec<IpAddr>>,
}

impl Service {
    /// Whether the service speaks HTTP/1.1, the protocol of the WebSocket
    /// upgrade (RFC 9460 §7.1.2: the SVCB ALPN set is `alpn`, plus
    /// `http/1.1` unless `no-default-alpn`).
    pub fn speaks_http1(&self) -> bool {
        !self.no_default_alpn || self.alpn.iter().any(|p| p == "http/1.1")
    }
}

/// The answer of an HTTPS lookup: the ServiceMode records, sorted by
/// priority (ties shuffled), and what was dropped on the way, in words.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceAnswer {
    /// The services, lowest priority value first.
    pub services: Vec<Service>,
    /// Records or chains that were not used, each with why (an alias
    /// loop, a chain too long, a malformed parameter).
    pub notes: Vec<String>,
}
