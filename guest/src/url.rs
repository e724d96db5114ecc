//! `ws://` and `wss://` URLs (RFC 6455 §3).
//!
//! Hand-written rather than a general URL crate: the WebSocket grammar is a
//! small subset (no userinfo, no fragment, two schemes), and every byte of
//! the host and resource goes into the request, so each is checked here.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::error::Error;

/// A parsed `ws://` or `wss://` URL.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Url {
    secure: bool,
    host: String,
    is_ipv6: bool,
    port: u16,
    resource: String,
}

impl Url {
    /// Parses a WebSocket URL.
    ///
    /// The scheme (`ws` or `wss`) is case-insensitive. The host is a DNS
    /// name, an IPv4 literal or a bracketed IPv6 literal (`[::1]`). The port
    /// is optional (80 for `ws`, 443 for `wss`). The path defaults to `/`;
    /// the query is kept. Userinfo, fragments, whitespace and control
    /// characters are refused.
    pub fn parse(input: &str) -> Result<Url, Error> {
        if let Some(c) = input.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::url(format!(
                "{input:?}: contains whitespace or control character {c:?}"
            )));
        }
        let Some((scheme, rest)) = input.split_once("://") else {
            return Err(Error::url(format!(
                "{input:?}: missing scheme (expected ws:// or wss://)"
            )));
        };
        let secure = if scheme.eq_ignore_ascii_case("ws") {
            false
        } else if scheme.eq_ignore_ascii_case("wss") {
            true
        } else {
            return Err(Error::url(format!("{input:?}: scheme {scheme:?} is not ws or wss")));
        };
        // RFC 6455 §3: "Fragment identifiers are meaningless in the context
        // of WebSocket URIs and MUST NOT be used on these URIs."
        if rest.contains('#') {
            return Err(Error::url(format!(
                "{input:?}: fragments (#...) are not allowed in WebSocket URLs"
            )));
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, resource) = rest.split_at(split);
        if authority.contains('@') {
            return Err(Error::url(format!("{input:?}: userinfo (user@) is not allowed")));
        }
        let default_port = if secure { 443 } else { 80 };
        let (host, is_ipv6, port) =
            parse_authority(authority, default_port).map_err(|problem| Error::url(format!("{input:?}: {problem}")))?;
        Ok(Url {
            secure,
            host,
            is_ipv6,
            port,
            resource: encode_resource(resource),
        })
    }

    /// Whether the scheme is `wss` (TLS).
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// The host to connect to: a lowercased DNS name, an IPv4 literal, or an
    /// IPv6 literal without brackets (the form the host's `connect` takes).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port: the explicit one, else 80 for `ws` and 443 for `wss`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The request target: the path (at least `/`) and `?query` if any.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The value of the `Host` header: brackets around an IPv6 literal, and
    /// `:port` only when the port is not the scheme's default.
    pub fn host_header(&self) -> String {
        let mut out = String::with_capacity(self.host.len() + 8);
        if self.is_ipv6 {
            out.push('[');
            out.push_str(&self.host);
            out.push(']');
        } else {
            out.push_str(&self.host);
        }
        if self.port != if self.secure { 443 } else { 80 } {
            out.push(':');
            out.push_str(&self.port.to_string());
        }
        out
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.secure { "wss" } else { "ws" };
        write!(f, "{scheme}://{}{}", self.host_header(), self.resource)
    }
}

impl fmt::Debug for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Url({self})")
    }
}

impl std::str::FromStr for Url {
    type Err = Error;
    fn from_str(s: &str) -> Result<Url, Error> {
        Url::parse(s)
    }
}

/// Splits `host[:port]` / `[v6][:port]`; returns (host, is_ipv6, port).
fn parse_authority(authority: &str, default_port: u16) -> Result<(String, bool, u16), String> {
    if authority.is_empty() {
        return Err("empty host".into());
    }
    let (host, is_ipv6, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((literal, after)) = bracketed.split_once(']') else {
            return Err("IPv6 literal without closing ']'".into());
        };
        // Canonical form, so that `[0:0::1]` and `[::1]` name one host.
        let addr: Ipv6Addr = literal
            .parse()
            .map_err(|_| format!("invalid IPv6 literal [{literal}]"))?;
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => return Err(format!("unexpected {after:?} after IPv6 literal")),
            },
        };
        (addr.to_string(), true, port)
    } else {
        if authority.matches(':').count() > 1 {
            return Err("IPv6 literal must be in brackets ([::1])".into());
        }
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if host.is_empty() {
            return Err("empty host".into());
        }
        (parse_host_name(host)?, false, port)
    };
    let port = match port {
        // RFC 3986 §3.2.3 allows an empty port; it means the default.
        None | Some("") => default_port,
        Some(digits) => parse_port(digits)?,
    };
    Ok((host, is_ipv6, port))
}

fn parse_port(digits: &str) -> Result<u16, String> {
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port {digits:?} is not a number"));
    }
    match digits.parse::<u16>() {
        Ok(0) => Err("port 0 is not allowed".into()),
        Ok(port) => Ok(port),
        Err(_) => Err(format!("port {digits} is out of range 1-65535")),
    }
}

