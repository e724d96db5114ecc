//! Which endpoint to try next: the grouping and sorting of the HEv3 draft
//! (§5), recomputed over everything known whenever an attempt is due.
//!
//! The endpoints come from three kinds of answer, each arriving on its own
//! time: the HTTPS records (services, with their port, address hints and
//! ECH configuration), and the AAAA and A answers for the name the
//! connect asked for. [`Candidates`] keeps them all and, on each
//! [`pick`](Candidates::pick), builds the list the draft describes:
//!
//! 1. **Groups by service (§5.2).** One group per usable ServiceMode
//!    record, in SvcPriority order (the resolver shuffled ties). A service
//!    whose target is the name asked for takes that name's A and AAAA
//!    answers, or its address hints until those answers are in (§4.2.1);
//!    a service elsewhere brings its own addresses. Addresses of the name
//!    that no service claims form a last group, on the URL's port.
//! 2. **Sorting within a group (§5.3).** The destination rules of RFC
//!    6724 §6 that need no source address (rule 6, precedence; rule 8,
//!    smaller scope), then the draft's history rules: lower round trip
//!    first, then addresses used before. The order DNS gave is kept
//!    otherwise (rule 10).
//! 3. **Interleaving (§5.3).** The first family leads for *First Address
//!    Family Count* endpoints, then the families alternate. The first
//!    family is IPv6 unless the history says it keeps failing, or is much
//!    slower than IPv4, for this host (what wsgate chose where the draft
//!    leaves it open: see [`History`](super::History)).
//!
//! Because the list is rebuilt from the complete set, an answer that comes
//! late takes the place it would have had from the start (§7): an IPv4
//! address arriving while IPv6 attempts run is next, ahead of the IPv6
//! addresses not tried yet. Endpoints already attempted are skipped.

use super::family::{Family, PerFamily};
use crate::resolve::Service;
use std::collections::{HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// At most this many endpoints are considered in one race: DNS answers
/// and hints are the network's to choose, the work is ours to bound.
pub(crate) const MAX_ENDPOINTS: usize = 64;

/// One place to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// The address as the policy, the sorting, the history and the log see
    /// it (for a NAT64 path, the IPv4 address it reaches).
    pub addr: SocketAddr,
    /// The address actually dialled, when it is not `addr`: the NAT64
    /// synthesis of an IPv4 address (draft §8.3).
    pub via: Option<SocketAddr>,
    /// The service's ECH configuration, if its record has one.
    pub ech: Option<Arc<[u8]>>,
    /// The index of the endpoint's group (services in priority order, the
    /// name's unclaimed addresses last).
    pub group: usize,
    /// Whether the address came from an `ipv4hint`/`ipv6hint` only.
    pub hint: bool,
}

impl Endpoint {
    /// The address to dial.
    pub fn dial(&self) -> SocketAddr {
        self.via.unwrap_or(self.addr)
    }
}

/// What the race's history knows, as the ordering asks it.
pub(crate) trait Experience {
    /// The smoothed TCP round trip to `ip`, if measured.
    fn srtt(&self, ip: IpAddr) -> Option<Duration>;
    /// Whether a connection to `ip` succeeded before.
    fn used(&self, ip: IpAddr) -> bool;
    /// The family to put second for this host (keeps failing, or much
    /// slower than the other).
    fn family_second(&self) -> Option<Family>;
}

/// No history: the ordering of a first connect, or of a race that
/// explores.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NoExperience;

impl Experience for super::HistoryView {
    fn srtt(&self, ip: IpAddr) -> Option<Duration> {
        super::HistoryView::srtt(self, ip)
    }
    fn used(&self, ip: IpAddr) -> bool {
        super::HistoryView::used(self, ip)
    }
    fn family_second(&self) -> Option<Family> {
        self.failing_family()
    }
}

impl Experience for NoExperience {
    fn srtt(&self, _: IpAddr) -> Option<Duration> {
        None
    }
    fn used(&self, _: IpAddr) -> bool {
        false
    }
    fn family_second(&self) -> Option<Family> {
        None
    }
}

/// The endpoints known so far and which were attempted.
pub struct Candidates {
    port: u16,
    first_family_count: usize,
    /// The family that leads when the history says nothing (IPv6, unless
    /// the host has no IPv6 connectivity: draft §4.2).
    first_family: Family,
    /// The A and AAAA answers for the name asked for (`None`: not in).
    origin: PerFamily<Option<Vec<IpAddr>>>,
    /// The usable services (`None`: the HTTPS answer is not in).
    services: Option<Vec<Service>>,
    /// How an IPv4 address is dialled when the host has no IPv4 route.
    synthesize: Option<Box<dyn Fn(std::net::Ipv4Addr) -> Option<Ipv6Addr> + Send + Sync>>,
    experience: Box<dyn Experience + Send + Sync>,
    /// Endpoints attempted, in the order they were (by the address they
    /// stand for).
    tried: Vec<Endpoint>,
    /// Endpoints whose attempt was cancelled: they got furthest, so a
    /// fallback reaches them first.
    put_back: VecDeque<SocketAddr>,
}

