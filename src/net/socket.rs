//! The endpoint's UDP socket, wrapped so that a stopping node can tell when the
//! port is free again.
//!
//! quinn closes the socket in its endpoint driver, a task of its own that ends
//! once the last endpoint handle is dropped and the last closed connection has
//! drained. That happens after the node's own task has ended: a node whose
//! `shutdown` returned could still hold its port for a moment (or a few seconds
//! while a half-open connection drains), and a node restarted at once on the
//! same port failed with "address in use". The wrapper here delegates every call
//! to quinn's tokio socket and drops a watch sender right after that socket is
//! closed; [`SocketClosed::wait`] resolves then.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, Runtime, UdpPoller};
use tokio::sync::watch;

/// Resolves once the socket it was taken from is closed.
#[derive(Debug, Clone)]
pub struct SocketClosed(watch::Receiver<()>);

impl SocketClosed {
    /// Waits until the socket is closed.
    pub async fn wait(mut self) {
        while self.0.changed().await.is_ok() {}
    }
}

/// Wraps `socket` for quinn's tokio runtime; the second half resolves when the
/// wrapped socket is closed.
pub(super) fn wrap(
    socket: std::net::UdpSocket,
) -> io::Result<(Arc<dyn AsyncUdpSocket>, SocketClosed)> {
    let inner = quinn::TokioRuntime.wrap_udp_socket(socket)?;
    let (sender, receiver) = watch::channel(());
    let watched = Watched {
        inner,
        _closed: sender,
    };
    Ok((Arc::new(watched), SocketClosed(receiver)))
}

/// quinn's socket and the sender dropped after it. Fields drop in order: the
/// socket first (every poller holds this struct, so nothing else holds the
/// socket by then), then the sender.
struct Watched {
    inner: Arc<dyn AsyncUdpSocket>,
    _closed: watch::Sender<()>,
}

impl fmt::Debug for Watched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Watched").field(&self.inner).finish()
    }
}

impl AsyncUdpSocket for Watched {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(WatchedPoller {
            inner: self.inner.clone().create_io_poller(),
            _socket: self,
        })
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_recv(cx, bufs, meta)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

/// quinn's poller, holding the wrapper (and so the sender) while it lives.
struct WatchedPoller {
    inner: Pin<Box<dyn UdpPoller>>,
    _socket: Arc<Watched>,
}

impl fmt::Debug for WatchedPoller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("WatchedPoller").field(&self.inner).finish()
    }
}

impl UdpPoller for WatchedPoller {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context) -> Poll<io::Result<()>> {
        self.get_mut().inner.as_mut().poll_writable(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn it_resolves_once_the_socket_is_closed_and_not_before() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let (wrapped, closed) = wrap(socket).unwrap();
        let poller = wrapped.clone().create_io_poller();
        drop(wrapped);
        // A poller still holds it: open.
        let early = tokio::time::timeout(Duration::from_millis(50), closed.clone().wait()).await;
        assert!(early.is_err());
        assert!(std::net::UdpSocket::bind(addr).is_err());
        drop(poller);
        closed.wait().await;
        assert!(std::net::UdpSocket::bind(addr).is_ok(), "the port is free");
    }
}
