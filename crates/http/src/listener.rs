use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferrocast_hub::Metrics;
use ferrocast_hub::net::WriteStallTimeout;
use tokio::net::{TcpListener, TcpStream};

/// A TCP listener for axum whose connections fail a write that makes no progress for the stall timeout, so a
/// viewer that stopped reading is disconnected instead of holding its response forever.
pub struct StallTimeoutListener {
    inner: TcpListener,
    stall_timeout: Duration,
    metrics: Arc<Metrics>,
}

impl StallTimeoutListener {
    /// Wraps a bound listener.
    pub fn new(inner: TcpListener, stall_timeout: Duration, metrics: Arc<Metrics>) -> Self {
        StallTimeoutListener { inner, stall_timeout, metrics }
    }
}

impl axum::serve::Listener for StallTimeoutListener {
    type Io = WriteStallTimeout<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    // Latency matters more than packet count for live media.
                    let _ = stream.set_nodelay(true);
                    return (
                        WriteStallTimeout::new(stream, self.stall_timeout).with_metrics(self.metrics.clone()),
                        addr,
                    );
                }
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// The address of the client of an HTTP connection, for `ConnectInfo`.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, StallTimeoutListener>> for ClientAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, StallTimeoutListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}
