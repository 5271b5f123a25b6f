//! `GET /metrics[?compat=0]`: Prometheus text (version 0.0.4). The state gauges are set
//! from the node just before rendering (see [`crate::metrics`]); `compat=0` leaves out
//! LiteFS's names, whose counters lack `_total` (for `promtool check metrics`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{Api, text};
use crate::core::types::Txid;
use crate::metrics::{DbGauges, NodeGauges};

#[derive(Debug, Deserialize)]
pub struct MetricsQuery {
    compat: Option<String>,
}

pub async fn metrics(State(api): State<Arc<Api>>, Query(q): Query<MetricsQuery>) -> Response {
    let compat = match q.compat.as_deref() {
        None | Some("1" | "true") => true,
        Some("0" | "false") => false,
        Some(other) => {
            return text(StatusCode::BAD_REQUEST, format!("compat: {other:?} is not 0 or 1"));
        }
    };
    let node = api.store.node();
    let (is_primary, _) = api.primary_view();
    let replicas = if is_primary { node.hub().replicas() } else { Vec::new() };
    let label = |r: &crate::observe::ReplicaInfo| {
        if r.hostname.is_empty() { r.node.to_string() } else { r.hostname.clone() }
    };
    let gauges = NodeGauges {
        is_primary,
        epoch: node.hub().lease().epoch.0.max(node.max_epoch().0),
        subscribers: replicas.len(),
        lag_seconds: if is_primary { 0.0 } else { super::health::lag_ms(node) as f64 / 1000.0 },
        replica_rtt: replicas.iter().map(|r| (label(r), Duration::from_micros(r.rtt_us))).collect(),
    };
    let dbs: Vec<(String, DbGauges)> = api
        .store
        .list()
        .iter()
        .map(|d| {
            let at = d.pos().txid;
            let lag = replicas
                .iter()
                .map(|r| {
                    (label(r), at.0.saturating_sub(d.acked_by(r.node).unwrap_or(Txid::ZERO).0))
                })
                .collect();
            (d.name().to_owned(), DbGauges { txid: at, replica_lag_txns: lag })
        })
        .collect();
    let m = node.metrics();
    m.set_gauges(&gauges, &dbs);
    let page = m.render(compat);
    ([("content-type", "text/plain; version=0.0.4; charset=utf-8")], page).into_response()
}
