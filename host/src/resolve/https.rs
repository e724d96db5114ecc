//! SVCB resolution of an HTTPS lookup (RFC 9460 §3): from the name a
//! connect asked for, through AliasMode records, to ServiceMode records,
//! then to the addresses of the services' targets.
//!
//! The DNS is behind [`Dns`], so that the chain rules can be tested
//! without a server; the resolver implements it with hickory.
//!
//! Everything is bounded: at most [`MAX_ALIAS_HOPS`] aliases are
//! followed, a name seen twice ends the chain, and at most
//! [`MAX_TARGETS`] targets are resolved. Nothing here fails a connect: a
//! chain that cannot be used is an empty answer with a note, and the race
//! then uses the A and AAAA answers of the name asked for.

use super::service::{RecordSet, Service, ServiceAnswer, host_name, read_set, sort_services};
use crate::host_name::HostName;
use hickory_resolver::proto::rr::Name;
use hickory_resolver::proto::rr::rdata::svcb::SVCB;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::Poll;

/// The most AliasMode records followed for one lookup (RFC 9460 §3.1
/// leaves the limit to the client; 8 is what common stub resolvers allow
/// for CNAME chains).
pub const MAX_ALIAS_HOPS: usize = 8;

/// The most distinct service targets whose addresses one lookup resolves;
/// services of further targets are dropped.
pub const MAX_TARGETS: usize = 8;

/// The DNS queries SVCB resolution makes.
pub(crate) trait Dns {
    /// The HTTPS records of `name`, each with its owner name (which
    /// differs from `name` after a CNAME), or why there are none.
    fn https(&self, name: &HostName) -> impl Future<Output = Result<Vec<(Name, SVCB)>, String>> + Send;

    /// The AAAA and A answers of `name`, AAAA first, asked in parallel,
    /// and notes on what failed.
    fn addresses(&self, name: &HostName) -> impl Future<Output = (Vec<IpAddr>, Vec<String>)> + Send;
}

/// SVCB resolution for `asked`: the services, in priority order (ties
/// shuffled with `seed`), with `addresses` filled for every target other
/// than `asked`.
///
/// After at least one alias, the chain's last name is appended as a last
/// service without parameters (priority `u16::MAX`, RFC 9460 §3: so that
/// an alias to a name with A/AAAA records but no HTTPS records is used).
pub(crate) async fn resolve(dns: &impl Dns, asked: &HostName, seed: u64) -> ServiceAnswer {
    let mut notes = Vec::new();
    let mut picks = seed;
    let mut name = asked.clone();
    // The names of the chain so far, `asked` first: a name seen twice is
    // a loop. Its length bounds the loop below.
    let mut seen = vec![asked.clone()];
    let mut services = loop {
        let records = match dns.https(&name).await {
            Ok(records) => records,
            Err(why) => {
                notes.push(format!("HTTPS {name}: {why}"));
                break Vec::new();
            }
        };
        let Some((owner, records)) = one_owner(&name, records, &mut notes) else {
            break Vec::new();
        };
        if owner != name && !seen.contains(&owner) {
            // A CNAME led there: an alias back to it is a loop too.
            seen.push(owner.clone());
        }
        picks = picks.rotate_left(17) ^ 0x5851_F42D_4C95_7F2D;
        let (set, set_notes) = read_set(&owner, records.iter(), picks);
        notes.extend(set_notes);
        match set {
            RecordSet::Services(services) => break services,
            RecordSet::Alias(target) => {
                if seen.contains(&target) {
                    notes.push(format!(
                        "HTTPS {asked}: alias loop ({} -> {target}); HTTPS records not used",
                        chain(&seen)
                    ));
                    return ServiceAnswer {
                        services: Vec::new(),
                        notes,
                    };
                }
                if seen.len() > MAX_ALIAS_HOPS {
                    notes.push(format!(
                        "HTTPS {asked}: alias chain longer than {MAX_ALIAS_HOPS} ({} -> {target} ...); HTTPS records not used",
                        chain(&seen)
                    ));
                    return ServiceAnswer {
                        services: Vec::new(),
                        notes,
                    };
                }
                seen.push(target.clone());
                name = target;
            }
        }
    };
    sort_services(&mut services, seed);
    if name != *asked {
        services.push(Service {
            priority: u16::MAX,
            target: name,
            port: None,
            alpn: Vec::new(),
            no_default_alpn: false,
            hints: Vec::new(),
            ech: None,
            addresses: None,
        });
    }
    resolve_targets(dns, asked, &mut services, &mut notes).await;
    ServiceAnswer { services, notes }
}

