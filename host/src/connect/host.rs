//! The host side of `wsgate:connect/types`: the trait impls that
//! `bindgen!` asks for.

use super::bindings::types::{self, AttemptStage as WitStage, ConnectError as WitError, ConnectOptions};
use super::stream::{ReadStream, WriteStream};
use super::{ConnectConfig, ConnectCtxView, Connection, OpenSlot, task};
use crate::frames::Start;
use crate::host_name::{HostName, HostNameError};
use crate::metrics::{ConnectOutcome, Counting, Direction, Step};
use crate::race::Replay;
use crate::race::{AttemptStage, CommitStage, Committed, ConnectError, NetDialer, Race, Target, Transport};
use crate::report::RaceLog;
use crate::tls::TlsClient;
use std::time::Duration;
use tokio::time::Instant;
use wasmtime::component::Resource;
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream};

impl types::Host for ConnectCtxView<'_> {
    async fn connect(
        &mut self,
        host: String,
        port: u16,
        options: ConnectOptions,
    ) -> wasmtime::Result<Result<Resource<Connection>, WitError>> {
        let slot = match self.ctx.admit() {
            Ok(slot) => slot,
            Err((kind, why)) => {
                if let Some(metrics) = self.ctx.config.metrics() {
                    metrics.before_race(ConnectOutcome::Limited);
                    metrics.limit_hit(kind);
                }
                return Ok(Err(WitError::Limited(why)));
            }
        };
        let config = self.ctx.config.clone();
        match task::beside(move || open(config, host, port, options, slot)).await? {
            Ok(connection) => Ok(Ok(self.table.push(connection)?)),
            Err(e) => Ok(Err(e.into())),
        }
    }
}

