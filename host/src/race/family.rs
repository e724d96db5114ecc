//! The two address families, as a type rather than an array index.

use std::net::{IpAddr, SocketAddr};

/// An address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// IPv6, the family RFC 8305 prefers.
    V6,
    /// IPv4.
    V4,
}

impl Family {
    /// The family of `addr`.
    pub(crate) fn of(addr: SocketAddr) -> Family {
        match addr.ip() {
            IpAddr::V6(_) => Family::V6,
            IpAddr::V4(_) => Family::V4,
        }
    }

    /// The family of `ip`.
    pub(crate) fn of_ip(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V6(_) => Family::V6,
            IpAddr::V4(_) => Family::V4,
        }
    }

    /// The other family.
    pub(crate) fn other(self) -> Family {
        match self {
            Family::V6 => Family::V4,
            Family::V4 => Family::V6,
        }
    }

    /// The DNS record type that answers for the family.
    pub(crate) fn record(self) -> &'static str {
        match self {
            Family::V6 => "AAAA",
            Family::V4 => "A",
        }
    }
}

/// One value per family.
#[derive(Debug, Clone, Default)]
pub(crate) struct PerFamily<T> {
    pub(crate) v6: T,
    pub(crate) v4: T,
}

impl<T> PerFamily<T> {
    /// The value of `family`.
    pub(crate) fn get(&self, family: Family) -> &T {
        match family {
            Family::V6 => &self.v6,
            Family::V4 => &self.v4,
        }
    }

    /// The value of `family`, to change.
    pub(crate) fn get_mut(&mut self, family: Family) -> &mut T {
        match family {
            Family::V6 => &mut self.v6,
            Family::V4 => &mut self.v4,
        }
    }
}
