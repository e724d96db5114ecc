//! NAT64: IPv4 addresses written as IPv6 ones, for IPv6-only networks
//! (Happy Eyeballs v3 §8; RFC 6052, RFC 7050).
//!
//! On an IPv6-only network a NAT64 gateway reaches the IPv4 internet: an
//! IPv6 address made of the network's prefix (PREF64) and an IPv4 address
//! is translated to that IPv4 address. This module knows how such an
//! address is laid out ([`Nat64Prefix::synthesize`],
//! [`Nat64Prefix::extract`], RFC 6052 §2.2), which IPv4 addresses are never
//! synthesised ([`needs_synthesis`], draft §8.3), and how a network's prefix
//! is learnt from the AAAA answers of `ipv4only.arpa` ([`discover`],
//! [`prefixes_from_ipv4only`], RFC 7050 §3). [`Nat64`] is the prefix a
//! connection uses, with the two operations the race needs.
//!
//! Nothing here asks DNS or reads the host's interfaces: the resolver hands
//! [`discover`] its lookup, and the race decides when to synthesise.

use std::fmt;
use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The prefix lengths RFC 6052 §2.2 defines, shortest first.
pub const PREFIX_LENGTHS: [u8; 6] = [32, 40, 48, 56, 64, 96];

/// The name whose AAAA answers reveal the prefix (RFC 7050 §2, RFC 8880).
pub const IPV4ONLY_ARPA: &str = "ipv4only.arpa";

/// The two IPv4 addresses `ipv4only.arpa` has, which a DNS64 server
/// synthesises into its answers (RFC 7050 §2.2), in the order RFC 7050 §3
/// searches for them.
pub const IPV4ONLY_ADDRESSES: [Ipv4Addr; 2] = [Ipv4Addr::new(192, 0, 0, 170), Ipv4Addr::new(192, 0, 0, 171)];

/// Bits 64 to 71 of an IPv6 address, the "u" octet: RFC 6052 §2.2 keeps it
/// zero for compatibility with interface identifiers (RFC 4291), so the
/// IPv4 address is laid out around it.
const U_OCTET: usize = 8;

/// A NAT64 prefix: an IPv6 network of one of the [`PREFIX_LENGTHS`], with
/// every bit past its length zero, and for a /96 the u-octet zero as well
/// (RFC 6052 §2.2).
///
/// Written and parsed as `64:ff9b::/96`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Nat64Prefix {
    network: Ipv6Addr,
    len: u8,
}

impl Nat64Prefix {
    /// The well-known prefix `64:ff9b::/96` (RFC 6052 §2.1).
    pub const WELL_KNOWN: Nat64Prefix = Nat64Prefix {
        network: Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0),
        len: 96,
    };

    /// The prefix `network/len`, checked as [`FromStr`] checks it.
    pub fn new(network: Ipv6Addr, len: u8) -> Result<Nat64Prefix, PrefixError> {
        if !PREFIX_LENGTHS.contains(&len) {
            return Err(PrefixError::UnsupportedLength(len));
        }
        if masked(network, len) != network {
            return Err(PrefixError::HostBits { network, len });
        }
        if network.octets()[U_OCTET] != 0 {
            // Only a /96 reaches this far with the octet set: shorter
            // prefixes end before it, and it is a host bit for them.
            return Err(PrefixError::UOctet { network });
        }
        Ok(Nat64Prefix { network, len })
    }

    /// The prefix's address, its bits past the length zero.
    pub fn network(&self) -> Ipv6Addr {
        self.network
    }

    /// The prefix's length in bits: one of [`PREFIX_LENGTHS`].
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether `v6` begins with this prefix.
    pub fn contains(&self, v6: Ipv6Addr) -> bool {
        masked(v6, self.len) == self.network
    }

    /// The IPv4-embedded IPv6 address of `v4` under this prefix (RFC 6052
    /// §2.2): the IPv4 address's octets follow the prefix, skipping the
    /// u-octet; the u-octet and the suffix are zero.
    pub fn synthesize(&self, v4: Ipv4Addr) -> Ipv6Addr {
        let mut octets = self.network.octets();
        for (at, octet) in v4_positions(self.len).into_iter().zip(v4.octets()) {
            octets[at] = octet;
        }
        Ipv6Addr::from(octets)
    }

    /// The IPv4 address embedded in `v6`, or `None` when `v6` is not within
    /// this prefix.
    ///
    /// The u-octet and the suffix are not looked at, as RFC 6052 §2.2 has a
    /// receiver ignore them; [`Nat64::desynthesize`] is the stricter form.
    pub fn extract(&self, v6: Ipv6Addr) -> Option<Ipv4Addr> {
        self.contains(v6).then(|| embedded(v6, self.len))
    }
}

