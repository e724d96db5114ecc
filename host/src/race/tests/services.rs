//! The HEv3 draft's rules on HTTPS records, checked with the paused clock
//! and the scripted dialer: the start condition (§4.2), service groups,
//! ports and hints (§5.2, §4.2.1), ALPN (§6.2), late answers (§7) and ECH
//! (§6.3).

use super::*;
use crate::resolve::{Service, ServiceAnswer};

fn on_port(addr: SocketAddr, port: u16) -> SocketAddr {
    SocketAddr::new(addr.ip(), port)
}

/// A service of the name asked for (`addresses: None`) or elsewhere.
fn service(priority: u16, port: Option<u16>, hints: &[SocketAddr], addresses: Option<&[SocketAddr]>) -> Service {
    Service {
        priority,
        target: if addresses.is_some() {
            "svc.wsgate.test".parse().unwrap()
        } else {
            "wsgate.test".parse().unwrap()
        },
        port,
        alpn: Vec::new(),
        no_default_alpn: false,
        hints: hints.iter().map(SocketAddr::ip).collect(),
        ech: None,
        addresses: addresses.map(|a| a.iter().map(SocketAddr::ip).collect()),
    }
}

fn answer(services: Vec<Service>) -> Result<ServiceAnswer, String> {
    Ok(ServiceAnswer {
        services,
        notes: Vec::new(),
    })
}

/// `lookups` with the HTTPS lookup answering `https` after `after_ms`.
fn with_https(mut lookups: Lookups, https: Result<ServiceAnswer, String>, after_ms: u64) -> Lookups {
    lookups.https = Box::pin(async move {
        tokio::time::sleep(Duration::from_millis(after_ms)).await;
        https
    });
    lookups
}

fn ech_config() -> RaceConfig {
    RaceConfig {
        ech: EchMode::On,
        ..RaceConfig::default()
    }
}

