//! The race with a history (draft §5.3, §6): what it learned orders the
//! addresses, sets the attempt delay and puts a failing or much slower
//! family second, and it still converges and forgets on a network change.

use super::*;
use crate::network::NetworkId;

fn host() -> crate::HostName {
    "wsgate.test".parse().unwrap()
}

fn attempts_of(r: &Race<Script>) -> Vec<(u64, Option<SocketAddr>)> {
    events(r, EventKind::Attempt)
}

#[tokio::test(start_paused = true)]
async fn addresses_with_shorter_round_trips_go_first() {
    let history = memory();
    history.record_success(&host(), 443, v6(2), 5 * MS);
    history.record_success(&host(), 443, v6(1), 40 * MS);
    let script = Script::new(&[(v6(1), ok(1, 1)), (v6(2), ok(1, 1))]);
    let lookups = lookups(&[v6(1), v6(2)], Some(0), &[], Some(0));
    let mut r = race(RaceConfig::default(), CommitStage::Tls, &script, lookups, &history);
    assert_eq!(r.next(deadline(1000)).await.unwrap().peer, v6(2));
}

#[tokio::test(start_paused = true)]
async fn the_attempt_delay_follows_the_measured_round_trip() {
    // 10 ms round trips: the RTO estimate is 10 + 4·5 = 30 ms, raised to
    // the 100 ms floor; without history it is the configured 250 ms.
    let history = memory();
    history.record_success(&host(), 443, v6(1), 10 * MS);
    let script = Script::new(&[(v6(1), BLACKHOLE), (v4(1), ok(1, 1))]);
    let lookups = lookups(&[v6(1)], Some(0), &[v4(1)], Some(0));
    let mut r = race(RaceConfig::default(), CommitStage::Tls, &script, lookups, &history);
    r.next(deadline(1000)).await.unwrap();
    assert_eq!(attempts_of(&r), [(0, Some(v6(1))), (100, Some(v4(1)))]);
    let first = r.log().events().iter().find(|e| e.event == EventKind::Attempt).unwrap();
    assert_eq!(
        first.detail.as_deref(),
        Some("next attempt in 100 ms (from its round trip)")
    );

    // A slow path: 900 ms round trips give 900 + 4·450 = 2.7 s, clamped
    // to the 2 s ceiling.
    let history = memory();
    history.record_success(&host(), 443, v6(1), 900 * MS);
    let mut r = again(&script, &history);
    r.next(deadline(5000)).await.unwrap();
    assert_eq!(attempts_of(&r), [(0, Some(v6(1))), (2000, Some(v4(1)))]);
}

fn lookups_again() -> Lookups {
    lookups(&[v6(1)], Some(0), &[v4(1)], Some(0))
}

/// One more connect to `wsgate.test` (both families answering at once)
/// with `history`.
fn again(script: &Script, history: &History) -> Race<Script> {
    race(
        RaceConfig::default(),
        CommitStage::Tls,
        script,
        lookups_again(),
        history,
    )
}

#[tokio::test(start_paused = true)]
async fn a_family_that_keeps_failing_goes_second_and_exploring_tries_it_again() {
    let history = History::new(HistoryConfig {
        explore_every: 4,
        ..HistoryConfig::default()
    });
    // IPv6 refuses at once; IPv4 works.
    let refused = Plan {
        tcp: Step::FailAfter(MS),
        ..BLACKHOLE
    };
    let script = Script::new(&[(v6(1), refused), (v4(1), ok(1, 1))]);
    let mut firsts = Vec::new();
    for _ in 0..8 {
        let mut r = again(&script, &history);
        assert_eq!(r.next(deadline(1000)).await.unwrap().peer, v4(1));
        firsts.push(attempts_of(&r)[0].1.unwrap());
    }
    // Two failures make IPv6 a failing family: IPv4 leads from the third
    // race on, except every fourth, which races as if it knew nothing
    // (draft §5.3: clients converge) and finds IPv6 still broken.
    assert_eq!(firsts, [v6(1), v6(1), v4(1), v6(1), v4(1), v4(1), v4(1), v6(1)]);
}

#[tokio::test(start_paused = true)]
async fn a_much_slower_family_goes_second_until_it_recovers() {
    let history = History::new(HistoryConfig {
        explore_every: 3,
        ..HistoryConfig::default()
    });
    // IPv6 takes 400 ms to connect, IPv4 1 ms.
    let slow = Plan {
        tcp: Step::After(400 * MS),
        ..ok(1, 1)
    };
    let script = Script::new(&[(v6(1), slow), (v4(1), ok(1, 1))]);
    let mut r = again(&script, &history);
    assert_eq!(r.next(deadline(2000)).await.unwrap().peer, v4(1));
    assert_eq!(events(&r, EventKind::Commit), [(252, Some(v4(1)))]);
    // The IPv6 attempt lost before its TCP was up: at least 252 ms. The
    // second connect starts on IPv4 and commits at once.
    let mut r = again(&script, &history);
    assert_eq!(r.next(deadline(2000)).await.unwrap().peer, v4(1));
    assert_eq!(attempts_of(&r), [(0, Some(v4(1)))]);
    assert_eq!(events(&r, EventKind::Commit), [(2, Some(v4(1)))]);

    // IPv6 recovers. The third race explores, starts on IPv6 and wins
    // there; its short round trip replaces the old estimate, and IPv6
    // leads again.
    let script = Script::new(&[(v6(1), ok(1, 1)), (v4(1), ok(1, 1))]);
    for _ in 0..2 {
        let mut r = again(&script, &history);
        assert_eq!(r.next(deadline(2000)).await.unwrap().peer, v6(1));
    }
}

#[tokio::test(start_paused = true)]
async fn a_network_change_forgets_what_was_learned() {
    let history = memory();
    history.observe_network(NetworkId(1));
    let refused = Plan {
        tcp: Step::FailAfter(MS),
        ..BLACKHOLE
    };
    let script = Script::new(&[(v6(1), refused), (v4(1), ok(1, 1))]);
    for _ in 0..2 {
        let mut r = again(&script, &history);
        r.next(deadline(1000)).await.unwrap();
    }
    let mut r = again(&script, &history);
    r.next(deadline(1000)).await.unwrap();
    assert_eq!(attempts_of(&r)[0].1, Some(v4(1)), "IPv6 is failing here");
    // Another network (a new address or default route): start afresh.
    assert!(history.observe_network(NetworkId(2)));
    let mut r = again(&script, &history);
    r.next(deadline(1000)).await.unwrap();
    assert_eq!(attempts_of(&r)[0].1, Some(v6(1)));
}

#[tokio::test(start_paused = true)]
async fn a_host_with_only_an_ipv4_route_prefers_ipv4() {
    // A at 0, AAAA at 30: an IPv4-preferring race starts at once on A.
    let script = Script::new(&[(v6(1), ok(1, 1)), (v4(1), ok(1, 1))]);
    let lookups = lookups(&[v6(1)], Some(30), &[v4(1)], Some(0));
    let mut r = race(RaceConfig::default(), CommitStage::Tls, &script, lookups, &memory()).prefer_ipv4();
    assert_eq!(r.next(deadline(1000)).await.unwrap().peer, v4(1));
    assert_eq!(attempts_of(&r), [(0, Some(v4(1)))]);
}
