//! The race over real sockets, against the testbed: no descriptor is left
//! behind after 1000 connects in which the losing attempt is cancelled
//! mid-TLS.

use super::tests::AllowAll;
use super::{CommitStage, History, HistoryConfig, NetDialer, Race, RaceConfig, Target};
use crate::report::{EventKind, RaceLog};
use crate::resolve::Lookups;
use crate::tls::{TlsClient, TrustRoots};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use wsgate_testbed::{Behaviour, Config, TestbedHandle, spawn_in_thread};

/// A dual-stack TLS testbed with one behaviour per family, its
/// certificates in a fresh directory.
fn testbed(v6: Behaviour, v4: Behaviour) -> TestbedHandle {
    // A directory per testbed: two in one directory would overwrite each
    // other's certificates.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("wsgate-race-net-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    spawn_in_thread(Config {
        v6,
        v4,
        tls: true,
        cert_dir: Some(dir),
        ..Config::default()
    })
    .expect("start testbed")
}

/// This process's TCP sockets to or from `port` (the testbed's listeners,
/// and both ends of every connection to them): other tests running beside
/// this one open descriptors of their own, which must not count.
fn sockets_on(port: u16) -> usize {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let port_of = |field: &str| field.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|text| text.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 9
                && inodes.contains(fields[9])
                && (port_of(fields[1]) == Some(port) || port_of(fields[2]) == Some(port))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_cancelled_losers_leave_no_descriptor() {
    // IPv6 accepts TCP and never answers TLS; IPv4 is fine. With a 10 ms
    // attempt delay every connect starts both, and cancels IPv6 mid-TLS.
    let tb = testbed(Behaviour::TlsStall, Behaviour::Ok);
    let roots = TrustRoots {
        system: false,
        ca_files: vec![tb.ca_path().unwrap().to_owned()],
    };
    let tls = TlsClient::new(&roots).unwrap();
    let config = RaceConfig {
        attempt_delay: Duration::from_millis(10),
        ..RaceConfig::default()
    };
    // No memory: every connect must race, or IPv4 would go first alone.
    let memory = History::new(HistoryConfig {
        ttl: Duration::ZERO,
        ..HistoryConfig::default()
    });
    let addrs: Vec<IpAddr> = vec!["::1".parse().unwrap(), "127.0.0.1".parse().unwrap()];

    let host: crate::HostName = "wsgate.test".parse().unwrap();
    let connect = |id: u64| {
        let target = Target {
            host: host.clone(),
            port: tb.port(),
            tls: true,
            first_flight: None,
            commit: CommitStage::Tls,
        };
        let dialer = NetDialer::new(Some((tls.clone(), Vec::new(), TlsClient::server_name(&host).unwrap())));
        Race::new(
            config,
            target,
            dialer,
            Lookups::ready(&addrs),
            Arc::new(AllowAll),
            memory.clone(),
            RaceLog::new(id, None),
        )
    };

    // One connect first, so that lazily opened descriptors (the runtime's,
    // rustls') are counted in the baseline.
    let mut warm = connect(0);
    drop(warm.next(Instant::now() + Duration::from_secs(10)).await.unwrap());
    drop(warm);
    settle(&tb, 1).await;
    let before = sockets_on(tb.port());

    for id in 1..=1000u64 {
        let mut race = connect(id);
        let committed = race.next(Instant::now() + Duration::from_secs(10)).await.unwrap();
        assert_eq!(committed.peer.ip().to_string(), "127.0.0.1");
        let cancels = race
            .log()
            .events()
            .iter()
            .filter(|e| e.event == EventKind::Cancel)
            .count();
        assert_eq!(cancels, 1, "connect {id}: the IPv6 attempt is cancelled");
    }
    settle(&tb, 1001).await;
    let after = sockets_on(tb.port());
    assert_eq!(after, before, "sockets before {before}, after {after}");
    assert_eq!(tb.connections().v6, 1001);
}

/// Waits (bounded) until the testbed has seen `n` IPv6 connections and
/// the descriptors of closed connections are gone on both sides.
async fn settle(tb: &TestbedHandle, n: u64) {
    let mut last = usize::MAX;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = sockets_on(tb.port());
        if tb.connections().v6 >= n && now == last {
            return;
        }
        last = now;
    }
}

/// Whether the kernel acknowledges at once on `stream`'s socket (Linux's
/// `TCP_QUICKACK` as `getsockopt` reads it: not in delayed-ACK mode).
#[cfg(target_os = "linux")]
fn quick_ack_on(stream: &super::Transport) -> bool {
    use std::os::fd::AsRawFd;
    let fd = match stream {
        super::Transport::Tcp(tcp) => tcp.as_raw_fd(),
        super::Transport::Tls(tls) => tls.get_ref().0.as_raw_fd(),
    };
    let mut on: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a valid socket, and a c_int out value of the size given.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&mut on as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "getsockopt(TCP_QUICKACK)");
    on != 0
}

/// After a TLS handshake Linux delays ACKs; with the first flight out and
/// its reply awaited, the committed stream asks for quick ACKs again, so a
/// server that holds its small reply until its tickets are acknowledged
/// (Nagle) does not wait 40 ms for the delayed ACK.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_first_flight_leaves_the_socket_acknowledging_at_once() {
    let tb = testbed(Behaviour::Ok, Behaviour::Ok);
    let roots = TrustRoots {
        system: false,
        ca_files: vec![tb.ca_path().unwrap().to_owned()],
    };
    let tls = TlsClient::new(&roots).unwrap();
    let host: crate::HostName = "wsgate.test".parse().unwrap();
    let addrs: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap()];
    let flight = "GET / HTTP/1.1\r\nHost: wsgate.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    for (first_flight, quick) in [(None, false), (Some(flight.as_bytes().to_vec()), true)] {
        let target = Target {
            host: host.clone(),
            port: tb.port(),
            tls: true,
            first_flight,
            commit: CommitStage::Tls,
        };
        let dialer = NetDialer::new(Some((tls.clone(), Vec::new(), TlsClient::server_name(&host).unwrap())));
        let mut race = Race::new(
            RaceConfig::default(),
            target,
            dialer,
            Lookups::ready(&addrs),
            Arc::new(AllowAll),
            History::new(HistoryConfig::default()),
            RaceLog::new(1, None),
        );
        let committed = race.next(Instant::now() + Duration::from_secs(10)).await.unwrap();
        // Without a first flight nothing is awaited: the handshake's
        // delayed-ACK mode stands (the control that the flag is ours).
        assert_eq!(quick_ack_on(&committed.stream), quick);
    }
}
