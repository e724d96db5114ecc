//! What one connect did, read from wsgate's `--race-log` (one JSON line
//! per event) or measured on a peer.

use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// An address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Family {
    #[serde(rename = "ipv6")]
    V6,
    #[serde(rename = "ipv4")]
    V4,
}

impl Family {
    /// The family of `addr`.
    pub fn of(addr: &SocketAddr) -> Family {
        if addr.is_ipv6() { Family::V6 } else { Family::V4 }
    }

    /// The name in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::V6 => "IPv6",
            Family::V4 => "IPv4",
        }
    }

    /// The family a race log names (`ipv6`, `ipv4`).
    fn parse(name: &str) -> Option<Family> {
        match name {
            "ipv6" => Some(Family::V6),
            "ipv4" => Some(Family::V4),
            _ => None,
        }
    }
}

/// One connect, as the table shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Connect {
    /// The family of the first address tried.
    pub first: Option<Family>,
    /// The family of the address committed to.
    pub winner: Option<Family>,
    /// From the start of the connect to the commit (wsgate: its `commit`
    /// event's `t_ms`; the peer: TCP and TLS done), in milliseconds.
    pub commit_ms: Option<f64>,
    /// Attempts started.
    pub attempts: u32,
    /// The Connection Attempt Delay after the first attempt when the race
    /// derived it from the address's round trip (the attempt event's
    /// "next attempt in N ms (from its round trip)"); `None` when it was
    /// the configured one.
    pub derived_delay_ms: Option<u64>,
    /// Why the connect did not commit, if it did not.
    pub error: Option<String>,
}

/// The connects of one race log, in the order of their numbers. Lines that
/// are not events (or not JSON) are skipped; a connect with no `commit`
/// event gets an error saying so (with its last `failed` detail).
pub fn parse(log: &str) -> Vec<Connect> {
    let mut connects: BTreeMap<u64, Connect> = BTreeMap::new();
    let mut failures: BTreeMap<u64, String> = BTreeMap::new();
    for line in log.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(id) = event["connect"].as_u64() else { continue };
        let connect = connects.entry(id).or_default();
        let addr = event["addr"].as_str().and_then(|a| a.parse::<SocketAddr>().ok());
        match event["event"].as_str() {
            Some("attempt") => {
                connect.attempts += 1;
                if connect.attempts == 1 {
                    connect.first = addr.as_ref().map(Family::of);
                    connect.derived_delay_ms = event["detail"].as_str().and_then(derived_delay);
                }
            }
            Some("commit") => {
                connect.commit_ms = event["t_ms"].as_f64();
                connect.winner = event["family"]
                    .as_str()
                    .and_then(Family::parse)
                    .or(addr.as_ref().map(Family::of));
            }
            Some("failed") => {
                if let Some(detail) = event["detail"].as_str() {
                    failures.insert(id, detail.to_owned());
                }
            }
            _ => {}
        }
    }
    connects
        .into_iter()
        .map(|(id, mut connect)| {
            if connect.commit_ms.is_none() {
                connect.error = Some(match failures.remove(&id) {
                    Some(detail) => format!("no commit (last failure: {detail})"),
                    None => "no commit".to_owned(),
                });
            }
            connect
        })
        .collect()
}

/// N from an attempt's detail holding "next attempt in N ms (from its
/// round trip)" (the detail may list other notes, comma-separated).
fn derived_delay(detail: &str) -> Option<u64> {
    detail.split(", ").find_map(|note| {
        note.strip_prefix("next attempt in ")?
            .strip_suffix(" ms (from its round trip)")?
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_gives_each_connect_its_first_family_winner_commit_and_delay() {
        let log = r#"{"connect":1,"event":"resolve","t_ms":0.01,"detail":"[2001:db8::2]:443, 10.0.0.2:443"}
{"connect":1,"event":"attempt","t_ms":0.1,"addr":"[2001:db8::2]:443"}
{"connect":1,"event":"attempt","t_ms":250.2,"addr":"10.0.0.2:443"}
{"connect":1,"event":"tcp","t_ms":250.4,"addr":"10.0.0.2:443"}
{"connect":1,"event":"commit","t_ms":252.5,"addr":"10.0.0.2:443","stage":"tls","family":"ipv4","tcp_rtt_ms":0.2}
{"connect":1,"event":"cancel","t_ms":252.6,"addr":"[2001:db8::2]:443"}
not json
{"connect":2,"event":"attempt","t_ms":0.1,"addr":"10.0.0.2:443","detail":"via 64:ff9b::/96, next attempt in 100 ms (from its round trip)"}
{"connect":2,"event":"commit","t_ms":1.5,"addr":"10.0.0.2:443","stage":"tls","family":"ipv4"}
{"connect":3,"event":"attempt","t_ms":0.1,"addr":"10.0.0.2:443"}
{"connect":3,"event":"failed","t_ms":0.3,"addr":"10.0.0.2:443","detail":"refused"}
"#;
        let connects = parse(log);
        assert_eq!(connects.len(), 3);
        assert_eq!(
            connects[0],
            Connect {
                first: Some(Family::V6),
                winner: Some(Family::V4),
                commit_ms: Some(252.5),
                attempts: 2,
                derived_delay_ms: None,
                error: None,
            }
        );
        assert_eq!(connects[1].first, Some(Family::V4));
        assert_eq!(connects[1].derived_delay_ms, Some(100));
        assert_eq!(connects[1].commit_ms, Some(1.5));
        assert_eq!(connects[2].commit_ms, None);
        assert_eq!(connects[2].error.as_deref(), Some("no commit (last failure: refused)"));
    }

    #[test]
    fn only_the_history_note_is_a_derived_delay() {
        assert_eq!(
            derived_delay("next attempt in 2000 ms (from its round trip)"),
            Some(2000)
        );
        assert_eq!(derived_delay("address hint"), None);
        assert_eq!(derived_delay("next attempt in soon ms (from its round trip)"), None);
    }
}
