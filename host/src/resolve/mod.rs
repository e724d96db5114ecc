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
//! For DNS names, HTTPS (RFC 9460), AAAA and A are asked separately and in
//! parallel, in that order (Happy Eyeballs v3 §4.1), and each answer is
//! awaited on its own, so that the race can start on AAAA, or on A after
//! the Resolution Delay (RFC 8305 §3). The HTTPS lookup follows aliases
//! and resolves the services' other targets itself ([`https`]).

use crate::error::Error;
use crate::host_name::HostName;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::rdata::svcb::SVCB;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use tokio::sync::{OnceCell, oneshot};
use tokio::task::AbortHandle;

pub mod https;
pub mod service;

pub use service::{Service, ServiceAnswer};

/// A lookup of one address family, as the race awaits it.
pub type Lookup<T> = Pin<Box<dyn Future<Output = Result<Vec<T>, String>> + Send>>;

/// The HTTPS lookup, as the race awaits it. A failed query is not an
/// error but an empty answer with a note; `Err` only says the lookup was
/// abandoned (its task gone).
pub type ServiceLookup = Pin<Box<dyn Future<Output = Result<ServiceAnswer, String>> + Send>>;

/// The lookups of a name: HTTPS, AAAA and A, each answering on its own
/// time.
pub struct Lookups {
    /// The HTTPS lookup (an empty answer for literals and overrides, and
    /// when HTTPS queries are off).
    pub https: ServiceLookup,
    /// The AAAA lookup.
    pub v6: Lookup<Ipv6Addr>,
    /// The A lookup.
    pub v4: Lookup<Ipv4Addr>,
}

impl Lookups {
    /// Lookups already answered with `ips` (IP literals, overrides).
    pub fn ready(ips: &[IpAddr]) -> Self {
        let v6: Vec<Ipv6Addr> = ips
            .iter()
            .filter_map(|ip| if let IpAddr::V6(a) = ip { Some(*a) } else { None })
            .collect();
        let v4: Vec<Ipv4Addr> = ips
            .iter()
            .filter_map(|ip| if let IpAddr::V4(a) = ip { Some(*a) } else { None })
            .collect();
        Lookups {
            https: Box::pin(async { Ok(ServiceAnswer::default()) }),
            v6: Box::pin(async move { Ok(v6) }),
            v4: Box::pin(async move { Ok(v4) }),
        }
    }
}

impl fmt::Debug for Lookups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Lookups")
    }
}

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
    /// The host name, in the one spelling connects use (so that
    /// `example.com.:443:ADDR` answers for `example.com`).
    pub host: HostName,
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
        let host: HostName = host
            .parse()
            .map_err(|e: crate::host_name::HostNameError| bad(&e.to_string()))?;
        if !host.is_name() {
            return Err(bad("the host must be a name"));
        }
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
        Ok(Override { host, port, addrs })
    }
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
    overrides: HashMap<(HostName, u16), Vec<IpAddr>>,
    dns_servers: Vec<SocketAddr>,
    https_records: bool,
    // Built on first use: runs that only use literals or overrides never
    // read the system's DNS configuration.
    dns: OnceCell<TokioResolver>,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("overrides", &self.overrides)
            .field("dns_servers", &self.dns_servers)
            .field("https_records", &self.https_records)
            .finish_non_exhaustive()
    }
}

impl Resolver {
    /// A resolver using the system's DNS configuration (or only
    /// `dns_servers`, when there are any), with `overrides` taking
    /// precedence. A later override for the same host and port replaces an
    /// earlier one, as in curl. HTTPS queries are on; see
    /// [`Resolver::with_https`].
    pub fn new(overrides: impl IntoIterator<Item = Override>, dns_servers: Vec<SocketAddr>) -> Self {
        let overrides = overrides.into_iter().map(|o| ((o.host, o.port), o.addrs)).collect();
        Resolver {
            overrides,
            dns_servers,
            https_records: true,
            dns: OnceCell::new(),
        }
    }

    /// Whether DNS names are also asked for their HTTPS records (on by
    /// default). Off, the HTTPS lookup answers empty at once.
    pub fn with_https(mut self, on: bool) -> Self {
        self.https_records = on;
        self
    }

