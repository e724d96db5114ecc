//! How long a written answer waits in the kernel's send queue: what
//! [`Behaviour::NagleTickets`](crate::Behaviour::NagleTickets) records.
//!
//! Under Nagle's algorithm a small segment is not sent while anything sent
//! earlier is unacknowledged. The bytes it holds back are in the socket's
//! send queue but not yet sent: `tcpi_notsent_bytes` of `TCP_INFO`. Reading
//! it until it is zero gives how long the answer was held, without a packet
//! capture.

use std::time::{Duration, Instant};

/// How often the send queue is looked at. A client's delayed ACK is at
/// least 40 ms; a millisecond tells it from an answer sent at once.
const POLL_EVERY: Duration = Duration::from_millis(1);

/// The longest hold measured: past it the hold is reported as this long.
const MAX_HOLD: Duration = Duration::from_secs(2);

/// A connected socket's send queue, looked at through its descriptor.
pub(crate) struct SendQueue {
    #[cfg(target_os = "linux")]
    fd: std::os::fd::RawFd,
}

impl SendQueue {
    /// The send queue of `stream`. The caller keeps `stream` open for as
    /// long as it uses the queue (the descriptor is borrowed, not owned).
    pub(crate) fn of(stream: &tokio::net::TcpStream) -> SendQueue {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            SendQueue { fd: stream.as_raw_fd() }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = stream;
            SendQueue {}
        }
    }

    /// Bytes written but not yet sent, or `None` where `TCP_INFO` cannot be
    /// read.
    #[cfg(target_os = "linux")]
    fn unsent(&self) -> Option<u32> {
        // SAFETY: `tcp_info` is plain data, valid when zeroed; the kernel
        // writes at most `len` bytes into it; `fd` is an open TCP socket
        // for as long as `self` is used (see `of`).
        unsafe {
            let mut info: libc::tcp_info = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
            let rc = libc::getsockopt(
                self.fd,
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&raw mut info).cast(),
                &mut len,
            );
            (rc == 0).then_some(info.tcpi_notsent_bytes)
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn unsent(&self) -> Option<u32> {
        None
    }

    /// Waits until everything written has been sent and returns how long
    /// that took, at most [`MAX_HOLD`]; `None` where the queue cannot be
    /// read.
    pub(crate) async fn wait_sent(&self) -> Option<Duration> {
        let started = Instant::now();
        // Bounded by MAX_HOLD / POLL_EVERY looks, about 2000.
        loop {
            if self.unsent()? == 0 {
                return Some(started.elapsed());
            }
            if started.elapsed() >= MAX_HOLD {
                return Some(MAX_HOLD);
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}
