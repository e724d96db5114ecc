//! From a host name to the addresses to try.
//!
//! Three sources, in this order of precedence:
//!
//! 1. an IP literal is its own answer: no DNS query is made;
//! 2. an operator's override (`--resolve HOST:PORT:ADDR[,ADDR...]`, curl's
//!    form) answers for that host and port;
//! 3. DNS, through hickory-resolver with the system's configuration
//!    (`/etc/resolv.conf`, `/etc/hosts`).
//!
//! AAAA and A are asked separately and in parallel, AAAA first; the lookup
//! returns when both have answered or failed.

use crate::error::Error;
use hickory_resolver::TokioResolver;
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use tokio::sync::OnceCell;

/// The addresses a name resolved to, kept per family in the order the
/// source gave them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// IPv6 addresses (AAAA records).
    pub v6: Vec<Ipv6Addr>,
    /// IPv4 addresses (A records).
    pub v4: Vec<Ipv4Addr>,
    /// Where the answer came from.
    pub source: Source,
}

impl Resolved {
    fn from_ips(ips: &[IpAddr], source: Source) -> Self {
        let mut out = Resolved { source, ..Resolved::default() };
        for ip in ips {
            match ip {
                IpAddr::V6(a) => out.v6.push(*a),
                IpAddr::V4(a) => out.v4.push(*a),
            }
        }
        out
    }

    /// The total number of addresses.
    pub fn len(&self) -> usize {
        self.v6.len() + self.v4.len()
    }

    /// Whether no address was found.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where a [`Resolved`] answer came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Source {
    /// The host was an IP literal.
    #[default]
    Literal,
    /// An operator's `--resolve` entry.
    Override,
    /// A DNS query.
    Dns,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Literal => "literal",
            Source::Override => "override",
            Source::Dns => "dns",
        })
    }
}

/// One `--resolve` entry: `HOST:PORT:ADDR[,ADDR...]`, as curl takes it.
///
/// IPv6 addresses may be written with or without brackets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// The host name, lowercased.
    pub host: String,
    /// The port the entry applies to.
    pub port: u16,
    /// The addresses, in the order given.
    pub addrs: Vec<IpAddr>,
}

/// Why a `--resolve` entry was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseOverrideError(String);

impl fmt::Display for ParseOverrideError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (expected HOST:PORT:ADDR[,ADDR...])", self.0)
    }
}

impl std::error::Error for ParseOverrideError {}

impl From<ParseOverrideError> for Error {
    fn from(e: ParseOverrideError) -> Self {
        Error::config(format!("bad --resolve entry: {e}"))
    }
}

impl std::str::FromStr for Override {
    type Err = ParseOverrideError;

    fn from_str(spec: &str) -> Result<Self, ParseOverrideError> {
        let bad = |why: &str| ParseOverrideError(why.to_owned());
        let mut parts = spec.splitn(3, ':');
        let (Some(host), Some(port), Some(addrs)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("missing field"));
        };
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        if host.parse::<IpAddr>().is_ok() {
            return Err(bad("the host must be a name"));
        }
        check_host(host).map_err(|why| bad(&why))?;
        let port: u16 = match port.parse() {
            Ok(p) if p != 0 => p,
            _ => return Err(bad(&format!("bad port `{port}`"))),
        };
        let addrs = addrs
            .split(',')
            .map(|a| {
                let inner = a.strip_prefix('[').and_then(|a| a.strip_suffix(']')).unwrap_or(a);
                inner.parse::<IpAddr>().map_err(|_| bad(&format!("bad address `{a}`")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Override { host: host.to_ascii_lowercase(), port, addrs })
    }
}

/// Checks that `host` is something a connect can use: an IP literal, or a
/// name of ASCII letters, digits, `-`, `_` and dots, at most 253 bytes,
/// without empty labels (a single trailing dot is allowed).
pub fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("empty host".into());
    }
    if host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    if host.len() > 253 {
        return Err("host name longer than 253 bytes".into());
    }
    let labels = host.strip_suffix('.').unwrap_or(host);
    let valid = labels.split('.').all(|label| {
        !label.is_empty() && label.len() <= 63 && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if !valid {
        return Err(format!("`{}` is not a host name or IP address", host.escape_debug()));
    }
    Ok(())
}

/// Why a name could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveError(pub String);

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ResolveError {}

/// Resolves host names for connects. Cheap to share behind an `Arc`.
pub struct Resolver {
    overrides: HashMap<(String, u16), Vec<IpAddr>>,
    // Built on first use: runs that only use literals or overrides never
    // read the system's DNS configuration.
    dns: OnceCell<TokioResolver>,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver").field("overrides", &self.overrides).finish_non_exhaustive()
    }
}

impl Resolver {
    /// A resolver using the system's DNS configuration, with `overrides`
    /// taking precedence. A later override for the same host and port
    /// replaces an earlier one, as in curl.
    pub fn new(overrides: impl IntoIterator<Item = Override>) -> Self {
        let overrides = overrides.into_iter().map(|o| ((o.host, o.port), o.addrs)).collect();
        Resolver { overrides, dns: OnceCell::new() }
    }

