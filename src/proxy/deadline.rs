//! A body that fails once a deadline passes before it ended: `proxy.read-timeout` on
//! request bodies and `proxy.write-timeout` on response bodies (both counted from the
//! request's arrival, as Go's `http.Server` counts LiteFS's).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::body::HttpBody;
use bytes::Bytes;
use hyper::body::Frame;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Whether a [`Deadline`] fired (shared with whoever reports the failure).
#[derive(Debug, Clone, Default)]
pub struct Fired(Arc<AtomicBool>);

impl Fired {
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// See the module docs.
pub struct Deadline<B> {
    inner: B,
    sleep: Pin<Box<tokio::time::Sleep>>,
    what: &'static str,
    fired: Fired,
    ended: bool,
}

impl<B> Deadline<B> {
    /// `inner`, failing with "`what` timed out" at `at` unless it ended by then.
    pub fn new(inner: B, at: tokio::time::Instant, what: &'static str) -> (Deadline<B>, Fired) {
        let fired = Fired::default();
        let d = Deadline {
            inner,
            sleep: Box::pin(tokio::time::sleep_until(at)),
            what,
            fired: fired.clone(),
            ended: false,
        };
        (d, fired)
    }
}

impl<B> HttpBody for Deadline<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if !this.ended && this.sleep.as_mut().poll(cx).is_ready() {
            this.fired.0.store(true, Ordering::Release);
            this.ended = true;
            return Poll::Ready(Some(Err(format!("{} timed out", this.what).into())));
        }
        if this.ended && this.fired.get() {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(r)) => Poll::Ready(Some(r.map_err(Into::into))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
