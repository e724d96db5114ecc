//! The gateway's listening sockets.

use crate::error::{Error, ErrorKind};
use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpSocket};

/// How many connections the kernel queues before the gateway accepts them.
const BACKLOG: u32 = 1024;

/// Listens on `addr`. `[::]` takes IPv4 too where the OS maps it onto IPv6
/// (Linux does unless `net.ipv6.bindv6only` is set).
pub(crate) fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    let socket = if addr.is_ipv6() {
        TcpSocket::new_v6()
    } else {
        TcpSocket::new_v4()
    };
    let listen = |socket: TcpSocket| -> std::io::Result<TcpListener> {
        // A restarted gateway can listen again at once, without waiting for
        // the old connections' TIME_WAIT.
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(BACKLOG)
    };
    socket
        .and_then(listen)
        .map_err(|e| Error::new(ErrorKind::Config, format!("cannot listen on {addr}: {e}")).with_stated_source(e))
}