    /// Resolves `host` for a connect to `port`.
    ///
    /// One family failing to resolve does not fail the lookup; both
    /// failing, or both answering with no address, does.
    pub async fn lookup(&self, host: &str, port: u16) -> Result<Resolved, ResolveError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Resolved::from_ips(&[ip], Source::Literal));
        }
        let name = host.to_ascii_lowercase();
        if let Some(addrs) = self.overrides.get(&(name.clone(), port)) {
            return Ok(Resolved::from_ips(addrs, Source::Override));
        }
        let dns = self
            .dns
            .get_or_try_init(|| async {
                TokioResolver::builder_tokio()
                    .and_then(|b| b.build())
                    .map_err(|e| ResolveError(format!("cannot read the system's DNS configuration: {e}")))
            })
            .await?;
        let (v6, v4) = tokio::join!(dns.ipv6_lookup(name.as_str()), dns.ipv4_lookup(name.as_str()));
        let mut out = Resolved { source: Source::Dns, ..Resolved::default() };
        let mut errors = Vec::new();
        match v6 {
            Ok(lookup) => out.v6.extend(lookup.answers().iter().filter_map(|r| match r.data.ip_addr() {
                Some(IpAddr::V6(a)) => Some(a),
                _ => None,
            })),
            Err(e) => errors.push(format!("AAAA: {e}")),
        }
        match v4 {
            Ok(lookup) => out.v4.extend(lookup.answers().iter().filter_map(|r| match r.data.ip_addr() {
                Some(IpAddr::V4(a)) => Some(a),
                _ => None,
            })),
            Err(e) => errors.push(format!("A: {e}")),
        }
        if out.is_empty() {
            let why = if errors.is_empty() { "no address".to_owned() } else { errors.join("; ") };
            return Err(ResolveError(format!("cannot resolve `{host}`: {why}")));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_curl_form() {
        let o: Override = "Wsgate.Test:8443:[::1],127.0.0.1".parse().unwrap();
        assert_eq!(o.host, "wsgate.test");
        assert_eq!(o.port, 8443);
        assert_eq!(o.addrs, vec!["::1".parse::<IpAddr>().unwrap(), "127.0.0.1".parse().unwrap()]);
        let o: Override = "h:1:::1".parse().unwrap();
        assert_eq!(o.addrs, vec!["::1".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn rejects_malformed_entries_with_the_reason() {
        for (spec, why) in [
            ("wsgate.test", "missing field"),
            ("wsgate.test:443", "missing field"),
            (":443:127.0.0.1", "empty host"),
            ("h:0:127.0.0.1", "bad port `0`"),
            ("h:x:127.0.0.1", "bad port `x`"),
            ("h:70000:127.0.0.1", "bad port `70000`"),
            ("h:443:", "bad address ``"),
            ("h:443:127.0.0.1,nope", "bad address `nope`"),
            ("127.0.0.1:443:127.0.0.2", "the host must be a name"),
            ("ex!ample:443:127.0.0.2", "not a host name"),
            ("a..b:443:127.0.0.2", "not a host name"),
        ] {
            let err = spec.parse::<Override>().unwrap_err().to_string();
            assert!(err.contains(why), "{spec}: {err}");
        }
    }

    #[test]
    fn host_checks() {
        for good in ["wsgate.test", "wsgate.test.", "a-b_c.d9", "::1", "127.0.0.1", "localhost"] {
            assert_eq!(check_host(good), Ok(()), "{good}");
        }
        let long = format!("{}.test", "a".repeat(250));
        let label = format!("{}.test", "a".repeat(64));
        for bad in ["", "bad host", "a..b", ".a", "ö.test", "a/b", "[::1]", long.as_str(), label.as_str()] {
            assert!(check_host(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn literals_and_overrides_skip_dns() {
        let r = Resolver::new(["a.test:443:[::1],127.0.0.1".parse().unwrap()]);
        let got = r.lookup("::1", 1).await.unwrap();
        assert_eq!((got.v6.len(), got.v4.len(), got.source), (1, 0, Source::Literal));
        let got = r.lookup("A.TEST", 443).await.unwrap();
        assert_eq!((got.v6.len(), got.v4.len(), got.source), (1, 1, Source::Override));
    }
}
