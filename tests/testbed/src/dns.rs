//! A small DNS server on loopback whose answers can be delayed per record
//! type, for testing a client's handling of HTTPS, AAAA and A arriving at
//! different times (Happy Eyeballs, RFC 8305 §3 and its version 3 draft).
//!
//! It serves a fixed set of names over UDP and TCP on `127.0.0.1` (same
//! port) and answers each query in its own task once that record type's
//! delay has passed, so a delayed AAAA never holds up the A answer. It uses
//! hickory-proto's message codec only; the answering logic is its own.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use wsgate_testbed::{DnsRecord, DnsServer, HttpsRecord, HttpsService};
//! let dns = DnsServer::start(vec![DnsRecord {
//!     name: "wsgate.test".into(),
//!     v6: vec!["::1".parse()?],
//!     v4: vec!["127.0.0.1".parse()?],
//!     aaaa_delay: Duration::from_millis(300),
//!     https: vec![HttpsRecord::Service(HttpsService {
//!         priority: 1,
//!         alpn: vec!["http/1.1".into()],
//!         ..HttpsService::default()
//!     })],
//!     ..DnsRecord::default()
//! }])
//! .await?;
//! // Point a resolver at dns.addr() ...
//! println!("{:?}", dns.queries());
//! dns.shutdown().await;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::svcb::{
    Alpn, EchConfigList, IpHint, Mandatory, SVCB, SvcParamKey, SvcParamValue, Unknown,
};
use hickory_proto::rr::rdata::{A, AAAA, HTTPS, NULL};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::timeout;

/// TTL of every answer record, in seconds.
const TTL: u32 = 60;

/// Answers waiting for their delay (UDP and TCP together); queries beyond
/// this are dropped unanswered, as an overloaded server would.
const MAX_PENDING: usize = 1024;

/// Concurrent TCP connections; more are closed on accept.
const MAX_TCP_CONNECTIONS: usize = 64;

/// How long a TCP connection may stay silent (or take to send one message)
/// before it is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Bound on sending one answer.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// Entries kept in the query log; later queries are answered but not logged.
const MAX_LOGGED: usize = 65_536;

/// The EDNS payload size advertised in answers to EDNS queries.
const EDNS_PAYLOAD: u16 = 1232;

/// Binding attempts when the UDP port turns out to be taken for TCP.
const BIND_ATTEMPTS: usize = 16;

/// One name's records and how long to wait before answering each type.
///
/// New fields may be added: build one with `..DnsRecord::default()`.
#[derive(Clone, Debug, Default)]
pub struct DnsRecord {
    /// The name, e.g. `"wsgate.test"`; matched case-insensitively, with or
    /// without a trailing dot.
    pub name: String,
    /// Answers to AAAA queries (none: NODATA).
    pub v6: Vec<Ipv6Addr>,
    /// Answers to A queries (none: NODATA).
    pub v4: Vec<Ipv4Addr>,
    /// Wait before answering an AAAA query.
    pub aaaa_delay: Duration,
    /// Wait before answering an A query.
    pub a_delay: Duration,
    /// Answers to HTTPS queries (type 65), in this order (none: NODATA).
    pub https: Vec<HttpsRecord>,
    /// Wait before answering an HTTPS query.
    pub https_delay: Duration,
}

/// One HTTPS record (RFC 9460).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpsRecord {
    /// AliasMode (SvcPriority 0): the service is `target`'s.
    Alias {
        /// The TargetName, e.g. `"cdn.test"`; `"."` says the service does
        /// not exist.
        target: String,
    },
    /// ServiceMode.
    Service(HttpsService),
    /// RDATA sent as given, for testing how a client takes a record it
    /// cannot decode.
    Raw(Vec<u8>),
}

