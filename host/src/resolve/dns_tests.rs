//! The resolver against the testbed's DNS server on loopback: the three
//! queries, and SVCB resolution through real messages.
//!
//! Only `127.0.0.1` is contacted. The clock is real (hickory's timeouts
//! would fire at once on a paused one); every wait is under [`PROMPT`], a
//! bound against hangs, not a timing assertion.

use super::*;
use std::time::Duration;
use tokio::time::timeout;
use wsgate_testbed::{DnsRecord, DnsServer, HttpsRecord, HttpsService};

/// Bound for anything that should happen promptly on loopback.
const PROMPT: Duration = Duration::from_secs(10);

fn host(name: &str) -> HostName {
    name.parse().unwrap()
}

fn name(name: &str, https: Vec<HttpsRecord>) -> DnsRecord {
    DnsRecord {
        name: name.into(),
        https,
        ..DnsRecord::default()
    }
}

fn alias(target: &str) -> HttpsRecord {
    HttpsRecord::Alias { target: target.into() }
}

fn service(priority: u16, target: &str) -> HttpsService {
    HttpsService {
        priority,
        target: target.into(),
        ..HttpsService::default()
    }
}

/// The three answers for `asked`, from a fresh resolver asking `dns`.
async fn lookups(
    dns: &DnsServer,
    asked: &str,
    https: bool,
) -> (
    Result<ServiceAnswer, String>,
    Result<Vec<Ipv6Addr>, String>,
    Result<Vec<Ipv4Addr>, String>,
) {
    let resolver = Resolver::new([], vec![dns.addr()]).with_https(https);
    let (lookups, source) = resolver.lookups(&host(asked), 443).await.unwrap();
    assert_eq!(source, Source::Dns);
    timeout(PROMPT, async { tokio::join!(lookups.https, lookups.v6, lookups.v4) })
        .await
        .expect("the lookups answer")
}

#[tokio::test]
async fn https_aaaa_and_a_are_all_asked_of_a_fresh_resolver() {
    let mut record = name("wsgate.test", vec![HttpsRecord::Service(service(1, "."))]);
    record.v6 = vec!["2001:db8::1".parse().unwrap()];
    record.v4 = vec!["192.0.2.1".parse().unwrap()];
    // The answers come back in the other order from the one asked.
    record.https_delay = Duration::from_millis(40);
    record.aaaa_delay = Duration::from_millis(20);
    let dns = DnsServer::start(vec![record]).await.unwrap();
    // Several times, each with a fresh resolver (and so no cache).
    for round in 0..5 {
        let (https, v6, v4) = lookups(&dns, "wsgate.test", true).await;
        let https = https.unwrap();
        assert_eq!(https.services.len(), 1);
        assert_eq!(https.services[0].target, host("wsgate.test"));
        assert_eq!(https.services[0].addresses, None);
        assert_eq!(v6.unwrap(), ["2001:db8::1".parse::<Ipv6Addr>().unwrap()]);
        assert_eq!(v4.unwrap(), ["192.0.2.1".parse::<Ipv4Addr>().unwrap()]);
        // All three were asked. The order they were started in is
        // `in_order`'s (tested with scripted lookups below); the order
        // they reach the wire is hickory's, which a busy machine can
        // change (each query binds a socket of its own).
        let queries = dns.queries();
        let mut asked: Vec<&str> = queries[round * 3..].iter().map(|q| q.1).collect();
        asked.sort_unstable();
        assert_eq!(asked, ["A", "AAAA", "HTTPS"], "round {round}: {queries:?}");
    }
}

#[tokio::test]
async fn https_queries_can_be_turned_off() {
    let dns = DnsServer::start(vec![name("wsgate.test", vec![HttpsRecord::Service(service(1, "."))])])
        .await
        .unwrap();
    let (https, _, _) = lookups(&dns, "wsgate.test", false).await;
    assert_eq!(https.unwrap(), ServiceAnswer::default());
    assert_eq!(
        dns.queries(),
        [("wsgate.test".to_owned(), "AAAA"), ("wsgate.test".to_owned(), "A")]
    );
}

