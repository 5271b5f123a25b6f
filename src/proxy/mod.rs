//! The HTTP proxy in front of the app (`proxy:`, `protocol.md` §16): reads go to the local
//! app (after this node caught up with the client's `__txid` cookie), writes go to the app
//! on the primary, and a replica forwards them to the primary over the cluster's mutually
//! authenticated QUIC connection, a stream per request. The decisions are
//! [`crate::core::proxy`]'s; this shell moves bytes: hyper's HTTP/1.1 server for clients,
//! hyper's client for the app ([`app`]) and for forwarded requests ([`forward`]).
//!
//! Bodies stream both ways, protocol upgrades (WebSocket) are relayed as byte pipes once
//! both sides switched, hop-by-hop headers are dropped and `X-Forwarded-For/-Proto/-Host`
//! added by the node the client reached.
//!
//! `debug: true` logs one line per request (method, path, status, time).
//!
//! Timeouts, as Go's `http.Server` applies LiteFS's (0: none): `idle-timeout` for a
//! kept-alive connection waiting for its next request (none set: `read-timeout`'s),
//! `read-header-timeout` from a request's first byte to its whole head ([`idle`]),
//! `read-timeout` for the whole request (its body fails after it: 408), `write-timeout`
//! for the response (its body is cut after it), both from the request's arrival.

mod app;
mod deadline;
mod forward;
mod idle;
mod quic_io;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

pub use forward::serve_stream;

use crate::config::ProxyConfig;
use crate::core::proxy::{
    AfterFailure, Class, NodeView, Pattern, REPLAY_LIMIT, Route, after_failure, classify,
    is_hop_by_hop, route, set_cookie, txid_cookie,
};
use crate::core::types::Txid;
use crate::http::{HttpError, text};
use crate::store::Store;

/// How long a read waits for this node to reach its cookie's position (LiteFS's 5 s).
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(5);
/// Between looks at the role while a request waits for a primary.
const ROLE_POLL: Duration = Duration::from_millis(50);

/// See the module docs.
pub struct Proxy {
    cfg: ProxyConfig,
    passthrough: Vec<Pattern>,
    always_forward: Vec<Pattern>,
    store: Arc<Store>,
    app: app::AppClient,
}

impl Proxy {
    pub fn new(cfg: ProxyConfig, store: Arc<Store>) -> Arc<Proxy> {
        Arc::new(Proxy {
            passthrough: cfg.passthrough.iter().map(|p| Pattern::new(p)).collect(),
            always_forward: cfg.always_forward.iter().map(|p| Pattern::new(p)).collect(),
            app: app::AppClient::new(&cfg.target),
            store,
            cfg,
        })
    }

    /// Binds `proxy.addr` (called at startup: a port in use is a startup error).
    pub fn bind(&self) -> Result<std::net::TcpListener, HttpError> {
        crate::http::bind_as("proxy.addr", &self.cfg.addr)
    }

