//! End to end on an IPv6-only network: NAT64 addresses through the `wsgate`
//! binary, each test in a network namespace of its own.
//!
//! The namespace is an IPv6-only host: loopback up with `127.0.0.1` its one
//! IPv4 address and no IPv4 route, a global IPv6 address on a veth pair
//! with the default route, and on loopback the NAT64 addresses the tests
//! dial. There is no translator: a WebSocket echo server listens on the
//! synthesised addresses themselves, as if it were the IPv4 server behind
//! the NAT64, so a connection reaching it proves the client dialled the
//! synthesised address. A DNS server (the testbed's) on `127.0.0.1` in the
//! namespace answers `ipv4only.arpa` as a DNS64 resolver of the well-known
//! prefix would, and the names below. Both servers run in this process, on
//! threads that entered the namespace with `setns(2)`; `wsgate` runs in it
//! through `ip netns exec`.
//!
//! Making a namespace needs root and iproute2. Where `ip netns add` fails
//! (not root, no `ip`, a container without the capability) each test says
//! why on standard error and passes, unless `WSGATE_REQUIRE_NETNS=1` is
//! set, which turns that into a failure. Every namespace is removed when
//! its test ends, passing or failing.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use wsgate_host::nat64::{self, Nat64, Nat64Prefix};
use wsgate_testbed::{DnsHandle, DnsRecord, spawn_dns_in_thread};

/// The IPv4-only server's address (RFC 6052 §2.4's example).
const SERVER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 33);
/// [`SERVER_V4`] under the well-known prefix: where the echo server listens.
const SYNTHESISED: Ipv6Addr = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0xc000, 0x221);
/// A private IPv4 address under the well-known prefix (10.0.0.33).
const PRIVATE_SYNTHESISED: Ipv6Addr = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0x0a00, 0x21);
/// The cloud metadata address under the well-known prefix (169.254.169.254).
const METADATA_SYNTHESISED: Ipv6Addr = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0xa9fe, 0xa9fe);
/// The namespace's own global IPv6 address.
const HOST_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x6464, 0, 0, 0, 0, 1);

/// How long a query or a connection inside the namespace may take.
const PROMPT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------
// The tests

/// Every part the other tests stand on, checked from inside the namespace:
/// no IPv4 but loopback, the DNS server's answers (and the prefix they
/// reveal), and the echo server on the synthesised address.
#[test]
fn the_ipv6_only_namespace_has_dns64_answers_and_the_server_but_no_ipv4() {
    let Some(net) = Network::start("harness") else { return };
    let ns = &net.ns;

    let v4_addrs = ns.ip(&["-4", "-o", "addr", "show"]).unwrap();
    let v4_addrs: Vec<&str> = v4_addrs.lines().collect();
    assert_eq!(v4_addrs.len(), 1, "{v4_addrs:?}");
    assert!(v4_addrs[0].contains("inet 127.0.0.1/8"), "{v4_addrs:?}");
    // The main table: where the HEv3 connectivity check looks for a route.
    assert_eq!(ns.ip(&["-4", "route", "show"]).unwrap().trim(), "");
    assert_ne!(ns.ip(&["-6", "route", "show", "default"]).unwrap().trim(), "");
    let v6_addrs = ns.ip(&["-6", "addr", "show"]).unwrap();
    for a in [SYNTHESISED, HOST_V6] {
        assert!(v6_addrs.contains(&format!("inet6 {a}/")), "{a} in {v6_addrs}");
    }

    let dns = net.dns.addr();
    let port = net.echo.port;
    let results = ns.enter(move || {
        block_on(async move {
            let resolver = resolver_for(dns);
            let discovered = nat64::discover(aaaa(&resolver, nat64::IPV4ONLY_ARPA)).await;
            let v4only_a = resolver.ipv4_lookup("v4only.test.").await.map(|l| {
                l.answers()
                    .iter()
                    .filter_map(|r| r.data.ip_addr())
                    .collect::<Vec<IpAddr>>()
            });
            let v4only_aaaa = resolver.ipv6_lookup("v4only.test.").await;
            let dns64_aaaa = aaaa(&resolver, "dns64.test.").await;
            // No route: refused by the kernel at once, nothing sent.
            let v4_connect = std::net::TcpStream::connect_timeout(&SocketAddr::from((SERVER_V4, port)), PROMPT);
            let echoed = echo_once(&format!("ws://[{SYNTHESISED}]:{port}/"), "through NAT64").await;
            (discovered, v4only_a, v4only_aaaa, dns64_aaaa, v4_connect, echoed)
        })
    });
    let (discovered, v4only_a, v4only_aaaa, dns64_aaaa, v4_connect, echoed) = results;

    assert_eq!(discovered, Ok(Some(Nat64Prefix::WELL_KNOWN)));
    let nat64 = Nat64::new(Nat64Prefix::WELL_KNOWN);
    assert_eq!(v4only_a.unwrap(), [IpAddr::V4(SERVER_V4)]);
    let no_aaaa = v4only_aaaa.unwrap_err();
    assert!(no_aaaa.is_no_records_found() && !no_aaaa.is_nx_domain(), "{no_aaaa:?}");
    assert_eq!(nat64.synthesize_if_needed(SERVER_V4), Some(SYNTHESISED));
    let dns64_aaaa = dns64_aaaa.unwrap();
    assert_eq!(dns64_aaaa, [SYNTHESISED]);
    assert_eq!(nat64.desynthesize(dns64_aaaa[0]), Some(SERVER_V4));
    let refused = v4_connect.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::NetworkUnreachable, "{refused}");
    assert_eq!(echoed.as_deref(), Ok("through NAT64"));

    assert_eq!(net.echo.connections(SYNTHESISED), 1);
    let queries = net.dns.queries();
    for query in [("ipv4only.arpa", "AAAA"), ("v4only.test", "A"), ("v4only.test", "AAAA")] {
        assert!(
            queries.contains(&(query.0.to_owned(), query.1)),
            "{query:?} in {queries:?}"
        );
    }
}