#[tokio::test]
async fn an_alias_chain_is_followed_to_its_services() {
    let mut end = name(
        "c.test",
        vec![HttpsRecord::Service(HttpsService {
            port: Some(8443),
            alpn: vec!["h2".into(), "http/1.1".into()],
            ech: Some(vec![0, 2, 0xfe, 0x0d]),
            ipv4hint: vec!["192.0.2.99".parse().unwrap()],
            ..service(1, ".")
        })],
    );
    end.v6 = vec!["2001:db8::3".parse().unwrap()];
    end.v4 = vec!["192.0.2.3".parse().unwrap()];
    let dns = DnsServer::start(vec![
        name("a.test", vec![alias("b.test")]),
        name("b.test", vec![alias("c.test")]),
        end,
    ])
    .await
    .unwrap();
    let (https, _, _) = lookups(&dns, "a.test", true).await;
    let https = https.unwrap();
    let addresses: Vec<IpAddr> = vec!["2001:db8::3".parse().unwrap(), "192.0.2.3".parse().unwrap()];
    assert_eq!(https.services.len(), 2, "{https:?}");
    let first = &https.services[0];
    assert_eq!(
        (first.priority, first.target.as_str(), first.port),
        (1, "c.test", Some(8443))
    );
    assert_eq!(first.alpn, ["h2", "http/1.1"]);
    assert_eq!(first.ech.as_deref(), Some(&[0, 2, 0xfe, 0x0d][..]));
    assert_eq!(first.hints, ["192.0.2.99".parse::<IpAddr>().unwrap()]);
    assert_eq!(first.addresses.as_ref(), Some(&addresses));
    // The chain's end, as RFC 9460 §3 has it appended.
    let last = &https.services[1];
    assert_eq!(
        (last.priority, last.target.as_str(), last.port),
        (u16::MAX, "c.test", None)
    );
    assert_eq!(last.addresses.as_ref(), Some(&addresses));

    let https_asked: Vec<_> = dns
        .queries()
        .into_iter()
        .filter(|(_, t)| *t == "HTTPS")
        .map(|(n, _)| n)
        .collect();
    assert_eq!(https_asked, ["a.test", "b.test", "c.test"]);
    let queries = dns.queries();
    assert!(queries.contains(&("c.test".to_owned(), "AAAA")), "{queries:?}");
    assert!(queries.contains(&("c.test".to_owned(), "A")), "{queries:?}");
}

#[tokio::test]
async fn alias_loops_and_long_chains_are_empty_answers() {
    let dns = DnsServer::start(vec![
        name("a.test", vec![alias("b.test")]),
        name("b.test", vec![alias("a.test")]),
    ])
    .await
    .unwrap();
    let (https, _, _) = lookups(&dns, "a.test", true).await;
    let https = https.unwrap();
    assert!(https.services.is_empty());
    assert_eq!(https.notes.len(), 1, "{:?}", https.notes);
    assert!(
        https.notes[0].contains("alias loop (a.test -> b.test -> a.test)"),
        "{:?}",
        https.notes
    );

    let hops = https::MAX_ALIAS_HOPS + 1;
    let mut records: Vec<DnsRecord> = (0..hops)
        .map(|i| name(&format!("n{i}.test"), vec![alias(&format!("n{}.test", i + 1))]))
        .collect();
    records.push(name(
        &format!("n{hops}.test"),
        vec![HttpsRecord::Service(service(1, "."))],
    ));
    let dns = DnsServer::start(records).await.unwrap();
    let (https, _, _) = lookups(&dns, "n0.test", true).await;
    let https = https.unwrap();
    assert!(https.services.is_empty());
    assert!(
        https.notes[0].contains("alias chain longer than 8"),
        "{:?}",
        https.notes
    );
    let https_queries = dns.queries().iter().filter(|(_, t)| *t == "HTTPS").count();
    assert_eq!(https_queries, hops);
}

#[tokio::test]
async fn a_service_elsewhere_brings_that_targets_addresses() {
    let mut origin = name(
        "www.test",
        vec![
            HttpsRecord::Service(service(1, "svc.test")),
            HttpsRecord::Service(service(2, ".")),
        ],
    );
    origin.v4 = vec!["192.0.2.1".parse().unwrap()];
    let mut svc = name("svc.test", vec![]);
    svc.v6 = vec!["2001:db8::5".parse().unwrap()];
    let dns = DnsServer::start(vec![origin, svc]).await.unwrap();
    let (https, v6, v4) = lookups(&dns, "www.test", true).await;
    let https = https.unwrap();
    let got: Vec<_> = https
        .services
        .iter()
        .map(|s| (s.priority, s.target.as_str(), s.addresses.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (1, "svc.test", Some(vec!["2001:db8::5".parse::<IpAddr>().unwrap()])),
            (2, "www.test", None),
        ]
    );
    // svc.test has no A: said, not fatal.
    assert_eq!(https.notes, ["A svc.test: no records"]);
    // The origin's own answers are its own.
    assert_eq!(v6.unwrap_err(), "no records");
    assert_eq!(v4.unwrap(), ["192.0.2.1".parse::<Ipv4Addr>().unwrap()]);
}

