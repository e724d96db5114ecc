//! The DNS server, observed from hickory-resolver and from raw packets.
//!
//! Only `127.0.0.1` is ever contacted. Every wait is under a timeout, and
//! timing assertions are lower bounds or orderings with a wide margin.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;
use wsgate_testbed::{DnsRecord, DnsServer, spawn_dns_in_thread};

/// Bound for anything that should happen promptly on loopback.
const PROMPT: Duration = Duration::from_secs(5);

/// The delay given to the slow record type.
const DELAY: Duration = Duration::from_millis(300);

/// A resolver that asks only `server`, over UDP then TCP, never reads
/// `/etc/hosts` and caches nothing. This is the snippet the host can use
/// for a `--dns-server ADDR:PORT` flag.
fn resolver_for(server: SocketAddr) -> TokioResolver {
    let mut udp = ConnectionConfig::udp();
    udp.port = server.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = server.port();
    let name_server = NameServerConfig::new(server.ip(), true, vec![udp, tcp]);
    let config = ResolverConfig::from_name_servers(vec![name_server]);
    let mut builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
    let options = builder.options_mut();
    options.use_hosts_file = ResolveHosts::Never;
    options.cache_size = 0;
    options.timeout = Duration::from_secs(2);
    options.attempts = 1;
    builder.build().expect("building the resolver")
}

/// As [`resolver_for`], but over TCP only.
fn tcp_resolver_for(server: SocketAddr) -> TokioResolver {
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = server.port();
    let name_server = NameServerConfig::new(server.ip(), true, vec![tcp]);
    let config = ResolverConfig::from_name_servers(vec![name_server]);
    let mut builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
    builder.options_mut().use_hosts_file = ResolveHosts::Never;
    builder.options_mut().cache_size = 0;
    builder.build().expect("building the resolver")
}

fn v6a() -> Ipv6Addr {
    "2001:db8::1".parse().unwrap()
}
fn v6b() -> Ipv6Addr {
    "2001:db8::2".parse().unwrap()
}
fn v4a() -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, 1)
}

fn record(aaaa_delay: Duration, a_delay: Duration) -> DnsRecord {
    DnsRecord {
        name: "wsgate.test".into(),
        v6: vec![v6a(), v6b()],
        v4: vec![v4a()],
        aaaa_delay,
        a_delay,
        ..DnsRecord::default()
    }
}

fn addresses(lookup: &hickory_resolver::lookup::Lookup) -> BTreeSet<IpAddr> {
    lookup
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
            _ => None,
        })
        .collect()
}

fn set(ips: &[IpAddr]) -> BTreeSet<IpAddr> {
    ips.iter().copied().collect()
}

#[tokio::test]
async fn answers_aaaa_and_a() {
    let dns = DnsServer::start(vec![record(Duration::ZERO, Duration::ZERO)])
        .await
        .unwrap();
    assert!(dns.addr().ip().is_loopback());
    let resolver = resolver_for(dns.addr());

    let aaaa = timeout(PROMPT, resolver.ipv6_lookup("wsgate.test."))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(addresses(&aaaa), set(&[v6a().into(), v6b().into()]));
    assert!(aaaa.answers().iter().all(|r| r.ttl <= 60));
    let a = timeout(PROMPT, resolver.ipv4_lookup("wsgate.test."))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(addresses(&a), set(&[v4a().into()]));

    // Case and trailing dot do not matter; lookup_ip asks both types.
    let both = timeout(PROMPT, resolver.lookup_ip("WsGate.Test"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        both.iter().collect::<BTreeSet<_>>(),
        set(&[v6a().into(), v6b().into(), v4a().into()])
    );

    let queries = dns.queries();
    assert_eq!(
        queries[..2],
        [("wsgate.test".into(), "AAAA"), ("wsgate.test".into(), "A")]
    );
    assert_eq!(queries.len(), 4, "{queries:?}");
    assert!(queries[2..].contains(&("wsgate.test".into(), "AAAA")), "{queries:?}");
    assert!(queries[2..].contains(&("wsgate.test".into(), "A")), "{queries:?}");
    dns.shutdown().await;
}

#[tokio::test]
async fn nxdomain_for_unknown_names_nodata_for_missing_types() {
    let dns = DnsServer::start(vec![DnsRecord {
        name: "v6only.test.".into(),
        v6: vec![v6a()],
        v4: vec![],
        aaaa_delay: Duration::ZERO,
        a_delay: Duration::ZERO,
        ..DnsRecord::default()
    }])
    .await
    .unwrap();
    let resolver = resolver_for(dns.addr());

    let err = timeout(PROMPT, resolver.ipv4_lookup("nope.test."))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.is_nx_domain(), "{err:?}");

    let err = timeout(PROMPT, resolver.ipv4_lookup("v6only.test."))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.is_no_records_found() && !err.is_nx_domain(), "{err:?}");
    let err = timeout(PROMPT, resolver.txt_lookup("v6only.test."))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.is_no_records_found() && !err.is_nx_domain(), "{err:?}");

    let ok = timeout(PROMPT, resolver.lookup_ip("v6only.test."))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ok.iter().collect::<BTreeSet<_>>(), set(&[v6a().into()]));

    assert_eq!(
        dns.queries()[..3],
        [
            ("nope.test".into(), "A"),
            ("v6only.test".into(), "A"),
            ("v6only.test".into(), "TXT"),
        ]
    );
    dns.shutdown().await;
}

