//! Binding one port on both loopback families, each according to its behaviour.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener as StdTcpListener};
use std::time::Duration;

use anyhow::{Context, bail};
use socket2::{Domain, Protocol, Socket, Type};

use crate::Behaviour;

/// How many times an automatically chosen port is retried when the second
/// family's address turns out to be taken.
const PORT_PICK_ATTEMPTS: usize = 16;

/// Backlog for the serving listeners; generous so bursts of racing connects
/// from a test are never dropped by accident.
const SERVING_BACKLOG: i32 = 1024;

/// Upper bound on the connections opened to fill a blackhole's accept queue.
const BLACKHOLE_MAX_FILLERS: usize = 8;

/// A filler connect that has not completed within this is taken as dropped,
/// i.e. the queue is full.
const BLACKHOLE_FILL_PROBE: Duration = Duration::from_millis(100);

/// One family's socket, bound at the shared port.
pub(crate) enum Bound {
    /// A listener to accept and serve on.
    Serving(StdTcpListener),
    /// A listener with `listen(0)` that is never accepted on.
    Blackhole(StdTcpListener),
    /// A socket bound to the address but not listening. Connects to it are
    /// refused exactly as if nothing were bound; holding it keeps another
    /// process from taking the port for the testbed's lifetime.
    Reserved(Socket),
}

/// The loopback address of one family.
pub(crate) fn loopback(v6: bool, port: u16) -> SocketAddr {
    if v6 {
        SocketAddr::from((Ipv6Addr::LOCALHOST, port))
    } else {
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    }
}

/// Binds `[::1]:P` for `v6` and `127.0.0.1:P` for `v4`, the same P on both.
///
/// With `port == 0`, P is whatever the kernel gives the IPv6 side, and the
/// whole pair is retried (a bounded number of times) if that port is taken on
/// IPv4. With an explicit port there is no retry.
pub(crate) fn bind_pair(v6: Behaviour, v4: Behaviour, port: u16) -> anyhow::Result<(u16, Bound, Bound)> {
    let attempts = if port == 0 { PORT_PICK_ATTEMPTS } else { 1 };
    let mut last_err = None;
    for _ in 0..attempts {
        let v6_bound = bind_one(loopback(true, port), v6)
            .with_context(|| format!("binding [::1]:{port} for `{v6}` (is IPv6 loopback available?)"))?;
        let actual = local_port(&v6_bound)?;
        match bind_one(loopback(false, actual), v4) {
            Ok(v4_bound) => return Ok((actual, v6_bound, v4_bound)),
            Err(e) if port == 0 && e.kind() == io::ErrorKind::AddrInUse => {
                // Drop the IPv6 side and let the kernel pick another port.
                last_err = Some(e);
            }
            Err(e) => {
                return Err(e).with_context(|| format!("binding 127.0.0.1:{actual} for `{v4}`"));
            }
        }
    }
    match last_err {
        Some(e) => Err(e).context(format!(
            "no port free on both [::1] and 127.0.0.1 after {PORT_PICK_ATTEMPTS} attempts"
        )),
        None => bail!("no port attempt was made"),
    }
}

fn bind_one(addr: SocketAddr, behaviour: Behaviour) -> io::Result<Bound> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        // Without this the IPv6 socket could also take IPv4 traffic (on systems
        // where `bindv6only` is 0), and the families would no longer be separate.
        socket.set_only_v6(true)?;
    }
    // Lets an explicit port be reused right after a previous run whose
    // connections are still in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    match behaviour {
        Behaviour::Refused => Ok(Bound::Reserved(socket)),
        Behaviour::Blackhole => {
            // On Linux, backlog 0 lets the accept queue hold one connection;
            // once it is full, further SYNs are dropped (unless
            // net.ipv4.tcp_abort_on_overflow is set), which is the blackhole.
            socket.listen(0)?;
            Ok(Bound::Blackhole(socket.into()))
        }
        _ => {
            socket.listen(SERVING_BACKLOG)?;
            socket.set_nonblocking(true)?;
            Ok(Bound::Serving(socket.into()))
        }
    }
}

fn local_port(bound: &Bound) -> anyhow::Result<u16> {
    let addr = match bound {
        Bound::Serving(l) | Bound::Blackhole(l) => l.local_addr()?,
        Bound::Reserved(s) => s
            .local_addr()?
            .as_socket()
            .context("reserved socket has no inet address")?,
    };
    Ok(addr.port())
}

/// Fills the accept queue of a blackhole listener at `addr` with connections
/// the testbed opens itself, and returns them so the caller holds them.
///
/// Connects are opened one after another until one does not complete within
/// [`BLACKHOLE_FILL_PROBE`], which means the kernel dropped its SYN. Fails if
/// the queue never fills within [`BLACKHOLE_MAX_FILLERS`] connections, since
/// the blackhole could then not be promised.
pub(crate) async fn fill_accept_queue(addr: SocketAddr) -> anyhow::Result<Vec<std::net::TcpStream>> {
    let mut held = Vec::new();
    for _ in 0..BLACKHOLE_MAX_FILLERS {
        match tokio::time::timeout(BLACKHOLE_FILL_PROBE, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                // Held, never polled: a plain std socket needs no reactor.
                held.push(stream.into_std().context("detaching filler connection")?);
            }
            Ok(Err(e)) => {
                return Err(e).with_context(|| format!("filling the accept queue of {addr}"));
            }
            // The first connect lands in an empty queue and can only have
            // been slow (a loaded machine); try again rather than promise a
            // blackhole whose queue is not full.
            Err(_elapsed) if held.is_empty() => {}
            // Dropping the pending connect closes that socket in SYN_SENT;
            // nothing of it stays in the listener's queues.
            Err(_elapsed) => return Ok(held),
        }
    }
    bail!(
        "the accept queue of {addr} still took connections after {BLACKHOLE_MAX_FILLERS}; \
         this system does not drop SYNs on a full queue (net.ipv4.tcp_abort_on_overflow?)"
    )
}
