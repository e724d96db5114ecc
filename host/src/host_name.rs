//! The one spelling of a host that every layer of a connect uses.
//!
//! A plugin may write `Example.COM.` or `127.0.0.1.`; the policy, the
//! operator's `--resolve` pins, DNS, the family memory and TLS must all see
//! the same `example.com` and `127.0.0.1`, or a pin is missed, or an IP
//! literal is sent to DNS. [`HostName`] is that spelling: checked once,
//! lower case, without the one trailing dot a DNS name may carry.
//!
//! This module is a leaf: it depends on nothing else in the crate, so that
//! the policy, the resolver and the TLS layer can all use it without
//! depending on each other.

use std::fmt;
use std::net::IpAddr;

/// The longest DNS name, without its trailing dot (RFC 1035 §2.3.4).
const MAX_NAME: usize = 253;

/// A host a connect can use: an IP literal or a DNS name, normalised.
///
/// ```
/// use wsgate_host::HostName;
///
/// let name: HostName = "Echo.Example.COM.".parse().unwrap();
/// assert_eq!(name.as_str(), "echo.example.com");
/// let literal: HostName = "127.0.0.1.".parse().unwrap();
/// assert_eq!(literal.ip(), Some("127.0.0.1".parse().unwrap()));
/// assert!("bad host".parse::<HostName>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostName(String);

impl HostName {
    /// The normalised text: lower case, no trailing dot.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The address, when the host is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        self.0.parse().ok()
    }

    /// Whether the host is a DNS name rather than an IP literal.
    pub fn is_name(&self) -> bool {
        self.ip().is_none()
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for HostName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Why a text is not a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostNameError(String);

impl fmt::Display for HostNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HostNameError {}

impl std::str::FromStr for HostName {
    type Err = HostNameError;

    /// Accepts an IP literal (IPv6 without brackets), or a name of ASCII
    /// letters, digits, `-`, `_` and dots, at most 253 bytes, without empty
    /// labels (one trailing dot is allowed, and dropped).
    fn from_str(host: &str) -> Result<Self, HostNameError> {
        if host.is_empty() {
            return Err(HostNameError("empty host".into()));
        }
        if host.parse::<IpAddr>().is_ok() {
            return Ok(HostName(normalize(host)));
        }
        // Said apart from the grammar's refusal, which would not say why.
        if host.strip_suffix('.').unwrap_or(host).len() > MAX_NAME {
            return Err(HostNameError("host name longer than 253 bytes".into()));
        }
        if !is_dns_name(host) {
            return Err(HostNameError(format!(
                "`{}` is not a host name or IP address",
                host.escape_debug()
            )));
        }
        Ok(HostName(normalize(host)))
    }
}

/// Whether `name` is a DNS name: labels of 1 to 63 ASCII letters, digits,
/// `-` and `_` (as in service names such as `_sip._tcp`), at most 253 bytes
/// in all, not counting one trailing dot.
pub(crate) fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `host` lower case, without the one trailing dot a DNS name may carry
/// (so that `127.0.0.1.` reads as the IP literal it is).
pub(crate) fn normalize(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

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
            assert!(good.parse::<HostName>().is_ok(), "{good}");
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
            assert!(bad.parse::<HostName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn one_spelling() {
        let a: HostName = "WSGATE.Test.".parse().unwrap();
        let b: HostName = "wsgate.test".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "wsgate.test");
        assert!(a.is_name());
        let ip: HostName = "127.0.0.1.".parse().unwrap();
        assert_eq!(ip.as_str(), "127.0.0.1");
        assert!(!ip.is_name());
        let v6: HostName = "::FFFF:127.0.0.1".parse().unwrap();
        assert_eq!(v6.ip(), Some("::ffff:127.0.0.1".parse().unwrap()));
    }
}