    /// The lookups (HTTPS, AAAA and A) for `host` on `port`, to be awaited
    /// each on its own, and where the answer comes from.
    ///
    /// IP literals and overrides answer at once. DNS names are asked of
    /// hickory-resolver; the queries are sent by a task of their own,
    /// started here, HTTPS first, then AAAA, then A, all in flight at once
    /// (Happy Eyeballs v3 §4.1). Dropping all three lookups stops it.
    pub async fn lookups(&self, host: &HostName, port: u16) -> Result<(Lookups, Source), ResolveError> {
        if let Some(ip) = host.ip() {
            return Ok((Lookups::ready(&[ip]), Source::Literal));
        }
        if let Some(addrs) = self.overrides.get(&(host.clone(), port)) {
            return Ok((Lookups::ready(addrs), Source::Override));
        }
        let dns = self.dns.get_or_try_init(|| async { self.build_dns() }).await?.clone();
        let dns = HickoryDns {
            resolver: dns,
            origin: host.clone(),
        };
        let v6 = {
            let (dns, name) = (dns.clone(), dns.query_name(host));
            async move { v6_answers(&dns.resolver, name).await.map_err(|e| no_records(&e)) }
        };
        let v4 = {
            let (dns, name) = (dns.clone(), dns.query_name(host));
            async move { v4_answers(&dns.resolver, name).await.map_err(|e| no_records(&e)) }
        };
        let https: ServiceLookup = if self.https_records {
            let host = host.clone();
            Box::pin(async move { Ok(https::resolve(&dns, &host, random_seed()).await) })
        } else {
            Box::pin(async { Ok(ServiceAnswer::default()) })
        };
        Ok((in_order(https, Box::pin(v6), Box::pin(v4)), Source::Dns))
    }

    /// The AAAA answer for `name`, straight from DNS (no overrides): for
    /// NAT64 discovery (`ipv4only.arpa`). No records is an empty answer.
    pub async fn aaaa(&self, name: &str) -> Result<Vec<Ipv6Addr>, ResolveError> {
        let dns = self.dns.get_or_try_init(|| async { self.build_dns() }).await?;
        match v6_answers(dns, name.to_owned()).await {
            Ok(answers) => Ok(answers),
            Err(e) if e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(ResolveError(e.to_string())),
        }
    }

    fn build_dns(&self) -> Result<TokioResolver, ResolveError> {
        let built = if self.dns_servers.is_empty() {
            TokioResolver::builder_tokio().and_then(|b| b.build())
        } else {
            let servers = self
                .dns_servers
                .iter()
                .map(|server| {
                    let mut ns = NameServerConfig::udp_and_tcp(server.ip());
                    for connection in &mut ns.connections {
                        connection.port = server.port();
                    }
                    ns
                })
                .collect();
            let mut builder = TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            );
            // The operator named the servers: they alone answer.
            builder.options_mut().use_hosts_file = ResolveHosts::Never;
            builder.build()
        };
        built.map_err(|e| ResolveError(format!("cannot set up DNS resolution: {e}")))
    }
}

/// Starts `https`, `v6` and `v4` in a task of their own, polling them in
/// that order, so that their queries leave in that order (whoever awaits
/// the lookups, and in whatever order). The task ends when all three have
/// answered, or is aborted once the three lookups returned are dropped.
fn in_order(https: ServiceLookup, v6: Lookup<Ipv6Addr>, v4: Lookup<Ipv4Addr>) -> Lookups {
    let (https_tx, https_rx) = oneshot::channel();
    let (v6_tx, v6_rx) = oneshot::channel();
    let (v4_tx, v4_rx) = oneshot::channel();
    let mut https = Some((https, https_tx));
    let mut v6 = Some((v6, v6_tx));
    let mut v4 = Some((v4, v4_tx));
    let task = tokio::spawn(std::future::poll_fn(move |cx| {
        poll_slot(&mut https, cx);
        poll_slot(&mut v6, cx);
        poll_slot(&mut v4, cx);
        if https.is_none() && v6.is_none() && v4.is_none() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }));
    let guard = Arc::new(AbortOnDrop(task.abort_handle()));
    let abandoned = || "the lookup was abandoned".to_owned();
    Lookups {
        https: {
            let guard = Arc::clone(&guard);
            Box::pin(async move {
                let _guard = guard;
                https_rx.await.unwrap_or_else(|_| Err(abandoned()))
            })
        },
        v6: {
            let guard = Arc::clone(&guard);
            Box::pin(async move {
                let _guard = guard;
                v6_rx.await.unwrap_or_else(|_| Err(abandoned()))
            })
        },
        v4: Box::pin(async move {
            let _guard = guard;
            v4_rx.await.unwrap_or_else(|_| Err(abandoned()))
        }),
    }
}

/// A lookup and where its answer goes; `None` once answered, or once
/// nobody waits for the answer.
type Slot<T> = Option<(Pin<Box<dyn Future<Output = T> + Send>>, oneshot::Sender<T>)>;

