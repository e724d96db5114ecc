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
//! AAAA and A are asked separately and in parallel, AAAA first, and each
//! answer is awaited on its own, so that the race can start on AAAA, or on
//! A after the Resolution Delay (RFC 8305 §3).

use crate::error::Error;
use crate::race::Lookups;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use tokio::sync::OnceCell;

/// Where the addresses of a connect came from.
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
        Ok(Override {
            host: host.to_ascii_lowercase(),
            port,
            addrs,
        })
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
    if !is_dns_name(host) {
        return Err(format!("`{}` is not a host name or IP address", host.escape_debug()));
    }
    Ok(())
}

/// Whether `name` is a DNS name: labels of 1 to 63 ASCII letters, digits,
/// `-` and `_` (as in service names such as `_sip._tcp`), at most 253 bytes
/// in all, not counting one trailing dot.
pub(crate) fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `host` in the one spelling a connect uses for the policy, `--resolve`
/// entries, DNS, the family memory and TLS: lower case, without the one
/// trailing dot a DNS name may carry (so that `127.0.0.1.` reads as the IP
/// literal it is).
pub fn normalize_host(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
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
    dns_server: Option<SocketAddr>,
    // Built on first use: runs that only use literals or overrides never
    // read the system's DNS configuration.
    dns: OnceCell<TokioResolver>,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("overrides", &self.overrides)
            .field("dns_server", &self.dns_server)
            .finish_non_exhaustive()
    }
}

impl Resolver {
    /// A resolver using the system's DNS configuration (or only
    /// `dns_server`, when given), with `overrides` taking precedence. A
    /// later override for the same host and port replaces an earlier one,
    /// as in curl.
    pub fn new(overrides: impl IntoIterator<Item = Override>, dns_server: Option<SocketAddr>) -> Self {
        let overrides = overrides.into_iter().map(|o| ((o.host, o.port), o.addrs)).collect();
        Resolver {
            overrides,
            dns_server,
            dns: OnceCell::new(),
        }
    }

    /// The two lookups (AAAA and A) for `host` on `port`, to be awaited
    /// each on its own, and where the answer comes from.
    ///
    /// IP literals and overrides answer at once; DNS names are asked of
    /// hickory-resolver, both families in parallel.
    pub async fn lookups(&self, host: &str, port: u16) -> Result<(Lookups, Source), ResolveError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok((Lookups::ready(&[ip]), Source::Literal));
        }
        let name = host.to_ascii_lowercase();
        if let Some(addrs) = self.overrides.get(&(name.clone(), port)) {
            return Ok((Lookups::ready(addrs), Source::Override));
        }
        let dns = self.dns.get_or_try_init(|| async { self.build_dns() }).await?.clone();
        let v6 = {
            let (dns, name) = (dns.clone(), name.clone());
            Box::pin(async move {
                let lookup = dns.ipv6_lookup(name.as_str()).await.map_err(|e| no_records(&e))?;
                Ok(lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match r.data.ip_addr() {
                        Some(IpAddr::V6(a)) => Some(a),
                        _ => None,
                    })
                    .collect())
            })
        };
        let v4 = Box::pin(async move {
            let lookup = dns.ipv4_lookup(name.as_str()).await.map_err(|e| no_records(&e))?;
            Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match r.data.ip_addr() {
                    Some(IpAddr::V4(a)) => Some(a),
                    _ => None,
                })
                .collect())
        });
        Ok((Lookups { v6, v4 }, Source::Dns))
    }

    fn build_dns(&self) -> Result<TokioResolver, ResolveError> {
        let built = match self.dns_server {
            None => TokioResolver::builder_tokio().and_then(|b| b.build()),
            Some(server) => {
                let mut ns = NameServerConfig::udp_and_tcp(server.ip());
                for connection in &mut ns.connections {
                    connection.port = server.port();
                }
                let mut builder = TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![ns]),
                    TokioRuntimeProvider::default(),
                );
                // The operator named the server: it alone answers.
                builder.options_mut().use_hosts_file = ResolveHosts::Never;
                builder.build()
            }
        };
        built.map_err(|e| ResolveError(format!("cannot set up DNS resolution: {e}")))
    }
}

/// A lookup error in words: "no records" is the common case and needs no
/// resolver jargon.
fn no_records(e: &hickory_resolver::net::NetError) -> String {
    if e.is_no_records_found() {
        "no records".to_owned()
    } else {
        e.to_string()
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
        assert_eq!(
            o.addrs,
            vec!["::1".parse::<IpAddr>().unwrap(), "127.0.0.1".parse().unwrap()]
        );
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
        for good in [
            "wsgate.test",
            "wsgate.test.",
            "a-b_c.d9",
            "::1",
            "127.0.0.1",
            "localhost",
        ] {
            assert_eq!(check_host(good), Ok(()), "{good}");
        }
        let long = format!("{}.test", "a".repeat(250));
        let label = format!("{}.test", "a".repeat(64));
        for bad in [
            "",
            "bad host",
            "a..b",
            ".a",
            "ö.test",
            "a/b",
            "[::1]",
            long.as_str(),
            label.as_str(),
        ] {
            assert!(check_host(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn literals_and_overrides_skip_dns() {
        let r = Resolver::new(["a.test:443:[::1],127.0.0.1".parse().unwrap()], None);
        let (lookups, source) = r.lookups("::1", 1).await.unwrap();
        assert_eq!(source, Source::Literal);
        assert_eq!(
            (lookups.v6.await.unwrap().len(), lookups.v4.await.unwrap().len()),
            (1, 0)
        );
        let (lookups, source) = r.lookups("A.TEST", 443).await.unwrap();
        assert_eq!(source, Source::Override);
        assert_eq!(
            (lookups.v6.await.unwrap().len(), lookups.v4.await.unwrap().len()),
            (1, 1)
        );
    }
}