/// The point of NAT64 in the race: a name with only an A record, on a host
/// with no IPv4 route, is reached by dialling its synthesised address. So
/// is an IPv4 literal the plugin gives (draft §8.3).
#[test]
fn a_v4_only_name_is_reached_through_its_synthesised_address() {
    let Some(net) = Network::start("v4only") else { return };
    let port = net.echo.port;

    let run = net.wsgate(
        &["--allow", &format!("v4only.test:{port}")],
        &format!("ws://v4only.test:{port}/"),
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.lines(), ["hello"], "{run:?}");
    // The server listens on the synthesised address only.
    assert_eq!(net.echo.connections(SYNTHESISED), 1);
    let queries = net.dns.queries();
    assert!(
        queries.contains(&("v4only.test".to_owned(), "A")),
        "the A query is sent when a NAT64 prefix is known (draft §4.1): {queries:?}"
    );
    assert!(
        queries.contains(&("ipv4only.arpa".to_owned(), "AAAA")),
        "the prefix is discovered through ipv4only.arpa (draft §8.1): {queries:?}"
    );

    let run = net.wsgate(
        &["--allow", &SERVER_V4.to_string()],
        &format!("ws://{SERVER_V4}:{port}/"),
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.lines(), ["hello"], "{run:?}");
    assert_eq!(net.echo.connections(SYNTHESISED), 2);
}

/// A DNS64 answer, or a synthesised literal, is allowed by the rule for the
/// IPv4 address it stands for: the policy sees `192.0.2.33` (or
/// `10.0.0.33`), not the IPv6 address.
#[test]
fn a_synthesised_address_is_allowed_by_the_rule_for_its_ipv4_address() {
    let Some(net) = Network::start("allow") else { return };
    let port = net.echo.port;

    // The literal needs an address rule, and the IPv4 one is it.
    let run = net.wsgate(
        &["--allow", &SERVER_V4.to_string()],
        &format!("ws://[{SYNTHESISED}]:{port}/"),
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.lines(), ["hello"], "{run:?}");
    assert_eq!(net.echo.connections(SYNTHESISED), 1);

    // A DNS64 answer for a public address passes as that address does.
    let run = net.wsgate(
        &[
            "--allow",
            &format!("dns64.test:{port}"),
            "--allow",
            &SERVER_V4.to_string(),
        ],
        &format!("ws://dns64.test:{port}/"),
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.lines(), ["hello"], "{run:?}");
    assert_eq!(net.echo.connections(SYNTHESISED), 2);

    // A DNS64 answer for a private address needs the private address's
    // rule, as the A answer would; given it, it connects.
    let url = format!("ws://private64.test:{port}/");
    let name_rule = format!("private64.test:{port}");
    let run = net.wsgate(&["--allow", &name_rule], &url);
    let line = run.assert_one_line_failure("denied by the host's policy");
    // The race de-synthesised the answer: the policy judged 10.0.0.33.
    assert!(
        line.contains(&format!(
            "10.0.0.33 is a private address: only an IP or CIDR rule allows it (e.g. `10.0.0.0/8`, or --allow-private) (the DNS64 answer {PRIVATE_SYNTHESISED})"
        )),
        "{line}"
    );
    assert_eq!(net.echo.connections(PRIVATE_SYNTHESISED), 0);
    let run = net.wsgate(&["--allow", &name_rule, "--allow", "10.0.0.33"], &url);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.lines(), ["hello"], "{run:?}");
    assert_eq!(net.echo.connections(PRIVATE_SYNTHESISED), 1);
}