impl std::fmt::Debug for Candidates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Candidates")
            .field("origin", &self.origin)
            .field("services", &self.services.as_ref().map(Vec::len))
            .field("tried", &self.tried)
            .finish_non_exhaustive()
    }
}

impl Candidates {
    /// No answers yet, for a connect to `port`.
    pub(crate) fn new(port: u16, first_family_count: usize) -> Self {
        Candidates {
            port,
            first_family_count: first_family_count.max(1),
            first_family: Family::V6,
            origin: PerFamily::default(),
            services: None,
            synthesize: None,
            experience: Box::new(NoExperience),
            tried: Vec::new(),
            put_back: VecDeque::new(),
        }
    }

    /// Leads with `family` where the history does not say otherwise.
    pub(crate) fn preferring(mut self, family: Family) -> Self {
        self.first_family = family;
        self
    }

    /// Orders with what `experience` knows.
    pub(crate) fn with_experience(mut self, experience: impl Experience + Send + Sync + 'static) -> Self {
        self.experience = Box::new(experience);
        self
    }

    /// Dials IPv4 addresses through `synthesize` (NAT64) where it gives an
    /// address.
    pub(crate) fn with_synthesis(
        mut self,
        synthesize: impl Fn(Ipv4Addr) -> Option<Ipv6Addr> + Send + Sync + 'static,
    ) -> Self {
        self.synthesize = Some(Box::new(synthesize));
        self
    }

    /// The A or AAAA answer for the name asked for (checked addresses).
    pub(crate) fn set_origin(&mut self, family: Family, ips: Vec<IpAddr>) {
        *self.origin.get_mut(family) = Some(ips);
    }

    /// The HTTPS answer: the usable services, in priority order (their
    /// hints and addresses checked).
    pub(crate) fn set_services(&mut self, services: Vec<Service>) {
        self.services = Some(services);
    }

    /// Whether the HTTPS answer is in.
    pub(crate) fn has_services(&self) -> bool {
        self.services.is_some()
    }

    /// Whether a service the name claims brings an address hint of
    /// `family`: the draft (§4.2.1) counts it as that family's answer.
    pub(crate) fn hinted(&self, family: Family) -> bool {
        self.services
            .iter()
            .flatten()
            .any(|s| s.addresses.is_none() && s.hints.iter().any(|ip| Family::of_ip(*ip) == family))
    }

    /// Whether any endpoint is known, tried or not (a positive answer, in
    /// the draft's words: addresses or hints).
    pub(crate) fn any_known(&self) -> bool {
        !self.ordered().is_empty()
    }

    /// Puts back an endpoint whose attempt was cancelled.
    pub(crate) fn put_back(&mut self, addr: SocketAddr) {
        if let Some(i) = self.tried.iter().position(|e| e.addr == addr) {
            self.tried.remove(i);
            self.put_back.push_back(addr);
        }
    }

    fn was_tried(&self, addr: SocketAddr) -> bool {
        self.tried.iter().any(|e| e.addr == addr)
    }

    /// Whether no endpoint is left to try.
    pub(crate) fn is_empty(&self) -> bool {
        self.put_back.is_empty() && self.ordered().iter().all(|e| self.was_tried(e.addr))
    }

    /// The endpoint `addr` stands for, as the list has it now.
    pub(crate) fn endpoint(&self, addr: SocketAddr) -> Option<Endpoint> {
        self.ordered().into_iter().find(|e| e.addr == addr)
    }

    /// The next endpoint to try, marked tried.
    pub(crate) fn pick(&mut self) -> Option<Endpoint> {
        let ordered = self.ordered();
        while let Some(addr) = self.put_back.pop_front() {
            if let Some(e) = ordered.iter().find(|e| e.addr == addr) {
                self.tried.push(e.clone());
                return Some(e.clone());
            }
        }
        let next = ordered.into_iter().find(|e| !self.was_tried(e.addr))?;
        self.tried.push(next.clone());
        Some(next)
    }

