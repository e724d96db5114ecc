//! sockets-importer: a wsgate plugin that imports `wasi:sockets`, for the
//! host's sandbox tests.
//!
//! It attacks the rule that plugins reach the network only through the
//! host's `connect`: it opens a TCP socket of its own with
//! `wasi:sockets/tcp-create-socket` and connects it to 127.0.0.1:9 over
//! `wasi:sockets/instance-network`, bypassing the host's policy, limits
//! and race log.
//!
//! The host is expected to refuse it at load, before it runs, with an
//! error naming the `wasi:sockets` interface it imports. Should a host run
//! it anyway, it prints `connected` (exit 0) or `error: ERROR` (the Debug
//! form of the `wasi:sockets` error code, exit 2) on standard output.

use std::io::Write as _;
use std::process::ExitCode;
use wasip2::sockets::instance_network::instance_network;
use wasip2::sockets::network::{ErrorCode, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress};
use wasip2::sockets::tcp_create_socket::create_tcp_socket;

/// The discard port on the loopback address.
const TARGET: Ipv4SocketAddress = Ipv4SocketAddress {
    port: 9,
    address: (127, 0, 0, 1),
};

fn main() -> ExitCode {
    match connect() {
        Ok(()) => {
            println!("connected");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("error: {e:?}");
            let _ = std::io::stdout().flush();
            // `exit-with-code`: the standard library's exit only tells the
            // host success or failure (1).
            wasip2::cli::exit::exit_with_code(2);
            ExitCode::from(2)
        }
    }
}

/// Connects a socket of its own to [`TARGET`], without the host.
fn connect() -> Result<(), ErrorCode> {
    let network = instance_network();
    let socket = create_tcp_socket(IpAddressFamily::Ipv4)?;
    socket.start_connect(&network, IpSocketAddress::Ipv4(TARGET))?;
    let ready = socket.subscribe();
    loop {
        match socket.finish_connect() {
            Ok((input, output)) => {
                drop((input, output));
                return Ok(());
            }
            Err(ErrorCode::WouldBlock) => ready.block(),
            Err(e) => return Err(e),
        }
    }
}