/// A policy that does not allow the IPv4 address denies its synthesised
/// form too, whatever IPv6 rules it has: neither `::/0` nor a rule for the
/// NAT64 network reaches it.
#[test]
fn a_policy_without_the_ipv4_address_denies_its_synthesised_form() {
    let Some(net) = Network::start("deny") else { return };
    let port = net.echo.port;

    let literal = format!("ws://[{SYNTHESISED}]:{port}/");
    for rule in ["::/0", "64:ff9b::/64", "192.0.2.34", "192.0.2.0/24:1"] {
        let run = net.wsgate(&["--allow", rule], &literal);
        let line = run.assert_one_line_failure("denied by the host's policy");
        assert!(
            line.contains(&format!("no allow rule matches `[{SYNTHESISED}]:{port}`")),
            "{rule}: {line}"
        );
    }

    let run = net.wsgate(
        &["--allow", &format!("metadata64.test:{port}"), "--allow", "::/0"],
        &format!("ws://metadata64.test:{port}/"),
    );
    let line = run.assert_one_line_failure("denied by the host's policy");
    assert!(
        line.contains("link-local address") && line.contains("169.254.169.254"),
        "{line}"
    );

    let run = net.wsgate(
        &["--allow", &format!("private64.test:{port}"), "--allow", "10.0.0.34"],
        &format!("ws://private64.test:{port}/"),
    );
    let line = run.assert_one_line_failure("denied by the host's policy");
    assert!(
        line.contains("10.0.0.33") && line.contains(&PRIVATE_SYNTHESISED.to_string()),
        "{line}"
    );

    // Denied before any connection.
    for a in [SYNTHESISED, PRIVATE_SYNTHESISED, METADATA_SYNTHESISED] {
        assert_eq!(net.echo.connections(a), 0, "{a}");
    }
}

// ---------------------------------------------------------------------------
// The network: a namespace, its DNS server and its echo server

/// One test's IPv6-only network with its servers running. Dropped, the
/// servers stop and then the namespace is removed.
struct Network {
    // Fields drop in order: the servers before the namespace they are in.
    dns: DnsHandle,
    echo: EchoServer,
    ns: Netns,
}

impl Network {
    /// Sets up the namespace and starts the servers in it; `None` (having
    /// said why) where namespaces cannot be made here.
    fn start(test: &str) -> Option<Network> {
        let ns = match Netns::create(test) {
            Ok(ns) => ns,
            Err(why) => {
                if std::env::var_os("WSGATE_REQUIRE_NETNS").is_some_and(|v| v == "1") {
                    panic!("WSGATE_REQUIRE_NETNS=1, but {why}");
                }
                // Straight to the descriptor: the harness captures eprintln!.
                let _ = writeln!(
                    std::io::stderr(),
                    "nat64 test `{test}` skipped: {why} (it needs root and iproute2)"
                );
                return None;
            }
        };
        ns.make_ipv6_only(&[SYNTHESISED, PRIVATE_SYNTHESISED, METADATA_SYNTHESISED])
            .unwrap_or_else(|e| panic!("setting up {}: {e}", ns.name));
        let (dns, echo) = ns.enter(|| {
            let dns = spawn_dns_in_thread(zone()).expect("start the DNS server in the namespace");
            let echo = EchoServer::start(&[SYNTHESISED, PRIVATE_SYNTHESISED, METADATA_SYNTHESISED])
                .expect("start the echo server in the namespace");
            (dns, echo)
        });
        Some(Network { dns, echo, ns })
    }

    /// `wsgate run echo-client` in the namespace, asking its DNS server,
    /// under the policy `rules` (no `--allow-private`), sending `hello`.
    fn wsgate(&self, rules: &[&str], url: &str) -> Run {
        let mut command = self.ns.exec(env!("CARGO_BIN_EXE_wsgate"));
        command
            .args(run_args_strict("echo-client"))
            .args(["--dns-server", &self.dns.addr().to_string()])
            .args(rules)
            .args(["--", url, "hello"]);
        run_bounded(command)
    }
}

