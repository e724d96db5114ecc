//! End to end: the healthy path has no delayed-ACK stall. Against a server
//! with Nagle's algorithm on that sends TLS 1.3 session tickets after the
//! handshake (the testbed's `nagle-tickets`), a client that sends its
//! upgrade request right behind its Finished and then delays its ACKs makes
//! the server's `101` wait 40 ms or more for the tickets' ACK. wsgate keeps
//! its ACKs quick once its first flight is out, so the `101` goes at once.
//!
//! What is asserted is not a speed: Linux never delays an ACK by less than
//! 40 ms (TCP_ATO_MIN; its timer may fire a tick early), so a `101` held
//! for under half of that was not held by a delayed ACK. The testbed's own
//! tests show that a client without quick ACKs does get held (the control),
//! and these tests fail when the host does not set `TCP_QUICKACK`.

#![cfg(target_os = "linux")]

mod common;

use common::*;
use std::time::Duration;

/// Half of Linux's shortest delayed ACK (40 ms): a hold this long or
/// longer is a delayed ACK's; a `101` that goes at once waits microseconds.
const DELAYED_ACK: Duration = Duration::from_millis(20);

/// Tries per case: only a wsgate stalled for 20 ms between writing its
/// request and its next system call could be held without the bug, and
/// that is what a very busy machine can do once, not three times in a row.
const TRIES: usize = 3;

/// Runs echo-client by name against both families with `extra` flags and
/// returns the holds the testbed recorded for each family during the run.
fn one_run(tb: &TestbedHandle, extra: &[&str]) -> (Vec<Duration>, Vec<Duration>) {
    let before = tb.response_holds();
    let mut args = run_args("echo-client");
    args.extend(["--ca-cert".into(), tb.ca_path().unwrap().display().to_string()]);
    args.extend(["--resolve".into(), format!("wsgate.test:{}:[::1],127.0.0.1", tb.port())]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(["--".into(), format!("wss://wsgate.test:{}/", tb.port()), "ping".into()]);
    let run = wsgate(args);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.lines(), ["ping"], "{run:?}");
    // The testbed records a hold once the 101 has left, which is before the
    // echo came back: the run's holds are all in by now.
    let after = tb.response_holds();
    (
        after.v6[before.v6.len()..].to_vec(),
        after.v4[before.v4.len()..].to_vec(),
    )
}

/// Runs until a run's `101`s were all sent without a delayed ACK's wait, at
/// most [`TRIES`] times; `expect` says how many `101`s a run sends per
/// family.
fn assert_never_held(extra: &[&str], expect: (usize, usize)) {
    let tb = testbed(Behaviour::NagleTickets, Behaviour::NagleTickets, true);
    let mut runs = Vec::new();
    for _ in 0..TRIES {
        let (v6, v4) = one_run(&tb, extra);
        assert_eq!((v6.len(), v4.len()), expect, "101s per family in one run");
        let quick = v6.iter().chain(&v4).all(|h| *h < DELAYED_ACK);
        runs.push((v6, v4));
        if quick {
            return;
        }
    }
    panic!("a 101 waited for a delayed ACK in every run ({extra:?}): {runs:?}");
}

#[test]
fn the_101_is_not_held_for_a_delayed_ack_at_the_default_commit() {
    // `wss://` commits after TLS; the host writes the upgrade request as
    // the first flight on the winner (IPv6) alone.
    assert_never_held(&[], (1, 0));
}

#[test]
fn the_101_is_not_held_for_a_delayed_ack_when_committing_at_the_response() {
    // The attempt itself writes the request and reads the response head
    // before the race commits. IPv6's 101 comes long before IPv4 would
    // start (one Connection Attempt Delay later), so IPv4 never does.
    assert_never_held(&["--cancel-after", "response"], (1, 0));
}