impl types::HostConnection for ConnectCtxView<'_> {
    async fn input(
        &mut self,
        this: Resource<Connection>,
    ) -> wasmtime::Result<Result<Resource<DynInputStream>, WitError>> {
        let connection = self.table.get_mut(&this)?;
        let Some(reader) = connection.reader.take() else {
            return Ok(Err(WitError::Invalid("the input stream was already taken".into())));
        };
        let counting = self
            .ctx
            .config
            .meter(Direction::FromUpstream)
            .map(|m| Counting::new(m, Start::Response));
        let stream: DynInputStream = Box::new(ReadStream::new(reader).counted(counting));
        Ok(Ok(self.table.push_child(stream, &this)?))
    }

    async fn output(
        &mut self,
        this: Resource<Connection>,
    ) -> wasmtime::Result<Result<Resource<DynOutputStream>, WitError>> {
        let connection = self.table.get_mut(&this)?;
        let Some(writer) = connection.writer.take() else {
            return Ok(Err(WitError::Invalid("the output stream was already taken".into())));
        };
        // The race wrote the first flight (the upgrade request, as a rule):
        // the plugin's bytes follow it. Its bytes were counted when the
        // connection was made.
        let counting = self.ctx.config.meter(Direction::ToUpstream).map(|m| {
            let mut counting = Counting::new(m, Start::Request);
            if let Some(flight) = &connection.race.target().first_flight {
                counting.follow(flight);
            }
            counting
        });
        let stream: DynOutputStream = Box::new(WriteStream::new(self.ctx.stream_buffer, writer).counted(counting));
        Ok(Ok(self.table.push_child(stream, &this)?))
    }

    async fn peer(&mut self, this: Resource<Connection>) -> wasmtime::Result<String> {
        Ok(self.table.get(&this)?.peer.to_string())
    }

    async fn report(&mut self, this: Resource<Connection>) -> wasmtime::Result<Vec<types::RaceEvent>> {
        let events = self.table.get(&this)?.race.log().events();
        Ok(events
            .iter()
            .map(|e| types::RaceEvent {
                event: e.event.as_str().to_owned(),
                t_ms: e.t_ms,
                addr: e.addr.map(|a| a.to_string()),
                detail: e.stage.map(str::to_owned).or_else(|| e.detail.clone()),
            })
            .collect())
    }

    async fn fallback(
        &mut self,
        this: Resource<Connection>,
    ) -> wasmtime::Result<Result<Resource<Connection>, WitError>> {
        // Deleting fails while the plugin still holds the streams: it must
        // let go of them before it gives the connection up. That is a bug in
        // the plugin, and traps.
        let Connection {
            peer,
            reader,
            writer,
            mut race,
            reported,
            _slot: slot,
        } = self.table.delete(this)?;
        // Close the abandoned path before trying the next one.
        drop((reader, writer));
        let config = self.ctx.config.clone();
        // A fallback is a new wait for the plugin: it gets the full time.
        let deadline = Instant::now() + config.inner.connect_timeout;
        let (race, outcome) = task::beside(move || async move {
            let outcome = race.fallback(peer, deadline).await;
            (race, outcome)
        })
        .await?;
        let reported = report(&config, Step::Fallback, &race, reported, &outcome);
        match outcome {
            Ok(committed) => {
                let mut connection = connection(&config, race, committed, slot);
                connection.reported = reported;
                Ok(Ok(self.table.push(connection)?))
            }
            Err(e) => Ok(Err(e.into())),
        }
    }

    async fn drop(&mut self, this: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

/// A connect, from the plugin's request to a committed [`Connection`],
/// its outcome reported to the metrics.
async fn open(
    config: ConnectConfig,
    host: String,
    port: u16,
    options: ConnectOptions,
    slot: OpenSlot,
) -> Result<Connection, ConnectError> {
    let (mut race, deadline) = match prepare(&config, host, port, options).await {
        Ok(prepared) => prepared,
        Err(e) => {
            if let Some(metrics) = config.metrics() {
                metrics.before_race(ConnectOutcome::of_error(&e));
            }
            return Err(e);
        }
    };
    let outcome = race.next(deadline).await;
    let reported = report(&config, Step::Connect, &race, 0, &outcome);
    let mut connection = connection(&config, race, outcome?, slot);
    connection.reported = reported;
    Ok(connection)
}

/// Reports a race's `step` that ended with `outcome` to the metrics: the
/// race's events from the `from`th on. How many events it has now.
fn report<T>(config: &ConnectConfig, step: Step, race: &Race, from: usize, outcome: &Result<T, ConnectError>) -> usize {
    let log = race.log();
    let events = log.events();
    if let Some(metrics) = config.metrics() {
        let own = events.get(from..).unwrap_or_default();
        metrics.race(step, own, log.elapsed(), ConnectOutcome::of(outcome));
    }
    events.len()
}

/// A connect up to its race: the host's spelling, the policy on the name,
/// the options, DNS; the race ready to run, and its deadline.
async fn prepare(
    config: &ConnectConfig,
    host: String,
    port: u16,
    options: ConnectOptions,
) -> Result<(Race, Instant), ConnectError> {
    let started = Instant::now();
    // One spelling of the host for everything that follows (the policy,
    // `--resolve` entries, DNS, the family memory, TLS): `Example.COM.`
    // must not miss an operator's pin for `example.com`, nor `127.0.0.1.`
    // be looked up as a name.
    let host: HostName = host
        .parse()
        .map_err(|e: HostNameError| ConnectError::Invalid(e.to_string()))?;
    if port == 0 {
        return Err(ConnectError::Invalid("port 0".into()));
    }
    // Before DNS, on the name and port: a name the operator did not allow
    // is not even looked up.
    config
        .policy
        .check_name(host.as_str(), port)
        .map_err(|denied| ConnectError::Denied(denied.to_string()))?;
    let mut timeout = config.inner.connect_timeout;
    if let Some(ms) = options.timeout_ms {
        if ms == 0 {
            return Err(ConnectError::Invalid("timeout-ms 0".into()));
        }
        timeout = timeout.min(Duration::from_millis(ms.into()));
    }
    let deadline = started + timeout;

    let tls = match &options.tls {
        None => None,
        Some(tls) => {
            check_alpn(&tls.alpn)?;
            let name = TlsClient::server_name(&host).map_err(ConnectError::Invalid)?;
            Some((config.inner.tls.clone(), tls.alpn.clone(), name))
        }
    };
    // The operator's stage, by default after TLS for TLS targets (a path
    // whose TLS stalls must not win) and after TCP otherwise. A plugin may
    // ask for an earlier one, never a later one.
    let default = if tls.is_some() {
        CommitStage::Tls
    } else {
        CommitStage::Tcp
    };
    let allowed = config.inner.cancel_after.unwrap_or(default);
    let requested = options.cancel_after.map(|s| match s {
        types::CommitStage::Tcp => CommitStage::Tcp,
        types::CommitStage::Tls => CommitStage::Tls,
        types::CommitStage::Response => CommitStage::Response,
    });
    let commit_at = requested.map_or(allowed, |r| r.min(allowed));
    let target = Target {
        host,
        port,
        tls: tls.is_some(),
        first_flight: options.first_flight,
        commit: commit_at,
    };

    let log = RaceLog::new(config.next_connect_id(), config.inner.race_log.clone()).in_session(config.session_number());
    let (lookups, _source) = tokio::time::timeout_at(deadline, config.inner.resolver.lookups(&target.host, port))
        .await
        .map_err(|_| ConnectError::Timeout)?
        .map_err(|e| ConnectError::Dns(e.to_string()))?;
    // The history belongs to the network it was learned on (draft §5.3).
    let inner = &config.inner;
    let network = inner.network.current();
    inner.history.observe_network(network);
    let snapshot = inner.network.snapshot();
    let ipv4 = snapshot.has_ipv4_connectivity();
    let nat64 = inner
        .pref64
        .for_network(network, ipv4, || inner.resolver.aaaa(crate::nat64::IPV4ONLY_ARPA))
        .await;
    // After DNS, the policy again, on every address.
    let check = config.policy.clone();
    let mut race = Race::new(
        inner.race,
        target,
        NetDialer::new(tls),
        lookups,
        check,
        inner.history.clone(),
        log,
    );
    if let Some((nat64, synthesize)) = nat64 {
        race = race.with_nat64(nat64, synthesize);
    }
    if ipv4 && !snapshot.has_ipv6_connectivity() {
        race = race.prefer_ipv4();
    }
    Ok((race, deadline))
}

/// Wraps a committed stream for the plugin, keeping the race for
/// `report()` and `fallback()`.
fn connection(config: &ConnectConfig, race: Race, committed: Committed<Transport>, slot: OpenSlot) -> Connection {
    if let Some(summary) = &config.inner.summary {
        let log = race.log();
        let attempts = race.attempts_started();
        summary.write_line(&format!(
            "wsgate: connect #{} to {}:{} won by {} (committed at {}{}) in {:.1} ms, {} attempt{}",
            log.connect_id(),
            race.target().host,
            race.target().port,
            committed.peer,
            race.target().commit,
            race.tcp_rtt(committed.peer).map_or_else(String::new, |rtt| format!(
                ", TCP RTT {:.1} ms",
                rtt.as_secs_f64() * 1000.0
            )),
            log.elapsed().as_secs_f64() * 1000.0,
            attempts,
            if attempts == 1 { "" } else { "s" },
        ));
    }
    // The first flight went out on this connection (under `response`, on
    // the others too; those bytes are the race's, not the connection's).
    if let (Some(flight), Some(meter)) = (&race.target().first_flight, config.meter(Direction::ToUpstream)) {
        meter.bytes(flight.len());
    }
    if let Some(session) = config.session() {
        session.committed(committed.peer, race.target().commit);
    }
    let (reader, writer) = tokio::io::split(committed.stream);
    Connection {
        peer: committed.peer,
        reader: Some(Replay::new(committed.prefix, reader)),
        writer: Some(writer),
        race,
        reported: 0,
        _slot: slot,
    }
}

/// ALPN protocol names as TLS carries them: each 1 to 255 bytes, the list
/// at most 65535 bytes on the wire (RFC 7301 §3.1).
fn check_alpn(alpn: &[String]) -> Result<(), ConnectError> {
    if let Some(bad) = alpn.iter().find(|p| p.is_empty() || p.len() > 255) {
        return Err(ConnectError::Invalid(format!(
            "ALPN protocol name of {} bytes (1 to 255 allowed)",
            bad.len()
        )));
    }
    if alpn.iter().map(|p| p.len() + 1).sum::<usize>() > 65535 {
        return Err(ConnectError::Invalid("ALPN list longer than 65535 bytes".into()));
    }
    Ok(())
}

impl From<ConnectError> for WitError {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::Denied(rule) => WitError::Denied(rule),
            ConnectError::Dns(e) => WitError::Dns(e),
            ConnectError::AllAttemptsFailed(failures) => WitError::AllAttemptsFailed(
                failures
                    .into_iter()
                    .map(|f| types::AttemptFailure {
                        address: f.addr.to_string(),
                        stage: match f.stage {
                            AttemptStage::Started => WitStage::Started,
                            AttemptStage::Tcp => WitStage::Tcp,
                            AttemptStage::Tls => WitStage::Tls,
                            AttemptStage::FirstFlight => WitStage::FirstFlight,
                            AttemptStage::Response => WitStage::Response,
                        },
                        error: f.error.to_string(),
                    })
                    .collect(),
            ),
            ConnectError::Timeout => WitError::Timeout,
            ConnectError::Tls(e) => WitError::Tls(e),
            ConnectError::Invalid(e) => WitError::Invalid(e),
        }
    }
}
