//! Medians, ratios and the table.

use crate::{Client, Row};
use serde::Serialize;
use std::fmt::Write as _;
use std::time::Duration;

/// One line of the table, as `--json` also writes it.
#[derive(Serialize, Debug)]
pub struct Line {
    scenario: &'static str,
    client: Client,
    row: String,
    ok: usize,
    failed: usize,
    stalled: usize,
    skipped: u32,
    not_run: Option<String>,
    commit_ms_median: Option<f64>,
    echo_ms_median: Option<f64>,
    echo_ms_p90: Option<f64>,
    /// Upgrade requests the testbed received per run, both families.
    upgrades_per_run: Option<f64>,
    /// wsgate rows: this row's median first echo over the peer's.
    ratio_vs_tokio_tungstenite: Option<f64>,
    ratio_vs_hyper_util: Option<f64>,
    #[serde(skip)]
    ratio_cells: [String; 2],
    notes: Vec<String>,
}

/// The "ok" cell of a row: `ok/runs`, or why it did not run.
pub fn ok_cell(row: &Row, runs: u32) -> String {
    match &row.not_run {
        Some(why) => why.clone(),
        None => format!("{}/{}", row.samples.iter().filter(|s| s.ok).count(), runs),
    }
}

pub fn median(values: &mut [f64]) -> Option<f64> {
    quantile(values, 0.5)
}

/// The `q` quantile by linear interpolation between the closest ranks.
pub fn quantile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let pos = q * (values.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    Some(values[lo] + (values[hi] - values[lo]) * (pos - lo as f64))
}

pub fn summarise(table: &[(&'static str, Vec<Row>)], timeout: Duration) -> Vec<Line> {
    let mut lines = Vec::new();
    for (scenario, rows) in table {
        let echo_median = |row: &Row| {
            let mut v: Vec<f64> = row.samples.iter().filter(|s| s.ok).filter_map(|s| s.echo_ms).collect();
            median(&mut v)
        };
        let peer = |client: Client| rows.iter().find(|r| r.client == client);
        for row in rows {
            let ok: Vec<_> = row.samples.iter().filter(|s| s.ok).collect();
            let stalled = row.samples.iter().filter(|s| s.stalled).count();
            let failed = row.samples.len() - ok.len();
            let mut commits: Vec<f64> = ok.iter().filter_map(|s| s.commit_ms).collect();
            let mut echoes: Vec<f64> = ok.iter().filter_map(|s| s.echo_ms).collect();
            let upgrades = (!row.samples.is_empty()).then(|| {
                row.samples
                    .iter()
                    .map(|s| (s.upgrades_v6 + s.upgrades_v4) as f64)
                    .sum::<f64>()
                    / row.samples.len() as f64
            });
            let mut notes = Vec::new();
            if let Some(note) = &row.note {
                notes.push(note.clone());
            }
            if stalled > 0 {
                notes.push(format!("{stalled} stalled (no echo in {} s)", timeout.as_secs_f64()));
            }
            if failed > stalled {
                let first = row
                    .samples
                    .iter()
                    .find(|s| !s.ok && !s.stalled)
                    .and_then(|s| s.error.clone());
                notes.push(format!(
                    "{} failed: {}",
                    failed - stalled,
                    shorten(&first.unwrap_or_default(), 90)
                ));
            }
            if row.skipped > 0 {
                notes.push(format!(
                    "{} runs skipped after {} stalls in a row",
                    row.skipped, row.consecutive_stalls
                ));
            }
            if row.client == Client::Wsgate {
                let flights: Vec<u64> = ok.iter().filter_map(|s| s.first_flights).collect();
                if flights.iter().any(|&f| f != 1) {
                    notes.push(format!(
                        "first flights per run: {}..{}",
                        flights.iter().min().unwrap(),
                        flights.iter().max().unwrap()
                    ));
                }
            }
            let mut peers_seen: Vec<&str> = ok.iter().filter_map(|s| s.peer.as_deref()).map(family).collect();
            peers_seen.sort_unstable();
            peers_seen.dedup();
            if !peers_seen.is_empty() {
                notes.push(format!("via {}", peers_seen.join("+")));
            }

            let mine = echo_median(row);
            let mut ratios = [None, None];
            let mut ratio_cells = [String::new(), String::new()];
            if row.client == Client::Wsgate {
                for (i, client) in [Client::TokioTungstenite, Client::HyperUtil].into_iter().enumerate() {
                    let Some(peer_row) = peer(client) else {
                        ratio_cells[i] = "—".into();
                        continue;
                    };
                    let peer_stalled_always =
                        !peer_row.samples.is_empty() && peer_row.samples.iter().all(|s| s.stalled);
                    ratio_cells[i] = match (mine, echo_median(peer_row)) {
                        (Some(a), Some(b)) if b > 0.0 => {
                            ratios[i] = Some(a / b);
                            format!("{:.2}", a / b)
                        }
                        (None, _) => "—".into(),
                        // The peer never echoed within the bound: its time
                        // is above it, so the ratio is below this.
                        (Some(a), _) if peer_stalled_always => {
                            format!("< {:.2} (peer stalls)", a / (timeout.as_secs_f64() * 1000.0))
                        }
                        (Some(_), _) => "peer failed".into(),
                    };
                }
            }
            lines.push(Line {
                scenario,
                client: row.client,
                row: row.label.clone(),
                ok: ok.len(),
                failed,
                stalled,
                skipped: row.skipped,
                not_run: row.not_run.clone(),
                commit_ms_median: median(&mut commits),
                echo_ms_median: median(&mut echoes),
                echo_ms_p90: quantile(&mut echoes, 0.9),
                upgrades_per_run: upgrades,
                ratio_vs_tokio_tungstenite: ratios[0],
                ratio_vs_hyper_util: ratios[1],
                ratio_cells,
                notes,
            });
        }
    }
    lines
}

/// The table, as Markdown.
pub fn render(lines: &[Line], runs: u32, timeout: Duration, took: Duration) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{runs} runs per row, interleaved; medians over the successful runs; a run is bounded by {} s. Took {:.0} s.\n",
        timeout.as_secs_f64(),
        took.as_secs_f64()
    );
    out.push_str("| scenario | client | ok | commit ms (median) | first echo ms (median) | first echo ms (p90) | upgrades/run | wsgate ÷ tokio-tungstenite | wsgate ÷ hyper-util | notes |\n");
    out.push_str("|---|---|---|---:|---:|---:|---:|---:|---:|---|\n");
    let num = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), |v| format!("{v:.1}"));
    for line in lines {
        let ok = match &line.not_run {
            Some(why) => why.clone(),
            None => format!("{}/{runs}", line.ok),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            line.scenario,
            line.row,
            ok,
            num(line.commit_ms_median),
            num(line.echo_ms_median),
            num(line.echo_ms_p90),
            line.upgrades_per_run
                .map_or_else(|| "—".to_owned(), |v| format!("{v:.2}")),
            line.ratio_cells[0],
            line.ratio_cells[1],
            line.notes.join("; "),
        );
    }
    out
}

fn family(peer: &str) -> &'static str {
    if peer.starts_with('[') { "v6" } else { "v4" }
}

fn shorten(s: &str, max: usize) -> String {
    let s = s.replace('|', "/");
    if s.chars().count() <= max {
        return s;
    }
    let cut: String = s.chars().take(max).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_quantile() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0]), Some(3.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(quantile(&mut [1.0, 2.0, 3.0, 4.0, 5.0], 0.9), Some(4.6));
    }
}
