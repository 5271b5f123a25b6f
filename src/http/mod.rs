//! The node's HTTP API on TCP `http.addr` (the same host:port as QUIC's UDP socket):
//! LiteFS's endpoints with their paths, methods, query parameters, JSON fields and status
//! codes, and litefleet's additions (`protocol.md` §15 lists them all).
//!
//! The server is hyper's HTTP/1.1 connection driver under an axum router, with limits a
//! public port needs: request heads of at most [`MAX_HEAD`] bytes (431 beyond), a head must
//! arrive within [`HEAD_TIMEOUT`] (slow clients are cut), at most [`MAX_CONNECTIONS`]
//! connections at once (more wait in the listen queue), and request bodies are read only by
//! the endpoints that take one, each with its own limit and idle timeout. Every response
//! carries `Litefs-Id` and `Litefs-Cluster-Id`, as LiteFS's do.
//!
//! Who may call what ([`auth`]): reads are open; requests that change state answer only
//! loopback callers, or callers with `Authorization: Bearer <http.token>`.

pub mod auth;
mod events;
mod handoff;
pub(crate) mod health;
mod info;
mod metrics;
mod promote;
mod transfer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::response::Response;
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{Semaphore, watch};

use crate::core::types::NodeId;
use crate::store::Store;

/// Largest request head (request line and headers) accepted.
pub const MAX_HEAD: usize = 64 * 1024;
/// How long a client has to send a whole request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// What hyper buffers per connection, each way (a response body waits beyond that).
pub const MAX_BUF: usize = 128 * 1024;
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 1024;
/// How often unscraped histogram samples are drained.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{key} {addr:?}: {reason}")]
    Addr { key: &'static str, addr: String, reason: String },
    #[error("{key} {addr}: {source}")]
    Bind { key: &'static str, addr: SocketAddr, source: std::io::Error },
}

/// What the API needs to know of the node beyond its store.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub node_id: NodeId,
    /// `lease.hostname`.
    pub hostname: String,
    /// `lease.advertise-url` (this node's own URL under Consul).
    pub advertise_url: String,
    /// `lease.candidate`.
    pub candidate: bool,
    /// `fuse.dir`.
    pub mount: std::path::PathBuf,
    /// `http.token`.
    pub token: Option<String>,
}

/// Shared state of every request handler.
pub struct Api {
    pub store: Arc<Store>,
    pub cfg: ApiConfig,
}

impl Api {
    /// Whether this node is the primary, and the primary's hostname (this node's own when
    /// it is; empty while no primary is known), as `/info` and `/events` report them.
    pub fn primary_view(&self) -> (bool, String) {
        let node = self.store.node();
        let lease = node.hub().lease();
        let is_primary = node.is_primary() && lease.primary.is_none();
        let host = match (&lease.primary, is_primary) {
            (Some(h), _) => h.hostname.clone(),
            (None, true) => self.cfg.hostname.clone(),
            (None, false) => String::new(),
        };
        (is_primary, host)
    }
}

/// Binds `http.addr` (`:20202` means every address): called before the node opens its data
/// directory, so a port in use is a startup error.
pub fn bind(addr: &str) -> Result<std::net::TcpListener, HttpError> {
    bind_as("http.addr", addr)
}

/// Binds the TCP address `addr` of the config key `key` (`:PORT` means every address).
pub fn bind_as(key: &'static str, addr: &str) -> Result<std::net::TcpListener, HttpError> {
    let bad =
        |reason: &str| HttpError::Addr { key, addr: addr.to_owned(), reason: reason.to_owned() };
    let (host, port) =
        crate::repl::supervisor::url_host_port(addr).ok_or_else(|| bad("no port"))?;
    let host = if host.is_empty() { "0.0.0.0".to_owned() } else { host };
    let sa = crate::repl::supervisor::resolve(&host, port).map_err(|e| bad(&e.to_string()))?;
    let l = std::net::TcpListener::bind(sa).map_err(|source| HttpError::Bind {
        key,
        addr: sa,
        source,
    })?;
    l.set_nonblocking(true).map_err(|source| HttpError::Bind { key, addr: sa, source })?;
    Ok(l)
}

/// The routes.
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/info", get(info::info))
        .route("/events", get(events::events))
        .route("/health", get(health::health))
        .route("/metrics", get(metrics::metrics))
        .route("/export", get(transfer::export))
        .route("/import", post(transfer::import))
        .route("/promote", post(promote::promote))
        .route("/handoff", post(handoff::handoff))
        .with_state(api)
}

