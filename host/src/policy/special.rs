//! The special address ranges: not the internet, so only an IP or CIDR
//! rule reaches them.

use super::net::Net;
use std::net::IpAddr;

/// The kinds of special address, which only an IP or CIDR rule allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    Unspecified,
    Loopback,
    Private,
    LinkLocal,
    UniqueLocal,
    Multicast,
    Broadcast,
    /// Ranges that are not the internet either: benchmarking
    /// (`198.18.0.0/15`, which local "fake-IP" proxies hand out), IETF
    /// protocol assignments (`192.0.0.0/24`), the reserved `240.0.0.0/4`,
    /// and IPv6's deprecated site-local `fec0::/10`.
    Reserved,
}

impl Class {
    /// The class's name, as a metric's label has it (`link-local`).
    pub(super) fn name(self) -> &'static str {
        match self {
            Class::Unspecified => "unspecified",
            Class::Loopback => "loopback",
            Class::Private => "private",
            Class::LinkLocal => "link-local",
            Class::UniqueLocal => "unique-local",
            Class::Multicast => "multicast",
            Class::Broadcast => "broadcast",
            Class::Reserved => "reserved",
        }
    }

    pub(super) fn with_article(self) -> &'static str {
        match self {
            Class::Unspecified => "an unspecified",
            Class::Loopback => "a loopback",
            Class::Private => "a private",
            Class::LinkLocal => "a link-local",
            Class::UniqueLocal => "a unique-local",
            Class::Multicast => "a multicast",
            Class::Broadcast => "a broadcast",
            Class::Reserved => "a reserved",
        }
    }

    /// Whether [`Policy::allow_private`] covers the class, and so whether
    /// a message may suggest `--allow-private`.
    pub(super) fn is_private(self) -> bool {
        !matches!(
            self,
            Class::Unspecified | Class::Multicast | Class::Broadcast | Class::Reserved
        )
    }
}

/// The special ranges. The networks double as the example rule a denial
/// suggests, and the private ones as what [`Policy::allow_private`] adds.
pub(super) const SPECIAL: [(Net, Class); 18] = [
    (Net::v4(0, 0, 0, 0, 8), Class::Unspecified),
    (Net::v6(0, 0, 128), Class::Unspecified),
    (Net::v4(127, 0, 0, 0, 8), Class::Loopback),
    (Net::v6(0, 1, 128), Class::Loopback),
    (Net::v4(10, 0, 0, 0, 8), Class::Private),
    (Net::v4(172, 16, 0, 0, 12), Class::Private),
    (Net::v4(192, 168, 0, 0, 16), Class::Private),
    // Carrier-grade NAT (RFC 6598): not the internet, often the provider's
    // own network.
    (Net::v4(100, 64, 0, 0, 10), Class::Private),
    (Net::v4(169, 254, 0, 0, 16), Class::LinkLocal),
    (Net::v6(0xfe80, 0, 10), Class::LinkLocal),
    (Net::v6(0xfc00, 0, 7), Class::UniqueLocal),
    (Net::v4(224, 0, 0, 0, 4), Class::Multicast),
    (Net::v6(0xff00, 0, 8), Class::Multicast),
    // Before 240.0.0.0/4, which contains it.
    (Net::v4(255, 255, 255, 255, 32), Class::Broadcast),
    (Net::v4(198, 18, 0, 0, 15), Class::Reserved),
    (Net::v4(192, 0, 0, 0, 24), Class::Reserved),
    (Net::v4(240, 0, 0, 0, 4), Class::Reserved),
    (Net::v6(0xfec0, 0, 10), Class::Reserved),
];

/// The special range `ip` (already [canonical]) falls in, if any.
pub(super) fn classify(ip: IpAddr) -> Option<(Net, Class)> {
    SPECIAL.iter().copied().find(|(net, _)| net.contains(ip))
}
