//! Which network the host is on, and whether it can reach each family.
//!
//! The HEv3 draft (§5.3) partitions historical data by Provisioning Domain:
//! what was learned on one network must not steer connects on another. The
//! host has no PvD identifier to ask for, so [`NetworkId`] stands in for
//! one: a hash of what makes a network recognisable from the inside, the
//! prefixes of the host's usable addresses and the gateways (and
//! interfaces) of its default routes. The draft's §4.1 definition of
//! "connectivity" for a family (a usable address and a non-link-local
//! route of that family) is read from the same [`NetworkSnapshot`].
//!
//! Addresses come from `getifaddrs` (every Unix); routes from
//! `/proc/net/route` and `/proc/net/ipv6_route` on Linux, and are unknown
//! elsewhere. The parsing of the `/proc` files is pure, so it is tested on
//! sample text.
//!
//! The id hashes address *prefixes* rather than the addresses themselves:
//! IPv6 temporary addresses (RFC 8981) rotate within a prefix, and a DHCP
//! lease may change the host part, on what is still the same network; a
//! history flushed at every rotation would be no history.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How long [`NetworkWatch`] trusts a snapshot before reading a new one.
pub const NETWORK_REFRESH: Duration = Duration::from_secs(1);

/// At most this many interface addresses are read from `getifaddrs`, and
/// at most this many routes from each `/proc` file: a bound on the work,
/// far above what a host has.
const MAX_ENTRIES: usize = 4096;

/// An identifier of the network the host is attached to: equal on the same
/// network, different (with a 64-bit hash's odds) on another.
///
/// It is stable across restarts and platforms of the same byte order (the
/// hash is FNV-1a over a canonical encoding, not `std`'s randomised hasher),
/// so that a saved history can tell whether it was learned here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetworkId(pub u64);

impl NetworkId {
    /// The id of the network the host is on now (reads the system).
    #[cfg(test)]
    pub fn current() -> NetworkId {
        NetworkSnapshot::read().id()
    }
}

impl fmt::Display for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// One address of a local interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAddress {
    /// The interface's name (`eth0`).
    pub interface: String,
    /// The address.
    pub ip: IpAddr,
    /// The length of its prefix (from the netmask; the full length when
    /// the system gives none).
    pub prefix_len: u8,
}

/// One route of the host's routing table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The interface the route goes out of.
    pub interface: String,
    /// The destination prefix (the unspecified address for a default
    /// route).
    pub destination: IpAddr,
    /// The destination prefix's length (0 for a default route).
    pub prefix_len: u8,
    /// The next hop, when the route goes through a gateway.
    pub gateway: Option<IpAddr>,
}

impl Route {
    /// Whether this is a default route (`0.0.0.0/0` or `::/0`).
    pub fn is_default(&self) -> bool {
        self.prefix_len == 0
    }
}

/// What the host's addresses and routes were at one moment.
///
/// `None` means "could not tell" (the platform has no such source, or it
/// could not be read), which the connectivity checks answer optimistically:
/// not knowing is no reason to stop asking DNS for a family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkSnapshot {
    /// The addresses of interfaces that are up, loopback ones excluded.
    pub addresses: Option<Vec<LocalAddress>>,
    /// The IPv4 routes that carry traffic (up, not rejecting, not over
    /// loopback).
    pub routes_v4: Option<Vec<Route>>,
    /// The IPv6 routes that carry traffic (up, not rejecting, not local
    /// delivery, not over loopback).
    pub routes_v6: Option<Vec<Route>>,
}

impl NetworkSnapshot {
    /// Reads the system's addresses and routes.
    ///
    /// This is a `getifaddrs` call and, on Linux, two small `/proc` reads:
    /// blocking, but well under a millisecond; [`NetworkWatch`] bounds how
    /// often it happens.
    pub fn read() -> NetworkSnapshot {
        let (routes_v4, routes_v6) = read_routes();
        NetworkSnapshot {
            addresses: read_addresses(),
            routes_v4,
            routes_v6,
        }
    }

