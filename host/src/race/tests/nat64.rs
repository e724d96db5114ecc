//! NAT64 in the race (draft §8): DNS64 answers are de-synthesised before
//! the policy and the sorting see them, and IPv4 addresses are dialled
//! through the prefix on a host without an IPv4 route.

use super::*;
use crate::nat64::{Nat64, Nat64Prefix};

fn nat64() -> Nat64 {
    Nat64::new(Nat64Prefix::WELL_KNOWN)
}

fn synthesised(v4: SocketAddr) -> SocketAddr {
    let IpAddr::V4(ip) = v4.ip() else { unreachable!() };
    SocketAddr::new(IpAddr::V6(Nat64Prefix::WELL_KNOWN.synthesize(ip)), v4.port())
}

/// An address check that records what it was asked.
#[derive(Default)]
struct Recorder(Mutex<Vec<SocketAddr>>);

impl AddressCheck for Recorder {
    fn check(&self, addr: SocketAddr) -> Result<(), String> {
        self.0.lock().unwrap().push(addr);
        Ok(())
    }
}

fn race_checked(script: &Script, lookups: Lookups, check: Arc<Recorder>) -> Race<Script> {
    Race::new(
        RaceConfig::default(),
        target(CommitStage::Tls),
        script.clone(),
        lookups,
        check,
        memory(),
        RaceLog::new(1, None),
    )
}

#[tokio::test(start_paused = true)]
async fn without_an_ipv4_route_ipv4_is_dialled_through_the_prefix() {
    let script = Script::new(&[(synthesised(v4(33)), ok(1, 1))]);
    let check = Arc::new(Recorder::default());
    let lookups = lookups(&[], Some(0), &[v4(33)], Some(0));
    let mut r = race_checked(&script, lookups, check.clone()).with_nat64(nat64(), true);
    let committed = r.next(deadline(1000)).await.unwrap();
    // The socket's peer is the synthesised address; the race, the policy
    // and the log speak of the IPv4 address it reaches.
    assert_eq!(committed.peer, synthesised(v4(33)));
    assert_eq!(events(&r, EventKind::Attempt), [(0, Some(v4(33)))]);
    let attempt = r.log().events().iter().find(|e| e.event == EventKind::Attempt).unwrap();
    assert_eq!(attempt.detail.as_deref(), Some("via [64:ff9b::c000:221]:443"));
    assert_eq!(*check.0.lock().unwrap(), [v4(33)]);
}

#[tokio::test(start_paused = true)]
async fn an_ipv4_literal_is_synthesised_too() {
    let script = Script::new(&[(synthesised(v4(33)), ok(1, 1))]);
    let lookups = Lookups::ready(&[v4(33).ip()]);
    let mut r = race_checked(&script, lookups, Arc::default()).with_nat64(nat64(), true);
    assert_eq!(r.next(deadline(1000)).await.unwrap().peer, synthesised(v4(33)));
}

#[tokio::test(start_paused = true)]
async fn dns64_answers_are_checked_sorted_and_dialled_as_the_ipv4_they_embed() {
    // With an IPv4 route, a DNS64 answer is dialled as plain IPv4.
    let script = Script::new(&[(v4(33), ok(1, 1))]);
    let check = Arc::new(Recorder::default());
    let lookups = lookups(&[synthesised(v4(33))], Some(0), &[], Some(0));
    let mut r = race_checked(&script, lookups, check.clone()).with_nat64(nat64(), false);
    assert_eq!(r.next(deadline(1000)).await.unwrap().peer, v4(33));
    assert_eq!(*check.0.lock().unwrap(), [v4(33)]);
    let resolve: Vec<String> = r
        .log()
        .events()
        .iter()
        .filter(|e| e.event == EventKind::Resolve)
        .filter_map(|e| e.detail.clone())
        .collect();
    assert!(
        resolve.contains(&"AAAA: 192.0.2.33 (DNS64 64:ff9b::c000:221)".to_owned()),
        "{resolve:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_dns64_answer_and_the_a_answer_for_one_address_are_one_endpoint() {
    // Both queries name 192.0.2.33: one attempt, not two.
    let script = Script::new(&[(synthesised(v4(33)), BLACKHOLE)]);
    let lookups = lookups(&[synthesised(v4(33))], Some(0), &[v4(33)], Some(0));
    let mut r = race_checked(&script, lookups, Arc::default()).with_nat64(nat64(), true);
    assert!(r.next(deadline(1000)).await.is_err());
    assert_eq!(events(&r, EventKind::Attempt), [(0, Some(v4(33)))]);
}
