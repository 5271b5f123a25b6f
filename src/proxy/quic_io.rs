//! One bidirectional QUIC stream as a byte pipe for hyper's HTTP/1.1 driver, remembering the
//! application error code the peer reset or stopped it with (a primary refuses a forwarded
//! request that way before reading it, `protocol.md` §16).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The code the peer ended the stream with (0: none seen).
#[derive(Debug, Clone, Default)]
pub struct PeerCode(Arc<AtomicU64>);

impl PeerCode {
    pub fn get(&self) -> Option<u32> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            c => u32::try_from(c - 1).ok(),
        }
    }

    fn note(&self, e: &io::Error) {
        let code = e.get_ref().and_then(|inner| {
            if let Some(quinn::ReadError::Reset(c)) = inner.downcast_ref::<quinn::ReadError>() {
                return Some(c.into_inner());
            }
            if let Some(quinn::WriteError::Stopped(c)) = inner.downcast_ref::<quinn::WriteError>() {
                return Some(c.into_inner());
            }
            None
        });
        if let Some(c) = code {
            // The first code seen stays (both directions carry the same one).
            let _ = self.0.compare_exchange(0, c + 1, Ordering::AcqRel, Ordering::Acquire);
        }
    }
}

/// See the module docs.
pub struct QuicIo {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    code: PeerCode,
}

impl QuicIo {
    pub fn new(send: quinn::SendStream, recv: quinn::RecvStream) -> (QuicIo, PeerCode) {
        let code = PeerCode::default();
        (QuicIo { send, recv, code: code.clone() }, code)
    }
}

impl AsyncRead for QuicIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = AsyncRead::poll_read(Pin::new(&mut this.recv), cx, buf);
        if let Poll::Ready(Err(e)) = &r {
            this.code.note(e);
        }
        r
    }
}

impl AsyncWrite for QuicIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = AsyncWrite::poll_write(Pin::new(&mut this.send), cx, buf);
        if let Poll::Ready(Err(e)) = &r {
            this.code.note(e);
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_flush(Pin::new(&mut self.get_mut().send), cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_shutdown(Pin::new(&mut self.get_mut().send), cx)
    }
}