    /// The id of the network this snapshot shows.
    ///
    /// The hash covers the sorted, deduplicated set of the prefixes of
    /// usable addresses (not loopback, link-local, multicast or
    /// unspecified) and of the default routes' (gateway, interface) pairs.
    /// Other routes are left out: a VPN or container bridge coming and
    /// going changes addresses anyway, and route metrics churn.
    pub fn id(&self) -> NetworkId {
        let mut items: Vec<Vec<u8>> = Vec::new();
        for addr in self.addresses.iter().flatten() {
            if usable(addr.ip) {
                let mut item = vec![b'a'];
                let len = addr.prefix_len.min(max_prefix(addr.ip));
                push_ip(&mut item, mask(addr.ip, len));
                item.push(len);
                items.push(item);
            }
        }
        for route in self.routes_v4.iter().chain(&self.routes_v6).flatten() {
            if route.is_default() {
                let mut item = vec![b'r'];
                match route.gateway {
                    Some(gw) => push_ip(&mut item, gw),
                    None => item.push(0),
                }
                item.extend_from_slice(route.interface.as_bytes());
                items.push(item);
            }
        }
        items.sort();
        items.dedup();
        let mut hash = Fnv::new();
        for item in &items {
            // Length-prefixed, so that no two sets encode alike.
            hash.write(&(item.len() as u32).to_le_bytes());
            hash.write(item);
        }
        NetworkId(hash.finish())
    }

    /// IPv4 connectivity as the draft (§4.1) defines it: a non-loopback,
    /// non-link-local IPv4 address and a non-link-local IPv4 route. Unknown
    /// addresses or routes count as present.
    pub fn has_ipv4_connectivity(&self) -> bool {
        self.has_connectivity(false)
    }

    /// IPv6 connectivity, as [`has_ipv4_connectivity`](Self::has_ipv4_connectivity)
    /// for IPv6.
    pub fn has_ipv6_connectivity(&self) -> bool {
        self.has_connectivity(true)
    }

    fn has_connectivity(&self, v6: bool) -> bool {
        let address = match &self.addresses {
            None => true,
            Some(list) => list.iter().any(|a| a.ip.is_ipv6() == v6 && usable(a.ip)),
        };
        let routes = if v6 { &self.routes_v6 } else { &self.routes_v4 };
        let route = match routes {
            None => true,
            Some(list) => list
                .iter()
                .any(|r| r.destination.is_ipv6() == v6 && routable(r.destination)),
        };
        address && route
    }
}

/// Keeps a [`NetworkSnapshot`] and its [`NetworkId`] for
/// [`NETWORK_REFRESH`], so that every connect can ask which network it is
/// on without reading the system each time. Shared by every race
/// (`Send + Sync`).
pub struct NetworkWatch {
    read: Box<dyn Fn() -> NetworkSnapshot + Send + Sync>,
    cached: Mutex<Option<Cached>>,
}

struct Cached {
    at: Instant,
    snapshot: Arc<NetworkSnapshot>,
    id: NetworkId,
}

impl NetworkWatch {
    /// A watch over the system's network ([`NetworkSnapshot::read`]).
    pub fn new() -> NetworkWatch {
        NetworkWatch::with_reader(NetworkSnapshot::read)
    }

    /// A watch whose snapshots come from `read` (tests script a network
    /// change with it).
    pub fn with_reader(read: impl Fn() -> NetworkSnapshot + Send + Sync + 'static) -> NetworkWatch {
        NetworkWatch {
            read: Box::new(read),
            cached: Mutex::new(None),
        }
    }

    /// The current network's id, read again when the last read is
    /// [`NETWORK_REFRESH`] old.
    pub fn current(&self) -> NetworkId {
        self.with_cached(|c| c.id)
    }

    /// The current snapshot, under the same rule as [`current`](Self::current).
    pub fn snapshot(&self) -> Arc<NetworkSnapshot> {
        self.with_cached(|c| Arc::clone(&c.snapshot))
    }