    /// Serves clients on `listener` until `shutdown` turns true.
    pub async fn serve(
        self: Arc<Self>,
        listener: std::net::TcpListener,
        mut shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        tracing::info!(addr = %listener.local_addr()?, target = %self.cfg.target,
            db = %self.cfg.db, "serving the proxy");
        let slots = Arc::new(Semaphore::new(crate::http::MAX_CONNECTIONS));
        while let Some((permit, stream, peer)) =
            crate::http::accept(&listener, &slots, &mut shutdown).await
        {
            let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
            // Go's rule: no idle-timeout means read-timeout's.
            let idle_limit = nonzero(self.cfg.idle_timeout).or(nonzero(self.cfg.read_timeout));
            let (io, activity) =
                idle::IdleIo::new(stream, idle_limit, nonzero(self.cfg.read_header_timeout));
            let me = self.clone();
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (me, activity) = (me.clone(), activity.clone());
                let busy = activity.begin();
                async move {
                    let resp = me.handle(req, peer).await;
                    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                        activity.upgraded();
                    }
                    Ok::<_, std::convert::Infallible>(
                        resp.map(|b| Body::new(idle::Guarded::new(b, busy))),
                    )
                }
            });
            tokio::spawn(async move {
                let mut b = hyper::server::conn::http1::Builder::new();
                b.timer(TokioTimer::new())
                    .max_header_size(crate::http::MAX_HEAD)
                    .max_buf_size(crate::http::MAX_BUF);
                let conn = b.serve_connection(TokioIo::new(io), svc).with_upgrades();
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, error = %e, "proxy connection ended");
                }
                drop(permit);
            });
        }
        Ok(())
    }

    /// A client's request, under `read-timeout` (its body) and `write-timeout` (the
    /// response's), both counted from now.
    async fn handle(self: Arc<Self>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let arrived = Instant::now();
        let mut req = req.map(Body::new);
        if !self.cfg.read_timeout.is_zero() {
            let what = "reading the request body (proxy.read-timeout)";
            let (parts, body) = req.into_parts();
            let (body, fired) =
                deadline::Deadline::new(body, arrived + self.cfg.read_timeout, what);
            req = Request::from_parts(parts, Body::new(body));
            req.extensions_mut().insert(fired);
        }
        let seen = self.cfg.debug.then(|| (req.method().clone(), req.uri().path().to_owned()));
        let (resp, route) = self.clone().route(req, peer).await;
        self.store.node().metrics().proxy_request(route, resp.status().as_u16());
        if let Some((method, path)) = seen {
            // `proxy.debug`, as LiteFS: one line per request.
            tracing::info!(%peer, %method, %path, status = resp.status().as_u16(),
                took_ms = arrived.elapsed().as_millis() as u64, "proxy request");
        }
        if self.cfg.write_timeout.is_zero() || resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            return resp;
        }
        let what = "writing the response (proxy.write-timeout)";
        let at = arrived + self.cfg.write_timeout;
        resp.map(|b| Body::new(deadline::Deadline::new(b, at, what).0))
    }

    /// Routes a client's request; returns the response and the route's metrics label.
    async fn route(
        self: Arc<Self>,
        req: Request<Body>,
        peer: SocketAddr,
    ) -> (Response<Body>, &'static str) {
        let class = classify(
            req.method().as_str(),
            req.uri().path(),
            &self.passthrough,
            &self.always_forward,
        );
        if class == Class::Health {
            return (self.health(), "health");
        }
        let cookie = txid_cookie(
            req.headers().get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()),
        );
        let deadline = Instant::now() + self.cfg.primary_redirect_timeout;
        loop {
            let view = self.view();
            match route(class, cookie, view) {
                Route::Local => {
                    let cookie = class == Class::Write && view.is_primary;
                    return (self.local(req, Some(peer), cookie).await, "local");
                }
                Route::WaitThenLocal(t) => {
                    let waited = Instant::now();
                    if !self.caught_up(t).await {
                        let msg = format!(
                            "this node did not reach the position of your last write (TXID {t}) \
                             within {CATCH_UP_TIMEOUT:?}"
                        );
                        return (text(StatusCode::GATEWAY_TIMEOUT, msg), "caught-up");
                    }
                    self.store.node().metrics().proxy_caught_up(waited.elapsed());
                    return (self.local(req, Some(peer), false).await, "caught-up");
                }
                Route::Forward => return (self.forward(req, peer, deadline).await, "forwarded"),
                Route::AwaitPrimary => {
                    if !self.await_primary(deadline, None).await {
                        let wait = self.cfg.primary_redirect_timeout;
                        let r = no_primary(wait, "the request did not run");
                        let r = crate::http::refuse_unread(req.into_body(), r).await;
                        return (r, "forwarded");
                    }
                }
            }
        }
    }

    /// Primary: a request a replica forwarded (its headers already carry the client's
    /// `X-Forwarded-*`). A write's response gets the cookie here.
    async fn handle_forwarded(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Body> {
        let class = classify(
            req.method().as_str(),
            req.uri().path(),
            &self.passthrough,
            &self.always_forward,
        );
        tracing::debug!(%peer, method = %req.method(), path = req.uri().path(), "forwarded");
        let resp = self.local(req.map(Body::new), None, class == Class::Write).await;
        self.store.node().metrics().proxy_request("from-replica", resp.status().as_u16());
        resp
    }

    fn view(&self) -> NodeView {
        let node = self.store.node();
        let is_primary = node.is_primary();
        NodeView {
            is_primary,
            primary_known: is_primary || node.primary_link().borrow().is_some(),
            local_txid: self.store.get(&self.cfg.db).map(|d| d.pos().txid).unwrap_or(Txid::ZERO),
        }
    }

    /// `GET /litefs/health`: LiteFS's answer (503 when a replica lags more than `max-lag`).
    fn health(&self) -> Response<Body> {
        let node = self.store.node();
        if node.is_primary() {
            return text(StatusCode::OK, "OK");
        }
        let lag = crate::http::health::lag_ms(node);
        if !self.cfg.max_lag.is_zero() && lag > self.cfg.max_lag.as_millis() as i64 {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{lag} ms behind the primary (max-lag {:?})", self.cfg.max_lag),
            );
        }
        text(StatusCode::OK, "OK")
    }

    /// Waits (up to LiteFS's 5 s) until this node's copy of `proxy.db` reached `txid`. A
    /// node without the database serves at once, as LiteFS.
    async fn caught_up(&self, txid: Txid) -> bool {
        let Some(db) = self.store.get(&self.cfg.db) else { return true };
        let mut pos = db.subscribe();
        matches!(
            tokio::time::timeout(CATCH_UP_TIMEOUT, pos.wait_for(|p| p.txid >= txid)).await,
            Ok(Ok(_))
        )
    }

    /// Waits until a primary is known (this node, or a link to one other than `not`),
    /// until `deadline`. False on timeout.
    async fn await_primary(&self, deadline: Instant, not: Option<usize>) -> bool {
        let node = self.store.node();
        let mut link = node.primary_link();
        loop {
            let ok = link.borrow_and_update().as_ref().is_some_and(|c| Some(c.stable_id()) != not);
            if ok || node.is_primary() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            tokio::select! {
                _ = link.changed() => {}
                () = tokio::time::sleep(ROLE_POLL.min(deadline - now)) => {}
            }
        }
    }

    /// Sends `req` to the local app; `client`: the address to name in `X-Forwarded-For`
    /// (`None`: a forwarded request, named already); `cookie`: the response gets the
    /// position of `proxy.db` after it.
    async fn local(
        &self,
        mut req: Request<Body>,
        client: Option<SocketAddr>,
        cookie: bool,
    ) -> Response<Body> {
        let upgrade = prepare_request(&mut req, client);
        let on_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let late = req.extensions().get::<deadline::Fired>().cloned();
        match self.app.send(req, upgrade).await {
            Ok(resp) => self.respond(resp, on_upgrade, cookie),
            Err(_) if late.is_some_and(|f| f.get()) => too_slow(),
            Err(e) => {
                tracing::warn!(error = %e, "the app did not answer");
                text(StatusCode::BAD_GATEWAY, e)
            }
        }
    }

    /// Replica: forwards a write to the primary, sending it again only while it provably
    /// did not run there, until `deadline`.
    async fn forward(
        &self,
        mut req: Request<Body>,
        peer: SocketAddr,
        deadline: Instant,
    ) -> Response<Body> {
        let node = self.store.node().clone();
        // Decided before the headers are prepared (they drop Transfer-Encoding).
        let small = req.body().size_hint().upper().is_some_and(|n| n <= REPLAY_LIMIT);
        let upgrade = prepare_request(&mut req, Some(peer));
        let on_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let late = req.extensions().get::<deadline::Fired>().cloned();
        let late = move || late.as_ref().is_some_and(|f| f.get());
        let (parts, body) = req.into_parts();
        let mut body = if small {
            match axum::body::to_bytes(body, REPLAY_LIMIT as usize).await {
                Ok(b) => forward::OutBody::Buffered(b),
                Err(_) if late() => return too_slow(),
                Err(e) => {
                    return text(StatusCode::BAD_REQUEST, format!("reading the request body: {e}"));
                }
            }
        } else {
            forward::OutBody::Streaming(Some(body))
        };
        let rebuild = |body: Body| {
            let mut r = Request::new(body);
            *r.method_mut() = parts.method.clone();
            *r.uri_mut() = parts.uri.clone();
            *r.headers_mut() = parts.headers.clone();
            r
        };
        let mut back: Option<Request<Body>> = None;
        let mut last_why = String::from("no primary is known");
        loop {
            let req = match back.take() {
                Some(r) => r,
                None => match body.next() {
                    Some(b) => rebuild(b),
                    None => {
                        return text(
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!(
                                "not forwarded: {last_why}; the request did not run (its body \
                                 was streamed, so the proxy cannot send it again): send it again"
                            ),
                        );
                    }
                },
            };
            if node.is_primary() {
                // Became the primary meanwhile: the app here takes it.
                return self.local(req, None, true).await;
            }
            let link = node.primary_link().borrow().clone();
            let Some(conn) = link else {
                back = Some(req);
                if !self.await_primary(deadline, None).await {
                    return no_primary(
                        self.cfg.primary_redirect_timeout,
                        "the request did not run",
                    );
                }
                continue;
            };
            let started = crate::clock::now();
            match forward::send(&conn, req).await {
                Ok(resp) => {
                    tracing::debug!(took = ?started.elapsed(), status = %resp.status(), "forwarded");
                    node.metrics().proxy_forwarded(started.elapsed());
                    return self.respond(resp, on_upgrade, false);
                }
                Err(f) => {
                    let primary = node.primary().unwrap_or_default();
                    tracing::info!(%primary, how = ?f.how, why = %f.why, "forwarding failed");
                    match after_failure(f.how, !f.again, late()) {
                        AfterFailure::TooSlow => return too_slow(),
                        AfterFailure::MayHaveRun => {
                            return text(
                                StatusCode::BAD_GATEWAY,
                                format!(
                                    "forwarded to the primary {primary}, which did not answer \
                                     completely ({}): the request may have run there",
                                    f.why
                                ),
                            );
                        }
                        AfterFailure::Refused => {
                            return text(
                                StatusCode::BAD_GATEWAY,
                                format!("not forwarded: {}; the request did not run", f.why),
                            );
                        }
                        AfterFailure::Again => {}
                    }
                    last_why = f.why;
                    back = f.request;
                    node.metrics().proxy_resent();
                    // Wait for another primary (or this node's turn) before sending again.
                    if !self.await_primary(deadline, Some(conn.stable_id())).await {
                        return no_primary(
                            self.cfg.primary_redirect_timeout,
                            &format!("not forwarded: {last_why}; the request did not run"),
                        );
                    }
                }
            }
        }
    }

    /// The response to pass back: hop-by-hop headers dropped, the cookie added, and for a
    /// switched protocol both upgraded connections spliced.
    fn respond(
        &self,
        mut resp: Response<Incoming>,
        client: Option<hyper::upgrade::OnUpgrade>,
        cookie: bool,
    ) -> Response<Body> {
        let switched = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        if switched {
            let upstream = hyper::upgrade::on(&mut resp);
            match client {
                Some(client) => {
                    tokio::spawn(splice(client, upstream));
                }
                None => return text(StatusCode::BAD_GATEWAY, "the app switched protocols unasked"),
            }
        }
        strip_hop_by_hop(resp.headers_mut(), switched);
        if cookie
            && let Some(db) = self.store.get(&self.cfg.db)
            && let Ok(v) = HeaderValue::from_str(&set_cookie(db.pos().txid))
        {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
        resp.map(Body::new)
    }
}

