//! Which address to try next (RFC 8305 §4), and the memory of winners.

use super::family::{Family, PerFamily};
use crate::host_name::HostName;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// The addresses not tried yet, per family, in the order DNS gave them.
///
/// Picking follows RFC 8305 §4: a remembered winner first; then the
/// preferred family (IPv6) for the first *First Address Family Count*
/// addresses; then the families alternate. Addresses that arrive late (a
/// slow AAAA) join where they belong.
#[derive(Debug)]
pub struct Candidates {
    untried: PerFamily<VecDeque<SocketAddr>>,
    first_family_count: usize,
    preferred_taken: usize,
    last_family: Option<Family>,
    remembered: Option<SocketAddr>,
}

impl Candidates {
    /// No addresses yet. `remembered` is tried first once it shows up.
    pub fn new(first_family_count: usize, remembered: Option<SocketAddr>) -> Self {
        Candidates {
            untried: PerFamily::default(),
            first_family_count: first_family_count.max(1),
            preferred_taken: 0,
            last_family: None,
            remembered,
        }
    }

    /// Adds addresses from a lookup, keeping their order.
    pub fn extend(&mut self, addrs: impl IntoIterator<Item = SocketAddr>) {
        for addr in addrs {
            let list = self.untried.get_mut(Family::of(addr));
            if !list.contains(&addr) {
                list.push_back(addr);
            }
        }
    }

    /// Puts back an address whose attempt was cancelled, ahead of the
    /// untried ones of its family: it got furthest, and a fallback should
    /// reach it first.
    pub fn put_back(&mut self, addr: SocketAddr) {
        let list = self.untried.get_mut(Family::of(addr));
        if !list.contains(&addr) {
            list.push_front(addr);
        }
    }

    /// Whether no address is left.
    pub fn is_empty(&self) -> bool {
        self.untried.v6.is_empty() && self.untried.v4.is_empty()
    }

    /// The remembered winner, if any: its family is the one worth waiting
    /// for at resolution.
    pub fn remembered(&self) -> Option<SocketAddr> {
        self.remembered
    }

    /// The next address to try.
    pub fn pick(&mut self) -> Option<SocketAddr> {
        if let Some(addr) = self.remembered {
            let list = self.untried.get_mut(Family::of(addr));
            if let Some(i) = list.iter().position(|a| *a == addr) {
                self.remembered = None;
                return list.remove(i);
            }
        }
        let family = match (self.untried.v6.is_empty(), self.untried.v4.is_empty()) {
            (true, true) => return None,
            (false, true) => Family::V6,
            (true, false) => Family::V4,
            (false, false) if self.preferred_taken < self.first_family_count => Family::V6,
            // Alternate: the other family from the last pick.
            (false, false) => self.last_family.map_or(Family::V6, Family::other),
        };
        if family == Family::V6 {
            self.preferred_taken += 1;
        }
        self.last_family = Some(family);
        self.untried.get_mut(family).pop_front()
    }
}

/// The address that last won for each host and port, for a while: a
/// second connect to a host whose IPv6 is broken goes straight to what
/// worked (RFC 8305 §4's use of historical data).
#[derive(Debug)]
pub struct FamilyMemory {
    ttl: Duration,
    winners: Mutex<HashMap<(HostName, u16), (SocketAddr, Instant)>>,
}

/// How many host:port entries the memory keeps at most; past it, expired
/// entries are dropped, then the whole map (it is only a hint).
const MEMORY_CAPACITY: usize = 4096;

impl FamilyMemory {
    /// A memory whose entries last `ttl`.
    pub fn new(ttl: Duration) -> Self {
        FamilyMemory {
            ttl,
            winners: Mutex::new(HashMap::new()),
        }
    }

    /// The address that last won for `host:port`, if recent enough.
    pub fn get(&self, host: &HostName, port: u16) -> Option<SocketAddr> {
        let winners = self.winners.lock().ok()?;
        let (addr, at) = winners.get(&(host.clone(), port))?;
        (at.elapsed() < self.ttl).then_some(*addr)
    }

