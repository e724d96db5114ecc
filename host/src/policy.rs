//! The operator's egress policy: which destinations a plugin may connect to.
//!
//! A plugin reaches the network only through the host's `connect`, so the
//! host is the one place where egress can be restricted. The policy is an
//! allow-list: everything no rule allows is denied, and an empty policy
//! allows nothing.
//!
//! Every connect is checked twice:
//!
//! 1. [`Policy::check_name`], on the host and port the plugin gave, before
//!    any DNS query, so that a denied name never leaks to the resolver;
//! 2. [`Policy::check_addr`], on every address the name resolved to (or an
//!    operator's `--resolve` override gave), before the host dials it.
//!
//! The second check exists because a name says nothing about where it
//! points: an allowed `*.example.com` can resolve to `127.0.0.1`, or to the
//! cloud metadata address `169.254.169.254` (DNS rebinding). So *special*
//! addresses (loopback, private, link-local, unique-local, unspecified,
//! multicast, broadcast) are allowed only by an IP or CIDR rule that
//! contains them; a name rule, however broad, never reaches them. A public
//! address passes the second check, since its name passed the first.
//!
//! # Rules
//!
//! | Text | Allows |
//! |------|--------|
//! | `echo.example.com:443` | that name, on port 443 |
//! | `echo.example.com:*` | that name, on any port |
//! | `*.example.com:443`, `*.example.com:*` | any subdomain of `example.com`, at any depth, but **not** `example.com` itself (write a second rule for it) |
//! | `*:443`, `*:*` | any name, or any public IP literal |
//! | `192.0.2.7`, `2001:db8::1` | that address, on any port |
//! | `192.0.2.7:443`, `[2001:db8::1]:443`, `[2001:db8::1]:*` | that address, on one port (or any) |
//! | `10.0.0.0/8`, `fd00::/8` | the addresses in the network, on any port |
//! | `10.0.0.0/8:5432`, `[fd00::/8]:443` | the addresses in the network, on one port |
//!
//! Names are compared without case and without a trailing dot. A name rule
//! needs a port (`:443` or `:*`), so that "any port" is always written
//! down. An IPv6 address with a port needs brackets, because
//! `2001:db8::1:443` is itself a valid IPv6 address.
//!
//! An IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) is the IPv4 address it
//! maps, in rules and in checks alike: otherwise `::ffff:127.0.0.1` would
//! be a way around the loopback check. A NAT64 address of the well-known
//! prefix (`64:ff9b::7f00:1`) is checked as the IPv4 address it translates
//! to, too. As a consequence, an IPv6 rule such as `::/0` or
//! `64:ff9b::/96` does not cover those addresses: write the IPv4 rule.
//!
//! # Example
//!
//! ```
//! use wsgate_host::policy::Policy;
//!
//! let mut policy = Policy::new();
//! policy.allow("echo.example.com:443".parse().unwrap());
//! assert!(policy.check_name("echo.example.com", 443).is_ok());
//! assert!(policy.check_name("evil.example", 443).is_err());
//! // The name is allowed, but not if it resolves to loopback.
//! assert!(policy.check_addr("127.0.0.1:443".parse().unwrap()).is_err());
//! ```

use crate::error::Error;
use crate::resolve::{is_dns_name, normalize_host};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// How many rules a [`Denied`] message lists before it says `and N more`:
/// enough to show a small policy whole, few enough to stay on one line.
const LISTED_RULES: usize = 5;

/// A parsed allow rule (see the [module documentation](self) for the
/// syntax).
///
/// [`Display`](fmt::Display) prints the rule's canonical text, which parses
/// back to the same rule: names lowercased and without a trailing dot, IP
/// rules without a full-length prefix (`::1`, not `::1/128`), and an
/// IPv4-mapped IPv6 address as its IPv4 address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    target: Target,
    /// `None` is any port (`:*`, or an IP rule written without a port).
    port: Option<u16>,
}

/// What a rule matches, apart from the port.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// One DNS name, normalised.
    Name(String),
    /// The strict subdomains of this (normalised) domain: `*.domain`.
    Subdomains(String),
    /// `*`: any DNS name, and any public IP literal.
    Any,
    /// An address or a network; a lone address is a full-length prefix.
    Net(Net),
}