impl fmt::Display for Nat64Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.len)
    }
}

impl FromStr for Nat64Prefix {
    type Err = PrefixError;

    /// Parses `ADDRESS/LENGTH`, e.g. `64:ff9b::/96` or `2001:db8:64::/48`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((address, length)) = s.split_once('/') else {
            return Err(match s.parse::<Ipv6Addr>() {
                Ok(_) => PrefixError::MissingLength(s.to_owned()),
                Err(_) => PrefixError::BadAddress(s.to_owned()),
            });
        };
        let network = address
            .parse::<Ipv6Addr>()
            .map_err(|_| PrefixError::BadAddress(address.to_owned()))?;
        // Digits only: `u8`'s parser would also take a sign.
        let len = if !length.is_empty() && length.bytes().all(|b| b.is_ascii_digit()) {
            length.parse::<u8>().ok()
        } else {
            None
        };
        let len = len.ok_or_else(|| PrefixError::BadLength(length.to_owned()))?;
        Nat64Prefix::new(network, len)
    }
}

/// Why a text or an address is not a [`Nat64Prefix`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrefixError {
    /// An IPv6 address without `/LENGTH`.
    MissingLength(String),
    /// The part before `/` is not an IPv6 address.
    BadAddress(String),
    /// The part after `/` is not a number from 0 to 255.
    BadLength(String),
    /// A length other than 32, 40, 48, 56, 64 or 96.
    UnsupportedLength(u8),
    /// Bits set past the prefix's length.
    HostBits {
        /// The address as given.
        network: Ipv6Addr,
        /// The length as given.
        len: u8,
    },
    /// A /96 whose bits 64 to 71 are not zero (RFC 6052 §2.2).
    UOctet {
        /// The address as given.
        network: Ipv6Addr,
    },
}

impl fmt::Display for PrefixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrefixError::MissingLength(s) => {
                write!(
                    f,
                    "NAT64 prefix `{s}` has no length: write it as `{s}/96` (or /32 ... /64)"
                )
            }
            PrefixError::BadAddress(s) => write!(f, "`{s}` is not an IPv6 address, so not a NAT64 prefix"),
            PrefixError::BadLength(s) => write!(f, "`{s}` is not a prefix length"),
            PrefixError::UnsupportedLength(len) => write!(
                f,
                "/{len} is not a NAT64 prefix length: RFC 6052 allows /32, /40, /48, /56, /64 and /96"
            ),
            PrefixError::HostBits { network, len } => write!(
                f,
                "NAT64 prefix `{network}/{len}` has bits set past its length (did you mean `{}/{len}`?)",
                masked(*network, *len)
            ),
            PrefixError::UOctet { network } => write!(
                f,
                "NAT64 prefix `{network}/96` has bits 64 to 71 set, which RFC 6052 reserves as zero"
            ),
        }
    }
}

impl std::error::Error for PrefixError {}

/// Whether an IPv4 address is one a NAT64 could stand for: false for the
/// ranges scoped to a host or a link, which draft §8.3 names as never
/// synthesised (`0.0.0.0/8`, `127.0.0.0/8`, `169.254.0.0/16` and
/// `255.255.255.255`), true for any other.
///
/// Private ranges are synthesised: a network-specific prefix may well
/// reach them, and whether the plugin may is the policy's question.
pub fn needs_synthesis(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    !(a == 0 || a == 127 || (a, b) == (169, 254) || v4.is_broadcast())
}

