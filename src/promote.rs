//! Asking the primary for the lease (`litefleet promote`, the `.promote` file, `POST
//! /promote`): the running replication session with the primary sends the request
//! (`protocol.md` §12) and this waits until the node is writable, the primary refused, or
//! time ran out.

use std::sync::Arc;
use std::time::Duration;

use crate::node::NodeCtx;

/// How long a node that is between sessions (just started, or its primary just changed) is
/// given to follow one before the request fails.
pub const CONNECT_WITHIN: Duration = Duration::from_secs(10);

/// Why a promotion did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromoteError {
    #[error("not following a primary")]
    NotFollowing,
    /// The primary refused, or the handoff failed there (the reason it gave).
    #[error("{0}")]
    Refused(String),
    #[error("no handoff within {0:?}")]
    Timeout(Duration),
}

/// Requests the lease for this node and waits for the outcome (at once if it is the
/// primary already). The reason of a refusal is also kept for `.promote`.
pub async fn promote(node: &Arc<NodeCtx>, timeout: Duration) -> Result<(), PromoteError> {
    if node.is_primary() {
        return Ok(());
    }
    node.set_promote_error(None);
    let connect_by = tokio::time::Instant::now() + CONNECT_WITHIN;
    while !node.request_promotion() {
        if tokio::time::Instant::now() >= connect_by {
            node.set_promote_error(Some(PromoteError::NotFollowing.to_string()));
            return Err(PromoteError::NotFollowing);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if node.writable() {
            return Ok(());
        }
        if let Some(e) = node.promote_error() {
            return Err(PromoteError::Refused(e));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(PromoteError::Timeout(timeout));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
