//! What the race does with each answer: the AAAA and A answers for the
//! name (DNS64 ones de-synthesised), and the HTTPS answer's services
//! (those without HTTP/1.1 dropped, ECH configurations checked); every
//! address passes the policy before it becomes an endpoint.

use super::Race;
use crate::race::family::Family;
use crate::race::{Dialer, EchMode};
use crate::report::EventKind;
use crate::resolve::{Service, ServiceAnswer};
use std::net::{IpAddr, SocketAddr};
use tokio::time::Instant;

impl<D: Dialer> Race<D> {
    pub(super) fn on_answer(&mut self, family: Family, answer: Result<Vec<IpAddr>, String>) {
        let now = Instant::now();
        *self.answered_at.get_mut(family) = Some(now);
        let kind = family.record();
        match family {
            Family::V6 => self.v6_lookup = None,
            Family::V4 => self.v4_lookup = None,
        }
        let detail = match answer {
            Ok(ips) if ips.is_empty() => {
                self.candidates.set_origin(family, Vec::new());
                format!("{kind}: no address")
            }
            Ok(ips) => {
                // DNS64 answers stand for the IPv4 address they embed.
                let answers: Vec<(IpAddr, Option<std::net::Ipv6Addr>)> = ips
                    .into_iter()
                    .map(|ip| match (ip, &self.nat64) {
                        (IpAddr::V6(v6), Some(nat64)) => match nat64.desynthesize(v6) {
                            Some(v4) => (IpAddr::V4(v4), Some(v6)),
                            None => (ip, None),
                        },
                        _ => (ip, None),
                    })
                    .collect();
                // After DNS, on every address: a name the policy allows may
                // still resolve somewhere it does not (127.0.0.1, a
                // metadata service, a private network).
                let port = self.target.port;
                let mut listed = Vec::new();
                let mut ips = Vec::new();
                for (ip, dns64) in answers {
                    if self.allowed_as(ip, port, now, dns64) {
                        listed.push(match dns64 {
                            Some(v6) => format!("{ip} (DNS64 {v6})"),
                            None => ip.to_string(),
                        });
                        ips.push(ip);
                    }
                }
                let empty = ips.is_empty();
                self.candidates.set_origin(family, ips);
                if empty {
                    format!("{kind}: every address denied")
                } else {
                    format!("{kind}: {}", listed.join(", "))
                }
            }
            Err(e) => {
                // Hints, if any, stand in for a failed answer.
                self.resolve_errors.push(format!("{kind}: {e}"));
                format!("{kind} failed: {e}")
            }
        };
        self.log.push_at(now, EventKind::Resolve, None, None, Some(detail));
        self.after_answer(now);
    }

    /// The HTTPS answer: services that cannot carry a WebSocket are
    /// dropped (draft §6.2), every address they bring is checked, and the
    /// rest join the candidates (draft §5.2).
    pub(super) fn on_services(&mut self, answer: Result<ServiceAnswer, String>) {
        let now = Instant::now();
        self.services_at = Some(now);
        self.https_lookup = None;
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => {
                self.log
                    .push_at(now, EventKind::Resolve, None, None, Some(format!("HTTPS failed: {e}")));
                ServiceAnswer::default()
            }
        };
        for note in &answer.notes {
            self.log
                .push_at(now, EventKind::Resolve, None, None, Some(format!("HTTPS: {note}")));
        }
        let mut usable = Vec::new();
        for mut service in answer.services {
            let port = service.port.unwrap_or(self.target.port);
            if !service.speaks_http1() {
                let detail = format!(
                    "HTTPS: {} (priority {}) not dialled: its ALPN set ({}) lacks http/1.1",
                    service.target,
                    service.priority,
                    service.alpn.join(",")
                );
                self.log.push_at(now, EventKind::Resolve, None, None, Some(detail));
                continue;
            }
            if let Some(config) = &service.ech
                && self.config.ech == EchMode::On
                && let Err(why) = self.dialer.check_ech(config)
            {
                let detail = format!(
                    "HTTPS: {} (priority {}): its ECH configuration is not used: {why}",
                    service.target, service.priority
                );
                self.log.push_at(now, EventKind::Resolve, None, None, Some(detail));
                service.ech = None;
            }
            service.hints.retain(|ip| self.allowed(*ip, port, now));
            if let Some(addresses) = service.addresses.take() {
                service.addresses = Some(
                    addresses
                        .into_iter()
                        .filter(|ip| self.allowed(*ip, port, now))
                        .collect(),
                );
            }
            self.log
                .push_at(now, EventKind::Resolve, None, None, Some(describe(&service, port)));
            usable.push(service);
        }
        self.candidates.set_services(usable);
        // Attempts waiting for the answer before TLS learn their offer.
        for (addr, offer) in &self.ech_offers {
            if offer.borrow().is_none() {
                offer.send_replace(self.ech_offer(*addr));
            }
        }
        self.after_answer(now);
    }

    /// After any answer: the Resolution Delay starts with the first address.
    fn after_answer(&mut self, now: Instant) {
        if self.first_address_at.is_none() && self.candidates.any_known() {
            self.first_address_at = Some(now);
            self.found_any = true;
        }
    }

    /// Whether the policy lets the race dial `ip`; a refusal is logged.
    fn allowed(&mut self, ip: IpAddr, port: u16, now: Instant) -> bool {
        self.allowed_as(ip, port, now, None)
    }

    /// [`allowed`](Self::allowed), for an address that came as the DNS64
    /// answer `dns64`, which a refusal names.
    fn allowed_as(&mut self, ip: IpAddr, port: u16, now: Instant, dns64: Option<std::net::Ipv6Addr>) -> bool {
        let addr = SocketAddr::new(ip, port);
        match self.check.check(addr) {
            Ok(()) => true,
            Err(denied) => {
                let denied = match dns64 {
                    Some(v6) => format!("{denied} (the DNS64 answer {v6})"),
                    None => denied,
                };
                self.log
                    .push_at(now, EventKind::Denied, Some(addr), None, Some(denied.clone()));
                self.denied.push(denied);
                false
            }
        }
    }
}

/// A service as the race log shows it.
fn describe(service: &Service, port: u16) -> String {
    let mut line = format!("HTTPS: {} priority {} port {port}", service.target, service.priority);
    if !service.alpn.is_empty() {
        line.push_str(&format!(" alpn {}", service.alpn.join(",")));
    }
    if !service.hints.is_empty() {
        let hints: Vec<String> = service.hints.iter().map(ToString::to_string).collect();
        line.push_str(&format!(" hints {}", hints.join(",")));
    }
    if let Some(addresses) = &service.addresses {
        let addresses: Vec<String> = addresses.iter().map(ToString::to_string).collect();
        line.push_str(&format!(" addresses {}", addresses.join(",")));
    }
    if service.ech.is_some() {
        line.push_str(" ech");
    }
    line
}
