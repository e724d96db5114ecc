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

mod net;
mod rule;
mod special;
#[cfg(test)]
mod tests;

pub use rule::{Rule, RuleError};

use net::canonical;
use rule::{Target, normalise};
use special::{SPECIAL, classify};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// How many rules a [`Denied`] message lists before it says `and N more`:
/// enough to show a small policy whole, few enough to stay on one line.
const LISTED_RULES: usize = 5;

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

/// What kind of address `addr` is, as a denial of it counts: its special
/// class (`loopback`, `private`, `link-local`, `unique-local`,
/// `unspecified`, `multicast`, `broadcast`, `reserved`; an IPv4-mapped
/// address as its IPv4 one), or `public` (a policy denies only special
/// addresses after DNS, so `public` does not happen today).
pub(crate) fn address_class(addr: SocketAddr) -> &'static str {
    classify(canonical(addr.ip())).map_or("public", |(_, class)| class.name())
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