/// The NAT64 prefixes that the AAAA answers of `ipv4only.arpa` reveal
/// (RFC 7050 §3), each once, in the order of the answers.
///
/// In each answer, `192.0.0.170` is looked for at each prefix length's
/// place (RFC 6052 §2.2); found at exactly one, the bits before that place
/// are the prefix. Found at several, or not at all, `192.0.0.171` is looked
/// for the same way. An answer that embeds neither, or only ambiguously,
/// or that would make a prefix RFC 6052 forbids (a /96 with its u-octet
/// set), reveals nothing.
pub fn prefixes_from_ipv4only(answers: &[Ipv6Addr]) -> Vec<Nat64Prefix> {
    let mut prefixes: Vec<Nat64Prefix> = Vec::new();
    for &answer in answers {
        if let Some(prefix) = prefix_of_ipv4only(answer)
            && !prefixes.contains(&prefix)
        {
            prefixes.push(prefix);
        }
    }
    prefixes
}

/// The prefix one AAAA answer of `ipv4only.arpa` reveals, if any.
fn prefix_of_ipv4only(answer: Ipv6Addr) -> Option<Nat64Prefix> {
    IPV4ONLY_ADDRESSES.iter().find_map(|&known| {
        let mut places = PREFIX_LENGTHS.into_iter().filter(|&len| embedded(answer, len) == known);
        let len = places.next()?;
        if places.next().is_some() {
            return None;
        }
        Nat64Prefix::new(masked(answer, len), len).ok()
    })
}

/// Discovers the network's NAT64 prefix from `lookup`, the AAAA lookup of
/// [`IPV4ONLY_ARPA`] (RFC 7050 §3): the first prefix its answers reveal
/// ([`prefixes_from_ipv4only`]), or `None` when they reveal none, which
/// means the network has no DNS64.
///
/// `lookup` should answer an empty list for NXDOMAIN and NODATA (no DNS64
/// here) and fail only when the question could not be answered (a timeout,
/// SERVFAIL), so that a caller can tell "no NAT64" from "ask again later".
/// Its own timeouts bound the wait. The answers are not DNSSEC-validated
/// (RFC 7050 §3.1), so the prefix is only as trusted as the resolver.
pub async fn discover<F, E>(lookup: F) -> Result<Option<Nat64Prefix>, String>
where
    F: Future<Output = Result<Vec<Ipv6Addr>, E>>,
    E: fmt::Display,
{
    let answers = lookup
        .await
        .map_err(|e| format!("looking up the NAT64 prefix (AAAA {IPV4ONLY_ARPA}): {e}"))?;
    Ok(prefixes_from_ipv4only(&answers).into_iter().next())
}

/// The NAT64 prefix a connection uses, discovered ([`discover`]) or
/// configured, and the two translations the race needs.
///
/// Draft §8.2 and §8.3 have the race work with IPv4 addresses: an IPv6
/// answer that is a synthesised address ([`desynthesize`](Self::desynthesize))
/// is grouped, sorted, remembered and checked against the operator's policy
/// as the IPv4 address it stands for, so that `64:ff9b::7f00:1` is judged
/// as `127.0.0.1`, and a DNS64 answer and an A answer for the same server
/// are one endpoint. Only the dial itself uses the IPv6 address
/// ([`synthesize_if_needed`](Self::synthesize_if_needed)), when the host
/// has no IPv4 route to the IPv4 one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Nat64 {
    prefix: Nat64Prefix,
}

impl Nat64 {
    /// Translates through `prefix`.
    pub fn new(prefix: Nat64Prefix) -> Nat64 {
        Nat64 { prefix }
    }

    /// The prefix in use.
    pub fn prefix(&self) -> Nat64Prefix {
        self.prefix
    }

    /// The IPv6 address to dial for `v4`, or `None` for an address that is
    /// never synthesised ([`needs_synthesis`]), which is dialled as IPv4 or
    /// not at all.
    pub fn synthesize_if_needed(&self, v4: Ipv4Addr) -> Option<Ipv6Addr> {
        needs_synthesis(v4).then(|| self.prefix.synthesize(v4))
    }