    /// The whole list, tried endpoints included, in the draft's order.
    pub(crate) fn ordered(&self) -> Vec<Endpoint> {
        let mut groups: Vec<Vec<Endpoint>> = Vec::new();
        let mut origin_claimed = false;
        for service in self.services.iter().flatten() {
            let port = service.port.unwrap_or(self.port);
            let ips: Vec<(IpAddr, bool)> = match &service.addresses {
                Some(ips) => ips.iter().map(|ip| (*ip, false)).collect(),
                None => {
                    origin_claimed = true;
                    // The name's own answers, or the hints standing in for
                    // a family whose answer is not in yet (§4.2.1).
                    let mut ips = Vec::new();
                    for family in [Family::V6, Family::V4] {
                        match self.origin.get(family) {
                            Some(answer) => ips.extend(answer.iter().map(|ip| (*ip, false))),
                            None => ips.extend(
                                service
                                    .hints
                                    .iter()
                                    .filter(|ip| Family::of_ip(**ip) == family)
                                    .map(|ip| (*ip, true)),
                            ),
                        }
                    }
                    ips
                }
            };
            let group = groups.len();
            groups.push(
                ips.into_iter()
                    .map(|(ip, hint)| self.endpoint_for(ip, port, service.ech.clone(), group, hint))
                    .collect(),
            );
        }
        if !origin_claimed {
            let group = groups.len();
            let mut unclaimed = Vec::new();
            for family in [Family::V6, Family::V4] {
                for ip in self.origin.get(family).iter().flatten() {
                    unclaimed.push(self.endpoint_for(*ip, self.port, None, group, false));
                }
            }
            groups.push(unclaimed);
        }
        // Endpoints attempted stay in the list where they were, even when
        // a later answer no longer has them (a hint the AAAA answer did
        // not confirm): the interleaving goes on from what was tried.
        for tried in &self.tried {
            if !groups.iter().flatten().any(|e| e.addr == tried.addr) {
                let last = groups.len() - 1;
                groups[tried.group.min(last)].push(tried.clone());
            }
        }
        let mut seen = HashSet::new();
        let mut list = Vec::new();
        for group in groups {
            for endpoint in self.interleave(group) {
                if list.len() < MAX_ENDPOINTS && seen.insert(endpoint.addr) {
                    list.push(endpoint);
                }
            }
        }
        list
    }

    fn endpoint_for(&self, ip: IpAddr, port: u16, ech: Option<Arc<[u8]>>, group: usize, hint: bool) -> Endpoint {
        let via = match (ip, &self.synthesize) {
            (IpAddr::V4(v4), Some(synthesize)) => synthesize(v4).map(|v6| SocketAddr::new(IpAddr::V6(v6), port)),
            _ => None,
        };
        Endpoint {
            addr: SocketAddr::new(ip, port),
            via,
            ech,
            group,
            hint,
        }
    }

    /// One group sorted (§5.3) and its families interleaved.
    fn interleave(&self, group: Vec<Endpoint>) -> Vec<Endpoint> {
        let mut families: PerFamily<VecDeque<Endpoint>> = PerFamily::default();
        for endpoint in group {
            families.get_mut(Family::of(endpoint.addr)).push_back(endpoint);
        }
        for family in [Family::V6, Family::V4] {
            let list = families.get_mut(family);
            let mut sorted: Vec<Endpoint> = list.drain(..).collect();
            // A stable sort: what no rule tells apart keeps DNS order.
            sorted.sort_by_key(|e| {
                let ip = e.addr.ip();
                let rtt = self.experience.srtt(ip);
                (
                    // What was tried leads, in the order it was.
                    self.tried.iter().position(|t| t.addr == e.addr).unwrap_or(usize::MAX),
                    std::cmp::Reverse(precedence(ip)),
                    scope(ip),
                    rtt.is_none(),
                    rtt.unwrap_or_default(),
                    !self.experience.used(ip),
                )
            });
            list.extend(sorted);
        }
        let first = match self.experience.family_second().or_else(|| self.much_slower(&families)) {
            Some(second) => second.other(),
            None => self.first_family,
        };
        let mut out = Vec::new();
        let mut family = first;
        let mut run = 0;
        while !families.v6.is_empty() || !families.v4.is_empty() {
            let limit = if family == first { self.first_family_count } else { 1 };
            match families.get_mut(family).pop_front() {
                Some(endpoint) => {
                    out.push(endpoint);
                    run += 1;
                    if run >= limit {
                        family = family.other();
                        run = 0;
                    }
                }
                None => {
                    family = family.other();
                    run = 0;
                }
            }
        }
        out
    }
}