/// A DNS name or an IPv4 literal, lowercased.
fn parse_host_name(host: &str) -> Result<String, String> {
    if !host.is_ascii() {
        return Err(format!("host {host:?} is not ASCII (use its punycode xn-- form)"));
    }
    if let Some(c) = host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
    {
        return Err(format!("host {host:?} contains invalid character {c:?}"));
    }
    // A name whose last label is numeric is an IPv4 literal (as in the
    // WHATWG URL standard); refuse it unless it is a plain dotted quad, so
    // that `1.2.3` or `010.0.0.1` are not sent to a resolver as names.
    let trimmed = host.strip_suffix('.').unwrap_or(host);
    let last = trimmed.rsplit('.').next().unwrap_or("");
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return match trimmed.parse::<Ipv4Addr>() {
            Ok(addr) => Ok(addr.to_string()),
            Err(_) => Err(format!("invalid IPv4 address {host:?}")),
        };
    }
    if trimmed.len() > 253 {
        return Err("host name longer than 253 characters".into());
    }
    for label in trimmed.split('.') {
        if label.is_empty() {
            return Err(format!("host {host:?} has an empty label"));
        }
        if label.len() > 63 {
            return Err(format!("host {host:?} has a label longer than 63 characters"));
        }
    }
    Ok(host.to_ascii_lowercase())
}

/// Path and query as a request target: `/` when empty, and bytes that may
/// not appear in a request target (non-ASCII, `"<>\^`{|}`) percent-encoded,
/// as browsers do. `%` is kept, so already encoded URLs pass unchanged.
fn encode_resource(resource: &str) -> String {
    let mut out = String::with_capacity(resource.len() + 1);
    if !resource.starts_with('/') {
        out.push('/');
    }
    for b in resource.bytes() {
        if b.is_ascii_graphic() && !b"\"<>\\^`{|}".contains(&b) {
            out.push(char::from(b));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[track_caller]
    fn ok(s: &str, secure: bool, host: &str, port: u16, resource: &str, host_header: &str) {
        let u = Url::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(
            (
                u.is_secure(),
                u.host(),
                u.port(),
                u.resource(),
                u.host_header().as_str()
            ),
            (secure, host, port, resource, host_header),
            "{s}"
        );
    }

    #[test]
    fn good_urls() {
        ok("ws://example.com", false, "example.com", 80, "/", "example.com");
        ok("wss://example.com", true, "example.com", 443, "/", "example.com");
        ok(
            "WSS://Example.COM/Chat",
            true,
            "example.com",
            443,
            "/Chat",
            "example.com",
        );
        ok(
            "ws://example.com:8080/a/b?x=1&y",
            false,
            "example.com",
            8080,
            "/a/b?x=1&y",
            "example.com:8080",
        );
        ok("ws://example.com?q", false, "example.com", 80, "/?q", "example.com");
        ok("ws://example.com:80/", false, "example.com", 80, "/", "example.com");
        ok("wss://example.com:80/", true, "example.com", 80, "/", "example.com:80");
        ok("ws://example.com:/", false, "example.com", 80, "/", "example.com");
        ok("ws://127.0.0.1:9001", false, "127.0.0.1", 9001, "/", "127.0.0.1:9001");
        ok("ws://[::1]", false, "::1", 80, "/", "[::1]");
        ok("wss://[0:0::1]:8443/x", true, "::1", 8443, "/x", "[::1]:8443");
        ok(
            "ws://[2001:DB8::1]:65535",
            false,
            "2001:db8::1",
            65535,
            "/",
            "[2001:db8::1]:65535",
        );
        ok(
            "ws://my_host-1.local/",
            false,
            "my_host-1.local",
            80,
            "/",
            "my_host-1.local",
        );
        ok("ws://h/caf\u{e9}?a=<b>", false, "h", 80, "/caf%C3%A9?a=%3Cb%3E", "h");
        ok("ws://h/%20", false, "h", 80, "/%20", "h");
    }

    #[track_caller]
    fn bad(s: &str, needle: &str) {
        let e = Url::parse(s).expect_err(s);
        assert_eq!(e.kind(), ErrorKind::Url);
        let msg = e.to_string();
        assert!(msg.contains(needle), "{s}: {msg:?} lacks {needle:?}");
    }

    #[test]
    fn bad_urls() {
        bad("http://example.com", "not ws or wss");
        bad("example.com", "missing scheme");
        bad("ws://", "empty host");
        bad("ws:///path", "empty host");
        bad("ws://:80/", "empty host");
        bad("ws://h:0", "port 0");
        bad("ws://h:65536", "out of range");
        bad("ws://h:99999999999", "out of range");
        bad("ws://h:8a", "not a number");
        bad("ws://h:-1", "not a number");
        bad("ws://user@h/", "userinfo");
        bad("ws://user:pw@h/", "userinfo");
        bad("ws://h/a b", "whitespace");
        bad("ws://h/\u{7}", "control");
        bad("ws://h/\t", "whitespace");
        bad("ws://h/#frag", "fragment");
        bad("ws://h#", "fragment");
        bad("ws://::1/", "brackets");
        bad("ws://[::1/", "closing");
        bad("ws://[nope]/", "invalid IPv6");
        bad("ws://[::1]x/", "after IPv6");
        bad("ws://1.2.3/", "invalid IPv4");
        bad("ws://256.1.1.1/", "invalid IPv4");
        bad("ws://a..b/", "empty label");
        bad("ws://h%41/", "invalid character");
        bad("ws://h\u{e9}/", "not ASCII");
    }
}