/// An IP network, with its host bits zero (checked when parsed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Net {
        Net {
            addr: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            prefix,
        }
    }

    const fn v6(first: u16, last: u16, prefix: u8) -> Net {
        Net {
            addr: IpAddr::V6(Ipv6Addr::new(first, 0, 0, 0, 0, 0, 0, last)),
            prefix,
        }
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => u32::from(ip) & mask32(self.prefix) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(ip)) => u128::from(ip) & mask128(self.prefix) == u128::from(net),
            _ => false,
        }
    }

    fn is_single(&self) -> bool {
        self.prefix == max_prefix(self.addr)
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_single() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn mask32(prefix: u8) -> u32 {
    // A shift by the full width overflows, and a /0 keeps no bits.
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// The address with its host bits cleared.
fn network(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(prefix))),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(prefix))),
    }
}

/// An IPv6 address that stands for an IPv4 address as that IPv4 address;
/// any other address unchanged. Two forms do: IPv4-mapped (`::ffff:0:0/96`)
/// and the NAT64 well-known prefix (`64:ff9b::/96`, RFC 6052), which a
/// NAT64 gateway translates to the IPv4 address in its last 32 bits, so
/// `64:ff9b::7f00:1` must not pass where `127.0.0.1` would not. The
/// IPv4-compatible form `::a.b.c.d` is deprecated (RFC 4291) and is dialled
/// as IPv6.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().or_else(|| nat64(v6)).map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The IPv4 address a NAT64 well-known-prefix address translates to.
fn nat64(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(v6);
    (bits >> 32 == 0x0064_ff9b_0000_0000_0000_0000).then(|| Ipv4Addr::from(bits as u32))
}

/// The kinds of special address, which only an IP or CIDR rule allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Unspecified,
    Loopback,
    Private,
    LinkLocal,
    UniqueLocal,
    Multicast,
    Broadcast,
    /// Ranges that are not the internet either: benchmarking
    /// (`198.18.0.0/15`, which local "fake-IP" proxies hand out), IETF
    /// protocol assignments (`192.0.0.0/24`), the reserved `240.0.0.0/4`,
    /// and IPv6's deprecated site-local `fec0::/10`.
    Reserved,
}

impl Class {
    fn with_article(self) -> &'static str {
        match self {
            Class::Unspecified => "an unspecified",
            Class::Loopback => "a loopback",
            Class::Private => "a private",
            Class::LinkLocal => "a link-local",
            Class::UniqueLocal => "a unique-local",
            Class::Multicast => "a multicast",
            Class::Broadcast => "a broadcast",
            Class::Reserved => "a reserved",
        }
    }

    /// Whether [`Policy::allow_private`] covers the class, and so whether
    /// a message may suggest `--allow-private`.
    fn is_private(self) -> bool {
        !matches!(
            self,
            Class::Unspecified | Class::Multicast | Class::Broadcast | Class::Reserved
        )
    }
}

/// The special ranges. The networks double as the example rule a denial
/// suggests, and the private ones as what [`Policy::allow_private`] adds.
const SPECIAL: [(Net, Class); 18] = [
    (Net::v4(0, 0, 0, 0, 8), Class::Unspecified),
    (Net::v6(0, 0, 128), Class::Unspecified),
    (Net::v4(127, 0, 0, 0, 8), Class::Loopback),
    (Net::v6(0, 1, 128), Class::Loopback),
    (Net::v4(10, 0, 0, 0, 8), Class::Private),
    (Net::v4(172, 16, 0, 0, 12), Class::Private),
    (Net::v4(192, 168, 0, 0, 16), Class::Private),
    // Carrier-grade NAT (RFC 6598): not the internet, often the provider's
    // own network.
    (Net::v4(100, 64, 0, 0, 10), Class::Private),
    (Net::v4(169, 254, 0, 0, 16), Class::LinkLocal),
    (Net::v6(0xfe80, 0, 10), Class::LinkLocal),
    (Net::v6(0xfc00, 0, 7), Class::UniqueLocal),
    (Net::v4(224, 0, 0, 0, 4), Class::Multicast),
    (Net::v6(0xff00, 0, 8), Class::Multicast),
    // Before 240.0.0.0/4, which contains it.
    (Net::v4(255, 255, 255, 255, 32), Class::Broadcast),
    (Net::v4(198, 18, 0, 0, 15), Class::Reserved),
    (Net::v4(192, 0, 0, 0, 24), Class::Reserved),
    (Net::v4(240, 0, 0, 0, 4), Class::Reserved),
    (Net::v6(0xfec0, 0, 10), Class::Reserved),
];