/// What the DNS server answers: a DNS64 resolver of the well-known prefix
/// for `ipv4only.arpa` (RFC 7050), an IPv4-only name, and names whose AAAA
/// answers are synthesised (DNS64) with no A record beside them.
fn zone() -> Vec<DnsRecord> {
    let record = |name: &str, v6: &[Ipv6Addr], v4: &[Ipv4Addr]| DnsRecord {
        name: name.into(),
        v6: v6.to_vec(),
        v4: v4.to_vec(),
        ..DnsRecord::default()
    };
    let wkp = Nat64Prefix::WELL_KNOWN;
    vec![
        record(
            nat64::IPV4ONLY_ARPA,
            &nat64::IPV4ONLY_ADDRESSES.map(|a| wkp.synthesize(a)),
            &nat64::IPV4ONLY_ADDRESSES,
        ),
        record("v4only.test", &[], &[SERVER_V4]),
        record("dns64.test", &[SYNTHESISED], &[]),
        record("private64.test", &[PRIVATE_SYNTHESISED], &[]),
        record("metadata64.test", &[METADATA_SYNTHESISED], &[]),
    ]
}

/// A network namespace of this test run, removed on drop.
struct Netns {
    name: String,
}

impl Netns {
    /// `ip netns add` under a name unique to this process and test.
    fn create(test: &str) -> Result<Netns, String> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "wsgate-nat64-{}-{}-{test}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run(Command::new("ip").args(["netns", "add", &name]))?;
        Ok(Netns { name })
    }

    /// Loopback up with `extra` on it; a veth pair (both ends inside) with
    /// the namespace's global IPv6 address and the IPv6 default route. No
    /// IPv4 beyond loopback's own.
    fn make_ipv6_only(&self, extra: &[Ipv6Addr]) -> Result<(), String> {
        self.ip(&["link", "set", "lo", "up"])?;
        for a in extra {
            self.ip(&["-6", "addr", "add", &format!("{a}/128"), "dev", "lo"])?;
        }
        let host = format!("{HOST_V6}/64");
        if self
            .ip(&["link", "add", "wsg0", "type", "veth", "peer", "name", "wsg1"])
            .is_ok()
        {
            self.ip(&["link", "set", "wsg1", "up"])?;
            self.ip(&["link", "set", "wsg0", "up"])?;
            self.ip(&["-6", "addr", "add", &host, "dev", "wsg0", "nodad"])?;
            self.ip(&["-6", "route", "add", "default", "dev", "wsg0"])?;
        } else {
            // Without veth (a kernel without the module), loopback carries
            // the address and the route: still an IPv6-only host.
            self.ip(&["-6", "addr", "add", &format!("{HOST_V6}/128"), "dev", "lo"])?;
            self.ip(&["-6", "route", "add", "default", "dev", "lo"])?;
        }
        Ok(())
    }

    /// `ip -n NAME ARGS`, its standard output.
    fn ip(&self, args: &[&str]) -> Result<String, String> {
        run(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// `ip netns exec NAME PROGRAM`, to add arguments to.
    fn exec(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    /// Runs `f` on a thread inside the namespace, so that the sockets it
    /// opens, and the threads it spawns, are in the namespace.
    fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: a plain system call on a descriptor we own;
                    // it changes only this thread's network namespace.
                    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        panic!("setns into {path}: {}", std::io::Error::last_os_error());
                    }
                    f()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = run(Command::new("ip").args(["netns", "del", &self.name])) {
            let _ = writeln!(std::io::stderr(), "removing network namespace {}: {e}", self.name);
        }
    }
}