/// The records of the answer's one owner (the first record's), as a host
/// name; records of other owners are dropped with a note. `None` when
/// there are no records, or the owner is not a host name.
fn one_owner(asked: &HostName, records: Vec<(Name, SVCB)>, notes: &mut Vec<String>) -> Option<(HostName, Vec<SVCB>)> {
    let first = records.first()?.0.clone();
    let owner = match host_name(&first) {
        Ok(owner) => owner,
        Err(why) => {
            notes.push(format!("HTTPS {asked}: records of {first} not used: {why}"));
            return None;
        }
    };
    let mut kept = Vec::with_capacity(records.len());
    for (name, record) in records {
        if name == first {
            kept.push(record);
        } else {
            notes.push(format!("HTTPS {asked}: a record of {name}, beside {owner}'s, not used"));
        }
    }
    Some((owner, kept))
}

/// Fills `addresses` of the services whose target is not `asked`,
/// resolving at most [`MAX_TARGETS`] distinct targets in parallel, in
/// service order; services of further targets are dropped.
async fn resolve_targets(dns: &impl Dns, asked: &HostName, services: &mut Vec<Service>, notes: &mut Vec<String>) {
    let mut targets: Vec<HostName> = Vec::new();
    services.retain(|service| {
        if service.target == *asked || targets.contains(&service.target) {
            return true;
        }
        if targets.len() < MAX_TARGETS {
            targets.push(service.target.clone());
            return true;
        }
        notes.push(format!(
            "HTTPS {asked}: service {} {} dropped: more than {MAX_TARGETS} targets",
            service.priority, service.target
        ));
        false
    });
    let answers = join_all(targets.iter().map(|target| dns.addresses(target)).collect()).await;
    let mut resolved = Vec::with_capacity(answers.len());
    for (addresses, target_notes) in answers {
        notes.extend(target_notes);
        resolved.push(addresses);
    }
    for service in services.iter_mut() {
        if let Some(i) = targets.iter().position(|t| *t == service.target) {
            service.addresses = Some(resolved[i].clone());
        }
    }
}

/// The chain `a -> b -> c`, for notes.
fn chain(names: &[HostName]) -> String {
    names.iter().map(HostName::as_str).collect::<Vec<_>>().join(" -> ")
}