impl Candidates {
    /// The family whose best round trip is more than twice the other's and
    /// at least [`MIN_ATTEMPT_DELAY`](super::history::MIN_ATTEMPT_DELAY)
    /// longer: starting it first only delays the connect by an attempt
    /// delay (wsgate's reading of the draft's RTT rule across families).
    fn much_slower(&self, families: &PerFamily<VecDeque<Endpoint>>) -> Option<Family> {
        let best = |family: Family| {
            families
                .get(family)
                .iter()
                .filter_map(|e| self.experience.srtt(e.addr.ip()))
                .min()
        };
        let (v6, v4) = (best(Family::V6)?, best(Family::V4)?);
        let gap = super::history::MIN_ATTEMPT_DELAY;
        if v6 > v4 * 2 && v6 >= v4 + gap {
            Some(Family::V6)
        } else if v4 > v6 * 2 && v4 >= v6 + gap {
            Some(Family::V4)
        } else {
            None
        }
    }
}

/// RFC 6724 §2.1's default policy table: the precedence of a destination.
fn precedence(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 35,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if v6 == Ipv6Addr::LOCALHOST {
                50
            } else if v6.to_ipv4_mapped().is_some() {
                35
            } else if s[0] == 0x2002 {
                30
            } else if s[0] == 0x2001 && s[1] == 0 {
                5
            } else if s[0] & 0xfe00 == 0xfc00 {
                3
            } else if s[..6] == [0; 6] {
                // IPv4-compatible (deprecated).
                1
            } else {
                40
            }
        }
    }
}

