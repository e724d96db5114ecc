//! HTTPS records (RFC 9460) as the race uses them: the services a name
//! offers, each with its priority, port, address hints, ALPN set and ECH
//! configuration.
//!
//! The resolver follows AliasMode records itself (with a bound on the
//! chain) and hands the race only ServiceMode records, in priority order.
//!
//! This module is the pure part: from hickory's decoded records to
//! [`Service`]s ([`read_set`], [`service_from`]) and their order
//! ([`sort_services`]). It depends on nothing but [`HostName`] and
//! hickory-proto, so that the fuzz target can compile it on its own.

use crate::host_name::HostName;
use hickory_resolver::proto::rr::Name;
use hickory_resolver::proto::rr::rdata::svcb::{SVCB, SvcParamKey, SvcParamValue};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// The SvcParamKeys this client understands (RFC 9460 §14.3.2): a record
/// whose `mandatory` list names any other is not for us (§8).
const KNOWN_KEYS: [u16; 6] = [
    KEY_ALPN,
    KEY_NO_DEFAULT_ALPN,
    KEY_PORT,
    KEY_IPV4HINT,
    KEY_ECH,
    KEY_IPV6HINT,
];
const KEY_MANDATORY: u16 = 0;
const KEY_ALPN: u16 = 1;
const KEY_NO_DEFAULT_ALPN: u16 = 2;
const KEY_PORT: u16 = 3;
const KEY_IPV4HINT: u16 = 4;
const KEY_ECH: u16 = 5;
const KEY_IPV6HINT: u16 = 6;

/// One ServiceMode HTTPS record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// SvcPriority: lower goes first; never 0 (0 is AliasMode).
    pub priority: u16,
    /// The name whose A and AAAA answers belong to this service (a
    /// TargetName of `.` is the record's owner).
    pub target: HostName,
    /// The `port` parameter: where the service listens instead of the
    /// URL's port.
    pub port: Option<u16>,
    /// The `alpn` parameter, as given.
    pub alpn: Vec<String>,
    /// The `no-default-alpn` parameter: the default protocol (`http/1.1`
    /// for HTTPS records) is not spoken unless `alpn` names it.
    pub no_default_alpn: bool,
    /// The `ipv6hint` and `ipv4hint` parameters, IPv6 first.
    pub hints: Vec<IpAddr>,
    /// The `ech` parameter: an ECHConfigList, as the record carries it.
    pub ech: Option<Arc<[u8]>>,
    /// The target's own A and AAAA answers, when the target is not the
    /// name the connect asked for (the HTTPS lookup resolves them);
    /// `None` when the target is that name, whose answers are the race's
    /// own lookups.
    pub addresses: Option<Vec<IpAddr>>,
}

impl Service {
    /// Whether the service speaks HTTP/1.1, the protocol of the WebSocket
    /// upgrade (RFC 9460 §7.1.2: the SVCB ALPN set is `alpn`, plus
    /// `http/1.1` unless `no-default-alpn`).
    pub fn speaks_http1(&self) -> bool {
        !self.no_default_alpn || self.alpn.iter().any(|p| p == "http/1.1")
    }
}

/// The answer of an HTTPS lookup: the ServiceMode records, sorted by
/// priority (ties shuffled), and what was dropped on the way, in words.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceAnswer {
    /// The services, lowest priority value first.
    pub services: Vec<Service>,
    /// Records or chains that were not used, each with why (an alias
    /// loop, a chain too long, a malformed parameter).
    pub notes: Vec<String>,
}

/// What one name's HTTPS RRset tells the client to do (RFC 9460 §2.4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordSet {
    /// An AliasMode record: the service is `target`'s, whose HTTPS records
    /// are to be asked next.
    Alias(HostName),
    /// The usable ServiceMode records, in the answer's order (none: the
    /// name offers no service this client can use).
    Services(Vec<Service>),
}

