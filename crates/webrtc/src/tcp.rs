//! ICE over TCP (RFC 6544): passive host candidates on one TCP port, packets framed with a 16-bit length
//! (RFC 4571). A connection is routed like a UDP source address: by the STUN USERNAME of its first frame, then by
//! its address.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::{Inner, SessionMsg};

/// Accepts ICE-TCP connections until the listener fails.
pub(crate) async fn accept(inner: Arc<Inner>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(inner.clone(), stream, peer));
            }
            Err(e) => {
                tracing::debug!(error = %e, "ice-tcp accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve(inner: Arc<Inner>, stream: TcpStream, peer: SocketAddr) {
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(1024);
    inner.set_tcp_connection(peer, Some(tx));
    let writer = tokio::spawn(async move {
        while let Some(packet) = rx.recv().await {
            let Ok(len) = u16::try_from(packet.len()) else { continue };
            let mut framed = Vec::with_capacity(packet.len() + 2);
            framed.extend_from_slice(&len.to_be_bytes());
            framed.extend_from_slice(&packet);
            if wr.write_all(&framed).await.is_err() {
                break;
            }
        }
    });
    let mut buf = vec![0u8; 65_536];
    let mut routed = false;
    loop {
        let mut len = [0u8; 2];
        if rd.read_exact(&mut len).await.is_err() {
            break;
        }
        let n = u16::from_be_bytes(len) as usize;
        if rd.read_exact(&mut buf[..n]).await.is_err() {
            break;
        }
        let data = &buf[..n];
        let Some(session) = inner.route(peer, data) else {
            if !routed {
                tracing::debug!(%peer, "ice-tcp connection for no session; closing");
                break;
            }
            continue;
        };
        routed = true;
        if session.try_send(SessionMsg::Datagram { source: peer, data: data.to_vec(), tcp: true }).is_err() {
            tracing::debug!(%peer, "webrtc session queue full; ice-tcp packet dropped");
        }
    }
    inner.set_tcp_connection(peer, None);
    writer.abort();
}
