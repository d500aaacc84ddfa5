//! A loopback port that refuses connections for as long as it is held.
//!
//! Binding a listener to port 0, reading its port and dropping it frees the port: another test
//! running at the same time may then be given it for its own upstream, and a request meant to fail
//! to connect reaches that upstream instead. A socket bound but never listening holds the port and
//! refuses every connection (the kernel answers RST).

/// A refusing port, held until dropped.
pub struct ClosedPort {
    _socket: tokio::net::TcpSocket,
    /// The port number.
    pub port: u16,
}

impl ClosedPort {
    /// Binds an ephemeral loopback port without listening on it.
    pub fn new() -> std::io::Result<Self> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let port = socket.local_addr()?.port();
        Ok(ClosedPort { _socket: socket, port })
    }
}
