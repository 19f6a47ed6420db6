//! Socket plumbing shared by every egress protocol: a write-stall timeout and a vectored write of a gather list.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use crate::Metrics;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Sleep;

/// Wraps a socket so that a write which makes no progress for `timeout` fails with `TimedOut`.
/// This is how a viewer that stays stuck gets disconnected, whatever protocol stack sits on top of the socket.
pub struct WriteStallTimeout<S> {
    inner: S,
    timeout: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
    metrics: Option<Arc<Metrics>>,
}

impl<S> WriteStallTimeout<S> {
    /// Wraps `inner`; a zero timeout disables the check.
    pub fn new(inner: S, timeout: Duration) -> Self {
        WriteStallTimeout { inner, timeout, deadline: None, metrics: None }
    }

    /// Counts stall disconnects in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The wrapped socket.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    fn on_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if self.timeout.is_zero() {
            return Poll::Pending;
        }
        let timeout = self.timeout;
        let sleep = self.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(sleep.as_mut().poll(cx));
        self.deadline = None;
        if let Some(m) = &self.metrics {
            m.viewers_disconnected_stalled.fetch_add(1, Ordering::Relaxed);
        }
        Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, "peer stopped reading (write stalled)"))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteStallTimeout<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteStallTimeout<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                self.deadline = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.on_pending(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                self.deadline = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.on_pending(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(r) => {
                self.deadline = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.on_pending(cx).map(Err),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Most buffers one `writev` takes (Linux IOV_MAX is 1024).
const MAX_IOVECS: usize = 1024;

/// Writes every buffer of a gather list with as few vectored writes as the socket allows. Returns the bytes
/// written.
pub async fn write_all_vectored<W: AsyncWrite + Unpin>(w: &mut W, bufs: &[&[u8]]) -> io::Result<u64> {
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    if !w.is_write_vectored() {
        for b in bufs {
            w.write_all(b).await?;
        }
        return Ok(total as u64);
    }
    let mut slices: Vec<IoSlice<'_>> = bufs.iter().filter(|b| !b.is_empty()).map(|b| IoSlice::new(b)).collect();
    let mut rest: &mut [IoSlice<'_>] = &mut slices;
    while !rest.is_empty() {
        let n = rest.len().min(MAX_IOVECS);
        let written = w.write_vectored(&rest[..n]).await?;
        if written == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "socket accepted no bytes"));
        }
        IoSlice::advance_slices(&mut rest, written);
    }
    Ok(total as u64)
}

/// Flattens a list of gather lists into byte slices for [`write_all_vectored`].
pub fn gather<'a>(lists: impl IntoIterator<Item = &'a [Bytes]>, out: &mut Vec<&'a [u8]>) {
    for list in lists {
        out.extend(list.iter().map(|b| b.as_ref()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn vectored_write_delivers_everything_in_order() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let parts: Vec<Vec<u8>> = (0..300u32).map(|i| vec![(i % 251) as u8; (i % 7) as usize + 1]).collect();
        let expected: Vec<u8> = parts.concat();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            b.read_to_end(&mut got).await.map(|_| got)
        });
        let slices: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
        let n = write_all_vectored(&mut a, &slices).await.expect("write");
        drop(a);
        assert_eq!(n as usize, expected.len());
        assert_eq!(reader.await.expect("join").expect("read"), expected);
    }

    #[tokio::test(start_paused = true)]
    async fn stalled_writes_time_out() {
        let (a, _b) = tokio::io::duplex(16);
        let mut w = WriteStallTimeout::new(a, Duration::from_secs(3));
        w.write_all(&[0u8; 16]).await.expect("fits in the pipe");
        let err = w.write_all(&[0u8; 1]).await.expect_err("the reader never reads");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