    fn with_cached<T>(&self, f: impl FnOnce(&Cached) -> T) -> T {
        // The lock is held while reading, so that concurrent connects read
        // the system once between them rather than once each.
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let fresh = cached
            .as_ref()
            .is_some_and(|c| now.saturating_duration_since(c.at) < NETWORK_REFRESH);
        if !fresh {
            *cached = None;
        }
        let c = cached.get_or_insert_with(|| {
            let snapshot = (self.read)();
            Cached {
                at: now,
                id: snapshot.id(),
                snapshot: Arc::new(snapshot),
            }
        });
        f(c)
    }
}

impl Default for NetworkWatch {
    fn default() -> Self {
        NetworkWatch::new()
    }
}

impl fmt::Debug for NetworkWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        f.debug_struct("NetworkWatch")
            .field("id", &cached.as_ref().map(|c| c.id))
            .finish_non_exhaustive()
    }
}

/// A source address that can reach beyond the link: not loopback,
/// link-local, multicast or unspecified.
fn usable(ip: IpAddr) -> bool {
    !(ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() || link_local(ip))
}

/// A route destination that reaches beyond the link: not link-local,
/// multicast or loopback (the unspecified address is a default route).
fn routable(ip: IpAddr) -> bool {
    !(ip.is_loopback() || ip.is_multicast() || link_local(ip))
}

fn link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_unicast_link_local(),
    }
}

fn max_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

/// `ip` with all but its first `len` bits cleared.
fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let keep = u32::MAX.checked_shl(32 - u32::from(len.min(32))).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(bits & keep))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let keep = u128::MAX.checked_shl(128 - u32::from(len.min(128))).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & keep))
        }
    }
}

fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            out.push(4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(6);
            out.extend_from_slice(&v6.octets());
        }
    }
}

/// 64-bit FNV-1a: small, and the same in every build.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

// Route flags (linux/route.h, linux/ipv6_route.h).
const RTF_UP: u32 = 0x0001;
const RTF_GATEWAY: u32 = 0x0002;
const RTF_REJECT: u32 = 0x0200;
const RTF_LOCAL: u32 = 0x8000_0000;

/// Parses `/proc/net/route`: a header line, then per route the interface,
/// destination, gateway, flags, refcount, use, metric and mask, the
/// addresses as the hex of the kernel's network-order `u32` printed in
/// native byte order. Routes that are down, rejecting or over loopback are
/// left out; malformed lines are skipped.
pub(crate) fn parse_route_v4(text: &str) -> Vec<Route> {
    let hex_ip = |s: &str| u32::from_str_radix(s, 16).ok().map(|v| Ipv4Addr::from(v.to_ne_bytes()));
    text.lines()
        .skip(1)
        .take(MAX_ENTRIES)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (iface, dest, gw, flags, mask) = (f.first()?, f.get(1)?, f.get(2)?, f.get(3)?, f.get(7)?);
            let flags = u32::from_str_radix(flags, 16).ok()?;
            let (dest, gw, mask) = (hex_ip(dest)?, hex_ip(gw)?, hex_ip(mask)?);
            if flags & RTF_UP == 0 || flags & RTF_REJECT != 0 || *iface == "lo" {
                return None;
            }
            Some(Route {
                interface: (*iface).to_string(),
                destination: IpAddr::V4(dest),
                prefix_len: u32::from(mask).leading_ones() as u8,
                gateway: (flags & RTF_GATEWAY != 0 && !gw.is_unspecified()).then_some(IpAddr::V4(gw)),
            })
        })
        .collect()
}