/// Polls the slot's lookup, sending its answer when ready. A lookup whose
/// answer nobody awaits any more is dropped (and its query with it), while
/// the others go on.
fn poll_slot<T>(slot: &mut Slot<T>, cx: &mut std::task::Context<'_>) {
    let Some((lookup, sender)) = slot.as_mut() else {
        return;
    };
    if sender.poll_closed(cx).is_ready() {
        *slot = None;
        return;
    }
    if let Poll::Ready(answer) = lookup.as_mut().poll(cx)
        && let Some((_, sender)) = slot.take()
    {
        let _ = sender.send(answer);
    }
}

/// Aborts a task when the last of its lookups is dropped.
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// hickory, as SVCB resolution asks it.
#[derive(Clone)]
struct HickoryDns {
    resolver: TokioResolver,
    /// The name the connect asked for, queried as written, like its A and
    /// AAAA; other names come from records and are absolute.
    origin: HostName,
}

impl HickoryDns {
    fn query_name(&self, name: &HostName) -> String {
        if *name == self.origin {
            name.as_str().to_owned()
        } else {
            format!("{name}.")
        }
    }
}

impl https::Dns for HickoryDns {
    fn https(&self, name: &HostName) -> impl Future<Output = Result<Vec<(Name, SVCB)>, String>> + Send {
        let (resolver, name) = (self.resolver.clone(), self.query_name(name));
        async move {
            let lookup = resolver
                .lookup(name.as_str(), RecordType::HTTPS)
                .await
                .map_err(|e| no_records(&e))?;
            // CNAMEs on the way are hickory's to follow; only the HTTPS
            // records matter here.
            Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::HTTPS(https) => Some((r.name.clone(), https.0.clone())),
                    _ => None,
                })
                .collect())
        }
    }

    fn addresses(&self, name: &HostName) -> impl Future<Output = (Vec<IpAddr>, Vec<String>)> + Send {
        let (resolver, name) = (self.resolver.clone(), self.query_name(name));
        async move {
            let (v6, v4) = tokio::join!(v6_answers(&resolver, name.clone()), v4_answers(&resolver, name.clone()));
            let mut addresses = Vec::new();
            let mut notes = Vec::new();
            match v6 {
                Ok(v6) => addresses.extend(v6.into_iter().map(IpAddr::V6)),
                Err(e) => notes.push(format!("AAAA {}: {}", name.trim_end_matches('.'), no_records(&e))),
            }
            match v4 {
                Ok(v4) => addresses.extend(v4.into_iter().map(IpAddr::V4)),
                Err(e) => notes.push(format!("A {}: {}", name.trim_end_matches('.'), no_records(&e))),
            }
            (addresses, notes)
        }
    }
}

async fn v6_answers(dns: &TokioResolver, name: String) -> Result<Vec<Ipv6Addr>, hickory_resolver::net::NetError> {
    let lookup = dns.ipv6_lookup(name.as_str()).await?;
    Ok(lookup
        .answers()
        .iter()
        .filter_map(|r| match r.data.ip_addr() {
            Some(IpAddr::V6(a)) => Some(a),
            _ => None,
        })
        .collect())
}

async fn v4_answers(dns: &TokioResolver, name: String) -> Result<Vec<Ipv4Addr>, hickory_resolver::net::NetError> {
    let lookup = dns.ipv4_lookup(name.as_str()).await?;
    Ok(lookup
        .answers()
        .iter()
        .filter_map(|r| match r.data.ip_addr() {
            Some(IpAddr::V4(a)) => Some(a),
            _ => None,
        })
        .collect())
}

/// A random number, for shuffling ties: std's hasher keys are random
/// per process and per call, which is all this needs.
fn random_seed() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(0u8)
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
mod dns_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_curl_form() {
        let o: Override = "Wsgate.Test:8443:[::1],127.0.0.1".parse().unwrap();
        assert_eq!(o.host.as_str(), "wsgate.test");
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
    fn a_trailing_dot_names_the_same_host() {
        let dotted: Override = "Example.COM.:443:127.0.0.1".parse().unwrap();
        let plain: Override = "example.com:443:127.0.0.1".parse().unwrap();
        assert_eq!(dotted, plain);
    }

    #[tokio::test]
    async fn literals_and_overrides_skip_dns() {
        let r = Resolver::new(["a.test:443:[::1],127.0.0.1".parse().unwrap()], Vec::new());
        let (lookups, source) = r.lookups(&"::1".parse().unwrap(), 1).await.unwrap();
        assert_eq!(source, Source::Literal);
        assert_eq!(
            (lookups.v6.await.unwrap().len(), lookups.v4.await.unwrap().len()),
            (1, 0)
        );
        let (lookups, source) = r.lookups(&"A.TEST".parse().unwrap(), 443).await.unwrap();
        assert_eq!(source, Source::Override);
        assert_eq!(
            (lookups.v6.await.unwrap().len(), lookups.v4.await.unwrap().len()),
            (1, 1)
        );
    }
}
