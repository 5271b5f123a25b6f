//! `GET /health[?max-lag=DURATION]`: 200 `ok` when the node can serve: the primary, or a
//! replica following a primary (and, with `max-lag`, no further behind it than that, as
//! LiteFS's `/litefs/health`); 503 with the reason otherwise. For load balancers and
//! container health checks.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::{Api, text};

#[derive(Debug, Deserialize)]
pub struct HealthQuery {
    #[serde(rename = "max-lag")]
    max_lag: Option<String>,
}

pub async fn health(State(api): State<Arc<Api>>, Query(q): Query<HealthQuery>) -> Response {
    let max_lag = match q.max_lag.as_deref().map(crate::config::parse_duration) {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => return text(StatusCode::BAD_REQUEST, format!("max-lag: {e}")),
    };
    let node = api.store.node();
    if !api.store.quarantined().is_empty() {
        let names: Vec<_> = api.store.quarantined().into_keys().collect();
        return text(StatusCode::SERVICE_UNAVAILABLE, format!("quarantined: {}", names.join(", ")));
    }
    if api.primary_view().0 {
        return text(StatusCode::OK, "ok (primary)");
    }
    let Some(primary) = node.primary() else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "not connected to a primary");
    };
    let lag_ms = lag_ms(node);
    if let Some(max) = max_lag
        && lag_ms > max.as_millis() as i64
    {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{lag_ms} ms behind the primary {primary} (max-lag {} ms)", max.as_millis()),
        );
    }
    text(StatusCode::OK, format!("ok (replica of {primary}, {lag_ms} ms behind)"))
}

/// Milliseconds since the newest primary clock reading a replica holds (`.lag`'s value).
pub fn lag_ms(node: &crate::node::NodeCtx) -> i64 {
    let t = node.primary_time_ms();
    if t == 0 {
        return i64::from(i32::MAX);
    }
    (crate::clock::wall_ms() - t).clamp(0, i64::from(i32::MAX))
}
