//! The allow rules' grammar: parsing, matching and printing one rule.

use super::net::{Net, max_prefix, nat64, network};
use crate::error::Error;
use crate::host_name::{is_dns_name, normalize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A parsed allow rule (see the [module documentation](super) for the
/// syntax).
///
/// [`Display`](fmt::Display) prints the rule's canonical text, which parses
/// back to the same rule: names lowercased and without a trailing dot, IP
/// rules without a full-length prefix (`::1`, not `::1/128`), and an
/// IPv4-mapped IPv6 address as its IPv4 address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub(super) target: Target,
    /// `None` is any port (`:*`, or an IP rule written without a port).
    pub(super) port: Option<u16>,
}

/// What a rule matches, apart from the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Target {
    /// One DNS name, normalised.
    Name(String),
    /// The strict subdomains of this (normalised) domain: `*.domain`.
    Subdomains(String),
    /// `*`: any DNS name, and any public IP literal.
    Any,
    /// An address or a network; a lone address is a full-length prefix.
    Net(Net),
}

impl Rule {
    pub(super) fn allows_port(&self, port: u16) -> bool {
        self.port.is_none_or(|p| p == port)
    }

    /// Whether the rule allows the (normalised, valid) DNS name on `port`.
    pub(super) fn allows_name(&self, name: &str, port: u16) -> bool {
        self.allows_port(port)
            && match &self.target {
                Target::Name(n) => n == name,
                Target::Subdomains(domain) => name
                    .strip_suffix(domain.as_str())
                    .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
                Target::Any => true,
                Target::Net(_) => false,
            }
    }

    /// Whether the rule is an IP or CIDR rule containing `ip` (canonical)
    /// on `port`.
    pub(super) fn allows_ip(&self, ip: IpAddr, port: u16) -> bool {
        self.allows_port(port) && matches!(&self.target, Target::Net(net) if net.contains(ip))
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let port = |f: &mut fmt::Formatter<'_>| match self.port {
            Some(p) => write!(f, ":{p}"),
            None => f.write_str(":*"),
        };
        match &self.target {
            Target::Name(name) => {
                f.write_str(name)?;
                port(f)
            }
            Target::Subdomains(domain) => {
                write!(f, "*.{domain}")?;
                port(f)
            }
            Target::Any => {
                f.write_str("*")?;
                port(f)
            }
            // An IP rule without a port is written bare: that is the form
            // operators write, and `10.0.0.0/8:*` would only add noise.
            Target::Net(net) => match (self.port, net.addr) {
                (None, _) => write!(f, "{net}"),
                (Some(p), IpAddr::V4(_)) => write!(f, "{net}:{p}"),
                (Some(p), IpAddr::V6(_)) => write!(f, "[{net}]:{p}"),
            },
        }
    }
}

/// Why a rule's text was refused. The message names the text and says
/// what to write instead, when that is clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    message: String,
}

impl RuleError {
    /// An error about `text`, the rule as the operator wrote it.
    fn new(text: &str, what: impl fmt::Display) -> Self {
        RuleError {
            message: format!("`{}` {what}", text.escape_debug()),
        }
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RuleError {}

impl From<RuleError> for Error {
    fn from(e: RuleError) -> Self {
        Error::config(format!("bad allow rule: {e}"))
    }
}

impl FromStr for Rule {
    type Err = RuleError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let t = text.trim();
        if t.is_empty() {
            return Err(RuleError {
                message: "empty allow rule: write e.g. `example.com:443`, `*.example.com:*` or `10.0.0.0/8`".into(),
            });
        }
        if t.chars().any(char::is_whitespace) {
            return Err(RuleError::new(t, "contains whitespace: write one rule per argument"));
        }
        if let Some(rest) = t.strip_prefix('[') {
            return parse_bracketed(t, rest);
        }
        if let Some((addr, rest)) = t.split_once('/') {
            return parse_cidr(t, addr, rest);
        }
        if let Ok(ip) = t.parse::<IpAddr>() {
            return net_rule(t, ip, None, None);
        }
        match t.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => Err(RuleError::new(
                t,
                "is not an IP address; an IPv6 address with a port needs brackets, as in `[2001:db8::1]:443`",
            )),
            Some((host, port)) => {
                let port = parse_port(t, port)?;
                if let Ok(ip) = host.parse::<Ipv4Addr>() {
                    return net_rule(t, IpAddr::V4(ip), None, port);
                }
                parse_name_rule(t, host, port)
            }
            None => {
                // Check the name first, so that garbage is called garbage
                // rather than told it only lacks a port.
                parse_name_rule(t, t, None)?;
                Err(RuleError::new(
                    t,
                    format_args!("needs a port: write `{t}:443` or `{t}:*`"),
                ))
            }
        }
    }
}

/// `[addr]`, `[addr]:port`, `[net/len]:port`, with `rest` after the `[`.
fn parse_bracketed(t: &str, rest: &str) -> Result<Rule, RuleError> {
    let Some((inside, after)) = rest.split_once(']') else {
        return Err(RuleError::new(t, "has a `[` without a closing `]`"));
    };
    let port = match after {
        "" => None,
        _ => match after.strip_prefix(':') {
            Some(port) => parse_port(t, port)?,
            None => return Err(RuleError::new(t, "has text after `]` that is not `:PORT` or `:*`")),
        },
    };
    let (addr, prefix) = match inside.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (inside, None),
    };
    let Ok(ip) = addr.parse::<Ipv6Addr>() else {
        return Err(RuleError::new(
            t,
            format_args!(
                "has `{}` in brackets, which is not an IPv6 address (brackets are for IPv6 only)",
                addr.escape_debug()
            ),
        ));
    };
    net_rule(t, IpAddr::V6(ip), prefix, port)
}