/// Parses `/proc/net/ipv6_route`: per route the destination and its prefix
/// length, the source and its prefix length, the next hop, metric,
/// refcount, use, flags and interface, in hex (addresses as 32 digits in
/// network order). Routes that are down, rejecting, local delivery (the
/// host's own addresses) or over loopback are left out; malformed lines
/// are skipped.
pub(crate) fn parse_route_v6(text: &str) -> Vec<Route> {
    let hex_ip = |s: &str| u128::from_str_radix(s, 16).ok().map(Ipv6Addr::from);
    text.lines()
        .take(MAX_ENTRIES)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                return None;
            }
            let dest = hex_ip(f[0])?;
            let prefix_len = u8::from_str_radix(f[1], 16).ok().filter(|l| *l <= 128)?;
            let next_hop = hex_ip(f[4])?;
            let flags = u32::from_str_radix(f[8], 16).ok()?;
            let iface = f[9];
            if flags & RTF_UP == 0 || flags & (RTF_REJECT | RTF_LOCAL) != 0 || iface == "lo" {
                return None;
            }
            Some(Route {
                interface: iface.to_string(),
                destination: IpAddr::V6(dest),
                prefix_len,
                gateway: (flags & RTF_GATEWAY != 0 && !next_hop.is_unspecified()).then_some(IpAddr::V6(next_hop)),
            })
        })
        .collect()
}

#[cfg(target_os = "linux")]
fn read_routes() -> (Option<Vec<Route>>, Option<Vec<Route>>) {
    // Both files are a few lines; a read error (no /proc in a sandbox)
    // means "unknown", not "no routes".
    let v4 = std::fs::read_to_string("/proc/net/route")
        .ok()
        .map(|t| parse_route_v4(&t));
    let v6 = std::fs::read_to_string("/proc/net/ipv6_route")
        .ok()
        .map(|t| parse_route_v6(&t));
    (v4, v6)
}

#[cfg(not(target_os = "linux"))]
fn read_routes() -> (Option<Vec<Route>>, Option<Vec<Route>>) {
    (None, None)
}

#[cfg(unix)]
fn read_addresses() -> Option<Vec<LocalAddress>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head we own until freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return None;
    }
    let mut out = Vec::new();
    let mut cur = head;
    let mut seen = 0;
    while !cur.is_null() && seen < MAX_ENTRIES {
        seen += 1;
        // SAFETY: `cur` is a node of the list getifaddrs gave, not freed
        // yet; its pointers are null or valid for the node's life.
        let node = unsafe { &*cur };
        cur = node.ifa_next;
        let flags = node.ifa_flags as libc::c_int;
        if flags & libc::IFF_UP == 0 || flags & libc::IFF_LOOPBACK != 0 || node.ifa_name.is_null() {
            continue;
        }
        // SAFETY: as above; the addresses are null or point to a sockaddr
        // of the size their family says.
        let Some(ip) = (unsafe { sockaddr_ip(node.ifa_addr) }) else {
            continue;
        };
        let prefix_len = unsafe { sockaddr_ip(node.ifa_netmask) }
            .filter(|m| m.is_ipv4() == ip.is_ipv4())
            .map_or(max_prefix(ip), prefix_of_mask);
        // SAFETY: ifa_name is a NUL-terminated string (checked non-null).
        let name = unsafe { std::ffi::CStr::from_ptr(node.ifa_name) };
        out.push(LocalAddress {
            interface: name.to_string_lossy().into_owned(),
            ip,
            prefix_len,
        });
    }
    // SAFETY: the head getifaddrs gave, freed once.
    unsafe { libc::freeifaddrs(head) };
    Some(out)
}

/// The IP of an `AF_INET` or `AF_INET6` sockaddr; `None` for others.
///
/// # Safety
///
/// `sa` is null or points to a sockaddr as large as its family's.
#[cfg(unix)]
unsafe fn sockaddr_ip(sa: *const libc::sockaddr) -> Option<IpAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: the caller's promise; the reads are unaligned-safe copies.
    unsafe {
        match i32::from((*sa).sa_family) {
            libc::AF_INET => {
                let sin = std::ptr::read_unaligned(sa.cast::<libc::sockaddr_in>());
                Some(IpAddr::V4(Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes())))
            }
            libc::AF_INET6 => {
                let sin6 = std::ptr::read_unaligned(sa.cast::<libc::sockaddr_in6>());
                Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
            }
            _ => None,
        }
    }
}