/// Awaits all of `futures` at once; their outputs in their order.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending { Poll::Pending } else { Poll::Ready(()) }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::rr::rdata::svcb::{SvcParamKey, SvcParamValue};
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// A zone in memory: HTTPS records and addresses per name, and the
    /// names asked, in order.
    #[derive(Default)]
    struct Zone {
        https: HashMap<&'static str, Vec<SVCB>>,
        addresses: HashMap<&'static str, Vec<IpAddr>>,
        asked: Mutex<Vec<String>>,
    }

    impl Dns for Zone {
        fn https(&self, name: &HostName) -> impl Future<Output = Result<Vec<(Name, SVCB)>, String>> + Send {
            self.asked.lock().unwrap().push(format!("HTTPS {name}"));
            let owner = Name::from_ascii(format!("{name}.")).unwrap();
            let answer = match self.https.get(name.as_str()) {
                Some(records) => Ok(records.iter().map(|r| (owner.clone(), r.clone())).collect()),
                None => Err("no records".to_owned()),
            };
            async move { answer }
        }

        fn addresses(&self, name: &HostName) -> impl Future<Output = (Vec<IpAddr>, Vec<String>)> + Send {
            self.asked.lock().unwrap().push(format!("ADDR {name}"));
            let answer = match self.addresses.get(name.as_str()) {
                Some(ips) => (ips.clone(), Vec::new()),
                None => (Vec::new(), vec![format!("{name}: no addresses")]),
            };
            async move { answer }
        }
    }

    fn host(name: &str) -> HostName {
        name.parse().unwrap()
    }

    fn alias(target: &str) -> SVCB {
        SVCB::new(0, Name::from_ascii(target).unwrap(), Vec::new())
    }

    fn service(priority: u16, target: &str, port: u16) -> SVCB {
        let params = vec![(SvcParamKey::Port, SvcParamValue::Port(port))];
        SVCB::new(priority, Name::from_ascii(target).unwrap(), params)
    }

    #[tokio::test]
    async fn services_of_the_name_itself_need_no_lookup() {
        let mut zone = Zone::default();
        zone.https
            .insert("a.test", vec![service(2, ".", 2), service(1, ".", 1)]);
        let answer = resolve(&zone, &host("a.test"), 1).await;
        let ports: Vec<_> = answer.services.iter().map(|s| s.port).collect();
        assert_eq!(ports, [Some(1), Some(2)]);
        assert!(
            answer
                .services
                .iter()
                .all(|s| s.addresses.is_none() && s.target == host("a.test"))
        );
        assert_eq!(*zone.asked.lock().unwrap(), ["HTTPS a.test"]);
    }

    #[tokio::test]
    async fn an_alias_chain_is_followed_and_its_end_appended() {
        let mut zone = Zone::default();
        zone.https.insert("a.test", vec![alias("b.test.")]);
        zone.https.insert("b.test", vec![alias("c.test.")]);
        zone.https
            .insert("c.test", vec![service(1, ".", 8443), service(2, "d.test.", 9443)]);
        zone.addresses.insert("c.test", vec!["::3".parse().unwrap()]);
        zone.addresses.insert("d.test", vec!["::4".parse().unwrap()]);
        let answer = resolve(&zone, &host("a.test"), 1).await;
        let got: Vec<_> = answer
            .services
            .iter()
            .map(|s| (s.priority, s.target.as_str(), s.port, s.addresses.clone().unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                (1, "c.test", Some(8443), vec!["::3".parse::<IpAddr>().unwrap()]),
                (2, "d.test", Some(9443), vec!["::4".parse().unwrap()]),
                (u16::MAX, "c.test", None, vec!["::3".parse().unwrap()]),
            ]
        );
        assert!(answer.notes.is_empty(), "{:?}", answer.notes);
        // c.test resolved once, for both services.
        let asked = zone.asked.lock().unwrap();
        assert_eq!(asked.iter().filter(|q| *q == "ADDR c.test").count(), 1, "{asked:?}");
    }

    #[tokio::test]
    async fn an_alias_to_a_name_without_https_records_is_its_addresses() {
        let mut zone = Zone::default();
        zone.https.insert("a.test", vec![alias("cdn.test.")]);
        zone.addresses.insert("cdn.test", vec!["192.0.2.1".parse().unwrap()]);
        let answer = resolve(&zone, &host("a.test"), 1).await;
        assert_eq!(answer.services.len(), 1);
        assert_eq!(answer.services[0].target, host("cdn.test"));
        assert_eq!(answer.services[0].addresses, Some(vec!["192.0.2.1".parse().unwrap()]));
        assert!(answer.services[0].speaks_http1());
        assert!(answer.notes.iter().any(|n| n.contains("cdn.test: no records")));
    }

    #[tokio::test]
    async fn loops_are_empty_answers() {
        for names in [&["a.test"][..], &["a.test", "b.test"], &["a.test", "b.test", "c.test"]] {
            let mut zone = Zone::default();
            for (i, name) in names.iter().enumerate() {
                let next = names[(i + 1) % names.len()];
                zone.https.insert(name, vec![alias(&format!("{next}."))]);
            }
            let answer = resolve(&zone, &host("a.test"), 1).await;
            assert!(answer.services.is_empty(), "{names:?}");
            assert!(
                answer.notes.iter().any(|n| n.contains("alias loop")),
                "{:?}",
                answer.notes
            );
            assert_eq!(zone.asked.lock().unwrap().len(), names.len());
        }
        // A loop that does not come back to the start.
        let mut zone = Zone::default();
        zone.https.insert("a.test", vec![alias("b.test.")]);
        zone.https.insert("b.test", vec![alias("c.test.")]);
        zone.https.insert("c.test", vec![alias("b.test.")]);
        let answer = resolve(&zone, &host("a.test"), 1).await;
        assert!(answer.services.is_empty());
        assert!(
            answer.notes[0].contains("a.test -> b.test -> c.test -> b.test"),
            "{:?}",
            answer.notes
        );
    }

    fn chain_zone(aliases: usize) -> Zone {
        let mut zone = Zone::default();
        let names: Vec<&'static str> = (0..=aliases).map(|i| &*format!("n{i}.test").leak()).collect();
        for pair in names.windows(2) {
            zone.https.insert(pair[0], vec![alias(&format!("{}.", pair[1]))]);
        }
        zone.https.insert(names[aliases], vec![service(1, ".", 1)]);
        zone
    }

    #[tokio::test]
    async fn chains_are_bounded() {
        let zone = chain_zone(MAX_ALIAS_HOPS);
        let answer = resolve(&zone, &host("n0.test"), 1).await;
        assert_eq!(answer.services[0].target, host(&format!("n{MAX_ALIAS_HOPS}.test")));
        // Only that the zone has no addresses for it.
        assert_eq!(answer.notes, ["n8.test: no addresses"]);

        let zone = chain_zone(MAX_ALIAS_HOPS + 1);
        let answer = resolve(&zone, &host("n0.test"), 1).await;
        assert!(answer.services.is_empty());
        assert!(answer.notes[0].contains("longer than 8"), "{:?}", answer.notes);
        let asked = zone.asked.lock().unwrap();
        assert_eq!(asked.len(), MAX_ALIAS_HOPS + 1, "{asked:?}");
    }

    #[tokio::test]
    async fn targets_are_bounded() {
        let mut zone = Zone::default();
        let records = (1..=MAX_TARGETS as u16 + 2)
            .map(|i| service(i, &format!("t{i}.test."), i))
            .collect();
        zone.https.insert("a.test", records);
        let answer = resolve(&zone, &host("a.test"), 1).await;
        assert_eq!(answer.services.len(), MAX_TARGETS);
        assert_eq!(answer.services.last().unwrap().priority, MAX_TARGETS as u16);
        assert_eq!(
            answer
                .notes
                .iter()
                .filter(|n| n.contains("more than 8 targets"))
                .count(),
            2
        );
        let lookups = zone
            .asked
            .lock()
            .unwrap()
            .iter()
            .filter(|q| q.starts_with("ADDR"))
            .count();
        assert_eq!(lookups, MAX_TARGETS);
    }

    #[tokio::test]
    async fn a_failed_query_is_an_empty_answer() {
        let zone = Zone::default();
        let answer = resolve(&zone, &host("a.test"), 1).await;
        assert_eq!(answer.services, []);
        assert_eq!(answer.notes, ["HTTPS a.test: no records"]);
    }

    #[tokio::test]
    async fn an_alias_to_nowhere_or_to_a_literal_is_empty() {
        for target in [".", "127.0.0.1."] {
            let mut zone = Zone::default();
            zone.https.insert("a.test", vec![alias(target)]);
            let answer = resolve(&zone, &host("a.test"), 1).await;
            assert_eq!(answer.services, [], "{target}");
            assert_eq!(answer.notes.len(), 1, "{:?}", answer.notes);
        }
    }
}