/// A ServiceMode HTTPS record. Its parameters are sent in key order, as
/// RFC 9460 §2.2 requires.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpsService {
    /// SvcPriority; 0 would make it an AliasMode record.
    pub priority: u16,
    /// The TargetName; empty or `"."` for the owner name.
    pub target: String,
    /// The `mandatory` parameter's keys, as numbers (none: not sent).
    pub mandatory: Vec<u16>,
    /// The `alpn` parameter (none: not sent).
    pub alpn: Vec<String>,
    /// The `no-default-alpn` parameter.
    pub no_default_alpn: bool,
    /// The `port` parameter.
    pub port: Option<u16>,
    /// The `ipv4hint` parameter (none: not sent).
    pub ipv4hint: Vec<Ipv4Addr>,
    /// The `ech` parameter's bytes, an ECHConfigList.
    pub ech: Option<Vec<u8>>,
    /// The `ipv6hint` parameter (none: not sent).
    pub ipv6hint: Vec<Ipv6Addr>,
    /// Further parameters, `(key, value)`, e.g. keys no client knows;
    /// each is sent in its place in key order.
    pub extra: Vec<(u16, Vec<u8>)>,
}

impl HttpsRecord {
    /// The record's RDATA, checked once at start so that answering cannot
    /// fail.
    fn rdata(&self) -> anyhow::Result<RData> {
        match self {
            HttpsRecord::Alias { target } => Ok(RData::HTTPS(HTTPS(SVCB::new(0, target_name(target)?, Vec::new())))),
            HttpsRecord::Service(service) => service.rdata(),
            HttpsRecord::Raw(bytes) => Ok(RData::Unknown {
                code: RecordType::HTTPS,
                rdata: NULL::with(bytes.clone()),
            }),
        }
    }
}

impl HttpsService {
    fn rdata(&self) -> anyhow::Result<RData> {
        let mut params: Vec<(SvcParamKey, SvcParamValue)> = Vec::new();
        if !self.mandatory.is_empty() {
            let keys = self.mandatory.iter().map(|k| SvcParamKey::from(*k)).collect();
            params.push((SvcParamKey::Mandatory, SvcParamValue::Mandatory(Mandatory(keys))));
        }
        if !self.alpn.is_empty() {
            params.push((SvcParamKey::Alpn, SvcParamValue::Alpn(Alpn(self.alpn.clone()))));
        }
        if self.no_default_alpn {
            params.push((SvcParamKey::NoDefaultAlpn, SvcParamValue::NoDefaultAlpn));
        }
        if let Some(port) = self.port {
            params.push((SvcParamKey::Port, SvcParamValue::Port(port)));
        }
        if !self.ipv4hint.is_empty() {
            let hints = self.ipv4hint.iter().map(|ip| A(*ip)).collect();
            params.push((SvcParamKey::Ipv4Hint, SvcParamValue::Ipv4Hint(IpHint(hints))));
        }
        if let Some(ech) = &self.ech {
            params.push((
                SvcParamKey::EchConfigList,
                SvcParamValue::EchConfigList(EchConfigList(ech.clone())),
            ));
        }
        if !self.ipv6hint.is_empty() {
            let hints = self.ipv6hint.iter().map(|ip| AAAA(*ip)).collect();
            params.push((SvcParamKey::Ipv6Hint, SvcParamValue::Ipv6Hint(IpHint(hints))));
        }
        for (key, value) in &self.extra {
            params.push((SvcParamKey::from(*key), SvcParamValue::Unknown(Unknown(value.clone()))));
        }
        params.sort_by_key(|(key, _)| u16::from(*key));
        anyhow::ensure!(
            params.windows(2).all(|w| w[0].0 != w[1].0),
            "HTTPS record with a parameter given twice"
        );
        let target = if self.target.is_empty() { "." } else { &self.target };
        Ok(RData::HTTPS(HTTPS(SVCB::new(
            self.priority,
            target_name(target)?,
            params,
        ))))
    }
}

/// A TargetName, absolute (`"."` is the root).
fn target_name(target: &str) -> anyhow::Result<Name> {
    let mut name = Name::from_ascii(target).with_context(|| format!("invalid HTTPS target {target:?}"))?;
    name.set_fqdn(true);
    Ok(name)
}