/// Looks both types up in parallel and returns when each finished.
async fn race(resolver: &TokioResolver) -> (Duration, Duration) {
    let start = Instant::now();
    let aaaa = async {
        let lookup = resolver.ipv6_lookup("wsgate.test.").await.unwrap();
        assert_eq!(addresses(&lookup), set(&[v6a().into(), v6b().into()]));
        start.elapsed()
    };
    let a = async {
        let lookup = resolver.ipv4_lookup("wsgate.test.").await.unwrap();
        assert_eq!(addresses(&lookup), set(&[v4a().into()]));
        start.elapsed()
    };
    timeout(PROMPT, async { tokio::join!(aaaa, a) }).await.unwrap()
}

#[tokio::test]
async fn delayed_aaaa_does_not_hold_up_a() {
    let dns = DnsServer::start(vec![record(DELAY, Duration::ZERO)]).await.unwrap();
    let resolver = resolver_for(dns.addr());

    // A arrives while AAAA is still pending.
    let aaaa = resolver.ipv6_lookup("wsgate.test.");
    let a = resolver.ipv4_lookup("wsgate.test.");
    tokio::pin!(aaaa);
    let start = Instant::now();
    tokio::select! {
        biased;
        _ = &mut aaaa => panic!("the delayed AAAA answer came first"),
        a = timeout(PROMPT, a) => {
            assert_eq!(addresses(&a.unwrap().unwrap()), set(&[v4a().into()]));
        }
    }
    let aaaa = timeout(PROMPT, aaaa).await.unwrap().unwrap();
    assert!(start.elapsed() >= DELAY, "{:?}", start.elapsed());
    assert_eq!(addresses(&aaaa), set(&[v6a().into(), v6b().into()]));

    // The same with timestamps.
    let (aaaa_at, a_at) = race(&resolver).await;
    assert!(aaaa_at >= DELAY, "AAAA after {aaaa_at:?}");
    assert!(a_at < aaaa_at, "A after {a_at:?}, AAAA after {aaaa_at:?}");

    let queries = dns.queries();
    assert_eq!(queries.len(), 4, "{queries:?}");
    assert_eq!(queries.iter().filter(|q| q.1 == "AAAA").count(), 2, "{queries:?}");
    assert_eq!(queries.iter().filter(|q| q.1 == "A").count(), 2, "{queries:?}");
    assert!(queries.iter().all(|q| q.0 == "wsgate.test"), "{queries:?}");
    dns.shutdown().await;
}

#[tokio::test]
async fn delayed_a_does_not_hold_up_aaaa() {
    let dns = DnsServer::start(vec![record(Duration::ZERO, DELAY)]).await.unwrap();
    let (aaaa_at, a_at) = race(&resolver_for(dns.addr())).await;
    assert!(a_at >= DELAY, "A after {a_at:?}");
    assert!(aaaa_at < a_at, "AAAA after {aaaa_at:?}, A after {a_at:?}");
}

#[tokio::test]
async fn serves_tcp_too() {
    let dns = DnsServer::start(vec![record(DELAY, Duration::ZERO)]).await.unwrap();
    let resolver = tcp_resolver_for(dns.addr());
    let (aaaa_at, a_at) = race(&resolver).await;
    assert!(aaaa_at >= DELAY && a_at < aaaa_at, "A {a_at:?}, AAAA {aaaa_at:?}");
    assert_eq!(dns.queries().len(), 2);
}

