//! `POST /handoff?nodeID=<%016X>` (primary): hands the lease to the connected replica
//! `nodeID` with litefleet's graceful handoff (`protocol.md` §12). The primary offers the
//! lease on that replica's session; the replica, a candidate, asks for it with its lease
//! token as `litefleet promote` would, and the primary runs the handoff. `200` once the lease
//! moved; `400` for a malformed node id; `404` when no such replica is connected; `409` when
//! it is not a candidate or a handoff runs; `503` on a node that is not the primary; `502`
//! with the reason when the handoff failed (writes resumed here); `504` after 40 s.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::auth::Mutating;
use super::{Api, text};
use crate::core::session::primary::OfferRefused;
use crate::core::types::NodeId;
use crate::observe::OfferError;

/// How long a request waits for the handoff (its own steps take at most 30 s + 2 s).
const TIMEOUT: Duration = Duration::from_secs(40);

#[derive(Debug, Deserialize)]
pub struct HandoffQuery {
    #[serde(rename = "nodeID")]
    node_id: Option<String>,
}

pub async fn handoff(
    _: Mutating,
    State(api): State<Arc<Api>>,
    Query(q): Query<HandoffQuery>,
) -> Response {
    let Some(raw) = q.node_id.filter(|s| !s.is_empty()) else {
        return text(StatusCode::BAD_REQUEST, "nodeID is required (the replica's id, %016X)");
    };
    let Some(target) = parse_node_id(&raw) else {
        return text(StatusCode::BAD_REQUEST, format!("nodeID {raw:?} is not a hex node id"));
    };
    let (is_primary, primary) = api.primary_view();
    if !is_primary {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("this node is not the primary; the primary is {primary:?}"),
        );
    }
    let hub = api.store.node().hub().clone();
    // Subscribed before the offer: the outcome cannot come first.
    let mut outcomes = hub.handoff_outcomes();
    match hub.offer(target).await {
        Ok(()) => {}
        Err(e @ OfferError::NotConnected(_)) => return text(StatusCode::NOT_FOUND, e),
        Err(e @ OfferError::Refused(OfferRefused::NotCandidate | OfferRefused::InProgress)) => {
            return text(StatusCode::CONFLICT, e);
        }
        Err(e) => return text(StatusCode::SERVICE_UNAVAILABLE, e),
    }
    let waited = tokio::time::timeout(TIMEOUT, async {
        loop {
            match outcomes.recv().await {
                Ok((t, r)) if t == target => return Some(r),
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .await;
    match waited {
        Ok(Some(Ok(()))) => text(StatusCode::OK, format!("the lease was handed to {target}")),
        Ok(Some(Err(why))) => text(StatusCode::BAD_GATEWAY, format!("handoff failed: {why}")),
        Ok(None) => text(StatusCode::SERVICE_UNAVAILABLE, "the node is shutting down"),
        Err(_) => text(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "no handoff within {TIMEOUT:?}: the replica did not ask for the lease (is its \
                 lease backend reachable?)"
            ),
        ),
    }
}

/// A node id as LiteFS writes it (`%016X`); any case, leading zeros optional.
fn parse_node_id(s: &str) -> Option<NodeId> {
    let hex = !s.is_empty() && s.len() <= 16 && s.bytes().all(|b| b.is_ascii_hexdigit());
    hex.then(|| u64::from_str_radix(s, 16).ok().map(NodeId))?
}

#[cfg(test)]
mod tests {
    use super::parse_node_id;
    use crate::core::types::NodeId;

    #[test]
    fn node_ids() {
        assert_eq!(parse_node_id("0D356735028D61A5"), Some(NodeId(0x0D35_6735_028D_61A5)));
        assert_eq!(parse_node_id("d356735028d61a5"), Some(NodeId(0x0D35_6735_028D_61A5)));
        for bad in ["", "xyz", "00000000000000001", "-1", "+1", " 1"] {
            assert_eq!(parse_node_id(bad), None, "{bad}");
        }
    }
}