/// 408: the client did not send its body within `read-timeout`.
fn too_slow() -> Response<Body> {
    let mut r = text(
        StatusCode::REQUEST_TIMEOUT,
        "the request body did not arrive within proxy.read-timeout; the request did not run",
    );
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// 503 with `Retry-After`: no primary within `waited`.
fn no_primary(waited: Duration, what: &str) -> Response<Body> {
    let mut r =
        text(StatusCode::SERVICE_UNAVAILABLE, format!("no primary within {waited:?}: {what}"));
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// Copies bytes both ways between the client's and the upstream's upgraded connections.
async fn splice(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let (c, u) = match tokio::try_join!(client, upstream) {
        Ok(x) => x,
        Err(e) => {
            tracing::debug!(error = %e, "an upgrade did not complete");
            return;
        }
    };
    let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
    if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
        tracing::debug!(error = %e, "an upgraded connection ended");
    }
}

/// Readies a request for the next hop: hop-by-hop headers dropped (an upgrade's kept),
/// `X-Forwarded-*` added when `client` is the node's own client. Returns whether the
/// request asks for a protocol upgrade.
fn prepare_request<B>(req: &mut Request<B>, client: Option<SocketAddr>) -> bool {
    let h = req.headers_mut();
    let upgrade = h.contains_key(header::UPGRADE)
        && connection_tokens(h).iter().any(|t| t.eq_ignore_ascii_case("upgrade"));
    strip_hop_by_hop(h, upgrade);
    if let Some(addr) = client {
        let ip = addr.ip().to_string();
        let xff = match h.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prev) => format!("{prev}, {ip}"),
            None => ip,
        };
        if let Ok(v) = HeaderValue::from_str(&xff) {
            h.insert(HeaderName::from_static("x-forwarded-for"), v);
        }
        if !h.contains_key("x-forwarded-proto") {
            h.insert(
                HeaderName::from_static("x-forwarded-proto"),
                HeaderValue::from_static("http"),
            );
        }
        if !h.contains_key("x-forwarded-host")
            && let Some(host) = h.get(header::HOST).cloned()
        {
            h.insert(HeaderName::from_static("x-forwarded-host"), host);
        }
    }
    upgrade
}

/// The comma-separated tokens of every `Connection` header.
fn connection_tokens(h: &HeaderMap) -> Vec<String> {
    h.get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Drops hop-by-hop headers; an upgrade keeps `Upgrade` and gets `Connection: upgrade`.
fn strip_hop_by_hop(h: &mut HeaderMap, upgrade: bool) {
    let tokens = connection_tokens(h);
    let drop: Vec<HeaderName> = h
        .keys()
        .filter(|k| is_hop_by_hop(k.as_str(), tokens.iter().map(String::as_str), upgrade))
        .cloned()
        .collect();
    for k in drop {
        h.remove(k);
    }
    if upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}