/// The log of received queries: `(name, type)`, shared with the tasks.
type QueryLog = Arc<Mutex<Vec<(String, &'static str)>>>;

fn snapshot(log: &QueryLog) -> Vec<(String, &'static str)> {
    // A poisoned lock only means a task panicked mid-push; the data is fine.
    log.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Lower-case, without the trailing dot: the key names are matched by.
fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// What the serving tasks share.
struct Shared {
    zone: HashMap<String, Zoned>,
    log: QueryLog,
    pending: Arc<Semaphore>,
}

/// A name's records, with the HTTPS ones already in RDATA form.
struct Zoned {
    record: DnsRecord,
    https: Vec<RData>,
}

/// An answer, built at once and sent after `delay`.
struct Planned {
    delay: Duration,
    response: Message,
    /// The largest UDP answer the client accepts.
    udp_limit: usize,
}

impl Shared {
    /// Decodes one request, logs its question and builds the answer.
    /// `None` for anything not worth answering (malformed, or not a query).
    fn plan(&self, packet: &[u8]) -> Option<Planned> {
        // hickory's decoder is not expected to panic, but a test server
        // must survive any packet.
        let request = std::panic::catch_unwind(|| Message::from_vec(packet)).ok()?.ok()?;
        if request.metadata.message_type != MessageType::Query {
            return None;
        }

        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.metadata.recursion_available = true;
        response.metadata.checking_disabled = request.metadata.checking_disabled;
        response.add_queries(request.queries.iter().cloned());
        if request.edns.is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(EDNS_PAYLOAD);
            response.set_edns(edns);
        }
        let udp_limit = request
            .edns
            .as_ref()
            .map_or(512, |edns| usize::from(edns.max_payload().max(512)));
        let mut planned = Planned {
            delay: Duration::ZERO,
            response,
            udp_limit,
        };

        if request.metadata.op_code != OpCode::Query {
            planned.response.metadata.response_code = ResponseCode::NotImp;
            return Some(planned);
        }
        let [query] = request.queries.as_slice() else {
            planned.response.metadata.response_code = ResponseCode::FormErr;
            return Some(planned);
        };

        let name = normalize(&query.name().to_ascii());
        let record_type = query.query_type();
        {
            let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            if log.len() < MAX_LOGGED {
                log.push((name.clone(), record_type.into()));
            }
        }

        if query.query_class() != DNSClass::IN {
            planned.response.metadata.response_code = ResponseCode::Refused;
            return Some(planned);
        }
        planned.response.metadata.authoritative = true;
        let Some(Zoned { record, https }) = self.zone.get(&name) else {
            planned.response.metadata.response_code = ResponseCode::NXDomain;
            return Some(planned);
        };
        let owner = query.name().clone();
        match record_type {
            RecordType::HTTPS => {
                planned.delay = record.https_delay;
                planned.response.add_answers(
                    https
                        .iter()
                        .map(|rdata| Record::from_rdata(owner.clone(), TTL, rdata.clone())),
                );
            }
            RecordType::AAAA => {
                planned.delay = record.aaaa_delay;
                planned.response.add_answers(
                    record
                        .v6
                        .iter()
                        .map(|ip| Record::from_rdata(owner.clone(), TTL, RData::AAAA(AAAA(*ip)))),
                );
            }
            RecordType::A => {
                planned.delay = record.a_delay;
                planned.response.add_answers(
                    record
                        .v4
                        .iter()
                        .map(|ip| Record::from_rdata(owner.clone(), TTL, RData::A(A(*ip)))),
                );
            }
            // Any other type of a known name: NODATA, at once.
            _ => {}
        }
        Some(planned)
    }
}

/// A running DNS server. Stop it with [`DnsServer::shutdown`]; dropping it
/// also stops it (its tasks are aborted and its sockets closed).
pub struct DnsServer {
    addr: SocketAddr,
    log: QueryLog,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsServer")
            .field("addr", &self.addr)
            .field("queries", &self.queries())
            .finish_non_exhaustive()
    }
}

