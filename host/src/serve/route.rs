//! Routes: which plugin serves a request, by its `Host` and its path.
//!
//! The operator's routes are tried in the order written and the first that
//! matches wins, as in most proxies' location lists; a request no route
//! matches is answered 404 by the host.

use crate::host_name::{is_dns_name, normalize};
use std::fmt;

/// What a route matches in the `Host` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostPattern {
    /// Any host (the route names none).
    Any,
    /// This name exactly (lower-cased, without a trailing dot).
    Exact(String),
    /// Any name under this domain, at any depth: `*.example.com` matches
    /// `a.example.com` and `a.b.example.com`, not `example.com`.
    Suffix(String),
}

/// A pattern that cannot be a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadHostPattern(String);

impl fmt::Display for BadHostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is not a host name or `*.domain`", self.0)
    }
}

impl std::error::Error for BadHostPattern {}

impl HostPattern {
    /// Parses `name`, `*.domain`, or `*` (any host).
    pub(crate) fn parse(text: &str) -> Result<HostPattern, BadHostPattern> {
        let bad = || BadHostPattern(text.to_owned());
        if text == "*" {
            return Ok(HostPattern::Any);
        }
        let (wildcard, name) = match text.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if name.contains('*') || name.contains('/') || name.contains(':') && wildcard {
            return Err(bad());
        }
        // IP literals route too (`Host: 127.0.0.1`), so this is looser than
        // a DNS name: anything `normalize` accepts, or an address.
        let name = if name.parse::<std::net::IpAddr>().is_ok() {
            name.to_ascii_lowercase()
        } else if is_dns_name(name) {
            normalize(name)
        } else {
            return Err(bad());
        };
        Ok(if wildcard {
            HostPattern::Suffix(name)
        } else {
            HostPattern::Exact(name)
        })
    }

    fn matches(&self, host: Option<&str>) -> bool {
        match (self, host) {
            (HostPattern::Any, _) => true,
            (HostPattern::Exact(name), Some(host)) => name == host,
            (HostPattern::Suffix(domain), Some(host)) => host
                .strip_suffix(domain.as_str())
                .is_some_and(|label| label.len() > 1 && label.ends_with('.')),
            (_, None) => false,
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Any => f.write_str("*"),
            HostPattern::Exact(name) => f.write_str(name),
            HostPattern::Suffix(domain) => write!(f, "*.{domain}"),
        }
    }
}

/// What a route matches: a host pattern and a path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Matcher {
    pub(crate) host: HostPattern,
    /// Starts with `/`. Matches on whole segments: `/chat` matches `/chat`
    /// and `/chat/room`, not `/chatter`.
    pub(crate) path: String,
}

impl Matcher {
    pub(crate) fn matches(&self, host: Option<&str>, path: &str) -> bool {
        self.host.matches(host) && path_matches(&self.path, path)
    }
}

fn path_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The index of the first of `matchers` that matches, if any.
pub(crate) fn find<'a>(
    matchers: impl IntoIterator<Item = &'a Matcher>,
    host: Option<&str>,
    path: &str,
) -> Option<usize> {
    matchers.into_iter().position(|m| m.matches(host, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(host: &str, path: &str) -> Matcher {
        Matcher {
            host: HostPattern::parse(host).unwrap(),
            path: path.into(),
        }
    }

    #[test]
    fn hosts_match_exactly_or_by_domain() {
        assert!(m("echo.example", "/").matches(Some("echo.example"), "/"));
        assert!(!m("echo.example", "/").matches(Some("other.example"), "/"));
        assert!(m("*.example", "/").matches(Some("a.b.example"), "/"));
        assert!(!m("*.example", "/").matches(Some("example"), "/"));
        assert!(!m("*.example", "/").matches(Some("badexample"), "/"));
        assert!(m("*", "/").matches(None, "/"));
        assert!(!m("echo.example", "/").matches(None, "/"));
        assert!(m("127.0.0.1", "/").matches(Some("127.0.0.1"), "/x"));
        assert_eq!(HostPattern::parse("Echo.Example.").unwrap().to_string(), "echo.example");
    }

    #[test]
    fn paths_match_whole_segments() {
        let chat = m("*", "/chat");
        assert!(chat.matches(None, "/chat"));
        assert!(chat.matches(None, "/chat/room"));
        assert!(!chat.matches(None, "/chatter"));
        assert!(m("*", "/chat/").matches(None, "/chat/room"));
        assert!(m("*", "/").matches(None, "/anything"));
    }

    #[test]
    fn the_first_match_wins() {
        let routes = [m("*", "/a"), m("*", "/"), m("*", "/a/b")];
        assert_eq!(find(&routes, None, "/a/b"), Some(0));
        assert_eq!(find(&routes, None, "/z"), Some(1));
        assert_eq!(find(&routes[..1], None, "/z"), None);
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["a.*.example", "*example", "", "exa mple", "*.a:1"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
