//! The listening sockets, and the cap on connections served at once.
//!
//! By default Headroom listens on loopback only, IPv4 and IPv6, one port: nothing else on the
//! network can reach a local model server that was never meant to be shared. The `bind` setting
//! names another address instead (and the settings then insist on an API key).
//!
//! Every connection holds a permit while it is open. With none left, the connection is
//! answered `503` with `Retry-After` and closed, rather than left in the kernel's backlog
//! where a client cannot tell a busy server from a dead one.

use std::io;
use std::net::{Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Bind;

pub struct Listeners {
    first: TcpListener,
    /// [::1] beside 127.0.0.1 for `Bind::Loopback`; `None` where the machine has no IPv6
    /// loopback (disabled IPv6) or the port is taken there, and for a single address.
    second: Option<TcpListener>,
    connections: OpenConnections,
}

impl Listeners {
    /// Binds `bind` on `port` (0: a free one). For loopback, 127.0.0.1 first, then [::1] on the
    /// port it got.
    pub async fn bind(bind: Bind, port: u16, max_connections: usize) -> io::Result<Self> {
        let first = TcpListener::bind((bind.first_ip(), port)).await?;
        let second = match bind {
            Bind::Address(_) => None,
            Bind::Loopback => {
                let port = first.local_addr()?.port();
                match TcpListener::bind((Ipv6Addr::LOCALHOST, port)).await {
                    Ok(listener) => Some(listener),
                    Err(e) => {
                        tracing::info!(error = %e, port, "not listening on [::1]; 127.0.0.1 only");
                        None
                    }
                }
            }
        };
        Ok(Self {
            first,
            second,
            connections: OpenConnections {
                permits: Arc::new(Semaphore::new(max_connections)),
                max: max_connections,
            },
        })
    }

    /// A count of the connections open now, for the metrics.
    pub fn open_connections(&self) -> OpenConnections {
        self.connections.clone()
    }

    /// The first address: the one printed and used by the app's windows.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.first.local_addr()
    }

    async fn accept_any(&self) -> io::Result<(TcpStream, SocketAddr)> {
        match &self.second {
            Some(second) => tokio::select! {
                accepted = self.first.accept() => accepted,
                accepted = second.accept() => accepted,
            },
            None => self.first.accept().await,
        }
    }
}

impl axum::serve::Listener for Listeners {
    type Io = Connection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Connection, SocketAddr) {
        loop {
            match self.accept_any().await {
                Ok((stream, address)) => {
                    match Arc::clone(&self.connections.permits).try_acquire_owned() {
                        Ok(permit) => {
                            let connection = Connection {
                                stream,
                                _permit: permit,
                            };
                            return (connection, address);
                        }
                        Err(_) => {
                            tokio::spawn(turn_away(stream));
                        }
                    }
                }
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
        Listeners::local_addr(self)
    }
}

/// How many connections are open: the permits taken.
#[derive(Clone)]
pub struct OpenConnections {
    permits: Arc<Semaphore>,
    max: usize,
}

impl OpenConnections {
    pub fn now(&self) -> usize {
        self.max.saturating_sub(self.permits.available_permits())
    }
}

/// The answer to a connection beyond the cap, in the API's error shape.
const TOO_MANY: &str = concat!(
    "HTTP/1.1 503 Service Unavailable\r\n",
    "Content-Type: application/json\r\n",
    "Retry-After: 1\r\n",
    "Connection: close\r\n",
    "Content-Length: 135\r\n",
    "\r\n",
    r#"{"error":{"message":"too many connections to Headroom at once; retry in a second","#,
    r#""type":"server_error","code":"too_many_connections"}}"#,
);

/// Answers before reading the request: whatever it was, it is refused, and a client that sent
/// a body sees the answer and the close rather than a reset.
async fn turn_away(mut stream: TcpStream) {
    let answer = async {
        stream.write_all(TOO_MANY.as_bytes()).await?;
        stream.shutdown().await
    };
    if tokio::time::timeout(Duration::from_secs(2), answer)
        .await
        .is_err()
    {
        tracing::debug!("a turned-away client did not take its 503");
    }
}

/// An accepted connection; its permit returns to the pool when hyper drops it.
pub struct Connection {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_whole_http_response() {
        let (head, body) = TOO_MANY.split_once("\r\n\r\n").expect("head and body");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|n| n.parse().ok())
            .expect("a length");
        assert_eq!(body.len(), length);
        let json: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(json["error"]["code"], "too_many_connections");
    }
}