impl DnsServer {
    /// Binds UDP and TCP on `127.0.0.1` (one picked port for both) and
    /// starts answering for `records`.
    ///
    /// Must be called within a tokio runtime with its IO and time drivers
    /// enabled. Fails on an invalid or duplicated name.
    pub async fn start(records: Vec<DnsRecord>) -> anyhow::Result<DnsServer> {
        tokio::runtime::Handle::try_current().context("DnsServer::start must be called within a tokio runtime")?;
        let mut zone = HashMap::new();
        for record in records {
            let key = normalize(&record.name);
            anyhow::ensure!(!key.is_empty(), "empty DNS name {:?}", record.name);
            Name::from_ascii(&key).with_context(|| format!("invalid DNS name {:?}", record.name))?;
            let https = record
                .https
                .iter()
                .map(HttpsRecord::rdata)
                .collect::<anyhow::Result<Vec<_>>>()
                .with_context(|| format!("HTTPS records of {:?}", record.name))?;
            match zone.entry(key) {
                Entry::Occupied(_) => anyhow::bail!("DNS name {:?} given twice", record.name),
                Entry::Vacant(slot) => {
                    slot.insert(Zoned { record, https });
                }
            }
        }

        let (udp, tcp) = bind_pair().await?;
        let addr = udp.local_addr().context("reading the UDP socket's address")?;
        let log = QueryLog::default();
        let shared = Arc::new(Shared {
            zone,
            log: Arc::clone(&log),
            pending: Arc::new(Semaphore::new(MAX_PENDING)),
        });
        let (stop, _) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(udp_loop(udp, Arc::clone(&shared), stop.subscribe())),
            tokio::spawn(tcp_loop(tcp, shared, stop.subscribe())),
        ];
        Ok(DnsServer { addr, log, stop, tasks })
    }

    /// The address both UDP and TCP are served on (`127.0.0.1:port`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every query received, in order, as (name lower-cased without the
    /// trailing dot, record type such as `"HTTPS"`, `"AAAA"` or `"A"`). Logged on
    /// receipt, before any delay. Only well-formed single-question queries
    /// are logged, and at most 65 536 of them.
    pub fn queries(&self) -> Vec<(String, &'static str)> {
        snapshot(&self.log)
    }

    /// Stops serving, drops pending answers, closes the sockets, and returns
    /// once the server's tasks have finished.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        // Aborting a loop drops its JoinSet, which aborts its tasks in turn.
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A UDP socket and a TCP listener on the same `127.0.0.1` port.
async fn bind_pair() -> anyhow::Result<(UdpSocket, TcpListener)> {
    let mut last_error = None;
    for _ in 0..BIND_ATTEMPTS {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("binding UDP on 127.0.0.1")?;
        let addr = udp.local_addr().context("reading the UDP socket's address")?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            // The port is free for UDP but taken for TCP: pick another.
            Err(e) => last_error = Some(e),
        }
    }
    Err(anyhow::Error::new(last_error.expect("at least one attempt")).context("binding TCP on the UDP socket's port"))
}

async fn udp_loop(socket: UdpSocket, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let socket = Arc::new(socket);
    let mut answers = JoinSet::new();
    let mut buf = vec![0u8; 65_535];
    loop {
        while answers.try_join_next().is_some() {}
        let (len, peer) = tokio::select! {
            _ = stop.changed() => return,
            received = socket.recv_from(&mut buf) => match received {
                Ok(received) => received,
                // E.g. ICMP port unreachable from an earlier send, reported
                // on some platforms: not fatal for the socket.
                Err(_) => continue,
            },
        };
        let Some(planned) = shared.plan(&buf[..len]) else {
            continue;
        };
        let Ok(permit) = Arc::clone(&shared.pending).try_acquire_owned() else {
            continue;
        };
        let socket = Arc::clone(&socket);
        answers.spawn(async move {
            let _permit = permit;
            tokio::time::sleep(planned.delay).await;
            let Some(bytes) = encode(&planned.response, planned.udp_limit) else {
                return;
            };
            let _ = timeout(SEND_TIMEOUT, socket.send_to(&bytes, peer)).await;
        });
    }
}

/// The answer's wire form, truncated (TC set, no records) if it exceeds
/// `limit` bytes.
fn encode(response: &Message, limit: usize) -> Option<Vec<u8>> {
    let bytes = response.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    response.truncate().to_vec().ok()
}

