//! `GET /info`: LiteFS's fields (`clusterID`, `isPrimary`, `candidate`, `path`,
//! `primary.hostname`, the last only on a replica that knows its primary) and litefleet's:
//! this node's identity, the lease, each database's position, and on the primary every
//! connected replica with its position and lag per database.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::Api;
use crate::core::rfc3339;
use crate::core::types::{NodeId, Txid};
use crate::core::wire::Role;
use crate::db::Db;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Info {
    #[serde(rename = "clusterID")]
    pub cluster_id: String,
    pub is_primary: bool,
    pub candidate: bool,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary: Option<PrimaryInfo>,
    // ----- litefleet's own ----- //
    #[serde(rename = "nodeID")]
    pub node_id: String,
    pub hostname: String,
    #[serde(rename = "advertiseURL")]
    pub advertise_url: String,
    /// `primary` or `replica`.
    pub role: &'static str,
    pub lease: LeaseInfo,
    pub databases: BTreeMap<String, DbInfo>,
    /// Databases this node refuses to serve, with the reason.
    pub quarantined: BTreeMap<String, String>,
    pub replicas: Vec<ReplicaInfo>,
    /// The last failure worth an operator's eye (a refused promotion), empty when none.
    pub last_error: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrimaryInfo {
    pub hostname: String,
    #[serde(rename = "advertiseURL")]
    pub advertise_url: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseInfo {
    pub epoch: u64,
    /// The primary's hostname (this node's own on the primary; empty when none is known).
    pub holder: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DbInfo {
    /// `%016x`, as LiteFS's JSON writes TXIDs.
    #[serde(rename = "txID")]
    pub txid: String,
    pub post_apply_checksum: String,
    /// Time of the newest transaction (RFC 3339; empty before the first).
    pub timestamp: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaInfo {
    #[serde(rename = "nodeID")]
    pub node_id: String,
    pub hostname: String,
    pub candidate: bool,
    pub addr: String,
    pub connected_at: String,
    pub rtt_ms: f64,
    pub databases: BTreeMap<String, ReplicaDb>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaDb {
    /// The TXID it acknowledged (`%016x`; absent before its first acknowledgement).
    #[serde(rename = "txID", skip_serializing_if = "Option::is_none")]
    pub txid: Option<String>,
    /// Transactions it lacks.
    pub lag_txns: u64,
    /// Age of the oldest transaction it lacks, in milliseconds (0 when it has them all).
    pub lag_ms: u64,
}

pub async fn info(State(api): State<Arc<Api>>) -> Json<Info> {
    Json(collect(&api))
}

/// Builds the `/info` document (also used by `litefleet status` through HTTP).
pub fn collect(api: &Api) -> Info {
    let node = api.store.node();
    let lease = node.hub().lease();
    let (is_primary, holder) = api.primary_view();
    let dbs = api.store.list();
    let databases = dbs
        .iter()
        .map(|d| {
            let pos = d.pos();
            let ts = d.last_ltx_ms();
            let info = DbInfo {
                txid: format!("{:016x}", pos.txid.0),
                post_apply_checksum: format!("{:016x}", pos.checksum.0),
                timestamp: if pos.txid == Txid::ZERO {
                    String::new()
                } else {
                    rfc3339::format_ms(ts)
                },
            };
            (d.name().to_owned(), info)
        })
        .collect();
    let now = crate::clock::wall_ms();
    let replicas = if is_primary {
        node.hub()
            .replicas()
            .into_iter()
            .map(|r| ReplicaInfo {
                node_id: r.node.to_string(),
                hostname: r.hostname.clone(),
                candidate: r.role == Role::Candidate,
                addr: r.addr.to_string(),
                connected_at: rfc3339::format_ms(r.since_ms),
                rtt_ms: r.rtt_us as f64 / 1000.0,
                databases: dbs
                    .iter()
                    .map(|d| (d.name().to_owned(), replica_db(d, r.node, now)))
                    .collect(),
            })
            .collect()
    } else {
        Vec::new()
    };
    Info {
        cluster_id: api.store.cluster_id().to_string(),
        is_primary,
        candidate: api.cfg.candidate,
        path: api.cfg.mount.display().to_string(),
        primary: lease.primary.as_ref().map(|h| PrimaryInfo {
            hostname: h.hostname.clone(),
            advertise_url: h.advertise_url.clone(),
        }),
        node_id: api.cfg.node_id.to_string(),
        hostname: api.cfg.hostname.clone(),
        advertise_url: api.cfg.advertise_url.clone(),
        role: if is_primary { "primary" } else { "replica" },
        lease: LeaseInfo { epoch: lease.epoch.0.max(node.max_epoch().0), holder },
        databases,
        quarantined: api.store.quarantined(),
        replicas,
        last_error: node.promote_error().map(|e| format!("promotion: {e}")).unwrap_or_default(),
    }
}

/// How far replica `node` is behind on `db`.
fn replica_db(db: &Db, node: NodeId, now_ms: i64) -> ReplicaDb {
    let at = db.pos().txid;
    let acked = db.acked_by(node);
    let have = acked.unwrap_or(Txid::ZERO);
    let lag_txns = at.0.saturating_sub(have.0);
    let lag_ms = if lag_txns == 0 {
        0
    } else {
        oldest_missing_ms(db, have).map_or(0, |ts| now_ms.saturating_sub(ts).max(0) as u64)
    };
    ReplicaDb { txid: acked.map(|t| format!("{:016x}", t.0)), lag_txns, lag_ms }
}

/// Timestamp of the LTX file holding the transaction after `have` (the oldest one a
/// replica at `have` lacks); `None` when it is not on disk (retention took it, or it is
/// still staged: then it is younger than any file).
fn oldest_missing_ms(db: &Db, have: Txid) -> Option<i64> {
    let want = have.0 + 1;
    let files = db.ltx_dir().list().ok()?;
    let (_, _, path) = files.iter().find(|(min, max, _)| min.0 <= want && want <= max.0)?;
    crate::db::LtxDir::read_ends(path).ok().map(|s| s.header.timestamp)
}