    /// The IPv4 address `v6` stands for, when `v6` is exactly what
    /// [`synthesize_if_needed`](Self::synthesize_if_needed) makes of it:
    /// within the prefix, u-octet and suffix zero, and an IPv4 address that
    /// needs synthesis. Any other address is an IPv6 address in its own
    /// right (`None`): a prefix shorter than /96 leaves room for hosts that
    /// are not translations, and `64:ff9b::7f00:1` is not a way to reach
    /// the host's own loopback.
    pub fn desynthesize(&self, v6: Ipv6Addr) -> Option<Ipv4Addr> {
        let v4 = self.prefix.extract(v6)?;
        (self.synthesize_if_needed(v4) == Some(v6)).then_some(v4)
    }
}

/// Which octets of a synthesised address hold the IPv4 address's four,
/// under a prefix of `len` bits (RFC 6052 §2.2): those after the prefix,
/// skipping the u-octet.
fn v4_positions(len: u8) -> [usize; 4] {
    match len {
        32 => [4, 5, 6, 7],
        40 => [5, 6, 7, 9],
        48 => [6, 7, 9, 10],
        56 => [7, 9, 10, 11],
        64 => [9, 10, 11, 12],
        _ => [12, 13, 14, 15],
    }
}

/// The IPv4 address at a `len`-bit prefix's place in `v6`, whatever the
/// bits before it.
fn embedded(v6: Ipv6Addr, len: u8) -> Ipv4Addr {
    let octets = v6.octets();
    Ipv4Addr::from(v4_positions(len).map(|at| octets[at]))
}

/// `v6` with the bits past `len` cleared.
fn masked(v6: Ipv6Addr, len: u8) -> Ipv6Addr {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    Ipv6Addr::from(u128::from(v6) & mask)
}

/// The NAT64 prefix of the network the host is on: the operator's
/// (`[dns] nat64-prefix`), or the one discovered with an `ipv4only.arpa`
/// query (RFC 7050) on a host without IPv4 connectivity, once per network.
#[derive(Debug, Default)]
pub(crate) struct Pref64 {
    configured: Option<Nat64Prefix>,
    discovered: std::sync::Mutex<Option<(crate::network::NetworkId, Option<Nat64Prefix>)>>,
}

impl Pref64 {
    /// The operator's prefix, if any; discovery otherwise.
    pub(crate) fn new(configured: Option<Nat64Prefix>) -> Pref64 {
        Pref64 {
            configured,
            discovered: std::sync::Mutex::new(None),
        }
    }

