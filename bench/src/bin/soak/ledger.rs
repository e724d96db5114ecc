//! Both ends' counts, session by session: what each client sent and got
//! back against what the upstream received.

use super::driver::{ClientEnd, Session};
use super::faults::Tally;
use super::upstream::{End, Report};
use std::collections::{BTreeMap, HashMap};

/// The fault a running session was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Its upstream connection was reset.
    Reset,
    /// Its client dropped the connection.
    Vanish,
}

/// Messages sent by clients, echoed back to them, received upstream.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Totals {
    pub(crate) sent: u64,
    pub(crate) echoed: u64,
    pub(crate) upstream: u64,
}

/// What the comparison found.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    /// Each kind of problem, with the sessions that showed it.
    pub(crate) problems: BTreeMap<&'static str, Vec<u32>>,
    /// Sessions without a fault.
    pub(crate) healthy: u64,
    /// All sessions' messages.
    pub(crate) all: Totals,
    /// The unfaulted sessions' alone (a faulted one may lose the echo in
    /// flight when it ends).
    pub(crate) unfaulted: Totals,
    /// How the upstream saw the reset sessions end.
    pub(crate) reset_upstream: Tally,
    /// How the upstream saw the vanished clients' sessions end.
    pub(crate) vanish_upstream: Tally,
}

impl Ledger {
    /// The problems as one line, a few sessions each.
    pub(crate) fn problems_line(&self) -> String {
        self.problems
            .iter()
            .map(|(what, ids)| format!("{what}: sessions {}", super::some(ids)))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Compares every one of `sessions` with the upstream's count of it.
///
/// Every session: no message twice or skipped at the upstream, no echo
/// that was not the message in flight, no more echoes than the upstream
/// got nor more got than sent. Unfaulted ones besides: every message
/// echoed, the client's Close answered 1000 and passed on to the upstream.
/// Vanished ones: the upstream's side closed.
pub(crate) fn compare(sessions: &[Session], faulted: &HashMap<u32, Fault>, upstream: &Report) -> Ledger {
    let mut ledger = Ledger::default();
    for s in sessions {
        let r = s.record();
        let u = upstream.sessions.get(&s.id).copied();
        let got = u.map_or(0, |u| u.messages);
        ledger.all.sent += r.sent;
        ledger.all.echoed += r.echoed;
        ledger.all.upstream += got;
        let mut flag = |what: &'static str, bad: bool| {
            if bad {
                ledger.problems.entry(what).or_default().push(s.id);
            }
        };
        flag(
            "a message duplicated on the way up",
            u.is_some_and(|u| u.duplicates > 0),
        );
        flag("a message lost on the way up (a gap)", u.is_some_and(|u| u.gaps > 0));
        flag("an echo that was not the message in flight", r.bad > 0);
        flag(
            "more echoes than the upstream got, or more got than sent",
            r.echoed > got || got > r.sent,
        );
        match faulted.get(&s.id) {
            None => {
                flag("unfaulted: a message without its echo", r.echoed != r.sent);
                flag(
                    "unfaulted: the client's Close not answered with 1000",
                    r.end != ClientEnd::Close(1000),
                );
                flag(
                    "unfaulted: the upstream did not get Close 1000",
                    r.sent > 0 && u.is_none_or(|u| u.end != End::Close(1000)),
                );
                ledger.healthy += 1;
                ledger.unfaulted.sent += r.sent;
                ledger.unfaulted.echoed += r.echoed;
                ledger.unfaulted.upstream += got;
            }
            Some(Fault::Reset) => {
                *ledger
                    .reset_upstream
                    .entry(format!("upstream: {}", u.map_or(End::Open, |u| u.end)))
                    .or_default() += 1;
            }
            Some(Fault::Vanish) => {
                let label = match u {
                    Some(u) if u.end == End::Open => "upstream: still open".to_owned(),
                    Some(u) => format!("upstream got {}", u.end),
                    None => "upstream: no message of it came".to_owned(),
                };
                flag(
                    "vanished: the upstream's side still open",
                    u.is_none_or(|u| u.end == End::Open),
                );
                *ledger.vanish_upstream.entry(label).or_default() += 1;
            }
        }
    }
    ledger
}