fn request(id: u16, name: &str, record_type: RecordType) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), record_type));
    message.to_vec().unwrap()
}

#[tokio::test]
async fn header_echoes_the_query_and_garbage_is_ignored() {
    let dns = DnsServer::start(vec![record(Duration::ZERO, Duration::ZERO)])
        .await
        .unwrap();
    let socket = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    socket.connect(dns.addr()).await.unwrap();

    // Garbage, a truncated header, a lone response: all ignored.
    let mut response_packet = Message::new(7, MessageType::Response, OpCode::Query);
    response_packet.add_query(Query::query(Name::from_ascii("wsgate.test.").unwrap(), RecordType::A));
    for junk in [vec![], vec![0xff; 3], vec![0xab; 40], response_packet.to_vec().unwrap()] {
        socket.send(&junk).await.unwrap();
    }

    socket
        .send(&request(0x1234, "WSGATE.test.", RecordType::A))
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let len = timeout(PROMPT, socket.recv(&mut buf)).await.unwrap().unwrap();
    let answer = Message::from_vec(&buf[..len]).unwrap();
    assert_eq!(answer.metadata.id, 0x1234);
    assert_eq!(answer.metadata.message_type, MessageType::Response);
    assert!(answer.metadata.authoritative);
    assert!(answer.metadata.recursion_desired);
    assert!(answer.metadata.recursion_available);
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_eq!(answer.queries.len(), 1);
    assert_eq!(answer.queries[0].name().to_ascii(), "WSGATE.test.");
    assert_eq!(answer.queries[0].query_type(), RecordType::A);
    assert_eq!(answer.answers.len(), 1);
    assert_eq!(answer.answers[0].ttl, 60);
    assert_eq!(answer.answers[0].name.to_ascii(), "WSGATE.test.");

    socket
        .send(&request(0x4321, "other.test.", RecordType::AAAA))
        .await
        .unwrap();
    let len = timeout(PROMPT, socket.recv(&mut buf)).await.unwrap().unwrap();
    let answer = Message::from_vec(&buf[..len]).unwrap();
    assert_eq!(answer.metadata.id, 0x4321);
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
    assert!(answer.answers.is_empty());

    assert_eq!(
        dns.queries(),
        [("wsgate.test".into(), "A"), ("other.test".into(), "AAAA")]
    );
    dns.shutdown().await;
}

#[tokio::test]
async fn raw_tcp_answers_out_of_order_by_delay() {
    let dns = DnsServer::start(vec![record(DELAY, Duration::ZERO)]).await.unwrap();
    let mut stream = tokio::net::TcpStream::connect(dns.addr()).await.unwrap();
    for (id, record_type) in [(1, RecordType::AAAA), (2, RecordType::A)] {
        let packet = request(id, "wsgate.test.", record_type);
        stream.write_u16(packet.len() as u16).await.unwrap();
        stream.write_all(&packet).await.unwrap();
    }
    let mut ids = Vec::new();
    for _ in 0..2 {
        let len = timeout(PROMPT, stream.read_u16()).await.unwrap().unwrap();
        let mut packet = vec![0u8; usize::from(len)];
        timeout(PROMPT, stream.read_exact(&mut packet)).await.unwrap().unwrap();
        ids.push(Message::from_vec(&packet).unwrap().metadata.id);
    }
    assert_eq!(ids, [2, 1], "the A answer (id 2) comes before the delayed AAAA (id 1)");
}

#[tokio::test]
async fn rejects_bad_names() {
    let mut twice = vec![record(Duration::ZERO, Duration::ZERO)];
    twice.push(DnsRecord {
        name: "WSGATE.TEST.".into(),
        ..twice[0].clone()
    });
    assert!(DnsServer::start(twice).await.is_err());
    let empty = DnsRecord {
        name: ".".into(),
        ..record(Duration::ZERO, Duration::ZERO)
    };
    assert!(DnsServer::start(vec![empty]).await.is_err());
}

