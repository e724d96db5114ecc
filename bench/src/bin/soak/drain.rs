//! The drain: sessions in traffic when every gateway gets SIGTERM.
//!
//! By the drain contract each session's plugin is told, the SDK sends the
//! client Close 1001, ws-proxy passes the close on to the upstream, and
//! each gateway exits 0 after one `wsgate: drained: N sessions ended by
//! themselves, M cut` line. What a client had acknowledged (got the echo
//! of) when the drain began must have reached the upstream.

use super::driver::{Session, Traffic};
use super::faults::Tally;
use super::gateway::Gateway;
use super::report::{Report, describe};
use super::upstream::{End, Upstream};
use super::{Soak, open_many, progress, some, wait_finished};
use anyhow::Context;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Sessions in traffic, SIGTERM to every gateway: Close 1001 to each, no
/// message acknowledged before lost, exit 0 with a `drained:` line.
pub(crate) async fn drain(
    cli: &Soak,
    report: &mut Report,
    gateways: &mut [Gateway],
    up: &mut Upstream,
    ids: std::ops::Range<u32>,
    deadline: Instant,
) -> anyhow::Result<()> {
    let traffic = Arc::new(Traffic {
        interval: Duration::from_millis(cli.drain_interval_ms),
        latencies_us: Mutex::new(Vec::new()),
        deadline,
    });
    let (sessions, failed) = open_many(ids, gateways, &traffic, "drain").await;
    if !failed.is_empty() {
        report.check("drain: sessions open", false, describe(&failed));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    // What each client had acknowledged (echoed) when the drain began.
    let acked: Vec<u64> = sessions.iter().map(|s| s.record().echoed).collect();
    progress(format!(
        "drain: SIGTERM to the gateways, {} sessions in traffic",
        sessions.len()
    ));
    for g in gateways.iter() {
        g.terminate();
    }
    let bound = Duration::from_secs(cli.drain_timeout.unwrap_or(30) + 30);
    let all: Vec<&Session> = sessions.iter().collect();
    let ended = wait_finished(&all, bound).await;
    let mut exits = Vec::new();
    for g in gateways.iter_mut() {
        let status = g.wait_exit(bound).await;
        let lines = g.lines_with("drained:");
        exits.push((g.index, status, lines));
    }
    report.check(
        "drain: every session ended",
        ended,
        format!("{} sessions", sessions.len()),
    );
    let report_up = up.report().await.context("the upstream's report after the drain")?;
    let mut ends = Tally::new();
    let mut up_ends = Tally::new();
    let mut lost = Vec::new();
    let mut bad = Vec::new();
    for (s, &acked) in sessions.iter().zip(&acked) {
        let r = s.record();
        *ends.entry(r.end.to_string()).or_default() += 1;
        let u = report_up.sessions.get(&s.id);
        *up_ends
            .entry(format!("upstream: {}", u.map_or(End::Open, |u| u.end)))
            .or_default() += 1;
        let got = u.map_or(0, |u| u.messages);
        if got < acked {
            lost.push(s.id);
        }
        if r.bad > 0 || u.is_some_and(|u| u.duplicates > 0 || u.gaps > 0) || r.echoed > got || got > r.sent {
            bad.push(s.id);
        }
    }
    let close_1001 = ends.get("Close 1001").copied().unwrap_or(0);
    report.check(
        "drain: every client got Close 1001",
        close_1001 == sessions.len() as u64,
        describe(&ends),
    );
    // ws-proxy passes the client's side's Close on to the upstream.
    let up_closed: u64 = up_ends
        .iter()
        .filter(|(k, _)| k.starts_with("upstream: Close"))
        .map(|(_, n)| n)
        .sum();
    report.check(
        "drain: the upstream got a Close on every session",
        up_closed == sessions.len() as u64,
        describe(&up_ends),
    );
    report.check(
        "drain: no message acknowledged before the drain lost",
        lost.is_empty(),
        if lost.is_empty() {
            format!("{} acknowledged before it", acked.iter().sum::<u64>())
        } else {
            format!("lost in sessions {}", some(&lost))
        },
    );
    report.check(
        "drain: none duplicated, none out of order, both ends alike",
        bad.is_empty(),
        if bad.is_empty() {
            "none".into()
        } else {
            format!("sessions {}", some(&bad))
        },
    );
    let mut said = Vec::new();
    for (i, status, lines) in &exits {
        // `wsgate: drained: N sessions ended by themselves, M cut`: all of
        // its sessions, none cut (ws-proxy and the upstream close at once).
        let dealt = sessions.iter().filter(|s| s.id as usize % gateways.len() == *i).count() as u64;
        let counts = lines.first().and_then(|l| {
            let rest = l.split("drained: ").nth(1)?;
            let n: u64 = rest.split_whitespace().next()?.parse().ok()?;
            let m: u64 = rest.split(", ").nth(1)?.split_whitespace().next()?.parse().ok()?;
            Some((n, m))
        });
        let ok = status.is_some_and(|s| s.success()) && lines.len() == 1 && counts == Some((dealt, 0));
        report.check(
            format!("drain: gateway {i} exits 0 with one `drained: {dealt} sessions ended by themselves, 0 cut` line"),
            ok,
            format!(
                "{}; {}",
                status.map_or("still running".into(), |s| s.to_string()),
                if lines.is_empty() {
                    "no drained: line".into()
                } else {
                    lines.join(" / ")
                }
            ),
        );
        said.extend(lines.iter().cloned());
    }
    report.fault(
        "drain (SIGTERM mid-traffic)",
        sessions.len() as u64,
        format!(
            "client: {}; {}; {}",
            describe(&ends),
            describe(&up_ends),
            if said.is_empty() {
                "no drained: line".into()
            } else {
                said.join(" / ")
            }
        ),
    );
    Ok(())
}
