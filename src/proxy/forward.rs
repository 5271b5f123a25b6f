//! Forwarded requests, both ends (`protocol.md` §16): a replica sends a write to the primary
//! on a new bidirectional stream of its replication connection (kind byte, then one
//! HTTP/1.1 exchange); the primary serves that stream as if the request had come to its own
//! proxy, or resets it unread when it cannot (no longer the primary, no proxy).
//!
//! Never twice: a request is sent again only when the primary provably did not pass it to
//! its app ([`ForwardFailure`]); a body larger than [`REPLAY_LIMIT`] is streamed and never
//! resent (the client is told the request did not run and may send it again).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};

use super::quic_io::QuicIo;
use crate::core::proxy::{ForwardFailure, STREAM_PROXY, refusal};
use crate::node::NodeCtx;

/// How long a primary waits for a forwarded stream's kind byte and request head.
const HEAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A forwarded request that failed, and how far it got.
#[derive(Debug)]
pub struct Failed {
    pub how: ForwardFailure,
    /// What happened, for the client's error body and the log.
    pub why: String,
    /// The request, when it came back unsent (hyper hands it back if it never wrote it).
    pub request: Option<Request<Body>>,
    /// Whether another primary (or a later try) could take it: false when the primary
    /// refused it for good (it runs no proxy).
    pub again: bool,
}

/// Sends `req` to the primary on `conn` and returns the primary's response head.
pub async fn send(
    conn: &quinn::Connection,
    req: Request<Body>,
) -> Result<Response<Incoming>, Failed> {
    let not_sent =
        |why: String, req| Failed { how: ForwardFailure::NotSent, why, request: req, again: true };
    let (mut send, recv) = match conn.open_bi().await {
        Ok(s) => s,
        Err(e) => return Err(not_sent(format!("opening a stream to the primary: {e}"), Some(req))),
    };
    // The kind byte goes with the request's first packet (QUIC sends it when hyper writes).
    if let Err(e) = send.write_all(&[STREAM_PROXY]).await {
        return Err(not_sent(format!("writing to the primary: {e}"), Some(req)));
    }
    let (io, code) = QuicIo::new(send, recv);
    let (mut sender, driver) = match hyper::client::conn::http1::handshake(TokioIo::new(io)).await {
        Ok(x) => x,
        Err(e) => return Err(not_sent(format!("starting the exchange: {e}"), Some(req))),
    };
    tokio::spawn(async move {
        if let Err(e) = driver.with_upgrades().await {
            tracing::debug!(error = %e, "forwarded exchange ended");
        }
    });
    match sender.try_send_request(req).await {
        Ok(resp) => Ok(resp),
        Err(mut e) => {
            let back = e.take_message();
            let err = e.into_error();
            Err(match code.get() {
                Some(refusal::NOT_PRIMARY) => Failed {
                    how: ForwardFailure::RefusedUnseen,
                    why: "the node is no longer the primary".into(),
                    request: back,
                    again: true,
                },
                Some(refusal::NO_PROXY) => Failed {
                    how: ForwardFailure::RefusedUnseen,
                    why: "the primary runs no proxy (no proxy: in its config)".into(),
                    request: None,
                    again: false,
                },
                Some(refusal::UNKNOWN_STREAM) => Failed {
                    how: ForwardFailure::RefusedUnseen,
                    why: "the primary does not know proxy streams".into(),
                    request: None,
                    again: false,
                },
                _ if back.is_some() => not_sent(format!("the primary: {err}"), back),
                _ => Failed {
                    how: ForwardFailure::Unknown,
                    why: format!("the primary: {err}"),
                    request: None,
                    again: false,
                },
            })
        }
    }
}

/// Primary: serves one stream the replica at `peer` opened for a forwarded request.
pub async fn serve_stream(
    node: Arc<NodeCtx>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    peer: SocketAddr,
) {
    let refuse = |send: &mut quinn::SendStream, recv: &mut quinn::RecvStream, code: u32| {
        let c = quinn::VarInt::from_u32(code);
        let _ = recv.stop(c);
        let _ = send.reset(c);
    };
    let mut kind = [0u8; 1];
    match tokio::time::timeout(HEAD_TIMEOUT, recv.read_exact(&mut kind)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "a stream ended before its kind byte");
            return;
        }
        Err(_) => {
            refuse(&mut send, &mut recv, refusal::UNKNOWN_STREAM);
            return;
        }
    }
    if kind[0] != STREAM_PROXY {
        tracing::warn!(%peer, kind = kind[0], "a stream of an unknown kind: refused");
        refuse(&mut send, &mut recv, refusal::UNKNOWN_STREAM);
        return;
    }
    // Decided before a byte of the request is read: a refused request provably did not
    // reach the app, and the replica may send it to the new primary.
    if !node.is_primary() {
        refuse(&mut send, &mut recv, refusal::NOT_PRIMARY);
        return;
    }
    let Some(proxy) = node.proxy().cloned() else {
        refuse(&mut send, &mut recv, refusal::NO_PROXY);
        return;
    };
    let (io, _) = QuicIo::new(send, recv);
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let proxy = proxy.clone();
        async move { Ok::<_, std::convert::Infallible>(proxy.handle_forwarded(req, peer).await) }
    });
    // One exchange per stream: the response ends the stream.
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(crate::http::MAX_BUF)
        .max_header_size(crate::http::MAX_HEAD)
        .keep_alive(false)
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "forwarded request ended");
    }
}

/// A request body as the forwarding side holds it: in memory (it can be sent again) or
/// streaming (once).
pub enum OutBody {
    Buffered(Bytes),
    Streaming(Option<Body>),
}

impl OutBody {
    /// The body for the next attempt (`None`: a streamed body was already sent).
    pub fn next(&mut self) -> Option<Body> {
        match self {
            OutBody::Buffered(b) => Some(Body::from(b.clone())),
            OutBody::Streaming(b) => b.take(),
        }
    }
}
