//! A link between two namespaces, in userspace, that delays IPv6 packets
//! and not IPv4 ones.
//!
//! Each namespace has a TUN device ([`Tun`]); the [`Wire`] copies every
//! packet one device's stack sends to the other device, holding IPv6
//! packets for the configured one-way delay. This is what `tc qdisc ...
//! netem delay` behind a `tc filter ... protocol ipv6` would do, without
//! needing `sch_netem` (or `sch_prio`), which many kernels are built
//! without: the TUN driver is all it takes. Both families go through the
//! same threads and queues, so IPv4 pays the copying too (tens of
//! microseconds per direction), only not the delay.
//!
//! Per direction and family a queue keeps the packets in order; a packet
//! is released at its arrival time plus the delay in force when it
//! arrived, so changing the delay never reorders packets already queued.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often a waiting thread of the wire checks whether it should stop.
const POLL: Duration = Duration::from_millis(100);
/// Packets a queue holds at most; more are dropped, as a full device queue
/// would drop them (a handful of connects never comes near).
const QUEUE: usize = 4096;
/// The largest packet read from a device (its MTU is 1500).
const MAX_PACKET: usize = 65_536;
/// The longest one-way delay [`Wire::set_ipv6_delay`] accepts.
pub const MAX_DELAY: Duration = Duration::from_secs(2);

/// A TUN device (layer 3, no packet-information header), made in the
/// namespace of the thread that calls [`Tun::create`].
pub struct Tun {
    fd: OwnedFd,
}

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags (the
/// rest of the kernel's union is padding here).
#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 24],
}

impl Tun {
    /// Opens `/dev/net/tun` and makes the device `name` (at most 15 bytes)
    /// in the calling thread's network namespace. It is gone when the
    /// returned value is dropped (it is not persistent).
    pub fn create(name: &str) -> io::Result<Tun> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.bytes().any(|b| b == 0 || b == b'/') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad interface name"));
        }
        // SAFETY: a NUL-terminated path and plain flags.
        let raw = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor just opened and owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short,
            _pad: [0; 24],
        };
        for (slot, byte) in req.name.iter_mut().zip(name.bytes()) {
            *slot = byte as libc::c_char;
        }
        // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which
        // `IfReq` lays out (with room to spare).
        if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req as *mut IfReq) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Tun { fd })
    }
}

/// The link: two devices and the threads copying between them. Dropped,
/// it stops its threads (within [`POLL`] plus the longest delay queued).
pub struct Wire {
    stop: Arc<AtomicBool>,
    v6_delay_us: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

/// Which family a packet is, from its IP version nibble.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Version {
    V4,
    V6,
}

fn version(packet: &[u8]) -> Option<Version> {
    match packet.first().map(|b| b >> 4) {
        Some(4) => Some(Version::V4),
        Some(6) => Some(Version::V6),
        _ => None,
    }
}

type Queue = SyncSender<(Instant, Vec<u8>)>;

impl Wire {
    /// Joins `a` and `b`, IPv6 delayed by `v6_one_way` in each direction
    /// (the IPv6 round trip is twice that).
    pub fn start(a: Tun, b: Tun, v6_one_way: Duration) -> io::Result<Wire> {
        let mut wire = Wire {
            stop: Arc::new(AtomicBool::new(false)),
            v6_delay_us: Arc::new(AtomicU64::new(0)),
            dropped: Arc::new(AtomicU64::new(0)),
            threads: Vec::new(),
        };
        wire.set_ipv6_delay(v6_one_way);
        let (a, b) = (Arc::new(a.fd), Arc::new(b.fd));
        // From here on an early return drops `wire`, which stops what was
        // already started.
        for (from, to, label) in [(&a, &b, "a>b"), (&b, &a, "b>a")] {
            let v4 = wire.deliverer(to, &format!("wire-{label}-v4"))?;
            let v6 = wire.deliverer(to, &format!("wire-{label}-v6"))?;
            let (from, stop) = (Arc::clone(from), Arc::clone(&wire.stop));
            let (delay, dropped) = (Arc::clone(&wire.v6_delay_us), Arc::clone(&wire.dropped));
            wire.threads.push(
                std::thread::Builder::new()
                    .name(format!("wire-{label}"))
                    .spawn(move || receive(&from, [v4, v6], &delay, &dropped, &stop))?,
            );
        }
        Ok(wire)
    }

    /// A queue and the thread writing what it holds to `to`.
    fn deliverer(&mut self, to: &Arc<OwnedFd>, name: &str) -> io::Result<Queue> {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let (to, stop) = (Arc::clone(to), Arc::clone(&self.stop));
        self.threads.push(
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(move || deliver(&rx, &to, &stop))?,
        );
        Ok(tx)
    }

    /// Sets the one-way IPv6 delay for the packets that arrive from now on
    /// (at most [`MAX_DELAY`]).
    pub fn set_ipv6_delay(&self, one_way: Duration) {
        let us = one_way.min(MAX_DELAY).as_micros();
        self.v6_delay_us
            .store(u64::try_from(us).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Packets dropped because a queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Wire {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Reads packets from `from` and queues each for its family, stamped with
/// its release time, until `stop`.
fn receive(from: &OwnedFd, queues: [Queue; 2], v6_delay_us: &AtomicU64, dropped: &AtomicU64, stop: &AtomicBool) {
    let mut buf = vec![0u8; MAX_PACKET];
    let timeout_ms = POLL.as_millis() as libc::c_int;
    while !stop.load(Ordering::Relaxed) {
        let mut pollfd = libc::pollfd {
            fd: from.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut pollfd, 1, timeout_ms) };
        if ready <= 0 || pollfd.revents & libc::POLLIN == 0 {
            continue;
        }
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::read(from.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        let Ok(n) = usize::try_from(n) else { continue };
        let packet = &buf[..n];
        let (queue, delay) = match version(packet) {
            Some(Version::V4) => (&queues[0], Duration::ZERO),
            Some(Version::V6) => (&queues[1], Duration::from_micros(v6_delay_us.load(Ordering::Relaxed))),
            None => continue,
        };
        match queue.try_send((Instant::now() + delay, packet.to_vec())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
}

/// Writes each queued packet to `to` at its release time, in order, until
/// `stop`.
fn deliver(queue: &Receiver<(Instant, Vec<u8>)>, to: &OwnedFd, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let (release, packet) = match queue.recv_timeout(POLL) {
            Ok(item) => item,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let wait = release.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
        // SAFETY: `packet` is readable for its length. A failed write is a
        // lost packet, as on a real link; TCP sends it again.
        let _ = unsafe { libc::write(to.as_raw_fd(), packet.as_ptr().cast(), packet.len()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_are_told_apart_by_their_version_nibble() {
        assert_eq!(version(&[0x45, 0]), Some(Version::V4));
        assert_eq!(version(&[0x60, 0]), Some(Version::V6));
        assert_eq!(version(&[0x00]), None);
        assert_eq!(version(&[]), None);
    }

    #[test]
    fn bad_names_are_refused_before_the_kernel_sees_them() {
        for name in ["", "a-name-far-too-long", "a/b"] {
            assert_eq!(
                Tun::create(name).err().map(|e| e.kind()),
                Some(io::ErrorKind::InvalidInput)
            );
        }
    }
}