/// Reads one name's HTTPS RRset: `owner` is the name the records belong
/// to (what a TargetName of `.` means), `records` the RRset.
///
/// An AliasMode record wins over ServiceMode ones, which are then ignored
/// (§2.4.1); of several AliasMode records, `pick` chooses one (§2.4.2: "at
/// random"; pass a random number). An AliasMode TargetName of `.` says the
/// service does not exist (§2.5.1): that is an empty set. ServiceMode
/// records that cannot be used are left out (see [`service_from`]). Every
/// record left out, and why, is in the notes.
pub fn read_set<'a>(
    owner: &HostName,
    records: impl IntoIterator<Item = &'a SVCB>,
    pick: u64,
) -> (RecordSet, Vec<String>) {
    let mut notes = Vec::new();
    let mut aliases = Vec::new();
    let mut services = Vec::new();
    for record in records {
        if record.svc_priority == 0 {
            aliases.push(record);
        } else {
            services.push(record);
        }
    }
    if !aliases.is_empty() {
        if !services.is_empty() {
            notes.push(format!(
                "{owner}: {} ServiceMode record(s) ignored beside an AliasMode record",
                services.len()
            ));
        }
        // Bounded by the RRset, which is bounded by a DNS message.
        let chosen = aliases[index(pick, aliases.len())];
        if aliases.len() > 1 {
            notes.push(format!(
                "{owner}: {} AliasMode records, following {}",
                aliases.len(),
                Described(owner, chosen)
            ));
        }
        if chosen.target_name.is_root() {
            notes.push(format!(
                "{}: the service is declared unavailable",
                Described(owner, chosen)
            ));
            return (RecordSet::Services(Vec::new()), notes);
        }
        return match host_name(&chosen.target_name) {
            Ok(target) => (RecordSet::Alias(target), notes),
            Err(why) => {
                notes.push(format!("{}: {why}", Described(owner, chosen)));
                (RecordSet::Services(Vec::new()), notes)
            }
        };
    }
    let services = services
        .into_iter()
        .filter_map(|record| match service_from(owner, record, &mut notes) {
            Ok(service) => Some(service),
            Err(why) => {
                notes.push(format!("{}: skipped: {why}", Described(owner, record)));
                None
            }
        })
        .collect();
    (RecordSet::Services(services), notes)
}