/// Runs a short command to its end: its standard output, or why it failed.
fn run(command: &mut Command) -> Result<String, String> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `{:?}`: {e}", command.get_program()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{}` failed ({}): {}",
            std::iter::once(command.get_program())
                .chain(command.get_args())
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A plain `ws://` echo server on the same port of several addresses,
/// counting the connections each accepted, on its own runtime and thread.
/// Stops on drop.
struct EchoServer {
    port: u16,
    counts: Vec<(Ipv6Addr, Arc<AtomicU64>)>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EchoServer {
    /// Binds every address (on the calling thread, so in its namespace) and
    /// starts serving.
    fn start(addrs: &[Ipv6Addr]) -> Result<EchoServer, String> {
        let mut port = 0;
        let mut listeners = Vec::new();
        for &a in addrs {
            let listener = std::net::TcpListener::bind((a, port)).map_err(|e| format!("binding [{a}]:{port}: {e}"))?;
            listener.set_nonblocking(true).map_err(|e| e.to_string())?;
            port = listener.local_addr().map_err(|e| e.to_string())?.port();
            listeners.push((a, listener, Arc::new(AtomicU64::new(0))));
        }
        let counts = listeners.iter().map(|(a, _, n)| (*a, Arc::clone(n))).collect();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("nat64-echo".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut loops = tokio::task::JoinSet::new();
                    for (_, listener, count) in listeners {
                        match tokio::net::TcpListener::from_std(listener) {
                            Ok(listener) => loops.spawn(accept_loop(listener, count)),
                            Err(e) => panic!("registering a listener: {e}"),
                        };
                    }
                    // A stop, or the server being dropped, ends the wait;
                    // dropping the JoinSet then aborts every connection.
                    let _ = stopped.await;
                });
            })
            .map_err(|e| e.to_string())?;
        Ok(EchoServer {
            port,
            counts,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The connections accepted on `addr` so far.
    fn connections(&self, addr: Ipv6Addr) -> u64 {
        let (_, count) = self
            .counts
            .iter()
            .find(|(a, _)| *a == addr)
            .unwrap_or_else(|| panic!("the echo server does not listen on {addr}"));
        count.load(Ordering::SeqCst)
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, count: Arc<AtomicU64>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        match listener.accept().await {
            Ok((stream, _)) => {
                // Counted before the handshake, so a test reading the count
                // after its client finished sees it.
                count.fetch_add(1, Ordering::SeqCst);
                connections.spawn(echo_connection(stream));
            }
            // Do not spin on a persistent error (EMFILE).
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Echoes text and binary messages until the client leaves.
async fn echo_connection(stream: tokio::net::TcpStream) {
    let Ok(Ok(mut ws)) = tokio::time::timeout(PROMPT, tokio_tungstenite::accept_async(stream)).await else {
        return;
    };
    // Bounded by the client: ends on its close, EOF or a protocol error;
    // tungstenite answers pings and the close itself.
    while let Some(Ok(message)) = ws.next().await {
        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            break;
        }
    }
}

// ---------------------------------------------------------------------------
// Clients inside the namespace

/// Runs `future` on a fresh current-thread runtime.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build a runtime")
        .block_on(future)
}

/// A resolver asking only `server`, over UDP then TCP, caching nothing.
fn resolver_for(server: SocketAddr) -> TokioResolver {
    let mut udp = ConnectionConfig::udp();
    udp.port = server.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = server.port();
    let name_server = NameServerConfig::new(server.ip(), true, vec![udp, tcp]);
    let mut builder = TokioResolver::builder_with_config(
        ResolverConfig::from_name_servers(vec![name_server]),
        TokioRuntimeProvider::default(),
    );
    let options = builder.options_mut();
    options.use_hosts_file = ResolveHosts::Never;
    options.cache_size = 0;
    options.timeout = PROMPT;
    options.attempts = 1;
    builder.build().expect("build the resolver")
}

/// The AAAA answers for `name`, as [`nat64::discover`] takes them.
async fn aaaa(resolver: &TokioResolver, name: &str) -> Result<Vec<Ipv6Addr>, String> {
    let lookup = resolver.ipv6_lookup(name).await.map_err(|e| e.to_string())?;
    Ok(lookup
        .answers()
        .iter()
        .filter_map(|r| match r.data.ip_addr() {
            Some(IpAddr::V6(a)) => Some(a),
            _ => None,
        })
        .collect())
}

/// Sends `text` over a WebSocket to `url` and returns what came back.
async fn echo_once(url: &str, text: &str) -> Result<String, String> {
    let exchange = async {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.map_err(|e| e.to_string())?;
        ws.send(Message::text(text)).await.map_err(|e| e.to_string())?;
        let reply = ws
            .next()
            .await
            .ok_or("closed without a reply")?
            .map_err(|e| e.to_string())?;
        let _ = ws.close(None).await;
        reply
            .into_text()
            .map(|t| t.as_str().to_owned())
            .map_err(|e| e.to_string())
    };
    tokio::time::timeout(PROMPT, exchange)
        .await
        .map_err(|_| format!("no echo from {url} within {PROMPT:?}"))?
}