/// `net/len` or `v4net/len:port`, split at the `/` into `addr` and `rest`.
fn parse_cidr(t: &str, addr: &str, rest: &str) -> Result<Rule, RuleError> {
    let Ok(ip) = addr.parse::<IpAddr>() else {
        return Err(RuleError::new(
            t,
            format_args!("is not a CIDR: `{}` is not an IP address", addr.escape_debug()),
        ));
    };
    let (prefix, port) = match rest.split_once(':') {
        None => (rest, None),
        Some((prefix, port)) if ip.is_ipv6() => {
            return Err(RuleError::new(
                t,
                format_args!(
                    "needs brackets around an IPv6 network with a port: write `[{}/{}]:{}`",
                    addr.escape_debug(),
                    prefix.escape_debug(),
                    port.escape_debug()
                ),
            ));
        }
        Some((prefix, port)) => (prefix, parse_port(t, port)?),
    };
    net_rule(t, ip, Some(prefix), port)
}

/// An IP or CIDR rule, after checking the prefix length and host bits.
fn net_rule(t: &str, ip: IpAddr, prefix: Option<&str>, port: Option<u16>) -> Result<Rule, RuleError> {
    let max = max_prefix(ip);
    let prefix = match prefix {
        None => max,
        Some(p) => match p.parse::<u8>() {
            Ok(n) if p.bytes().all(|b| b.is_ascii_digit()) && n <= max => n,
            _ if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                let family = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
                return Err(RuleError::new(
                    t,
                    format_args!("has prefix length /{p}, more than {max} for {family}"),
                ));
            }
            _ => {
                return Err(RuleError::new(
                    t,
                    format_args!("has `/{}`, which is not a prefix length (0 to {max})", p.escape_debug()),
                ));
            }
        },
    };
    let net = network(ip, prefix);
    if net != ip {
        let suggestion = Rule {
            target: Target::Net(Net { addr: net, prefix }),
            port,
        };
        return Err(RuleError::new(
            t,
            format_args!("has host bits set: write the network, `{suggestion}`"),
        ));
    }
    // A mapped IPv6 network is the IPv4 network it maps (see `canonical`),
    // so that the rule matches the canonical addresses that checks compare.
    // A NAT64 network is refused: unwrapped the same way, `64:ff9b::/96`
    // would become `0.0.0.0/0` and allow every special IPv4 address.
    let net = match ip {
        IpAddr::V6(v6) if prefix >= 96 && nat64(v6).is_some() => {
            return Err(RuleError::new(
                t,
                format_args!(
                    "is in the NAT64 prefix 64:ff9b::/96, whose addresses are checked as the IPv4 \
                     addresses they reach: write the IPv4 rule"
                ),
            ));
        }
        IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
            Some(v4) => Net {
                addr: IpAddr::V4(v4),
                prefix: prefix - 96,
            },
            None => Net { addr: ip, prefix },
        },
        _ => Net { addr: ip, prefix },
    };
    Ok(Rule {
        target: Target::Net(net),
        port,
    })
}

/// A port: `*` (any, `None`) or a number from 1 to 65535.
fn parse_port(t: &str, port: &str) -> Result<Option<u16>, RuleError> {
    if port == "*" {
        return Ok(None);
    }
    if port.is_empty() {
        return Err(RuleError::new(t, "has no port after `:`: write a port or `*`"));
    }
    // Digits only: `u16::from_str` would also take a leading `+`.
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RuleError::new(
            t,
            format_args!("has port `{}`, which is not a number or `*`", port.escape_debug()),
        ));
    }
    match port.parse::<u16>() {
        Ok(0) => Err(RuleError::new(
            t,
            "has port 0: ports go from 1 to 65535 (or `*` for any)",
        )),
        Ok(p) => Ok(Some(p)),
        Err(_) => Err(RuleError::new(
            t,
            format_args!("has port {port}, out of range: ports go from 1 to 65535"),
        )),
    }
}

/// `host`, `*.domain` or `*`, with its port.
fn parse_name_rule(t: &str, host: &str, port: Option<u16>) -> Result<Rule, RuleError> {
    let target = if host == "*" {
        Target::Any
    } else if let Some(domain) = host.strip_prefix("*.") {
        Target::Subdomains(parse_name(t, domain)?)
    } else {
        let name = parse_name(t, host)?;
        // `192.0.2.7.:443` is an address with a trailing dot, not a name.
        if let Ok(ip) = name.parse::<IpAddr>() {
            return net_rule(t, ip, None, port);
        }
        Target::Name(name)
    };
    Ok(Rule { target, port })
}

/// A DNS name from a rule, normalised.
fn parse_name(t: &str, name: &str) -> Result<String, RuleError> {
    if name.contains('*') {
        return Err(RuleError::new(
            t,
            "has `*` inside a name: it may only be the whole first label, as in `*.example.com:443`",
        ));
    }
    normalise(name).ok_or_else(|| {
        RuleError::new(
            t,
            format_args!(
                "has `{}`, which is not a DNS name (labels of 1 to 63 letters, digits, `-` or `_`, at most 253 bytes)",
                name.escape_debug()
            ),
        )
    })
}

/// The name as connects spell it (see [`HostName`](crate::HostName)), if it
/// is a valid DNS name.
pub(super) fn normalise(name: &str) -> Option<String> {
    is_dns_name(name).then(|| normalize(name))
}