    /// Records that `addr` won for `host:port`.
    pub fn remember(&self, host: &HostName, port: u16, addr: SocketAddr) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut winners) = self.winners.lock() {
            if winners.len() >= MEMORY_CAPACITY {
                let ttl = self.ttl;
                winners.retain(|_, (_, at)| at.elapsed() < ttl);
                if winners.len() >= MEMORY_CAPACITY {
                    winners.clear();
                }
            }
            winners.insert((host.clone(), port), (addr, Instant::now()));
        }
    }
}

/// Orders addresses all known at once: what [`Candidates::pick`] would
/// give, one after another.
#[cfg(test)]
fn order(v6: &[std::net::IpAddr], v4: &[std::net::IpAddr], port: u16, first_family_count: usize) -> Vec<SocketAddr> {
    let mut c = Candidates::new(first_family_count, None);
    c.extend(v6.iter().chain(v4).map(|ip| SocketAddr::new(*ip, port)));
    std::iter::from_fn(|| c.pick()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    fn names(addrs: &[SocketAddr]) -> Vec<String> {
        addrs.iter().map(|a| a.ip().to_string()).collect()
    }

    #[test]
    fn ipv6_first_then_alternating() {
        let v6 = ips(&["2001:db8::1", "2001:db8::2", "2001:db8::3"]);
        let v4 = ips(&["192.0.2.1", "192.0.2.2"]);
        assert_eq!(
            names(&order(&v6, &v4, 443, 1)),
            ["2001:db8::1", "192.0.2.1", "2001:db8::2", "192.0.2.2", "2001:db8::3"]
        );
        // First Address Family Count 2: two IPv6 before the first IPv4.
        assert_eq!(
            names(&order(&v6, &v4, 443, 2)),
            ["2001:db8::1", "2001:db8::2", "192.0.2.1", "2001:db8::3", "192.0.2.2"]
        );
        assert_eq!(names(&order(&[], &v4, 80, 1)), ["192.0.2.1", "192.0.2.2"]);
    }

    #[test]
    fn late_answers_join_in_their_place() {
        let mut c = Candidates::new(1, None);
        c.extend(
            ips(&["192.0.2.1", "192.0.2.2"])
                .into_iter()
                .map(|ip| SocketAddr::new(ip, 1)),
        );
        assert_eq!(c.pick().unwrap().ip().to_string(), "192.0.2.1");
        // AAAA answers late: IPv6 is still preferred.
        c.extend(ips(&["2001:db8::1"]).into_iter().map(|ip| SocketAddr::new(ip, 1)));
        assert_eq!(c.pick().unwrap().ip().to_string(), "2001:db8::1");
        assert_eq!(c.pick().unwrap().ip().to_string(), "192.0.2.2");
        assert_eq!(c.pick(), None);
    }

    #[test]
    fn remembered_winner_goes_first_once() {
        let v4: SocketAddr = "192.0.2.9:1".parse().unwrap();
        let mut c = Candidates::new(1, Some(v4));
        c.extend(["[2001:db8::1]:1".parse().unwrap(), v4]);
        assert_eq!(c.pick(), Some(v4));
        assert_eq!(c.pick().unwrap().ip().to_string(), "2001:db8::1");
        assert_eq!(c.pick(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn memory_forgets_after_its_ttl() {
        let m = FamilyMemory::new(Duration::from_secs(600));
        let addr: SocketAddr = "127.0.0.1:443".parse().unwrap();
        let host: HostName = "wsgate.test".parse().unwrap();
        m.remember(&"Wsgate.Test".parse().unwrap(), 443, addr);
        assert_eq!(m.get(&host, 443), Some(addr));
        assert_eq!(m.get(&host, 80), None);
        tokio::time::advance(Duration::from_secs(601)).await;
        assert_eq!(m.get(&host, 443), None);
    }
}
