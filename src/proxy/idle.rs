//! A client connection's two waits between requests, as Go's `http.Server` times LiteFS's
//! proxy: `idle-timeout` while a kept-alive connection sits with no request in progress
//! and no byte of the next one, then `read-header-timeout` from the next request's first
//! byte until its head is whole (hyper's own head timer would start at the idle wait).
//!
//! The service marks each request with [`Activity::begin`] when hyper hands it over and
//! the guard's drop (when the response body ended or was dropped) when it is done; this
//! connection wrapper fails the read that waits past the current deadline, and hyper
//! closes the connection.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Requests of one connection in progress (shared by the connection and its service).
#[derive(Debug, Clone, Default)]
pub struct Activity(Arc<AtomicUsize>);

/// Added to the count for good once the connection switched protocols (a WebSocket may
/// be quiet for as long as it likes).
const UPGRADED: usize = 1 << 32;

impl Activity {
    /// A request was handed to the service; done when the guard drops.
    pub fn begin(&self) -> Busy {
        self.0.fetch_add(1, Ordering::AcqRel);
        Busy(self.0.clone())
    }

    /// The connection switched protocols: no more HTTP waits on it.
    pub fn upgraded(&self) {
        self.0.fetch_add(UPGRADED, Ordering::AcqRel);
    }

    fn busy(&self) -> bool {
        self.0.load(Ordering::Acquire) > 0
    }
}

/// A response body that holds its request's [`Busy`] until it ends or is dropped.
pub struct Guarded<B> {
    inner: B,
    _busy: Busy,
}

impl<B> Guarded<B> {
    pub fn new(inner: B, busy: Busy) -> Guarded<B> {
        Guarded { inner, _busy: busy }
    }
}

impl<B: axum::body::HttpBody + Unpin> axum::body::HttpBody for Guarded<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// See [`Activity::begin`].
#[derive(Debug)]
pub struct Busy(Arc<AtomicUsize>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Where the connection is between requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A request is in progress: no deadline here.
    Busy,
    /// Waiting for the next request's first byte, since then.
    Idle,
    /// The next request's head has started arriving.
    Head,
}

/// See the module docs.
pub struct IdleIo<T> {
    io: T,
    activity: Activity,
    idle: Option<Duration>,
    head: Option<Duration>,
    phase: Phase,
    timer: Pin<Box<Sleep>>,
}

impl<T> IdleIo<T> {
    /// `io` with the two timeouts (`None`: that wait is not bounded).
    pub fn new(io: T, idle: Option<Duration>, head: Option<Duration>) -> (IdleIo<T>, Activity) {
        let activity = Activity::default();
        let mut me = IdleIo {
            io,
            activity: activity.clone(),
            idle,
            head,
            phase: Phase::Busy,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
        };
        // A new connection waits for its first request's head.
        me.enter(Phase::Head);
        (me, activity)
    }

    fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        let limit = match phase {
            Phase::Busy => None,
            Phase::Idle => self.idle,
            Phase::Head => self.head,
        };
        if let Some(d) = limit {
            self.timer.as_mut().reset(Instant::now() + d);
        }
    }

    fn limit(&self) -> Option<Duration> {
        match self.phase {
            Phase::Busy => None,
            Phase::Idle => self.idle,
            Phase::Head => self.head,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // The phase as the service sees it: busy while a request is in progress; once it
        // is done, idle until a byte comes.
        match (this.phase, this.activity.busy()) {
            (Phase::Idle | Phase::Head, true) => this.enter(Phase::Busy),
            (Phase::Busy, false) => this.enter(Phase::Idle),
            _ => {}
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.phase == Phase::Idle && buf.filled().len() > before {
                    this.enter(Phase::Head);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if this.limit().is_some() && this.timer.as_mut().poll(cx).is_ready() {
                    let what = if this.phase == Phase::Idle {
                        "idle past proxy.idle-timeout"
                    } else {
                        "request head not received within proxy.read-header-timeout"
                    };
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)));
                }
                Poll::Pending
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