/// The special range `ip` (already [canonical]) falls in, if any.
fn classify(ip: IpAddr) -> Option<(Net, Class)> {
    SPECIAL.iter().copied().find(|(net, _)| net.contains(ip))
}

impl Rule {
    fn allows_port(&self, port: u16) -> bool {
        self.port.is_none_or(|p| p == port)
    }

    /// Whether the rule allows the (normalised, valid) DNS name on `port`.
    fn allows_name(&self, name: &str, port: u16) -> bool {
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
    fn allows_ip(&self, ip: IpAddr, port: u16) -> bool {
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

/// The name as connects spell it (see [`normalize_host`]), if it is a
/// valid DNS name (see [`is_dns_name`]).
fn normalise(name: &str) -> Option<String> {
    is_dns_name(name).then(|| normalize_host(name))
}

/// Why a destination is denied.
///
/// [`Display`](fmt::Display) is one line naming the destination and the
/// rule that failed; it is what the plugin receives in
/// `connect-error.denied`, so it tells the plugin's author what to ask the
/// operator for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    message: String,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Denied {}

/// The egress policy: a list of allow rules. The default policy allows
/// nothing.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    rules: Vec<Rule>,
}

impl Policy {
    /// A policy that allows nothing.
    pub fn new() -> Self {
        Policy::default()
    }

    /// Adds an allow rule. A rule already in the policy is not added
    /// again, so that denial messages list each rule once.
    pub fn allow(&mut self, rule: Rule) -> &mut Self {
        if !self.rules.contains(&rule) {
            self.rules.push(rule);
        }
        self
    }

    /// Allows the loopback, private (including carrier-grade NAT),
    /// link-local and unique-local ranges on any port, as the CIDR rules
    /// `127.0.0.0/8`, `::1`, `10.0.0.0/8`, `172.16.0.0/12`,
    /// `192.168.0.0/16`, `100.64.0.0/10`, `169.254.0.0/16`, `fe80::/10` and
    /// `fc00::/7`. For local testing (`--allow-private`).
    ///
    /// The unspecified, multicast and broadcast addresses stay denied: no
    /// test server listens there, so allowing them would only open a hole.
    pub fn allow_private(&mut self) -> &mut Self {
        for (net, class) in SPECIAL {
            if class.is_private() {
                self.allow(Rule {
                    target: Target::Net(net),
                    port: None,
                });
            }
        }
        self
    }

    /// The rules, in the order they were added.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether the policy has no rules, and so allows nothing.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Checks a destination before DNS: `host` is a DNS name or an IP
    /// literal (IPv6 without brackets), as the plugin gave it.
    ///
    /// A name is allowed by a name rule (`host:port`, `*.domain:port`,
    /// `*:port`) matching it and the port; IP and CIDR rules never allow a
    /// name, since its addresses are unknown yet. An IP literal is checked
    /// as [`check_addr`](Self::check_addr) would, except that a public
    /// address also needs a rule: an IP or CIDR rule containing it, or a
    /// `*` rule on the port.
    pub fn check_name(&self, host: &str, port: u16) -> Result<(), Denied> {
        let stripped = host.strip_suffix('.').unwrap_or(host);
        if let Ok(ip) = stripped.parse::<IpAddr>() {
            let canon = canonical(ip);
            let addr = SocketAddr::new(ip, port);
            if classify(canon).is_some() {
                return self.check_addr(addr);
            }
            let any = |r: &Rule| r.target == Target::Any && r.allows_port(port);
            if self.rules.iter().any(|r| r.allows_ip(canon, port) || any(r)) {
                return Ok(());
            }
            return Err(self.no_match(&addr.to_string()));
        }
        let Some(name) = normalise(host) else {
            // Not something DNS could answer for: say so, rather than that
            // no rule matches, which would send the author to the operator.
            return Err(Denied {
                message: format!(
                    "`{}` is not a valid host name or IP address, so no rule can allow it",
                    host.escape_debug()
                ),
            });
        };
        if self.rules.iter().any(|r| r.allows_name(&name, port)) {
            Ok(())
        } else {
            Err(self.no_match(&format!("{name}:{port}")))
        }
    }

    /// Checks an address after DNS (or from an operator's override), once
    /// for each address before it is dialled.
    ///
    /// A special address (loopback, private, link-local, unique-local,
    /// unspecified, multicast, broadcast; an IPv4-mapped IPv6 address
    /// counts as its IPv4 address) is allowed only by an IP or CIDR rule
    /// that contains it and allows the port. Any other address is allowed:
    /// its name passed [`check_name`](Self::check_name).
    pub fn check_addr(&self, addr: SocketAddr) -> Result<(), Denied> {
        let ip = canonical(addr.ip());
        let port = addr.port();
        let Some((example, class)) = classify(ip) else {
            return Ok(());
        };
        if self.rules.iter().any(|r| r.allows_ip(ip, port)) {
            return Ok(());
        }
        let mut message = format!("{} is {} address", addr.ip(), class.with_article());
        if let (IpAddr::V6(given), IpAddr::V4(_)) = (addr.ip(), ip) {
            let form = if given.to_ipv4_mapped().is_some() {
                "IPv4-mapped"
            } else {
                "NAT64 for"
            };
            message.push_str(&format!(" ({form} {ip})"));
        }
        // A rule that contains the address but not the port is the one
        // that failed: name it, rather than suggest a rule already there.
        let near: Vec<String> = self
            .rules
            .iter()
            .filter(|r| matches!(&r.target, Target::Net(net) if net.contains(ip)))
            .map(|r| format!("`{r}`"))
            .collect();
        if near.is_empty() {
            let private = if class.is_private() { ", or --allow-private" } else { "" };
            message.push_str(&format!(
                ": only an IP or CIDR rule allows it (e.g. `{example}`{private})"
            ));
        } else {
            message.push_str(&format!(
                ": no rule allows port {port} on it (its rules: {})",
                near.join(", ")
            ));
        }
        Err(Denied { message })
    }

    /// The denial for a destination no rule matches, listing the policy.
    fn no_match(&self, destination: &str) -> Denied {
        let allows = if self.rules.is_empty() {
            "the policy allows nothing".to_owned()
        } else {
            let listed: Vec<String> = self.rules.iter().take(LISTED_RULES).map(Rule::to_string).collect();
            let mut allows = format!("the policy allows: {}", listed.join(", "));
            if self.rules.len() > LISTED_RULES {
                allows.push_str(&format!(", and {} more", self.rules.len() - LISTED_RULES));
            }
            allows
        };
        Denied {
            message: format!("no allow rule matches `{destination}` ({allows})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> Rule {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn policy(rules: &[&str]) -> Policy {
        let mut p = Policy::new();
        for r in rules {
            p.allow(rule(r));
        }
        p
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn denied_name(p: &Policy, host: &str, port: u16) -> String {
        match p.check_name(host, port) {
            Ok(()) => panic!("{host}:{port} allowed"),
            Err(e) => e.to_string(),
        }
    }

    fn denied_addr(p: &Policy, a: &str) -> String {
        match p.check_addr(addr(a)) {
            Ok(()) => panic!("{a} allowed"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn every_form_parses_and_round_trips() {
        // (text, canonical display)
        let cases = [
            ("echo.example.com:443", "echo.example.com:443"),
            ("echo.example.com:*", "echo.example.com:*"),
            ("*.example.com:443", "*.example.com:443"),
            ("*.example.com:*", "*.example.com:*"),
            ("*:443", "*:443"),
            ("*:*", "*:*"),
            ("192.0.2.7", "192.0.2.7"),
            ("2001:db8::1", "2001:db8::1"),
            ("192.0.2.7:443", "192.0.2.7:443"),
            ("192.0.2.7:*", "192.0.2.7"),
            ("[2001:db8::1]:443", "[2001:db8::1]:443"),
            ("[2001:db8::1]:*", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("fd00::/8", "fd00::/8"),
            ("10.0.0.0/8:5432", "10.0.0.0/8:5432"),
            ("[fd00::/8]:443", "[fd00::/8]:443"),
            ("10.0.0.0/8:*", "10.0.0.0/8"),
            ("::1/128", "::1"),
            ("192.0.2.7/32", "192.0.2.7"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("::/0", "::/0"),
            ("_sip._tcp.example.com:5060", "_sip._tcp.example.com:5060"),
            // Normalised: case, trailing dot, surrounding whitespace.
            ("  Echo.Example.COM.:443\n", "echo.example.com:443"),
            ("*.Example.com.:*", "*.example.com:*"),
            ("192.0.2.7.:443", "192.0.2.7:443"),
            // IPv4-mapped: the IPv4 address.
            ("::ffff:127.0.0.1", "127.0.0.1"),
            ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
        ];
        for (text, canonical) in cases {
            let r = rule(text);
            assert_eq!(r.to_string(), canonical, "{text}");
            assert_eq!(rule(canonical), r, "{text} round trip");
            assert_eq!(rule(&r.to_string()).to_string(), canonical, "{text} display is stable");
        }
    }

    #[test]
    fn bad_rules_name_the_text() {
        // (text, what the message must contain besides the text)
        let cases = [
            ("example.com", "`example.com:443` or `example.com:*`"),
            ("*.example.com", "needs a port"),
            ("*", "`*:443` or `*:*`"),
            ("example.com:0", "port 0"),
            ("example.com:70000", "port 70000"),
            ("example.com:99999999999999999999", "out of range"),
            ("example.com:https", "not a number"),
            ("example.com:+443", "not a number"),
            ("example.com:", "no port"),
            ("a.*.example.com:443", "first label"),
            // Unwrapped like a mapped network, it would be 0.0.0.0/0.
            ("64:ff9b::/96", "write the IPv4 rule"),
            ("[64:ff9b::7f00:1]:443", "write the IPv4 rule"),
            ("*example.com:443", "first label"),
            ("example.*:443", "first label"),
            ("10.0.0.1/8", "`10.0.0.0/8`"),
            ("[fd00::1/8]:443", "`[fd00::/8]:443`"),
            ("10.0.0.0/33", "/33"),
            ("fd00::/129", "/129"),
            ("10.0.0.0/", "not a prefix length"),
            ("10.0.0.0/x", "not a prefix length"),
            ("300.0.0.0/8", "not an IP address"),
            ("fd00::/8:443", "`[fd00::/8]:443`"),
            ("[::1", "closing `]`"),
            ("[::1]443", "after `]`"),
            ("[192.0.2.7]:443", "IPv6 only"),
            ("[example.com]:443", "IPv6 only"),
            ("2001:db8::g:443", "brackets"),
            ("exa mple.com:443", "whitespace"),
            ("garbage!", "not a DNS name"),
            ("ex$mple.com:443", "not a DNS name"),
            ("a..b:443", "not a DNS name"),
            (".:443", "not a DNS name"),
            ("-:-", "not a number"),
        ];
        for (text, want) in cases {
            let e = text.parse::<Rule>().expect_err(text).to_string();
            assert!(e.contains(&format!("`{text}`")), "{text}: {e}");
            assert!(e.contains(want), "{text}: {e}");
        }
        let long_label = format!("{}.com:443", "a".repeat(64));
        assert!(long_label.parse::<Rule>().is_err());
        // 253 bytes is the longest name; a trailing dot does not count.
        let longest = format!("{}com", "abcdefghi.".repeat(25));
        assert_eq!(longest.len(), 253);
        assert!(format!("{longest}.:443").parse::<Rule>().is_ok());
        assert!(format!("x{longest}:443").parse::<Rule>().is_err());
        let e = "".parse::<Rule>().unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
        assert!("   ".parse::<Rule>().unwrap_err().to_string().contains("empty"));
    }

    #[test]
    fn name_rules_match_name_and_port() {
        let p = policy(&["echo.example.com:443", "any.example.com:*", "*.example.net:8443"]);
        assert!(p.check_name("echo.example.com", 443).is_ok());
        assert!(p.check_name("echo.example.com", 80).is_err());
        assert!(p.check_name("other.example.com", 443).is_err());
        assert!(p.check_name("any.example.com", 1).is_ok());
        assert!(p.check_name("any.example.com", 65535).is_ok());
        // Subdomains at any depth, but not the apex or a look-alike.
        assert!(p.check_name("a.example.net", 8443).is_ok());
        assert!(p.check_name("a.b.c.example.net", 8443).is_ok());
        assert!(p.check_name("a.example.net", 443).is_err());
        assert!(p.check_name("example.net", 8443).is_err());
        assert!(p.check_name("badexample.net", 8443).is_err());
        assert!(p.check_name("example.net.evil", 8443).is_err());
        // No rule for names is an IP rule in disguise.
        assert!(policy(&["10.0.0.0/8"]).check_name("example.com", 443).is_err());
    }

    #[test]
    fn any_rule_matches_every_name() {
        let p = policy(&["*:443"]);
        assert!(p.check_name("example.com", 443).is_ok());
        assert!(p.check_name("localhost", 443).is_ok());
        assert!(p.check_name("example.com", 80).is_err());
        assert!(policy(&["*:*"]).check_name("example.com", 80).is_ok());
        // Only names DNS could answer for.
        let e = denied_name(&policy(&["*:*"]), "exa mple.com", 443);
        assert!(e.contains("not a valid host name"), "{e}");
        assert!(policy(&["*:*"]).check_name("", 443).is_err());
    }

    #[test]
    fn names_ignore_case_and_one_trailing_dot() {
        let p = policy(&["Echo.Example.com:443", "*.example.net:*"]);
        assert!(p.check_name("ECHO.example.COM", 443).is_ok());
        assert!(p.check_name("echo.example.com.", 443).is_ok());
        assert!(p.check_name("A.Example.NET.", 443).is_ok());
        assert!(p.check_name("echo.example.com..", 443).is_err());
    }

    #[test]
    fn ip_literal_needs_an_ip_rule_or_any() {
        let names = policy(&["example.com:443", "*.example.com:*"]);
        let e = denied_name(&names, "8.8.8.8", 443);
        assert_eq!(
            e,
            "no allow rule matches `8.8.8.8:443` (the policy allows: example.com:443, *.example.com:*)"
        );
        let e = denied_name(&names, "2001:4860::8888", 443);
        assert!(e.contains("`[2001:4860::8888]:443`"), "{e}");

        assert!(policy(&["*:443"]).check_name("8.8.8.8", 443).is_ok());
        assert!(policy(&["*:443"]).check_name("8.8.8.8", 80).is_err());
        assert!(policy(&["*:*"]).check_name("2001:4860::8888", 80).is_ok());
        assert!(policy(&["8.8.8.8"]).check_name("8.8.8.8", 80).is_ok());
        assert!(policy(&["8.8.0.0/16:53"]).check_name("8.8.4.4", 53).is_ok());
        assert!(policy(&["8.8.0.0/16:53"]).check_name("8.8.4.4", 443).is_err());
        assert!(
            policy(&["[2001:4860::/32]:443"])
                .check_name("2001:4860::8888", 443)
                .is_ok()
        );
        // A trailing dot does not turn a literal into a name.
        assert!(policy(&["*:*"]).check_name("127.0.0.1.", 80).is_err());
        // A mapped public literal is its IPv4 address.
        assert!(policy(&["8.8.8.8"]).check_name("::ffff:8.8.8.8", 443).is_ok());
    }

    #[test]
    fn special_literal_needs_an_ip_rule() {
        let any = policy(&["*:*"]);
        let e = denied_name(&any, "127.0.0.1", 8080);
        assert_eq!(
            e,
            concat!(
                "127.0.0.1 is a loopback address: only an IP or CIDR rule allows it ",
                "(e.g. `127.0.0.0/8`, or --allow-private)"
            )
        );
        assert!(denied_name(&any, "::1", 8080).contains("loopback"));
        assert!(denied_name(&any, "::ffff:127.0.0.1", 8080).contains("loopback"));
        // NAT64's well-known prefix reaches the IPv4 address it embeds.
        assert_eq!(
            denied_name(&any, "64:ff9b::a9fe:a9fe", 80),
            concat!(
                "64:ff9b::a9fe:a9fe is a link-local address (NAT64 for 169.254.169.254): ",
                "only an IP or CIDR rule allows it (e.g. `169.254.0.0/16`, or --allow-private)"
            )
        );
        assert!(
            any.check_name("64:ff9b::808:808", 53).is_ok(),
            "a public address through NAT64"
        );

        let mut private = Policy::new();
        private.allow_private();
        assert!(private.check_name("127.0.0.1", 8080).is_ok());
        assert!(private.check_name("::1", 8080).is_ok());
        assert!(private.check_name("10.1.2.3", 5432).is_ok());
        // The private rules are IP rules: they allow no name and no public
        // literal.
        assert!(private.check_name("localhost", 8080).is_err());
        assert!(private.check_name("8.8.8.8", 53).is_err());
    }

    #[test]
    fn special_addresses_are_denied_by_any() {
        let any = policy(&["*:*"]);
        let cases = [
            ("127.0.0.1:443", "loopback", "`127.0.0.0/8`"),
            ("[::1]:443", "loopback", "`::1`"),
            ("169.254.169.254:80", "link-local", "`169.254.0.0/16`"),
            ("[fe80::1]:443", "link-local", "`fe80::/10`"),
            ("10.1.2.3:443", "private", "`10.0.0.0/8`"),
            ("172.31.255.255:443", "private", "`172.16.0.0/12`"),
            ("192.168.1.1:443", "private", "`192.168.0.0/16`"),
            ("100.100.100.100:443", "private", "`100.64.0.0/10`"),
            ("[fd12::1]:443", "unique-local", "`fc00::/7`"),
            ("[::]:443", "unspecified", "`::`"),
            ("0.0.0.0:443", "unspecified", "`0.0.0.0/8`"),
            ("[::ffff:127.0.0.1]:443", "loopback", "`127.0.0.0/8`"),
            ("224.0.0.1:443", "multicast", "`224.0.0.0/4`"),
            ("[ff02::1]:443", "multicast", "`ff00::/8`"),
            ("255.255.255.255:443", "broadcast", "`255.255.255.255`"),
            ("198.18.0.1:443", "reserved", "`198.18.0.0/15`"),
            ("192.0.0.8:443", "reserved", "`192.0.0.0/24`"),
            ("240.0.0.1:443", "reserved", "`240.0.0.0/4`"),
            ("[fec0::1]:443", "reserved", "`fec0::/10`"),
            ("[64:ff9b::7f00:1]:443", "loopback", "`127.0.0.0/8`"),
        ];
        for (a, class, example) in cases {
            let e = denied_addr(&any, a);
            let ip = addr(a).ip();
            assert!(e.starts_with(&format!("{ip} is ")), "{a}: {e}");
            assert!(e.contains(&format!(" {class} address")), "{a}: {e}");
            assert!(e.contains(example), "{a}: {e}");
            assert!(!e.contains('\n'), "{a}: {e}");
            // `--allow-private` is suggested only where it helps.
            let private = !matches!(class, "unspecified" | "multicast" | "broadcast" | "reserved");
            assert_eq!(e.contains("--allow-private"), private, "{a}: {e}");
        }
        let e = denied_addr(&any, "[::ffff:127.0.0.1]:443");
        assert!(
            e.starts_with("::ffff:127.0.0.1 is a loopback address (IPv4-mapped 127.0.0.1)"),
            "{e}"
        );
        assert!(denied_addr(&any, "0.0.0.0:443").starts_with("0.0.0.0 is an unspecified address"));
    }

    #[test]
    fn public_addresses_pass_check_addr() {
        for p in [Policy::new(), policy(&["*:*"]), policy(&["example.com:443"])] {
            assert!(p.check_addr(addr("8.8.8.8:443")).is_ok());
            assert!(p.check_addr(addr("[2001:4860::8888]:443")).is_ok());
            assert!(p.check_addr(addr("[::ffff:8.8.8.8]:443")).is_ok());
            // Just outside the special ranges.
            assert!(p.check_addr(addr("172.32.0.1:443")).is_ok());
            assert!(p.check_addr(addr("100.128.0.1:443")).is_ok());
            assert!(p.check_addr(addr("1.0.0.1:443")).is_ok());
        }
    }

    #[test]
    fn allow_private_covers_its_ranges_only() {
        let mut p = Policy::new();
        p.allow_private().allow_private();
        assert_eq!(p.rules().len(), 9, "{:?}", p.rules());
        for a in [
            "127.0.0.1:1",
            "[::1]:2",
            "10.1.2.3:3",
            "172.16.0.1:4",
            "192.168.1.1:5",
            "100.64.0.1:6",
            "169.254.169.254:80",
            "[fe80::1]:7",
            "[fd12::1]:8",
            "[::ffff:127.0.0.1]:9",
        ] {
            assert!(p.check_addr(addr(a)).is_ok(), "{a}");
        }
        for (a, class) in [
            ("0.0.0.0:80", "unspecified"),
            ("[::]:80", "unspecified"),
            ("224.0.0.1:80", "multicast"),
            ("[ff02::1]:80", "multicast"),
            ("255.255.255.255:80", "broadcast"),
        ] {
            assert!(denied_addr(&p, a).contains(class), "{a}");
        }
        // An operator who means it writes the rule.
        assert!(policy(&["224.0.0.0/4"]).check_addr(addr("224.0.0.1:5353")).is_ok());
    }

    #[test]
    fn ip_rules_with_a_port_match_that_port_only() {
        let p = policy(&["10.0.0.0/8:5432", "[fd00::/8]:443", "127.0.0.1:8080"]);
        assert!(p.check_addr(addr("10.9.8.7:5432")).is_ok());
        assert!(p.check_addr(addr("[fd00::5]:443")).is_ok());
        assert!(p.check_addr(addr("127.0.0.1:8080")).is_ok());
        assert!(p.check_addr(addr("[::ffff:127.0.0.1]:8080")).is_ok());
        let e = denied_addr(&p, "10.9.8.7:5433");
        assert_eq!(
            e,
            "10.9.8.7 is a private address: no rule allows port 5433 on it (its rules: `10.0.0.0/8:5432`)"
        );
        assert!(denied_addr(&p, "[fd00::5]:80").contains("`[fd00::/8]:443`"));
        // Outside the network: the generic message.
        assert!(denied_addr(&p, "127.0.0.2:8080").contains("only an IP or CIDR rule"));
        assert!(denied_addr(&p, "192.168.0.1:5432").contains("private"));
        // Name rules never allow a special address, whatever the port.
        let names = policy(&["*:*", "localhost:*", "*.internal:*"]);
        assert!(names.check_addr(addr("127.0.0.1:80")).is_err());
    }

    #[test]
    fn cidr_prefix_edges() {
        let p = policy(&["172.16.0.0/12", "fe80::/10"]);
        assert!(p.check_addr(addr("172.16.0.0:1")).is_ok());
        assert!(p.check_addr(addr("172.31.255.255:1")).is_ok());
        assert!(p.check_name("172.32.0.0", 1).is_err());
        assert!(p.check_addr(addr("[febf:ffff::1]:1")).is_ok());
        assert!(p.check_name("fec0::1", 1).is_err());
        let all = policy(&["0.0.0.0/0"]);
        assert!(all.check_addr(addr("127.0.0.1:1")).is_ok());
        assert!(all.check_name("8.8.8.8", 1).is_ok());
        // IPv6 `::/0` does not cover mapped IPv4 addresses.
        assert!(policy(&["::/0"]).check_addr(addr("[::ffff:127.0.0.1]:1")).is_err());
    }

    #[test]
    fn messages_list_the_policy() {
        let e = denied_name(&Policy::new(), "x.example", 443);
        assert_eq!(e, "no allow rule matches `x.example:443` (the policy allows nothing)");

        let p = policy(&["echo.example.com:443", "*.example.net:*"]);
        let e = denied_name(&p, "Evil.Example.", 443);
        assert_eq!(
            e,
            "no allow rule matches `evil.example:443` (the policy allows: echo.example.com:443, *.example.net:*)"
        );

        let p = policy(&[
            "a.test:1", "b.test:2", "c.test:3", "d.test:4", "e.test:5", "f.test:6", "g.test:7",
        ]);
        let e = denied_name(&p, "x.test", 443);
        assert_eq!(
            e,
            concat!(
                "no allow rule matches `x.test:443` (the policy allows: ",
                "a.test:1, b.test:2, c.test:3, d.test:4, e.test:5, and 2 more)"
            )
        );
    }

    #[test]
    fn policy_basics() {
        let mut p = Policy::default();
        assert!(p.is_empty());
        assert!(p.rules().is_empty());
        p.allow(rule("example.com:443"))
            .allow(rule("EXAMPLE.com.:443"))
            .allow(rule("10.0.0.0/8"));
        assert!(!p.is_empty());
        assert_eq!(p.rules(), &[rule("example.com:443"), rule("10.0.0.0/8")]);
        let e: Error = "nope".parse::<Rule>().unwrap_err().into();
        assert!(e.to_string().contains("`nope` needs a port"), "{e}");
    }
}
