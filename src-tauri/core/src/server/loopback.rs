//! The listening sockets: loopback only, on IPv4 and IPv6, one port. Nothing else on the
//! network can reach a local model server that was never meant to be shared.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

pub struct Loopback {
    v4: TcpListener,
    /// `None` where the machine has no IPv6 loopback (disabled IPv6), or the port is taken there.
    v6: Option<TcpListener>,
}

impl Loopback {
    /// Binds 127.0.0.1:`port` (0: a free one), then [::1] on the same port.
    pub async fn bind(port: u16) -> io::Result<Self> {
        let v4 = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await?;
        let port = v4.local_addr()?.port();
        let v6 = match TcpListener::bind((Ipv6Addr::LOCALHOST, port)).await {
            Ok(listener) => Some(listener),
            Err(e) => {
                tracing::info!(error = %e, port, "not listening on [::1]; 127.0.0.1 only");
                None
            }
        };
        Ok(Self { v4, v6 })
    }

    /// The IPv4 address: the one printed and used by the app's windows.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.v4.local_addr()
    }
}

impl axum::serve::Listener for Loopback {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            let accepted = match &self.v6 {
                Some(v6) => tokio::select! {
                    accepted = self.v4.accept() => accepted,
                    accepted = v6.accept() => accepted,
                },
                None => self.v4.accept().await,
            };
            match accepted {
                Ok(connection) => return connection,
                // Out of file descriptors, or a client gone before the handshake ended: the
                // next accept may succeed; pausing keeps a persistent error from spinning.
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Loopback::local_addr(self)
    }
}