async fn tcp_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let stream = tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // E.g. the connection was reset before it was accepted.
                Err(_) => {
                    // Avoid spinning on a persistent error (EMFILE).
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        if connections.len() >= MAX_TCP_CONNECTIONS {
            continue;
        }
        connections.spawn(tcp_connection(stream, Arc::clone(&shared)));
    }
}

/// Serves length-prefixed messages on one connection until EOF, an error or
/// `TCP_IDLE` of silence, then lets pending answers finish.
async fn tcp_connection(stream: TcpStream, shared: Arc<Shared>) {
    let (mut reader, writer) = stream.into_split();
    let writer = Arc::new(tokio::sync::Mutex::new(writer));
    let mut answers = JoinSet::new();
    loop {
        while answers.try_join_next().is_some() {}
        let Ok(Ok(packet)) = timeout(TCP_IDLE, read_frame(&mut reader)).await else {
            break;
        };
        let Some(planned) = shared.plan(&packet) else {
            continue;
        };
        let Ok(permit) = Arc::clone(&shared.pending).try_acquire_owned() else {
            continue;
        };
        answers.spawn(tcp_answer(planned, permit, Arc::clone(&writer)));
    }
    // Answers are bounded by their delay plus SEND_TIMEOUT.
    while answers.join_next().await.is_some() {}
}

async fn read_frame(reader: &mut tokio::net::tcp::OwnedReadHalf) -> std::io::Result<Vec<u8>> {
    let len = reader.read_u16().await?;
    let mut packet = vec![0u8; usize::from(len)];
    reader.read_exact(&mut packet).await?;
    Ok(packet)
}

async fn tcp_answer(planned: Planned, _permit: OwnedSemaphorePermit, writer: Arc<tokio::sync::Mutex<OwnedWriteHalf>>) {
    tokio::time::sleep(planned.delay).await;
    let Some(bytes) = encode(&planned.response, usize::from(u16::MAX)) else {
        return;
    };
    let Ok(len) = u16::try_from(bytes.len()) else {
        return;
    };
    let mut frame = Vec::with_capacity(bytes.len() + 2);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&bytes);
    let _ = timeout(SEND_TIMEOUT, async { writer.lock().await.write_all(&frame).await }).await;
}

/// A [`DnsServer`] running on its own runtime in a background thread, for
/// synchronous tests. Stops on [`DnsHandle::stop`] or on drop.
pub struct DnsHandle {
    addr: SocketAddr,
    log: QueryLog,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl fmt::Debug for DnsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsHandle")
            .field("addr", &self.addr)
            .field("queries", &self.queries())
            .finish_non_exhaustive()
    }
}

/// Starts a [`DnsServer`] on a new current-thread tokio runtime in a
/// background thread, and returns once it is ready (or failed to start).
///
/// May be called from anywhere, inside a tokio runtime or not.
pub fn spawn_dns_in_thread(records: Vec<DnsRecord>) -> anyhow::Result<DnsHandle> {
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<anyhow::Result<(SocketAddr, QueryLog)>>(1);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("wsgate-testbed-dns".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = ready_tx.send(Err(anyhow::Error::new(e).context("building the tokio runtime")));
                    return;
                }
            };
            runtime.block_on(async move {
                let server = match DnsServer::start(records).await {
                    Ok(server) => server,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                if ready_tx.send(Ok((server.addr, Arc::clone(&server.log)))).is_ok() {
                    // A stop request or the handle being dropped ends the wait.
                    let _ = stop_rx.await;
                }
                server.shutdown().await;
            });
        })
        .context("spawning the DNS server thread")?;

    match ready_rx.recv() {
        Ok(Ok((addr, log))) => Ok(DnsHandle {
            addr,
            log,
            stop: Some(stop_tx),
            thread: Some(thread),
        }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            anyhow::bail!("the DNS server thread exited before it was ready")
        }
    }
}

impl DnsHandle {
    /// See [`DnsServer::addr`].
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// See [`DnsServer::queries`].
    pub fn queries(&self) -> Vec<(String, &'static str)> {
        snapshot(&self.log)
    }

    /// Shuts the server down and waits for its thread to end.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for DnsHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
