//! Who may call what: read-only endpoints are open (as LiteFS's); endpoints that change
//! state take the [`Mutating`] extractor, which admits a loopback caller, or any caller with
//! `Authorization: Bearer <http.token>` when a token is configured, and answers 403 naming
//! `http.token` otherwise.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;

use super::Api;

/// The TCP peer of a request (inserted by the server for every request).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Proof that the caller may change state.
#[derive(Debug)]
pub struct Mutating;

/// Whether a caller at `peer` presenting `authorization` may change state.
pub fn allowed(peer: SocketAddr, authorization: Option<&str>, token: Option<&str>) -> bool {
    let loopback = match peer.ip() {
        std::net::IpAddr::V4(a) => a.is_loopback(),
        std::net::IpAddr::V6(a) => {
            a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    };
    if loopback {
        return true;
    }
    let (Some(want), Some(got)) = (token, authorization) else { return false };
    let Some(given) = got.strip_prefix("Bearer ").map(str::trim) else { return false };
    !want.is_empty() && constant_time_eq(want.as_bytes(), given.as_bytes())
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl FromRequestParts<Arc<Api>> for Mutating {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api>) -> Result<Self, Response> {
        let peer = parts.extensions.get::<Peer>().map(|p| p.0);
        let auth = parts.headers.get("authorization").and_then(|v| v.to_str().ok());
        let token = api.cfg.token.as_deref();
        match peer {
            Some(p) if allowed(p, auth, token) => Ok(Mutating),
            _ => {
                let why = if token.is_some() {
                    "this request changes state: send it from loopback, or with \
                     `Authorization: Bearer <http.token>` (the token did not match)"
                } else {
                    "this request changes state: send it from loopback, or set `http.token` in \
                     the node's config and send `Authorization: Bearer <http.token>`"
                };
                Err(super::text(StatusCode::FORBIDDEN, why))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::allowed;

    #[test]
    fn loopback_or_the_token() {
        let lo = "127.0.0.1:5".parse().unwrap();
        let lo6 = "[::1]:5".parse().unwrap();
        let mapped = "[::ffff:127.0.0.1]:5".parse().unwrap();
        let far = "10.1.2.3:5".parse().unwrap();
        assert!(allowed(lo, None, None));
        assert!(allowed(lo6, None, None));
        assert!(allowed(mapped, None, None));
        assert!(!allowed(far, None, None));
        assert!(!allowed(far, Some("Bearer s3cret"), None));
        assert!(!allowed(far, None, Some("s3cret")));
        assert!(!allowed(far, Some("Bearer nope"), Some("s3cret")));
        assert!(!allowed(far, Some("s3cret"), Some("s3cret")));
        assert!(!allowed(far, Some("Bearer "), Some("")));
        assert!(allowed(far, Some("Bearer s3cret"), Some("s3cret")));
    }
}
