//! The gateway's request-head reader on arbitrary bytes: whatever a client
//! sends, parsing returns a head, "more", or an error with a status, never
//! a panic, and a head's accessors (host, path) work on what it returns.
//!
//! The reader's module is compiled in here by path, rather than through the
//! wsgate-host crate, so that the fuzz build does not build wasmtime with
//! the sanitizer: the module depends on std, tokio and httparse only.
#![no_main]

#[allow(dead_code)]
#[path = "../../src/serve/head.rs"]
mod head;

use libfuzzer_sys::fuzz_target;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    match head::parse(data) {
        Ok(Some((head, used))) => {
            assert!(used <= data.len());
            let _ = head.host();
            let path = head.path();
            assert!(head.target.contains(path) || path == "/");
        }
        Ok(None) => {}
        Err(e) => {
            let _ = e.status();
        }
    }
    // The same bytes through the bounded reader, in one go, with a bound
    // below and above their length.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    for bound in [data.len() / 2 + 1, data.len() + 1] {
        let mut reader = data;
        let _ = runtime.block_on(head::read_head(&mut reader, bound, Duration::from_secs(1)));
    }
});