/// RFC 6724 §3.1's scope of a destination: smaller scopes first (rule 8).
fn scope(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() || v4.is_link_local() => 2,
        IpAddr::V4(_) => 14,
        IpAddr::V6(v6) if v6.is_loopback() || v6.is_unicast_link_local() => 2,
        IpAddr::V6(v6) if v6.is_multicast() => v6.segments()[0] as u8 & 0x0f,
        IpAddr::V6(_) => 14,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    fn picks(c: &mut Candidates) -> Vec<String> {
        std::iter::from_fn(|| c.pick()).map(|e| e.dial().to_string()).collect()
    }

    fn answered(v6: &[&str], v4: &[&str], count: usize) -> Candidates {
        let mut c = Candidates::new(443, count);
        c.set_origin(Family::V6, ips(v6));
        c.set_origin(Family::V4, ips(v4));
        c
    }

    fn service(priority: u16, port: Option<u16>, hints: &[&str], addresses: Option<&[&str]>) -> Service {
        Service {
            priority,
            target: "wsgate.test".parse().unwrap(),
            port,
            alpn: Vec::new(),
            no_default_alpn: false,
            hints: ips(hints),
            ech: None,
            addresses: addresses.map(ips),
        }
    }

    #[test]
    fn ipv6_first_then_alternating() {
        let (v6, v4) = (
            ["2001:db8::1", "2001:db8::2", "2001:db8::3"],
            ["192.0.2.1", "192.0.2.2"],
        );
        assert_eq!(
            picks(&mut answered(&v6, &v4, 1)),
            [
                "[2001:db8::1]:443",
                "192.0.2.1:443",
                "[2001:db8::2]:443",
                "192.0.2.2:443",
                "[2001:db8::3]:443"
            ]
        );
        // First Address Family Count 2: two IPv6 before the first IPv4.
        assert_eq!(
            picks(&mut answered(&v6, &v4, 2)),
            [
                "[2001:db8::1]:443",
                "[2001:db8::2]:443",
                "192.0.2.1:443",
                "[2001:db8::3]:443",
                "192.0.2.2:443"
            ]
        );
    }

    #[test]
    fn late_answers_take_the_place_they_would_have_had() {
        let mut c = Candidates::new(443, 1);
        c.set_origin(Family::V6, ips(&["2001:db8::1", "2001:db8::2"]));
        assert_eq!(c.pick().unwrap().addr.to_string(), "[2001:db8::1]:443");
        // A answers while the first IPv6 attempt runs: IPv4 is next, ahead
        // of the IPv6 address not tried yet (§7).
        c.set_origin(Family::V4, ips(&["192.0.2.1"]));
        assert_eq!(picks(&mut c), ["192.0.2.1:443", "[2001:db8::2]:443"]);
    }

    #[test]
    fn services_go_by_priority_with_their_ports_and_unclaimed_addresses_last() {
        let mut c = answered(&["2001:db8::1"], &["192.0.2.1"], 1);
        c.set_services(vec![
            service(1, Some(8443), &[], Some(&["2001:db8::10", "192.0.2.10"])),
            service(2, None, &[], Some(&["192.0.2.20"])),
        ]);
        assert_eq!(
            picks(&mut c),
            [
                "[2001:db8::10]:8443",
                "192.0.2.10:8443",
                "192.0.2.20:443",
                // No service has the name itself as target: its own
                // addresses come last (§5.2).
                "[2001:db8::1]:443",
                "192.0.2.1:443"
            ]
        );
    }

    #[test]
    fn hints_stand_in_until_the_answers_replace_them() {
        let mut c = Candidates::new(443, 1);
        c.set_services(vec![service(1, Some(8443), &["2001:db8::9", "192.0.2.9"], None)]);
        let first = c.pick().unwrap();
        assert_eq!(first.addr.to_string(), "[2001:db8::9]:8443");
        assert!(first.hint);
        // AAAA answers without the hint: the hint is dropped (but stays
        // where it was, as tried), the answer used; the IPv4 hint stays
        // until A answers.
        c.set_origin(Family::V6, ips(&["2001:db8::1"]));
        assert_eq!(
            c.ordered().iter().map(|e| e.addr.to_string()).collect::<Vec<_>>(),
            ["[2001:db8::9]:8443", "192.0.2.9:8443", "[2001:db8::1]:8443"]
        );
        c.set_origin(Family::V4, ips(&["192.0.2.1"]));
        assert_eq!(picks(&mut c), ["192.0.2.1:8443", "[2001:db8::1]:8443"]);
    }

    struct Known(HashMap<IpAddr, Duration>, Option<Family>);

    impl Experience for Known {
        fn srtt(&self, ip: IpAddr) -> Option<Duration> {
            self.0.get(&ip).copied()
        }
        fn used(&self, ip: IpAddr) -> bool {
            self.0.contains_key(&ip)
        }
        fn family_second(&self) -> Option<Family> {
            self.1
        }
    }

    #[test]
    fn lower_round_trips_go_first_within_a_family_and_a_failing_family_second() {
        let rtt = |ip: &str, ms| (ip.parse().unwrap(), Duration::from_millis(ms));
        let known = Known(
            HashMap::from([rtt("2001:db8::2", 5), rtt("2001:db8::3", 40), rtt("192.0.2.2", 1)]),
            None,
        );
        let mut c = answered(
            &["2001:db8::1", "2001:db8::3", "2001:db8::2"],
            &["192.0.2.1", "192.0.2.2"],
            1,
        )
        .with_experience(known);
        assert_eq!(
            picks(&mut c),
            [
                "[2001:db8::2]:443",
                "192.0.2.2:443",
                "[2001:db8::3]:443",
                "192.0.2.1:443",
                "[2001:db8::1]:443"
            ]
        );
        let failing = Known(HashMap::new(), Some(Family::V6));
        let mut c = answered(&["2001:db8::1"], &["192.0.2.1"], 1).with_experience(failing);
        assert_eq!(picks(&mut c), ["192.0.2.1:443", "[2001:db8::1]:443"]);
    }

    #[test]
    fn rfc_6724_precedence_and_scope_come_before_dns_order() {
        let mut c = answered(&["2002:c000:201::1", "2001:db8::1", "::1"], &[], 1);
        assert_eq!(
            picks(&mut c),
            ["[::1]:443", "[2001:db8::1]:443", "[2002:c000:201::1]:443"]
        );
    }

    #[test]
    fn ipv4_is_dialled_through_its_synthesis_when_there_is_one() {
        let mut c = answered(&[], &["192.0.2.33"], 1).with_synthesis(|v4| {
            let [a, b, c, d] = v4.octets();
            Some(Ipv6Addr::new(
                0x64,
                0xff9b,
                0,
                0,
                0,
                0,
                u16::from_be_bytes([a, b]),
                u16::from_be_bytes([c, d]),
            ))
        });
        let e = c.pick().unwrap();
        assert_eq!(e.addr.to_string(), "192.0.2.33:443");
        assert_eq!(e.dial().to_string(), "[64:ff9b::c000:221]:443");
    }

    #[test]
    fn cancelled_endpoints_come_back_first() {
        let mut c = answered(&["2001:db8::1", "2001:db8::2"], &[], 1);
        let first = c.pick().unwrap();
        c.put_back(first.addr);
        assert_eq!(picks(&mut c), ["[2001:db8::1]:443", "[2001:db8::2]:443"]);
        assert!(c.is_empty());
    }

    #[test]
    fn the_list_is_bounded() {
        let v6: Vec<String> = (1..=200).map(|i| format!("2001:db8::{i:x}")).collect();
        let v6: Vec<&str> = v6.iter().map(String::as_str).collect();
        assert_eq!(answered(&v6, &[], 1).ordered().len(), MAX_ENDPOINTS);
    }
}