/// One ServiceMode record as a [`Service`] (with `addresses: None`), or
/// why the record cannot be used.
///
/// The rules (RFC 9460):
/// - a TargetName of `.` is `owner` (§2.5.2); a TargetName that is not a
///   host name, or reads as an IP literal, is refused;
/// - SvcParamKeys must be strictly increasing (§2.2) and each value of its
///   key's form; `mandatory` must not list itself and must list only keys
///   the record has (§8), and only keys this client understands (`alpn`,
///   `no-default-alpn`, `port`, `ipv4hint`, `ech`, `ipv6hint`): a record
///   needing another is incompatible (§8);
/// - `no-default-alpn` needs `alpn` (§7.1.1); `port` 0 cannot be
///   connected to; an empty hint list is malformed (§7.3);
/// - a hint of the wrong family for its key (including an IPv4-mapped
///   address in `ipv6hint`) is dropped, with a note in `notes`;
/// - `ech` is kept as the bytes the record carries; keys not understood
///   and not mandatory are ignored (§8).
pub fn service_from(owner: &HostName, record: &SVCB, notes: &mut Vec<String>) -> Result<Service, RecordError> {
    if record.svc_priority == 0 {
        return Err(RecordError::AliasMode);
    }
    let target = if record.target_name.is_root() {
        owner.clone()
    } else {
        host_name(&record.target_name).map_err(RecordError::Target)?
    };
    let mut service = Service {
        priority: record.svc_priority,
        target,
        port: None,
        alpn: Vec::new(),
        no_default_alpn: false,
        hints: Vec::new(),
        ech: None,
        addresses: None,
    };
    let mut mandatory: &[SvcParamKey] = &[];
    let mut v4_hints = Vec::new();
    let mut last_key: Option<u16> = None;
    for (key, value) in &record.svc_params {
        let key = u16::from(*key);
        if last_key.is_some_and(|last| last >= key) {
            return Err(RecordError::KeyOrder(key));
        }
        last_key = Some(key);
        match (key, value) {
            (KEY_MANDATORY, SvcParamValue::Mandatory(keys)) => mandatory = &keys.0,
            (KEY_ALPN, SvcParamValue::Alpn(alpn)) => service.alpn.clone_from(&alpn.0),
            (KEY_NO_DEFAULT_ALPN, SvcParamValue::NoDefaultAlpn) => service.no_default_alpn = true,
            (KEY_PORT, SvcParamValue::Port(0)) => return Err(RecordError::PortZero),
            (KEY_PORT, SvcParamValue::Port(port)) => service.port = Some(*port),
            (KEY_IPV4HINT, SvcParamValue::Ipv4Hint(hints)) if hints.0.is_empty() => {
                return Err(RecordError::EmptyHints(key));
            }
            (KEY_IPV4HINT, SvcParamValue::Ipv4Hint(hints)) => {
                v4_hints.extend(hints.0.iter().map(|a| IpAddr::V4(a.0)));
            }
            (KEY_IPV6HINT, SvcParamValue::Ipv6Hint(hints)) if hints.0.is_empty() => {
                return Err(RecordError::EmptyHints(key));
            }
            (KEY_IPV6HINT, SvcParamValue::Ipv6Hint(hints)) => {
                for hint in &hints.0 {
                    // An IPv4 address in IPv6 clothing: ipv4hint is its place.
                    if hint.0.to_ipv4_mapped().is_some() {
                        notes.push(format!(
                            "{}: ipv6hint {} dropped: an IPv4-mapped address",
                            Described(owner, record),
                            hint.0
                        ));
                    } else {
                        service.hints.push(IpAddr::V6(hint.0));
                    }
                }
            }
            (KEY_IPV4HINT, SvcParamValue::Ipv6Hint(_)) | (KEY_IPV6HINT, SvcParamValue::Ipv4Hint(_)) => {
                notes.push(format!(
                    "{}: {} dropped: addresses of the other family",
                    Described(owner, record),
                    KeyName(key)
                ));
            }
            (KEY_ECH, SvcParamValue::EchConfigList(ech)) => service.ech = Some(Arc::from(ech.0.as_slice())),
            (KEY_ECH, SvcParamValue::Unknown(raw)) => service.ech = Some(Arc::from(raw.0.as_slice())),
            (KEY_MANDATORY..=KEY_IPV6HINT, _) => return Err(RecordError::Value(key)),
            // Not understood: ignored, unless mandatory (below).
            _ => {}
        }
    }
    for key in mandatory {
        let key = u16::from(*key);
        if key == KEY_MANDATORY {
            return Err(RecordError::MandatoryLists(key));
        }
        if !record.svc_params.iter().any(|(k, _)| u16::from(*k) == key) {
            return Err(RecordError::MandatoryMissing(key));
        }
        if !KNOWN_KEYS.contains(&key) {
            return Err(RecordError::Unsupported(key));
        }
    }
    if service.no_default_alpn && service.alpn.is_empty() {
        return Err(RecordError::NoAlpn);
    }
    service.hints.extend(v4_hints);
    Ok(service)
}

/// Why a ServiceMode record cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// SvcPriority 0: not a ServiceMode record.
    AliasMode,
    /// The TargetName is not a host name this client can use.
    Target(TargetError),
    /// This key follows one not lower than it (§2.2).
    KeyOrder(u16),
    /// This key's value is not of its form.
    Value(u16),
    /// `port=0`.
    PortZero,
    /// This hint key has no address (§7.3).
    EmptyHints(u16),
    /// `mandatory` lists this key, which it must not (itself, §8).
    MandatoryLists(u16),
    /// `mandatory` lists this key, which the record does not have (§8).
    MandatoryMissing(u16),
    /// `mandatory` lists this key, which this client does not understand.
    Unsupported(u16),
    /// `no-default-alpn` without `alpn` (§7.1.1).
    NoAlpn,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::AliasMode => f.write_str("an AliasMode record"),
            RecordError::Target(why) => why.fmt(f),
            RecordError::KeyOrder(k) => write!(f, "{} out of order", KeyName(*k)),
            RecordError::Value(k) => write!(f, "malformed {}", KeyName(*k)),
            RecordError::PortZero => f.write_str("port 0"),
            RecordError::EmptyHints(k) => write!(f, "empty {}", KeyName(*k)),
            RecordError::MandatoryLists(k) => write!(f, "mandatory lists {}", KeyName(*k)),
            RecordError::MandatoryMissing(k) => write!(f, "mandatory {} absent", KeyName(*k)),
            RecordError::Unsupported(k) => write!(f, "mandatory {} not supported", KeyName(*k)),
            RecordError::NoAlpn => f.write_str("no-default-alpn without alpn"),
        }
    }
}