#[test]
fn runs_in_a_thread() {
    let dns = spawn_dns_in_thread(vec![record(Duration::ZERO, Duration::ZERO)]).unwrap();
    let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    socket.set_read_timeout(Some(PROMPT)).unwrap();
    socket.connect(dns.addr()).unwrap();
    socket.send(&request(9, "wsgate.test.", RecordType::AAAA)).unwrap();
    let mut buf = vec![0u8; 4096];
    let len = socket.recv(&mut buf).unwrap();
    let answer = Message::from_vec(&buf[..len]).unwrap();
    assert_eq!(answer.metadata.id, 9);
    assert_eq!(answer.answers.len(), 2);
    assert_eq!(dns.queries(), [("wsgate.test".into(), "AAAA")]);
    dns.stop();
}

#[tokio::test]
async fn answers_https_records() {
    use hickory_resolver::proto::rr::rdata::svcb::{SvcParamKey, SvcParamValue};
    use wsgate_testbed::{HttpsRecord, HttpsService};
    let dns = DnsServer::start(vec![
        DnsRecord {
            name: "alias.test".into(),
            https: vec![HttpsRecord::Alias {
                target: "svc.test".into(),
            }],
            ..DnsRecord::default()
        },
        DnsRecord {
            name: "svc.test".into(),
            https: vec![
                HttpsRecord::Service(HttpsService {
                    priority: 2,
                    target: "pool.test".into(),
                    mandatory: vec![3],
                    alpn: vec!["h2".into()],
                    no_default_alpn: true,
                    port: Some(8443),
                    ipv4hint: vec![v4a()],
                    ech: Some(vec![0, 1, 2]),
                    ipv6hint: vec![v6a()],
                    extra: vec![(65_300, b"x".to_vec())],
                }),
                HttpsRecord::Service(HttpsService {
                    priority: 1,
                    ..HttpsService::default()
                }),
            ],
            https_delay: DELAY,
            ..DnsRecord::default()
        },
    ])
    .await
    .unwrap();
    let resolver = resolver_for(dns.addr());

    let alias = timeout(PROMPT, resolver.lookup("alias.test.", RecordType::HTTPS))
        .await
        .unwrap()
        .unwrap();
    let [record] = alias.answers() else { panic!("{alias:?}") };
    let RData::HTTPS(https) = &record.data else {
        panic!("{record:?}")
    };
    assert_eq!(
        (https.svc_priority, https.target_name.to_ascii()),
        (0, "svc.test.".into())
    );

    let started = Instant::now();
    let svc = timeout(PROMPT, resolver.lookup("svc.test.", RecordType::HTTPS))
        .await
        .unwrap()
        .unwrap();
    assert!(started.elapsed() >= DELAY);
    let records: Vec<_> = svc
        .answers()
        .iter()
        .map(|r| match &r.data {
            RData::HTTPS(https) => https.0.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(records.len(), 2);
    assert_eq!(
        (records[0].svc_priority, records[0].target_name.to_ascii()),
        (2, "pool.test.".into())
    );
    let keys: Vec<u16> = records[0].svc_params.iter().map(|(k, _)| u16::from(*k)).collect();
    assert_eq!(keys, [0, 1, 2, 3, 4, 5, 6, 65_300]);
    assert_eq!(records[0].svc_params[3].1, SvcParamValue::Port(8443));
    assert!(
        matches!(&records[0].svc_params[5], (SvcParamKey::EchConfigList, SvcParamValue::EchConfigList(e)) if e.0 == [0, 1, 2])
    );
    assert!(records[1].target_name.is_root() && records[1].svc_params.is_empty());

    // A name without HTTPS records: NODATA.
    let err = timeout(PROMPT, resolver.lookup("alias.test.", RecordType::A))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.is_no_records_found() && !err.is_nx_domain(), "{err:?}");

    assert_eq!(
        dns.queries(),
        [
            ("alias.test".into(), "HTTPS"),
            ("svc.test".into(), "HTTPS"),
            ("alias.test".into(), "A")
        ]
    );
    dns.shutdown().await;
}

#[tokio::test]
async fn refuses_an_https_parameter_given_twice() {
    use wsgate_testbed::{HttpsRecord, HttpsService};
    let twice = DnsRecord {
        name: "svc.test".into(),
        https: vec![HttpsRecord::Service(HttpsService {
            priority: 1,
            port: Some(1),
            extra: vec![(3, vec![0, 2])],
            ..HttpsService::default()
        })],
        ..DnsRecord::default()
    };
    assert!(DnsServer::start(vec![twice]).await.is_err());
}