#[tokio::test]
async fn nxdomain_and_nodata_are_empty_answers() {
    let dns = DnsServer::start(vec![name("plain.test", vec![])]).await.unwrap();
    for asked in ["nope.test", "plain.test"] {
        let (https, _, _) = lookups(&dns, asked, true).await;
        let https = https.unwrap();
        assert!(https.services.is_empty());
        assert_eq!(https.notes, [format!("HTTPS {asked}: no records")]);
    }
}

#[tokio::test]
async fn a_record_hickory_cannot_decode_costs_only_the_https_answer() {
    let mut record = name(
        "bad.test",
        vec![
            HttpsRecord::Service(service(1, ".")),
            // Keys out of order: RFC 9460 §2.2 has the whole RRset refused.
            HttpsRecord::Raw(vec![0, 1, 0, 0, 3, 0, 2, 1, 187, 1, 0, 3, 2, b'h', b'2']),
        ],
    );
    record.v6 = vec!["2001:db8::1".parse().unwrap()];
    let dns = DnsServer::start(vec![record]).await.unwrap();
    let (https, v6, _) = lookups(&dns, "bad.test", true).await;
    let https = https.unwrap();
    assert!(https.services.is_empty());
    assert_eq!(https.notes.len(), 1, "{:?}", https.notes);
    assert!(https.notes[0].starts_with("HTTPS bad.test: "), "{:?}", https.notes);
    assert_eq!(v6.unwrap(), ["2001:db8::1".parse::<Ipv6Addr>().unwrap()]);
}

#[tokio::test]
async fn the_queries_leave_before_anyone_awaits() {
    let mut record = name("slow.test", vec![]);
    record.https_delay = Duration::from_secs(30);
    record.aaaa_delay = Duration::from_secs(30);
    record.a_delay = Duration::from_secs(30);
    let dns = DnsServer::start(vec![record]).await.unwrap();
    let resolver = Resolver::new([], vec![dns.addr()]);
    let (lookups, _) = resolver.lookups(&host("slow.test"), 443).await.unwrap();
    timeout(PROMPT, async {
        while dns.queries().len() < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the queries leave with nobody awaiting the lookups");
    drop(lookups);
}

/// A lookup that records its polls under `tag` and never answers; `alive`
/// counts the lookups not yet dropped.
fn pending<T>(
    tag: &'static str,
    polls: &Arc<std::sync::Mutex<Vec<&'static str>>>,
    alive: &Arc<()>,
) -> Pin<Box<dyn Future<Output = T> + Send>> {
    let (polls, alive) = (Arc::clone(polls), Arc::clone(alive));
    Box::pin(std::future::poll_fn(move |_| {
        let _alive = &alive;
        polls.lock().unwrap().push(tag);
        Poll::Pending
    }))
}

#[tokio::test]
async fn in_order_polls_https_then_aaaa_then_a_and_stops_when_dropped() {
    let polls = Arc::new(std::sync::Mutex::new(Vec::new()));
    let alive = Arc::new(());
    let lookups = in_order(
        pending("https", &polls, &alive),
        pending("aaaa", &polls, &alive),
        pending("a", &polls, &alive),
    );
    // Started at once, in that order, before anyone awaits.
    while polls.lock().unwrap().len() < 3 {
        tokio::task::yield_now().await;
    }
    assert_eq!(polls.lock().unwrap()[..3], ["https", "aaaa", "a"]);
    assert_eq!(Arc::strong_count(&alive), 4);

    // Two dropped: their queries go, the task goes on for the third.
    let Lookups { https, v6, v4 } = lookups;
    drop((https, v6));
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(Arc::strong_count(&alive), 2);
    // The last one dropped: the task, and the lookups it held, are gone.
    drop(v4);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(Arc::strong_count(&alive), 1);
}

#[tokio::test]
async fn in_order_delivers_each_answer_on_its_own() {
    let polls = Arc::new(std::sync::Mutex::new(Vec::new()));
    let alive = Arc::new(());
    let lookups = in_order(
        pending("https", &polls, &alive),
        Box::pin(async { Ok(vec![Ipv6Addr::LOCALHOST]) }),
        pending("a", &polls, &alive),
    );
    let v6 = timeout(PROMPT, lookups.v6).await.unwrap();
    assert_eq!(v6.unwrap(), [Ipv6Addr::LOCALHOST]);
}