impl std::error::Error for RecordError {}

/// Why a TargetName cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetError {
    /// Not a name of letters, digits, `-` and `_` (see [`HostName`]).
    NotHostName,
    /// The name reads as an IP literal, which would skip DNS.
    IpLiteral,
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TargetError::NotHostName => "target is not a host name",
            TargetError::IpLiteral => "target reads as an IP literal",
        })
    }
}

impl std::error::Error for TargetError {}

/// A DNS name from a record as a [`HostName`], if it is one.
pub fn host_name(name: &Name) -> Result<HostName, TargetError> {
    let host: HostName = name.to_ascii().parse().map_err(|_| TargetError::NotHostName)?;
    if host.is_name() {
        Ok(host)
    } else {
        Err(TargetError::IpLiteral)
    }
}

/// Sorts `services` by priority, lowest first, shuffling each run of equal
/// priorities (RFC 9460 §2.4.1: "clients SHOULD apply a random shuffle
/// within a priority level"). The same `seed` gives the same order; pass
/// a random one.
pub fn sort_services(services: &mut [Service], seed: u64) {
    services.sort_by_key(|s| s.priority);
    let mut rng = XorShift::new(seed);
    let mut start = 0;
    while start < services.len() {
        let priority = services[start].priority;
        let end = services[start..]
            .iter()
            .position(|s| s.priority != priority)
            .map_or(services.len(), |n| start + n);
        // Fisher-Yates on the run.
        for i in (start + 1..end).rev() {
            let j = start + index(rng.next(), i - start + 1);
            services.swap(i, j);
        }
        start = end;
    }
}

/// `random` reduced to `0..len` (`len` > 0). The bias is negligible for
/// the small lengths of an RRset.
fn index(random: u64, len: usize) -> usize {
    (random % len as u64) as usize
}

/// Marsaglia's xorshift64*: enough to spread ties, and reproducible.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        // The state must not be 0.
        XorShift(if seed == 0 { 0x9E37_79B9_7F4A_7C15 } else { seed })
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// A record in words, for notes: `owner HTTPS priority target`.
struct Described<'a>(&'a HostName, &'a SVCB);

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} HTTPS {} {}", self.0, self.1.svc_priority, self.1.target_name)
    }
}

/// A SvcParamKey's presentation name (RFC 9460 §14.3.2), `keyNNNNN` for
/// others.
struct KeyName(u16);