/// Serves `listener` until `shutdown` turns true; connections in progress end with the
/// runtime.
pub async fn serve(
    listener: std::net::TcpListener,
    api: Arc<Api>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    transfer::remove_leftovers(api.store.root());
    let node_hdr = HeaderValue::from_str(&api.cfg.node_id.to_string()).ok();
    let cluster_hdr = HeaderValue::from_str(&api.store.cluster_id().to_string()).ok();
    let app = router(api.clone());
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tracing::info!(addr = %listener.local_addr()?, "serving the HTTP API");
    // Histogram samples queue until a render drains them: drained here when nobody
    // scrapes, so memory stays bounded. Ends with the server.
    let metrics = api.store.node().metrics().clone();
    let mut stop = shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(UPKEEP_EVERY) => metrics.upkeep(),
                () = stopped(&mut stop) => return,
            }
        }
    });
    while let Some((permit, stream, peer)) = accept(&listener, &slots, &mut shutdown).await {
        let fd = ConnFd(std::os::fd::AsRawFd::as_raw_fd(&stream));
        let app = app.clone();
        let (node_hdr, cluster_hdr) = (node_hdr.clone(), cluster_hdr.clone());
        let svc = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(auth::Peer(peer));
            req.extensions_mut().insert(fd);
            let app = app.clone();
            let (node_hdr, cluster_hdr) = (node_hdr.clone(), cluster_hdr.clone());
            async move {
                let mut resp: Response =
                    tower::ServiceExt::oneshot(app, req.map(axum::body::Body::new)).await?;
                let h = resp.headers_mut();
                if let Some(v) = node_hdr {
                    h.insert("litefs-id", v);
                }
                if let Some(v) = cluster_hdr {
                    h.insert("litefs-cluster-id", v);
                }
                Ok::<_, std::convert::Infallible>(resp)
            }
        });
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_header_size(MAX_HEAD)
                .max_buf_size(MAX_BUF)
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "HTTP connection ended");
            }
            drop(permit);
        });
    }
    Ok(())
}

/// The socket of the connection a request came on, for socket options a handler sets on
/// its own response's connection. Valid while the request is handled: the connection (and
/// so the descriptor) outlives its requests.
#[derive(Debug, Clone, Copy)]
pub struct ConnFd(pub std::os::fd::RawFd);

impl ConnFd {
    /// Caps the kernel's send buffer of this connection at about `bytes` (Linux doubles it
    /// for bookkeeping), turning off its autotuning: a response that is streamed to a
    /// reader that may stall (`/events`) then holds little memory in the kernel.
    pub fn cap_send_buffer(self, bytes: usize) {
        let v = bytes as libc::c_int;
        // SAFETY: setsockopt on a descriptor that is open for the request's lifetime (see
        // the type's doc), with a c_int option value of the right length.
        unsafe {
            libc::setsockopt(
                self.0,
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

/// How much of a refused upload is read and dropped before the answer (see
/// [`refuse_unread`]), and for how long.
const DRAIN_LIMIT: usize = 256 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// Answers `resp` to an upload refused before its body was read, after reading and
/// dropping the body (up to [`DRAIN_LIMIT`] within [`DRAIN_TIME`]). Closing a connection
/// with unread request bytes makes the kernel reset it, and a client still sending its
/// upload then sees "connection reset" instead of the answer.
pub(crate) async fn refuse_unread(body: axum::body::Body, resp: Response) -> Response {
    use futures_util::StreamExt;
    let mut data = body.into_data_stream();
    let drain = async {
        let mut seen = 0;
        while seen < DRAIN_LIMIT
            && let Some(Ok(chunk)) = data.next().await
        {
            seen += chunk.len();
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
    resp
}

/// The next connection on `listener` once one of `slots` is free, with `TCP_NODELAY` set;
/// `None` once `shutdown` turns true. Accept errors (EMFILE and friends) back off instead of
/// spinning.
pub(crate) async fn accept(
    listener: &tokio::net::TcpListener,
    slots: &Arc<Semaphore>,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<(tokio::sync::OwnedSemaphorePermit, tokio::net::TcpStream, SocketAddr)> {
    // invariant: the semaphore is never closed.
    let permit = tokio::select! {
        p = slots.clone().acquire_owned() => p.expect("never closed"),
        () = stopped(shutdown) => return None,
    };
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    return Some((permit, stream, peer));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a TCP connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = stopped(shutdown) => return None,
        }
    }
}

/// Completes when `shutdown` turns true (or its sender is gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// A plain-text response with `status` and a message ending in a newline.
pub fn text(status: axum::http::StatusCode, msg: impl std::fmt::Display) -> Response {
    use axum::response::IntoResponse;
    (status, [("content-type", "text/plain; charset=utf-8")], format!("{msg}\n")).into_response()
}
