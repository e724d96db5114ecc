//! The address that last won for each host and port (to be replaced by the learning history).

use crate::host_name::HostName;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// The address that last won for each host and port, for a while: a
/// second connect to a host whose IPv6 is broken goes straight to what
/// worked (RFC 8305 §4's use of historical data).
#[derive(Debug)]
pub struct FamilyMemory {
    ttl: Duration,
    winners: Mutex<HashMap<(HostName, u16), (SocketAddr, Instant)>>,
}

/// How many host:port entries the memory keeps at most; past it, expired
/// entries are dropped, then the whole map (it is only a hint).
const MEMORY_CAPACITY: usize = 4096;

impl FamilyMemory {
    /// A memory whose entries last `ttl`.
    pub fn new(ttl: Duration) -> Self {
        FamilyMemory {
            ttl,
            winners: Mutex::new(HashMap::new()),
        }
    }

    /// The address that last won for `host:port`, if recent enough.
    pub fn get(&self, host: &HostName, port: u16) -> Option<SocketAddr> {
        let winners = self.winners.lock().ok()?;
        let (addr, at) = winners.get(&(host.clone(), port))?;
        (at.elapsed() < self.ttl).then_some(*addr)
    }

    /// Records that `addr` won for `host:port`.
    pub fn remember(&self, host: &HostName, port: u16, addr: SocketAddr) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut winners) = self.winners.lock() {
            if winners.len() >= MEMORY_CAPACITY {
                let ttl = self.ttl;
                winners.retain(|_, (_, at)| at.elapsed() < ttl);
                if winners.len() >= MEMORY_CAPACITY {
                    winners.clear();
                }
            }
            winners.insert((host.clone(), port), (addr, Instant::now()));
        }
    }
}
