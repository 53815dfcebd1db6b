//! The connections of a [`TestEchoServer`](super::TestEchoServer): counted, and
//! frozen on demand.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A freeze switch: while frozen, connections that poll it park until thawed.
#[derive(Debug, Default)]
pub(super) struct Freeze {
    frozen: AtomicBool,
    /// The tasks of connections that found the server frozen; woken on thaw.
    parked: Mutex<Vec<Waker>>,
}

/// What a server's connections share: counters and the freeze switch.
#[derive(Debug, Default)]
pub(super) struct Conns {
    accepted: AtomicU64,
    open: AtomicU64,
    freeze: Freeze,
}

// === impl Conns ===

impl Conns {
    pub(super) fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    pub(super) fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    pub(super) fn freeze(&self) {
        self.freeze.freeze();
    }

    pub(super) fn thaw(&self) {
        self.freeze.thaw();
    }

    fn poll_thawed(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.freeze.poll_thawed(cx)
    }
}

// === impl Freeze ===

impl Freeze {
    pub(super) fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    pub(super) fn thaw(&self) {
        let parked = {
            let mut parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
            // Cleared under the lock, so no poll can park after the wakers are taken.
            self.frozen.store(false, Ordering::SeqCst);
            std::mem::take(&mut *parked)
        };
        parked.into_iter().for_each(Waker::wake);
    }

    /// Ready unless frozen; when frozen, parks the task until [`thaw`](Self::thaw).
    pub(super) fn poll_thawed(&self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.frozen.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        let mut parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
        if !self.frozen.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        if !parked.iter().any(|w| w.will_wake(cx.waker())) {
            parked.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

pin_project_lite::pin_project! {
    /// An accepted connection that keeps the counts of [`Conns`] up to date and
    /// neither reads nor writes while the server is frozen.
    pub(super) struct CountedStream {
        #[pin]
        inner: tokio::net::TcpStream,
        conns: Arc<Conns>,
    }

    impl PinnedDrop for CountedStream {
        fn drop(this: Pin<&mut Self>) {
            this.conns.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

// === impl CountedStream ===

impl CountedStream {
    pub(super) fn new(inner: tokio::net::TcpStream, conns: Arc<Conns>) -> Self {
        conns.accepted.fetch_add(1, Ordering::Relaxed);
        conns.open.fetch_add(1, Ordering::Relaxed);
        CountedStream { inner, conns }
    }
}

impl tonic::transport::server::Connected for CountedStream {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for CountedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.conns.poll_thawed(cx));
        self.project().inner.poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        std::task::ready!(self.conns.poll_thawed(cx));
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.conns.poll_thawed(cx));
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        // A stopped process sends no FIN either.
        std::task::ready!(self.conns.poll_thawed(cx));
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        std::task::ready!(self.conns.poll_thawed(cx));
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