impl fmt::Display for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            KEY_MANDATORY => f.write_str("mandatory"),
            KEY_ALPN => f.write_str("alpn"),
            KEY_NO_DEFAULT_ALPN => f.write_str("no-default-alpn"),
            KEY_PORT => f.write_str("port"),
            KEY_IPV4HINT => f.write_str("ipv4hint"),
            KEY_ECH => f.write_str("ech"),
            KEY_IPV6HINT => f.write_str("ipv6hint"),
            n => write!(f, "key{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::rr::rdata::svcb::{Alpn, EchConfigList, IpHint, Mandatory, Unknown};
    use hickory_resolver::proto::rr::rdata::{A, AAAA};
    use hickory_resolver::proto::rr::{RData, RecordType};
    use hickory_resolver::proto::serialize::binary::{BinDecoder, Restrict};

    fn owner() -> HostName {
        "origin.test".parse().unwrap()
    }

    fn record(priority: u16, target: &str, params: Vec<(SvcParamKey, SvcParamValue)>) -> SVCB {
        SVCB::new(priority, Name::from_ascii(target).unwrap(), params)
    }

    /// One record's conversion, with its notes.
    fn convert(record: &SVCB) -> (Result<Service, RecordError>, Vec<String>) {
        let mut notes = Vec::new();
        (service_from(&owner(), record, &mut notes), notes)
    }

    fn ok(record: &SVCB) -> Service {
        let (service, notes) = convert(record);
        assert!(notes.is_empty(), "{notes:?}");
        service.unwrap()
    }

    /// RDATA in wire form: priority, target (`.`-separated labels),
    /// params as given (not sorted).
    fn wire(priority: u16, target: &str, params: &[(u16, &[u8])]) -> Vec<u8> {
        let mut out = priority.to_be_bytes().to_vec();
        for label in target.split('.').filter(|l| !l.is_empty()) {
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
        for (key, value) in params {
            out.extend_from_slice(&key.to_be_bytes());
            out.extend_from_slice(&(value.len() as u16).to_be_bytes());
            out.extend_from_slice(value);
        }
        out
    }

    /// `bytes` decoded as HTTPS RDATA by hickory.
    fn decode(bytes: &[u8]) -> Option<SVCB> {
        let mut decoder = BinDecoder::new(bytes);
        match RData::read(&mut decoder, RecordType::HTTPS, Restrict::new(bytes.len() as u16)) {
            Ok(RData::HTTPS(https)) => Some(https.0),
            _ => None,
        }
    }

    #[test]
    fn a_bare_record_is_the_owner_on_the_url_port() {
        let s = ok(&record(1, ".", vec![]));
        assert_eq!(
            s,
            Service {
                priority: 1,
                target: owner(),
                port: None,
                alpn: vec![],
                no_default_alpn: false,
                hints: vec![],
                ech: None,
                addresses: None,
            }
        );
        assert!(s.speaks_http1());
    }

    #[test]
    fn target_and_port() {
        let s = ok(&record(
            3,
            "Svc.Example.NET.",
            vec![(SvcParamKey::Port, SvcParamValue::Port(8443))],
        ));
        assert_eq!(
            (s.priority, s.target.as_str(), s.port),
            (3, "svc.example.net", Some(8443))
        );
        let (s, _) = convert(&record(1, ".", vec![(SvcParamKey::Port, SvcParamValue::Port(0))]));
        assert_eq!(s, Err(RecordError::PortZero));
    }

    #[test]
    fn targets_that_are_no_host_names_are_refused() {
        let (s, _) = convert(&record(1, "127.0.0.1.", vec![]));
        assert_eq!(s, Err(RecordError::Target(TargetError::IpLiteral)));
        let odd = SVCB::new(1, Name::from_labels(vec![&b"a b"[..], b"test"]).unwrap(), vec![]);
        let (s, _) = convert(&odd);
        assert_eq!(s, Err(RecordError::Target(TargetError::NotHostName)));
    }

    #[test]
    fn hints_ipv6_first_and_wrong_families_dropped() {
        let v4 = SvcParamValue::Ipv4Hint(IpHint(vec![A::new(192, 0, 2, 1), A::new(192, 0, 2, 2)]));
        let v6 = SvcParamValue::Ipv6Hint(IpHint(vec![
            AAAA("2001:db8::1".parse().unwrap()),
            AAAA("::ffff:192.0.2.9".parse().unwrap()),
        ]));
        let s = {
            let (s, notes) = convert(&record(
                1,
                ".",
                vec![(SvcParamKey::Ipv4Hint, v4.clone()), (SvcParamKey::Ipv6Hint, v6.clone())],
            ));
            assert_eq!(notes.len(), 1, "{notes:?}");
            assert!(notes[0].contains("::ffff:192.0.2.9") && notes[0].contains("IPv4-mapped"));
            s.unwrap()
        };
        let want: Vec<IpAddr> = ["2001:db8::1", "192.0.2.1", "192.0.2.2"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(s.hints, want);

        // A key carrying the other family's addresses: the hints go, the
        // record stays.
        let (s, notes) = convert(&record(
            1,
            ".",
            vec![(SvcParamKey::Ipv4Hint, v6), (SvcParamKey::Ipv6Hint, v4)],
        ));
        assert!(s.unwrap().hints.is_empty());
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes[0].contains("ipv4hint dropped: addresses of the other family"),
            "{notes:?}"
        );
        assert!(notes[1].contains("ipv6hint dropped"), "{notes:?}");

        let (s, _) = convert(&record(
            1,
            ".",
            vec![(SvcParamKey::Ipv6Hint, SvcParamValue::Ipv6Hint(IpHint(vec![])))],
        ));
        assert_eq!(s, Err(RecordError::EmptyHints(6)));
    }

    #[test]
    fn alpn_and_no_default_alpn() {
        let alpn = |ids: &[&str]| SvcParamValue::Alpn(Alpn(ids.iter().map(|s| s.to_string()).collect()));
        // http/1.1 is implied...
        let s = ok(&record(1, ".", vec![(SvcParamKey::Alpn, alpn(&["h2", "h3"]))]));
        assert_eq!(s.alpn, ["h2", "h3"]);
        assert!(!s.no_default_alpn && s.speaks_http1());
        // ...unless no-default-alpn, where only alpn counts.
        let only_h2 = record(
            1,
            ".",
            vec![
                (SvcParamKey::Alpn, alpn(&["h2"])),
                (SvcParamKey::NoDefaultAlpn, SvcParamValue::NoDefaultAlpn),
            ],
        );
        let s = ok(&only_h2);
        assert!(s.no_default_alpn && !s.speaks_http1());
        let with_h1 = record(
            1,
            ".",
            vec![
                (SvcParamKey::Alpn, alpn(&["h2", "http/1.1"])),
                (SvcParamKey::NoDefaultAlpn, SvcParamValue::NoDefaultAlpn),
            ],
        );
        assert!(ok(&with_h1).speaks_http1());
        // no-default-alpn alone is not self-consistent.
        let alone = record(1, ".", vec![(SvcParamKey::NoDefaultAlpn, SvcParamValue::NoDefaultAlpn)]);
        assert_eq!(convert(&alone).0, Err(RecordError::NoAlpn));
    }

    #[test]
    fn ech_bytes_are_kept_as_given() {
        let bytes = vec![0x00, 0x04, 0xfe, 0x0d, 0x00, 0x00];
        let s = ok(&record(
            1,
            ".",
            vec![(
                SvcParamKey::EchConfigList,
                SvcParamValue::EchConfigList(EchConfigList(bytes.clone())),
            )],
        ));
        assert_eq!(s.ech.as_deref(), Some(&bytes[..]));
        // From the wire too, whatever the bytes (the TLS layer judges them).
        let from_wire = decode(&wire(1, ".", &[(5, &[1, 2, 3])])).unwrap();
        assert_eq!(ok(&from_wire).ech.as_deref(), Some(&[1u8, 2, 3][..]));
    }

    #[test]
    fn mandatory_keys() {
        let mandatory = |keys: &[u16]| {
            (
                SvcParamKey::Mandatory,
                SvcParamValue::Mandatory(Mandatory(keys.iter().map(|k| SvcParamKey::from(*k)).collect())),
            )
        };
        let port = (SvcParamKey::Port, SvcParamValue::Port(1));
        let private = (SvcParamKey::Key(65_300), SvcParamValue::Unknown(Unknown(vec![1])));
        // Known and present: fine.
        let s = ok(&record(1, ".", vec![mandatory(&[3]), port.clone()]));
        assert_eq!(s.port, Some(1));
        // A key not understood, and not mandatory: ignored.
        ok(&record(1, ".", vec![port.clone(), private.clone()]));
        // A key not understood, mandatory: the record is not for us.
        let (s, _) = convert(&record(1, ".", vec![mandatory(&[65_300]), port.clone(), private]));
        assert_eq!(s, Err(RecordError::Unsupported(65_300)));
        assert_eq!(s.unwrap_err().to_string(), "mandatory key65300 not supported");
        // Self-inconsistent lists.
        let (s, _) = convert(&record(1, ".", vec![mandatory(&[4]), port.clone()]));
        assert_eq!(s, Err(RecordError::MandatoryMissing(4)));
        let (s, _) = convert(&record(1, ".", vec![mandatory(&[0, 3]), port]));
        assert_eq!(s, Err(RecordError::MandatoryLists(0)));
    }

    #[test]
    fn malformed_records_are_skipped() {
        // Keys out of order, or twice.
        let port = (SvcParamKey::Port, SvcParamValue::Port(1));
        let alpn = (SvcParamKey::Alpn, SvcParamValue::Alpn(Alpn(vec!["h2".into()])));
        let (s, _) = convert(&record(1, ".", vec![port.clone(), alpn]));
        assert_eq!(s, Err(RecordError::KeyOrder(1)));
        let (s, _) = convert(&record(1, ".", vec![port.clone(), port]));
        assert_eq!(s, Err(RecordError::KeyOrder(3)));
        // A value not of its key's form.
        let (s, _) = convert(&record(1, ".", vec![(SvcParamKey::Port, SvcParamValue::NoDefaultAlpn)]));
        assert_eq!(s, Err(RecordError::Value(3)));

        // In a set, the bad record goes, with a note, and the good stays.
        let bad = record(1, ".", vec![(SvcParamKey::Alpn, SvcParamValue::Port(1))]);
        let good = record(2, ".", vec![]);
        let (set, notes) = read_set(&owner(), [&bad, &good], 0);
        assert_eq!(set, RecordSet::Services(vec![ok(&good)]));
        assert_eq!(notes, ["origin.test HTTPS 1 .: skipped: malformed alpn"]);

        // What hickory cannot decode never gets here (the record, and in a
        // message the whole answer, is refused).
        for bytes in [
            wire(1, ".", &[(3, &[0, 1]), (1, &[2, b'h', b'2'])]), // out of order
            wire(1, ".", &[(2, &[0])]),                           // no-default-alpn with a value
            wire(1, ".", &[(1, &[5, b'h'])]),                     // alpn overruns
            wire(1, ".", &[(4, &[192, 0, 2])]),                   // ipv4hint of 3 bytes
            wire(1, ".", &[(0, &[])]),                            // empty mandatory
            vec![0],                                              // cut short
        ] {
            assert!(decode(&bytes).is_none(), "{bytes:?}");
        }
        // And what it decodes is judged here.
        let bytes = wire(1, ".", &[(0, &[0, 7]), (3, &[1, 187]), (7, b"x")]);
        let (s, _) = convert(&decode(&bytes).unwrap());
        assert_eq!(s, Err(RecordError::Unsupported(7)));
    }

    #[test]
    fn alias_mode_wins_and_dot_means_unavailable() {
        let alias = record(0, "cdn.test.", vec![]);
        let service = record(1, ".", vec![]);
        let (set, notes) = read_set(&owner(), [&service, &alias], 0);
        assert_eq!(set, RecordSet::Alias("cdn.test".parse().unwrap()));
        assert_eq!(notes.len(), 1, "{notes:?}");

        let (set, notes) = read_set(&owner(), [&record(0, ".", vec![])], 0);
        assert_eq!(set, RecordSet::Services(vec![]));
        assert!(notes[0].contains("declared unavailable"), "{notes:?}");

        // Several aliases: `pick` chooses.
        let other = record(0, "other.test.", vec![]);
        let (set, _) = read_set(&owner(), [&alias, &other], 1);
        assert_eq!(set, RecordSet::Alias("other.test".parse().unwrap()));
        let (set, _) = read_set(&owner(), [&alias, &other], 2);
        assert_eq!(set, RecordSet::Alias("cdn.test".parse().unwrap()));

        assert_eq!(convert(&alias).0, Err(RecordError::AliasMode));
    }

    fn by_priority(priorities: &[u16]) -> Vec<Service> {
        priorities
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut s = ok(&record(*p, ".", vec![]));
                // The index, to tell ties apart.
                s.port = Some(i as u16);
                s
            })
            .collect()
    }

    #[test]
    fn sorted_by_priority() {
        let mut services = by_priority(&[30, 10, 20, 1]);
        sort_services(&mut services, 7);
        let order: Vec<_> = services.iter().map(|s| s.priority).collect();
        assert_eq!(order, [1, 10, 20, 30]);
    }

    #[test]
    fn ties_are_shuffled_reproducibly() {
        let order = |seed| {
            let mut services = by_priority(&[2, 1, 1, 1, 1, 1, 1, 1, 1]);
            sort_services(&mut services, seed);
            assert_eq!(services[8].priority, 2);
            services.iter().map(|s| s.port.unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(order(42), order(42));
        // Some seed moves the ties, and each order has all of them.
        let orders: Vec<_> = (0..8).map(order).collect();
        assert!(orders.iter().any(|o| o[..8] != [1, 2, 3, 4, 5, 6, 7, 8]), "{orders:?}");
        for o in &orders {
            let mut sorted = o.clone();
            sorted.sort();
            assert_eq!(sorted, [0, 1, 2, 3, 4, 5, 6, 7, 8]);
        }
        // Each tie reaches the front for some seed: the shuffle is not
        // stuck on one order.
        let fronts: std::collections::BTreeSet<_> = (0..200).map(|seed| order(seed)[0]).collect();
        assert_eq!(fronts.len(), 8, "{fronts:?}");
    }
}