#[cfg(unix)]
fn prefix_of_mask(mask: IpAddr) -> u8 {
    match mask {
        IpAddr::V4(m) => u32::from(m).leading_ones() as u8,
        IpAddr::V6(m) => u128::from(m).leading_ones() as u8,
    }
}

#[cfg(not(unix))]
fn read_addresses() -> Option<Vec<LocalAddress>> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/proc/net/route` as printed on this machine's byte order.
    fn route_text() -> String {
        let hex = |a: [u8; 4]| format!("{:08X}", u32::from_ne_bytes(a));
        format!(
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
             eth0\t{zero}\t{gw}\t0003\t0\t0\t0\t{zero}\t0\t0\t0\n\
             eth0\t{net}\t{zero}\t0001\t0\t0\t0\t{m24}\t0\t0\t0\n\
             eth0\t{ll}\t{zero}\t0001\t0\t0\t1000\t{m16}\t0\t0\t0\n\
             eth1\t{net2}\t{zero}\t0000\t0\t0\t0\t{m24}\t0\t0\t0\n\
             lo\t{zero}\t{zero}\t0201\t0\t0\t0\t{zero}\t0\t0\t0\n\
             garbage line\n",
            zero = hex([0, 0, 0, 0]),
            gw = hex([192, 0, 2, 1]),
            net = hex([192, 0, 2, 0]),
            m24 = hex([255, 255, 255, 0]),
            ll = hex([169, 254, 0, 0]),
            m16 = hex([255, 255, 0, 0]),
            net2 = hex([198, 51, 100, 0]),
        )
    }

    /// `/proc/net/ipv6_route` as a Linux host with a router prints it.
    const IPV6_ROUTE: &str = "\
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000002 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000002 00000000 00450003     eth0
00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000004 00000000 80200001       lo
fd000000000000000000000000000002 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000004 00000000 80200001     eth0
ff000000000000000000000000000000 08 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000003 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
not a route
zz000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn route(interface: &str, destination: &str, prefix_len: u8, gateway: Option<&str>) -> Route {
        Route {
            interface: interface.to_string(),
            destination: ip(destination),
            prefix_len,
            gateway: gateway.map(ip),
        }
    }

    fn addr(interface: &str, a: &str, prefix_len: u8) -> LocalAddress {
        LocalAddress {
            interface: interface.to_string(),
            ip: ip(a),
            prefix_len,
        }
    }

    #[test]
    fn parses_proc_net_route() {
        assert_eq!(
            parse_route_v4(&route_text()),
            [
                route("eth0", "0.0.0.0", 0, Some("192.0.2.1")),
                route("eth0", "192.0.2.0", 24, None),
                route("eth0", "169.254.0.0", 16, None),
            ]
        );
        assert!(parse_route_v4("").is_empty());
    }

    #[test]
    fn parses_proc_net_ipv6_route() {
        assert_eq!(
            parse_route_v6(IPV6_ROUTE),
            [
                route("eth0", "fd00::", 64, None),
                route("eth0", "fe80::", 64, None),
                route("eth0", "::", 0, Some("fe80::1")),
                route("eth0", "ff00::", 8, None),
            ]
        );
    }

    fn snapshot() -> NetworkSnapshot {
        NetworkSnapshot {
            addresses: Some(vec![
                addr("eth0", "192.0.2.2", 24),
                addr("eth0", "fd00::2", 64),
                addr("eth0", "fe80::fc:ff:fe00:1", 64),
            ]),
            routes_v4: Some(parse_route_v4(&route_text())),
            routes_v6: Some(parse_route_v6(IPV6_ROUTE)),
        }
    }

    #[test]
    fn connectivity_needs_a_usable_address_and_route() {
        let s = snapshot();
        assert!(s.has_ipv4_connectivity());
        assert!(s.has_ipv6_connectivity());

        // Only a link-local IPv6 address: no IPv6 connectivity.
        let mut only_ll = s.clone();
        only_ll.addresses = Some(vec![addr("eth0", "192.0.2.2", 24), addr("eth0", "fe80::1", 64)]);
        assert!(only_ll.has_ipv4_connectivity());
        assert!(!only_ll.has_ipv6_connectivity());

        // An address but only link-local and multicast routes.
        let mut no_route = s.clone();
        no_route.routes_v6 = Some(vec![
            route("eth0", "fe80::", 64, None),
            route("eth0", "ff00::", 8, None),
        ]);
        assert!(!no_route.has_ipv6_connectivity());
        no_route.routes_v4 = Some(vec![]);
        assert!(!no_route.has_ipv4_connectivity());

        // Unknown routes (not Linux) count as present; unknown addresses too.
        let unknown = NetworkSnapshot {
            addresses: s.addresses.clone(),
            routes_v4: None,
            routes_v6: None,
        };
        assert!(unknown.has_ipv4_connectivity() && unknown.has_ipv6_connectivity());
        assert!(NetworkSnapshot::default().has_ipv6_connectivity());
    }

    #[test]
    fn id_follows_prefixes_and_default_routes() {
        let s = snapshot();
        let id = s.id();
        assert_eq!(id, snapshot().id());

        // Another address in the same prefix (a rotated temporary address),
        // a link-local one, listed in another order: the same network.
        let mut rotated = s.clone();
        rotated.addresses = Some(vec![
            addr("eth0", "fd00::9999:1", 64),
            addr("eth0", "fe80::aa", 64),
            addr("eth0", "192.0.2.77", 24),
        ]);
        assert_eq!(rotated.id(), id);

        // Non-default routes do not matter.
        let mut fewer_routes = s.clone();
        fewer_routes.routes_v4 = Some(vec![route("eth0", "0.0.0.0", 0, Some("192.0.2.1"))]);
        assert_eq!(fewer_routes.id(), id);

        // Another prefix, another gateway, another interface: another network.
        let mut moved = s.clone();
        moved.addresses = Some(vec![addr("wlan0", "198.51.100.5", 24), addr("eth0", "fd00::2", 64)]);
        assert_ne!(moved.id(), id);
        let mut new_gateway = s.clone();
        new_gateway.routes_v4 = Some(vec![route("eth0", "0.0.0.0", 0, Some("192.0.2.254"))]);
        assert_ne!(new_gateway.id(), id);
        let mut new_iface = s.clone();
        new_iface.routes_v6 = Some(vec![route("wlan0", "::", 0, Some("fe80::1"))]);
        assert_ne!(new_iface.id(), id);
    }

    #[test]
    fn masks_prefixes() {
        assert_eq!(mask(ip("192.0.2.77"), 24), ip("192.0.2.0"));
        assert_eq!(mask(ip("192.0.2.77"), 0), ip("0.0.0.0"));
        assert_eq!(mask(ip("192.0.2.77"), 32), ip("192.0.2.77"));
        assert_eq!(mask(ip("2001:db8:1:2:3::4"), 48), ip("2001:db8:1::"));
        assert_eq!(mask(ip("2001:db8::4"), 200), ip("2001:db8::4"));
    }

    #[test]
    fn reads_the_system_without_panicking() {
        let s = NetworkSnapshot::read();
        // Loopback addresses are never listed.
        assert!(s.addresses.iter().flatten().all(|a| !a.ip.is_loopback()));
        assert_eq!(NetworkId::current(), NetworkSnapshot::read().id());
    }

    #[tokio::test(start_paused = true)]
    async fn watch_rereads_after_a_second() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let reads = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&reads);
        let watch = NetworkWatch::with_reader(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            NetworkSnapshot {
                addresses: Some(vec![addr("eth0", &format!("192.0.{n}.1"), 24)]),
                routes_v4: None,
                routes_v6: None,
            }
        });
        let first = watch.current();
        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(watch.current(), first);
        assert_eq!(watch.snapshot().addresses.as_ref().unwrap()[0].ip, ip("192.0.0.1"));
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_ne!(watch.current(), first);
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }
}