fn resolve_details<D: Dialer>(race: &Race<D>) -> Vec<String> {
    race.log()
        .events()
        .iter()
        .filter(|e| e.event == EventKind::Resolve)
        .filter_map(|e| e.detail.clone())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_race_waits_for_the_https_answer_as_well_as_aaaa() {
    let script = Script::new(&[(v6(1), ok(1, 1)), (v4(1), ok(1, 1))]);
    let lookups = with_https(lookups(&[v6(1)], Some(0), &[v4(1)], Some(0)), answer(vec![]), 30);
    let mut r = race(RaceConfig::default(), CommitStage::Tls, &script, lookups, &memory());
    assert_eq!(r.next(deadline(1000)).await.unwrap().peer, v6(1));
    assert_eq!(events(&r, EventKind::Attempt), [(30, Some(v6(1)))]);
}

#[tokio::test(start_paused = true)]
async fn a_slow_https_answer_holds_the_start_no_longer_than_the_resolution_delay() {
    // Addresses at 0, HTTPS at 200: the race starts at 50 on what it has;
    // the service arriving later joins on its own port, families still
    // interleaved with what was tried.
    let script = Script::new(&[
        (v6(1), BLACKHOLE),
        (v4(1), BLACKHOLE),
        (on_port(v4(1), 8443), BLACKHOLE),
        (on_port(v6(1), 8443), ok(1, 1)),
    ]);
    let https = answer(vec![service(1, Some(8443), &[], None)]);
    let lookups = with_https(lookups(&[v6(1)], Some(0), &[v4(1)], Some(0)), https, 200);
    let mut r = race(RaceConfig::default(), CommitStage::Tls, &script, lookups, &memory());
    assert_eq!(r.next(deadline(2000)).await.unwrap().peer, on_port(v6(1), 8443));
    assert_eq!(
        events(&r, EventKind::Attempt),
        [
            (50, Some(v6(1))),
            (300, Some(on_port(v4(1), 8443))),
            (550, Some(on_port(v6(1), 8443)))
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_https_answer_counts_as_in() {
    let script = Script::new(&[(v6(1), ok(1, 1))]);
    let lookups = with_https(lookups(&[v6(1)], Some(0), &[], Some(0)), Err("SERVFAIL".into()), 10);
    let mut r = race(RaceConfig::default(), CommitStage::Tls, &script, lookups, &memory());
    assert_eq!(r.next(deadline(1000)).await.unwrap().peer, v6(1));
    assert_eq!(events(&r, EventKind::Attempt), [(10, Some(v6(1)))]);
    assert!(resolve_details(&r).contains(&"HTTPS failed: SERVFAIL".to_owned()));
}

#[tokio::test(start_paused = true)]
async fn services_go_by_priority_on_their_ports_and_the_unclaimed_name_last() {
    let (p1_v6, p1_v4) = (on_port(v6(1), 8443), on_port(v4(1), 8443));
    let elsewhere = v4(7);
    let script = Script::new(&[(p1_v6, BLACKHOLE), (p1_v4, BLACKHOLE), (elsewhere, BLACKHOLE)]);
    // Priority 2 is listed first: the order is the priorities', not the
    // answer's.
    let https = answer(vec![
        service(2, None, &[], Some(&[elsewhere])),
        service(1, Some(8443), &[], None),
    ]);
    let mut https = https.unwrap();
    https.services.sort_by_key(|s| s.priority);
    let lookups = with_https(lookups(&[v6(1)], Some(0), &[v4(1)], Some(0)), Ok(https), 0);
    let mut r = race(RaceConfig::default(), CommitStage::Tls, &script, lookups, &memory());
    assert!(r.next(deadline(800)).await.is_err());
    assert_eq!(
        events(&r, EventKind::Attempt),
        [(0, Some(p1_v6)), (250, Some(p1_v4)), (500, Some(elsewhere))]
    );
}

#[tokio::test(start_paused = true)]
async fn hints_let_the_race_start_before_aaaa_and_a_answer() {
    let hinted = on_port(v6(9), 8443);
    let script = Script::new(&[(hinted, ok(1, 1)), (on_port(v4(9), 8443), ok(1, 1))]);
    let https = answer(vec![service(1, Some(8443), &[v6(9), v4(9)], None)]);
    let lookups = with_https(lookups(&[v6(1)], Some(1000), &[v4(1)], Some(1000)), https, 5);
    let mut r = race(RaceConfig::default(), CommitStage::Tls, &script, lookups, &memory());
    assert_eq!(r.next(deadline(2000)).await.unwrap().peer, hinted);
    assert_eq!(events(&r, EventKind::Attempt), [(5, Some(hinted))]);
    let attempt = r.log().events().iter().find(|e| e.event == EventKind::Attempt).unwrap();
    assert_eq!(attempt.detail.as_deref(), Some("address hint"));
}

#[tokio::test(start_paused = true)]
async fn a_service_without_http1_is_never_dialled() {
    let h3_only = Service {
        alpn: vec!["h3".into()],
        no_default_alpn: true,
        ..service(1, Some(9443), &[v6(9)], None)
    };
    let script = Script::new(&[(v6(1), ok(1, 1))]);
    let lookups = with_https(lookups(&[v6(1)], Some(0), &[], Some(0)), answer(vec![h3_only]), 0);
    let mut r = race(RaceConfig::default(), CommitStage::Tls, &script, lookups, &memory());
    assert_eq!(r.next(deadline(1000)).await.unwrap().peer, v6(1));
    assert_eq!(events(&r, EventKind::Attempt), [(0, Some(v6(1)))]);
    assert!(
        resolve_details(&r)
            .iter()
            .any(|d| d.contains("not dialled") && d.contains("h3")),
        "{:?}",
        resolve_details(&r)
    );
}

#[tokio::test(start_paused = true)]
async fn a_late_answer_takes_its_place_ahead_of_what_has_not_started() {
    let script = Script::new(&[(v6(1), BLACKHOLE), (v6(2), BLACKHOLE), (v4(1), BLACKHOLE)]);
    let lookups = lookups(&[v6(1), v6(2)], Some(0), &[v4(1)], Some(100));
    let mut r = race(RaceConfig::default(), CommitStage::Tls, &script, lookups, &memory());
    assert!(r.next(deadline(700)).await.is_err());
    // A arrives while the first IPv6 attempt runs: IPv4 is next (§7).
    assert_eq!(
        events(&r, EventKind::Attempt),
        [(0, Some(v6(1))), (250, Some(v4(1))), (500, Some(v6(2)))]
    );
}

#[tokio::test(start_paused = true)]
async fn tls_waits_for_the_https_answer_when_it_may_carry_ech() {
    let script = Script::new(&[(
        v6(1),
        Plan {
            ech: EchPlan::Accepts(b"config"),
            ..ok(1, 1)
        },
    )]);
    let with_ech = Service {
        ech: Some(Arc::from(&b"config"[..])),
        ..service(1, None, &[], None)
    };
    let lookups = with_https(lookups(&[v6(1)], Some(0), &[], Some(0)), answer(vec![with_ech]), 300);
    let mut r = race(ech_config(), CommitStage::Tls, &script, lookups, &memory());
    assert_eq!(r.next(deadline(2000)).await.unwrap().peer, v6(1));
    // The attempt starts after the Resolution Delay, its TCP is up at 51,
    // its TLS waits for the HTTPS answer at 300 and uses its ECH.
    assert_eq!(events(&r, EventKind::Attempt), [(50, Some(v6(1)))]);
    assert_eq!(events(&r, EventKind::Ech), [(51, Some(v6(1)))]);
    assert_eq!(events(&r, EventKind::Commit), [(301, Some(v6(1)))]);
    let commit = r.log().events().iter().find(|e| e.event == EventKind::Commit).unwrap();
    assert_eq!(commit.ech, Some("accepted"));
    assert_eq!(
        *script.shared.ech_offers.lock().unwrap(),
        [(v6(1), EchOffer::Config(Arc::from(&b"config"[..])))]
    );
}

#[tokio::test(start_paused = true)]
async fn without_ech_on_tls_does_not_wait_and_sends_grease_or_nothing() {
    for (mode, offer) in [(EchMode::Grease, EchOffer::Grease), (EchMode::Off, EchOffer::Off)] {
        let script = Script::new(&[(v6(1), ok(1, 1))]);
        let lookups = with_https(lookups(&[v6(1)], Some(0), &[], Some(0)), answer(vec![]), 300);
        let config = RaceConfig {
            ech: mode,
            ..RaceConfig::default()
        };
        let mut r = race(config, CommitStage::Tls, &script, lookups, &memory());
        assert_eq!(r.next(deadline(2000)).await.unwrap().peer, v6(1));
        assert_eq!(events(&r, EventKind::Commit), [(52, Some(v6(1)))], "{mode}");
        assert_eq!(*script.shared.ech_offers.lock().unwrap(), [(v6(1), offer)]);
    }
}

#[tokio::test(start_paused = true)]
async fn a_service_without_an_ech_config_gets_no_ech_extension() {
    let script = Script::new(&[(v6(1), ok(1, 1))]);
    let https = answer(vec![service(1, None, &[], None)]);
    let lookups = with_https(lookups(&[v6(1)], Some(0), &[], Some(0)), https, 0);
    let mut r = race(ech_config(), CommitStage::Tls, &script, lookups, &memory());
    assert_eq!(r.next(deadline(2000)).await.unwrap().peer, v6(1));
    let commit = r.log().events().iter().find(|e| e.event == EventKind::Commit).unwrap();
    assert_eq!(commit.ech, Some("not offered"));
    assert_eq!(*script.shared.ech_offers.lock().unwrap(), [(v6(1), EchOffer::Off)]);
}

#[tokio::test(start_paused = true)]
async fn a_rejected_ech_config_is_retried_once_with_the_servers_configs() {
    let script = Script::new(&[(
        v6(1),
        Plan {
            ech: EchPlan::Accepts(b"new"),
            ..ok(1, 1)
        },
    )]);
    let stale = Service {
        ech: Some(Arc::from(&b"old"[..])),
        ..service(1, None, &[], None)
    };
    let lookups = with_https(lookups(&[v6(1)], Some(0), &[], Some(0)), answer(vec![stale]), 0);
    let mut r = race(ech_config(), CommitStage::Tls, &script, lookups, &memory());
    let committed = r.next(deadline(2000)).await.unwrap();
    assert_eq!(committed.peer, v6(1));
    assert_eq!(
        *script.shared.ech_offers.lock().unwrap(),
        [
            (v6(1), EchOffer::Config(Arc::from(&b"old"[..]))),
            (v6(1), EchOffer::Config(Arc::from(&b"new"[..])))
        ]
    );
    let ech: Vec<_> = r.log().events().iter().filter(|e| e.event == EventKind::Ech).collect();
    assert!(ech[0].detail.as_deref().unwrap().starts_with("rejected"));
    let commit = r.log().events().iter().find(|e| e.event == EventKind::Commit).unwrap();
    assert_eq!(commit.ech, Some("accepted"));
    // The first connection was closed; only the winner's is open.
    assert_eq!(script.open(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_second_rejection_fails_the_attempt_rather_than_loop() {
    // The server's retry configurations do not work either: one retry,
    // then the attempt fails as TLS.
    let script = Script::new(&[(v6(1), ok(1, 1))]);
    let with_ech = Service {
        ech: Some(Arc::from(&b"config"[..])),
        ..service(1, None, &[], None)
    };
    let lookups = with_https(lookups(&[v6(1)], Some(0), &[], Some(0)), answer(vec![with_ech]), 0);
    let mut r = race(ech_config(), CommitStage::Tls, &script, lookups, &memory());
    assert!(r.next(deadline(2000)).await.is_err());
    assert_eq!(script.shared.ech_offers.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_ech_config_that_tls_cannot_use_is_dropped_and_logged() {
    let script = Script::new(&[(v6(1), ok(1, 1))]);
    let broken = Service {
        ech: Some(Arc::from(&b"bad config"[..])),
        ..service(1, None, &[], None)
    };
    let lookups = with_https(lookups(&[v6(1)], Some(0), &[], Some(0)), answer(vec![broken]), 0);
    let mut r = race(ech_config(), CommitStage::Tls, &script, lookups, &memory());
    assert_eq!(r.next(deadline(2000)).await.unwrap().peer, v6(1));
    assert_eq!(*script.shared.ech_offers.lock().unwrap(), [(v6(1), EchOffer::Off)]);
    assert!(
        resolve_details(&r)
            .iter()
            .any(|d| d.contains("ECH configuration is not used: no configuration with a supported version")),
        "{:?}",
        resolve_details(&r)
    );
}
