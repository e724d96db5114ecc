//! HTTPS records on arbitrary bytes: whatever a DNS server sends, hickory
//! decodes it or refuses it, and what it decodes converts to services (or
//! is skipped with a note) and sorts, never a panic.
//!
//! The bytes are tried two ways: as the RDATA of one HTTPS record, and as
//! a whole DNS message whose HTTPS answers are taken as one RRset. The
//! conversion module is compiled in by path, with the host-name module it
//! depends on, so that the fuzz build does not build the host crate.
#![no_main]

#[allow(dead_code)]
#[path = "../../src/host_name.rs"]
mod host_name;

#[allow(dead_code)]
#[path = "../../src/resolve/service.rs"]
mod service;

use hickory_resolver::proto::op::Message;
use hickory_resolver::proto::rr::rdata::svcb::SVCB;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::proto::serialize::binary::{BinDecoder, Restrict};
use host_name::HostName;
use libfuzzer_sys::fuzz_target;
use service::{RecordSet, read_set, sort_services};

fuzz_target!(|data: &[u8]| {
    let owner: HostName = "origin.test".parse().unwrap();
    let seed = data.iter().fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(*b));

    // One record's RDATA.
    if let Ok(len) = u16::try_from(data.len()) {
        let mut decoder = BinDecoder::new(data);
        if let Ok(RData::HTTPS(https)) = RData::read(&mut decoder, RecordType::HTTPS, Restrict::new(len)) {
            check(&owner, &[https.0], seed);
        }
    }

    // A whole message.
    if let Ok(message) = Message::from_vec(data) {
        let records: Vec<SVCB> = message
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::HTTPS(https) => Some(https.0.clone()),
                RData::SVCB(svcb) => Some(svcb.clone()),
                _ => None,
            })
            .collect();
        check(&owner, &records, seed);
    }
});

fn check(owner: &HostName, records: &[SVCB], seed: u64) {
    let (set, _notes) = read_set(owner, records.iter(), seed);
    match set {
        RecordSet::Alias(target) => assert!(target.is_name()),
        RecordSet::Services(mut services) => {
            assert!(services.len() <= records.len());
            sort_services(&mut services, seed);
            assert!(services.windows(2).all(|w| w[0].priority <= w[1].priority));
            for service in &services {
                assert_ne!(service.priority, 0);
                assert!(service.target.is_name());
                assert_ne!(service.port, Some(0));
                assert!(service.addresses.is_none());
                let _ = service.speaks_http1();
            }
        }
    }
}
