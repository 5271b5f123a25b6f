//! `POST /promote`: this node asks the primary to hand it the lease (LiteFS's endpoint;
//! litefleet runs its graceful handoff, `protocol.md` §12). 200 once this node is the
//! primary, 409 on a node that is not a candidate (as LiteFS), 502 with the primary's reason
//! when it refused, 504 on time-out.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::auth::Mutating;
use super::{Api, text};
use crate::promote::{PromoteError, promote as request};

/// How long a request waits for the handoff.
const TIMEOUT: Duration = Duration::from_secs(30);

pub async fn promote(_: Mutating, State(api): State<Arc<Api>>) -> Response {
    if !api.cfg.candidate {
        return text(StatusCode::CONFLICT, "this node is not a candidate (lease.candidate: false)");
    }
    match request(api.store.node(), TIMEOUT).await {
        Ok(()) => text(StatusCode::OK, "this node is the primary"),
        Err(e @ PromoteError::NotFollowing) => text(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(PromoteError::Refused(why)) => {
            text(StatusCode::BAD_GATEWAY, format!("the primary refused the handoff: {why}"))
        }
        Err(e @ PromoteError::Timeout(_)) => text(StatusCode::GATEWAY_TIMEOUT, e),
    }
}
