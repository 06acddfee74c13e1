//! Every port sends at once: the connections each of the gateway's servers accepts have `TCP_NODELAY`
//! set. Without it, Nagle's algorithm holds the later writes of an answer (a gRPC answer's trailers after
//! its message) until the client acknowledges the earlier ones, which Linux delays by up to 40 ms.

mod common;

use std::{
    net::SocketAddr,
    os::fd::{BorrowedFd, RawFd},
    time::{Duration, Instant},
};

use common::{TestGateway, TestSandbox, sandbox::AUTH_CODES};
use tokio::net::TcpStream;

/// Whether the connection this process accepted on `local` from `peer` has `TCP_NODELAY` set, once the
/// server has accepted it.
async fn accepted_without_delay(local: SocketAddr, peer: SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
            let Ok(fd) = entry.file_name().to_string_lossy().parse::<RawFd>() else {
                continue;
            };
            let is_socket = std::fs::read_link(entry.path())
                .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
            if !is_socket {
                continue;
            }
            // SAFETY: the descriptor is only asked for its addresses and one option. Had it been closed
            // since it was listed, those calls fail (EBADF); had its number been reused, the addresses
            // would not match.
            let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
            let socket = socket2::SockRef::from(&borrowed);
            let address =
                |a: std::io::Result<socket2::SockAddr>| a.ok().and_then(|a| a.as_socket());
            if address(socket.local_addr()) == Some(local)
                && address(socket.peer_addr()) == Some(peer)
            {
                return socket.tcp_nodelay().unwrap();
            }
        }
        assert!(
            Instant::now() < deadline,
            "the server on {local} never accepted {peer}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn every_port_sends_its_answers_without_waiting_for_acknowledgements() {
    let sandbox = TestSandbox::in_process(|_| {}).await;
    let gateway = TestGateway::start(
        &sandbox,
        AUTH_CODES[0],
        "[health]\nlisten = \"127.0.0.1:0\"\n",
    )
    .await;
    let running = gateway.gateway();
    let ports = [
        ("gRPC", running.grpc_addr),
        ("health", running.health_addr.expect("a health port")),
        ("webhook", running.webhook_addr),
        ("admin", running.admin_addr),
    ];
    for (port, addr) in ports {
        let client = TcpStream::connect(addr).await.unwrap();
        let peer = client.local_addr().unwrap();
        assert!(
            accepted_without_delay(addr, peer).await,
            "the {port} port accepted a connection without TCP_NODELAY"
        );
    }
}