    /// What a connect on `network` does with NAT64: the prefix, and
    /// whether IPv4 addresses are dialled through it (the host has no IPv4
    /// connectivity). `lookup` asks DNS for `ipv4only.arpa`'s AAAA, and
    /// is called at most once per network.
    pub(crate) async fn for_network<F, E>(
        &self,
        network: crate::network::NetworkId,
        ipv4_connectivity: bool,
        lookup: impl FnOnce() -> F,
    ) -> Option<(Nat64, bool)>
    where
        F: std::future::Future<Output = Result<Vec<Ipv6Addr>, E>>,
        E: std::fmt::Display,
    {
        let synthesize = !ipv4_connectivity;
        if let Some(prefix) = self.configured {
            return Some((Nat64::new(prefix), synthesize));
        }
        if !synthesize {
            return None;
        }
        let known = self.discovered.lock().ok().and_then(|d| *d);
        let prefix = match known {
            Some((id, prefix)) if id == network => prefix,
            _ => {
                // A failed query finds no prefix; the next network tries
                // again.
                let prefix = discover(lookup()).await.ok().flatten();
                if let Ok(mut discovered) = self.discovered.lock() {
                    *discovered = Some((network, prefix));
                }
                prefix
            }
        };
        prefix.map(|p| (Nat64::new(p), true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn prefix(s: &str) -> Nat64Prefix {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    const EXAMPLE_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 33);

    /// RFC 6052 §2.4's table: 192.0.2.33 under each length.
    const RFC6052_EXAMPLES: [(&str, &str); 6] = [
        ("2001:db8::/32", "2001:db8:c000:221::"),
        ("2001:db8:100::/40", "2001:db8:1c0:2:21::"),
        ("2001:db8:122::/48", "2001:db8:122:c000:2:2100::"),
        ("2001:db8:122:300::/56", "2001:db8:122:3c0:0:221::"),
        ("2001:db8:122:344::/64", "2001:db8:122:344:c0:2:2100:0"),
        ("2001:db8:122:344::/96", "2001:db8:122:344::192.0.2.33"),
    ];

    #[test]
    fn synthesizes_and_extracts_rfc6052_examples_at_every_length() {
        for (text, expected) in RFC6052_EXAMPLES {
            let p = prefix(text);
            assert_eq!(p.to_string(), text);
            assert_eq!(p.synthesize(EXAMPLE_V4), v6(expected), "{text}");
            assert_eq!(p.extract(v6(expected)), Some(EXAMPLE_V4), "{text}");
        }
        let lengths: Vec<u8> = RFC6052_EXAMPLES.iter().map(|(t, _)| prefix(t).prefix_len()).collect();
        assert_eq!(lengths, PREFIX_LENGTHS);
    }

    #[test]
    fn well_known_prefix() {
        let p = Nat64Prefix::WELL_KNOWN;
        assert_eq!(p.to_string(), "64:ff9b::/96");
        assert_eq!(prefix("64:ff9b::/96"), p);
        assert_eq!((p.network(), p.prefix_len()), (v6("64:ff9b::"), 96));
        assert_eq!(p.synthesize(EXAMPLE_V4), v6("64:ff9b::c000:221"));
        assert_eq!(p.extract(v6("64:ff9b::c000:221")), Some(EXAMPLE_V4));
        assert_eq!(p.extract(v6("64:ff9b:1::c000:221")), None);
        assert_eq!(p.extract(v6("2001:db8::c000:221")), None);
    }

    #[test]
    fn every_length_round_trips_and_keeps_the_u_octet_and_suffix_zero() {
        let v4s = [
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            EXAMPLE_V4,
            Ipv4Addr::new(1, 2, 3, 4),
            Ipv4Addr::new(10, 255, 0, 128),
        ];
        // A prefix with every one of its bits set shows that synthesis
        // writes only where RFC 6052 puts the IPv4 address.
        for len in PREFIX_LENGTHS {
            let ones = masked(Ipv6Addr::from(u128::MAX), len);
            let ones = if len == 96 {
                let mut o = ones.octets();
                o[U_OCTET] = 0;
                Ipv6Addr::from(o)
            } else {
                ones
            };
            for network in [ones, v6("2001:db8::")] {
                let p = Nat64Prefix::new(network, len).unwrap();
                for v4 in v4s {
                    let a = p.synthesize(v4);
                    assert!(p.contains(a), "{p} {v4} {a}");
                    assert_eq!(p.extract(a), Some(v4), "{p} {a}");
                    assert_eq!(a.octets()[U_OCTET], 0, "{p} {v4} {a}");
                    // Past the IPv4 address, the suffix is zero.
                    let last = v4_positions(len)[3];
                    assert!(a.octets()[last + 1..].iter().all(|&o| o == 0), "{p} {a}");
                    // Before it, the prefix's bits are kept.
                    assert_eq!(masked(a, len), network, "{p} {a}");
                }
            }
        }
    }

    #[test]
    fn extract_ignores_the_u_octet_and_suffix() {
        let p = prefix("2001:db8::/32");
        assert_eq!(p.extract(v6("2001:db8:c000:221:ff00::1")), Some(EXAMPLE_V4));
        assert_eq!(p.extract(v6("2001:db9:c000:221::")), None);
        let p = prefix("2001:db8:122:344::/64");
        assert_eq!(p.extract(v6("2001:db8:122:344:ffc0:2:2100:7")), Some(EXAMPLE_V4));
        assert_eq!(p.extract(v6("2001:db8:122:345:c0:2:2100:0")), None);
    }

    #[test]
    fn parse_errors_are_named() {
        let cases: [(&str, PrefixError, &str); 10] = [
            (
                "64:ff9b::",
                PrefixError::MissingLength("64:ff9b::".into()),
                "has no length: write it as `64:ff9b::/96`",
            ),
            (
                "64:ff9b::/95",
                PrefixError::UnsupportedLength(95),
                "/95 is not a NAT64 prefix length: RFC 6052 allows /32, /40, /48, /56, /64 and /96",
            ),
            ("64:ff9b::/128", PrefixError::UnsupportedLength(128), "/128 is not"),
            ("64:ff9b::/0", PrefixError::UnsupportedLength(0), "/0 is not"),
            (
                "64:ff9b::1/96",
                PrefixError::HostBits {
                    network: v6("64:ff9b::1"),
                    len: 96,
                },
                "has bits set past its length (did you mean `64:ff9b::/96`?)",
            ),
            (
                "2001:db8:1::/32",
                PrefixError::HostBits {
                    network: v6("2001:db8:1::"),
                    len: 32,
                },
                "did you mean `2001:db8::/32`?",
            ),
            (
                "2001:db8:122:344:100::/96",
                PrefixError::UOctet {
                    network: v6("2001:db8:122:344:100::"),
                },
                "bits 64 to 71 set",
            ),
            (
                "192.0.2.0/24",
                PrefixError::BadAddress("192.0.2.0".into()),
                "not an IPv6 address",
            ),
            (
                "64:ff9b::/+96",
                PrefixError::BadLength("+96".into()),
                "`+96` is not a prefix length",
            ),
            (
                "64:ff9b::/300",
                PrefixError::BadLength("300".into()),
                "not a prefix length",
            ),
        ];
        for (text, error, message) in cases {
            let got = text.parse::<Nat64Prefix>().unwrap_err();
            assert_eq!(got, error, "{text}");
            assert!(got.to_string().contains(message), "{text}: {got}");
        }
        for text in [
            "",
            "/96",
            "[64:ff9b::]/96",
            "64:ff9b::/",
            "64:ff9b::/96/96",
            " 64:ff9b::/96",
            "nat64",
        ] {
            assert!(text.parse::<Nat64Prefix>().is_err(), "{text:?}");
        }
        // The u-octet is a host bit of the shorter prefixes, said as such.
        assert!(matches!(
            "2001:db8:122:344:100::/64".parse::<Nat64Prefix>(),
            Err(PrefixError::HostBits { len: 64, .. })
        ));
    }

    #[test]
    fn host_and_link_scoped_ipv4_is_never_synthesised() {
        let never = [
            "0.0.0.0",
            "0.255.255.255",
            "127.0.0.1",
            "127.255.255.255",
            "169.254.0.0",
            "169.254.169.254",
            "255.255.255.255",
        ];
        let always = [
            "1.0.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "255.255.255.254",
            "10.0.0.1",
            "192.0.2.33",
            "8.8.8.8",
        ];
        for a in never {
            assert!(!needs_synthesis(a.parse().unwrap()), "{a}");
        }
        for a in always {
            assert!(needs_synthesis(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn ipv4only_answers_reveal_the_prefix_at_every_length() {
        for (text, _) in RFC6052_EXAMPLES {
            let p = prefix(text);
            let answers = IPV4ONLY_ADDRESSES.map(|a| p.synthesize(a));
            assert_eq!(prefixes_from_ipv4only(&answers), [p], "{text}");
            // Either answer alone is enough.
            assert_eq!(prefixes_from_ipv4only(&answers[1..]), [p], "{text}");
        }
        let wkp = [v6("64:ff9b::c000:aa"), v6("64:ff9b::c000:ab")];
        assert_eq!(prefixes_from_ipv4only(&wkp), [Nat64Prefix::WELL_KNOWN]);
    }

    #[test]
    fn ipv4only_prefixes_come_once_each_in_answer_order() {
        let answers = [
            v6("2001:db8:64::c000:ab"),
            v6("2001:db8::1"),
            v6("64:ff9b::c000:aa"),
            v6("2001:db8:64::c000:aa"),
            v6("64:ff9b::c000:ab"),
        ];
        assert_eq!(
            prefixes_from_ipv4only(&answers),
            [prefix("2001:db8:64::/96"), Nat64Prefix::WELL_KNOWN]
        );
        assert_eq!(prefixes_from_ipv4only(&[]), []);
        // Not a synthesis of either well-known address.
        let unrelated = [v6("2001:db8::1"), v6("64:ff9b::c000:ac"), v6("::1")];
        assert_eq!(prefixes_from_ipv4only(&unrelated), []);
    }

    #[test]
    fn an_ipv4only_answer_that_embeds_the_address_twice_reveals_nothing() {
        // 192.0.0.170 both at the /32 place and the /96 place: ambiguous,
        // and 192.0.0.171 is nowhere in it.
        let twice = v6("2001:db8:c000:aa::c000:aa");
        assert_eq!(prefixes_from_ipv4only(&[twice]), []);
        // A /96 answer whose u-octet is set would make a forbidden prefix.
        assert_eq!(prefixes_from_ipv4only(&[v6("2001:db8:1:2:100::c000:aa")]), []);
    }

    #[tokio::test]
    async fn discover_takes_the_first_prefix_and_passes_errors_on() {
        let answers = vec![v6("2001:db8:64::c000:aa"), v6("64:ff9b::c000:ab")];
        let found = discover(async { Ok::<_, String>(answers) }).await;
        assert_eq!(found, Ok(Some(prefix("2001:db8:64::/96"))));

        let none = discover(async { Ok::<_, String>(vec![v6("2001:db8::1")]) }).await;
        assert_eq!(none, Ok(None));
        let empty = discover(async { Ok::<_, String>(Vec::new()) }).await;
        assert_eq!(empty, Ok(None));

        let failed = discover(async { Err::<Vec<Ipv6Addr>, _>("timed out") }).await;
        assert_eq!(
            failed,
            Err("looking up the NAT64 prefix (AAAA ipv4only.arpa): timed out".to_owned())
        );
    }

    #[test]
    fn nat64_synthesises_what_needs_it_and_desynthesises_only_its_own_form() {
        let nat64 = Nat64::new(Nat64Prefix::WELL_KNOWN);
        assert_eq!(nat64.prefix(), Nat64Prefix::WELL_KNOWN);
        assert_eq!(nat64.synthesize_if_needed(EXAMPLE_V4), Some(v6("64:ff9b::c000:221")));
        assert_eq!(nat64.synthesize_if_needed(Ipv4Addr::LOCALHOST), None);
        assert_eq!(nat64.synthesize_if_needed(Ipv4Addr::new(169, 254, 169, 254)), None);
        assert_eq!(nat64.desynthesize(v6("64:ff9b::c000:221")), Some(EXAMPLE_V4));
        // Loopback and link-local are not translations, whatever the bits.
        assert_eq!(nat64.desynthesize(v6("64:ff9b::7f00:1")), None);
        assert_eq!(nat64.desynthesize(v6("64:ff9b::a9fe:a9fe")), None);
        assert_eq!(nat64.desynthesize(v6("2001:db8::c000:221")), None);

        // Under a /64, an address with its u-octet or suffix set is a host
        // of that network, not a translation.
        let nat64 = Nat64::new(prefix("2001:db8:122:344::/64"));
        assert_eq!(nat64.desynthesize(v6("2001:db8:122:344:c0:2:2100:0")), Some(EXAMPLE_V4));
        assert_eq!(nat64.desynthesize(v6("2001:db8:122:344:c0:2:2100:1")), None);
        assert_eq!(nat64.desynthesize(v6("2001:db8:122:344:1c0:2:2100:0")), None);

        // Synthesis and de-synthesis are inverse at every length.
        for (text, expected) in RFC6052_EXAMPLES {
            let nat64 = Nat64::new(prefix(text));
            let synthesised = nat64.synthesize_if_needed(EXAMPLE_V4).unwrap();
            assert_eq!(synthesised, v6(expected));
            assert_eq!(nat64.desynthesize(synthesised), Some(EXAMPLE_V4), "{text}");
        }
    }
}
