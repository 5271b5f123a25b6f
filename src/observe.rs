//! What the node shows the outside world (the HTTP API, the status view): a fan-out of
//! events (every transaction committed or applied, every change of primary), the lease as
//! this node last saw it, and the replicas connected to this node while it is the primary.
//!
//! One [`Hub`] per node, owned by its [`crate::node::NodeCtx`]. Writers: the database's LTX
//! log ([`Hub::tx`], on the commit and apply paths), the replication supervisor
//! ([`Hub::set_lease`]) and the primary's replica sessions ([`Hub::replica_connected`] and the
//! guard it returns). Readers never block a writer: events go through a bounded broadcast
//! ring; a reader that falls [`EVENT_CAPACITY`] events behind loses its place (and the HTTP
//! stream that serves it ends with a line that says so), and nothing is encoded unless
//! someone is subscribed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, watch};

use crate::core::lease::Holder;
use crate::core::types::{Epoch, NodeId, Pos, Txid};
use crate::core::wire::Role;

/// How many events a subscriber may fall behind before it is dropped.
pub const EVENT_CAPACITY: usize = 1024;

/// One thing that happened on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A transaction was committed here (primary) or applied here (replica).
    Tx(TxEvent),
    /// The primary changed: this node became it or stopped being it, or another node is
    /// now the primary (`hostname`; empty while nobody is known to hold the lease).
    PrimaryChange { is_primary: bool, hostname: String },
}

/// A transaction, as the event stream reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxEvent {
    pub db: Arc<str>,
    pub txid: Txid,
    /// The checksum after the transaction; `None` inside a ranged file applied on a replica
    /// (only the range's last transaction's checksum is known there).
    pub post_apply_checksum: Option<u64>,
    pub page_size: u32,
    /// Database size in pages after the transaction (0: deleted).
    pub commit: u32,
    /// Commit time, milliseconds since the Unix epoch (from the LTX header).
    pub timestamp_ms: i64,
}

/// The lease as this node last saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseState {
    pub is_primary: bool,
    /// The epoch this node holds (primary), or the newest it has seen.
    pub epoch: Epoch,
    /// The primary, when another node holds the lease.
    pub primary: Option<Holder>,
}

/// A replica connected to this node (the primary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaInfo {
    pub node: NodeId,
    pub hostname: String,
    pub role: Role,
    pub addr: SocketAddr,
    /// When the session started, milliseconds since the Unix epoch.
    pub since_ms: i64,
    /// The connection's current round-trip time estimate (QUIC), in microseconds.
    pub rtt_us: u64,
}

/// A replica session's inbox for lease offers; each offer carries where the session
/// answers whether it could make it.
pub type OfferTx = tokio::sync::mpsc::UnboundedSender<OfferReply>;
/// The answer to one offer.
pub type OfferReply =
    tokio::sync::oneshot::Sender<Result<(), crate::core::session::primary::OfferRefused>>;

/// Why `POST /handoff` could not offer the lease.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    #[error("no replica with node ID {0} is connected")]
    NotConnected(NodeId),
    #[error("{0}")]
    Refused(#[from] crate::core::session::primary::OfferRefused),
    #[error("the replica's session ended")]
    SessionEnded,
}

/// See the module docs.
pub struct Hub {
    events: broadcast::Sender<Arc<Event>>,
    lease: watch::Sender<LeaseState>,
    /// The hostnames primaries gave in their HELLO, by advertise URL: a static lease knows
    /// its primary only by URL, so its holder's hostname is the URL's host until then.
    names: Mutex<BTreeMap<String, String>>,
    /// Keyed by a per-session number: one replica can have two sessions for a moment (a
    /// reconnect overlapping the end of the old one).
    replicas: Mutex<BTreeMap<u64, ReplicaInfo>>,
    /// Per replica session (same keys): where `POST /handoff` offers it the lease.
    offers: Mutex<BTreeMap<u64, OfferTx>>,
    /// How the handoffs this node ran as the primary ended, by target.
    handoffs: broadcast::Sender<(NodeId, Result<(), String>)>,
    next_session: std::sync::atomic::AtomicU64,
}

impl Default for Hub {
    fn default() -> Hub {
        Hub {
            events: broadcast::channel(EVENT_CAPACITY).0,
            lease: watch::Sender::new(LeaseState::default()),
            names: Mutex::new(BTreeMap::new()),
            replicas: Mutex::new(BTreeMap::new()),
            offers: Mutex::new(BTreeMap::new()),
            handoffs: broadcast::channel(16).0,
            next_session: std::sync::atomic::AtomicU64::new(1),
        }
    }
}

impl Hub {
    /// Subscribes to events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    /// How many event subscribers there are.
    pub fn subscribers(&self) -> usize {
        self.events.receiver_count()
    }

    /// Whether anyone listens: callers build a [`TxEvent`] only then.
    pub fn wants_tx(&self) -> bool {
        self.events.receiver_count() > 0
    }

    /// Publishes transactions `min..=pos.txid` of `db` (one event each; only the last one's
    /// checksum is known when the range holds more than one).
    pub fn tx(&self, db: &Arc<str>, min: Txid, pos: Pos, page_size: u32, commit: u32, ts: i64) {
        if !self.wants_tx() {
            return;
        }
        let first = min.0.clamp(1, pos.txid.0.max(1));
        for t in first..=pos.txid.0 {
            let last = t == pos.txid.0;
            let ev = TxEvent {
                db: db.clone(),
                txid: Txid(t),
                post_apply_checksum: last.then_some(pos.checksum.0),
                page_size,
                commit,
                timestamp_ms: ts,
            };
            let _ = self.events.send(Arc::new(Event::Tx(ev)));
        }
    }

    /// Records what the lease says now; publishes a [`Event::PrimaryChange`] when the
    /// primary changed.
    pub fn set_lease(&self, mut next: LeaseState) {
        if let Some(h) = &mut next.primary
            && let Some(name) = self.names_mut().get(&h.advertise_url)
        {
            h.hostname = name.clone();
        }
        let mut changed = None;
        self.lease.send_if_modified(|cur| {
            let host = |s: &LeaseState| s.primary.as_ref().map(|h| h.hostname.clone());
            if cur.is_primary != next.is_primary || host(cur) != host(&next) {
                changed = Some(Event::PrimaryChange {
                    is_primary: next.is_primary,
                    hostname: host(&next).unwrap_or_default(),
                });
            }
            let modified = *cur != next;
            *cur = next.clone();
            modified
        });
        if let Some(ev) = changed {
            let _ = self.events.send(Arc::new(ev));
        }
    }

    /// The primary this node follows introduced itself as `hostname` (its HELLO).
    pub fn name_primary(&self, hostname: &str) {
        let mut cur = self.lease();
        let Some(h) = &mut cur.primary else { return };
        self.names_mut().insert(h.advertise_url.clone(), hostname.to_owned());
        self.set_lease(cur);
    }

    fn names_mut(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.names.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lease as last seen.
    pub fn lease(&self) -> LeaseState {
        self.lease.borrow().clone()
    }

    /// Watches the lease (for waits on a role change).
    pub fn watch_lease(&self) -> watch::Receiver<LeaseState> {
        self.lease.subscribe()
    }

    /// Registers a replica session; it is listed until the returned guard drops. Offers of
    /// the lease to it ([`Hub::offer`]) arrive on `offers`.
    pub fn replica_connected(self: &Arc<Self>, info: ReplicaInfo, offers: OfferTx) -> ReplicaGuard {
        use std::sync::atomic::Ordering;
        let key = self.next_session.fetch_add(1, Ordering::Relaxed);
        self.replicas_mut().insert(key, info);
        self.offers.lock().unwrap_or_else(|e| e.into_inner()).insert(key, offers);
        ReplicaGuard { hub: self.clone(), key }
    }

    /// Offers the lease to replica `node` through its newest session (`POST /handoff`).
    pub async fn offer(&self, node: NodeId) -> Result<(), OfferError> {
        let key = self
            .replicas_mut()
            .iter()
            .filter(|(_, r)| r.node == node)
            .map(|(k, _)| *k)
            .max()
            .ok_or(OfferError::NotConnected(node))?;
        let tx = self.offers.lock().unwrap_or_else(|e| e.into_inner()).get(&key).cloned();
        let tx = tx.ok_or(OfferError::NotConnected(node))?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        tx.send(reply).map_err(|_| OfferError::SessionEnded)?;
        Ok(answer.await.map_err(|_| OfferError::SessionEnded)??)
    }

    /// Subscribes to the outcomes of handoffs this node runs as the primary.
    pub fn handoff_outcomes(&self) -> broadcast::Receiver<(NodeId, Result<(), String>)> {
        self.handoffs.subscribe()
    }

    /// A handoff to `target` ended.
    pub fn handoff_done(&self, target: NodeId, r: Result<(), String>) {
        let _ = self.handoffs.send((target, r));
    }

    /// The connected replicas, one entry per node (its newest session).
    pub fn replicas(&self) -> Vec<ReplicaInfo> {
        let mut by_node: BTreeMap<NodeId, ReplicaInfo> = BTreeMap::new();
        for r in self.replicas_mut().values() {
            by_node.insert(r.node, r.clone());
        }
        by_node.into_values().collect()
    }

    fn replicas_mut(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, ReplicaInfo>> {
        self.replicas.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A replica session's entry in [`Hub::replicas`]; removed on drop.
pub struct ReplicaGuard {
    hub: Arc<Hub>,
    key: u64,
}

impl ReplicaGuard {
    /// Updates the session's round-trip time.
    pub fn set_rtt_us(&self, rtt_us: u64) {
        if let Some(r) = self.hub.replicas_mut().get_mut(&self.key) {
            r.rtt_us = rtt_us;
        }
    }
}

impl Drop for ReplicaGuard {
    fn drop(&mut self) {
        self.hub.replicas_mut().remove(&self.key);
        self.hub.offers.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::types::Checksum;

    fn pos(t: u64) -> Pos {
        Pos { txid: Txid(t), checksum: Checksum(0x1000 + t) }
    }

    #[test]
    fn nothing_is_built_without_subscribers_and_ranges_give_one_event_each() {
        let hub = Hub::default();
        let db: Arc<str> = "a.db".into();
        hub.tx(&db, Txid(1), pos(1), 4096, 2, 7);
        let mut rx = hub.subscribe();
        hub.tx(&db, Txid(2), pos(4), 4096, 3, 8);
        let got: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        let txids: Vec<_> = got
            .iter()
            .map(|e| match &**e {
                Event::Tx(t) => (t.txid.0, t.post_apply_checksum),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(txids, vec![(2, None), (3, None), (4, Some(0x1004))]);
    }

    #[test]
    fn primary_changes_are_published_once() {
        let hub = Hub::default();
        let mut rx = hub.subscribe();
        let h = |n: &str| Some(Holder { hostname: n.into(), advertise_url: String::new() });
        let replica_of = |n| LeaseState { is_primary: false, epoch: Epoch(1), primary: h(n) };
        hub.set_lease(replica_of("n1"));
        hub.set_lease(LeaseState { epoch: Epoch(2), ..replica_of("n1") });
        hub.set_lease(LeaseState { is_primary: true, epoch: Epoch(3), primary: None });
        let got: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).map(|e| (*e).clone()).collect();
        assert_eq!(
            got,
            vec![
                Event::PrimaryChange { is_primary: false, hostname: "n1".into() },
                Event::PrimaryChange { is_primary: true, hostname: String::new() },
            ]
        );
        assert_eq!(hub.lease().epoch, Epoch(3));
    }

    #[test]
    fn a_primary_known_by_url_takes_the_name_it_gives() {
        let hub = Hub::default();
        let by_url =
            Holder { hostname: "10.0.0.1".into(), advertise_url: "http://10.0.0.1:9".into() };
        let replica = LeaseState { is_primary: false, epoch: Epoch(1), primary: Some(by_url) };
        hub.set_lease(replica.clone());
        let mut rx = hub.subscribe();
        hub.name_primary("n1");
        assert_eq!(hub.lease().primary.unwrap().hostname, "n1");
        // The lease actor repeats what it knows: the name stays.
        hub.set_lease(replica);
        assert_eq!(hub.lease().primary.unwrap().hostname, "n1");
        let got: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).map(|e| (*e).clone()).collect();
        assert_eq!(got, vec![Event::PrimaryChange { is_primary: false, hostname: "n1".into() }]);
    }

    #[test]
    fn a_slow_subscriber_loses_its_place_instead_of_holding_memory() {
        let hub = Hub::default();
        let db: Arc<str> = "a.db".into();
        let mut rx = hub.subscribe();
        for t in 1..=(EVENT_CAPACITY as u64 + 10) {
            hub.tx(&db, Txid(t), pos(t), 4096, 1, 0);
        }
        assert!(matches!(rx.try_recv(), Err(broadcast::error::TryRecvError::Lagged(10))));
    }

    #[test]
    fn replicas_are_listed_while_their_session_lives() {
        let hub = Arc::new(Hub::default());
        let info = ReplicaInfo {
            node: NodeId(7),
            hostname: "n2".into(),
            role: Role::Candidate,
            addr: "127.0.0.1:9".parse().unwrap(),
            since_ms: 1,
            rtt_us: 0,
        };
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let g = hub.replica_connected(info.clone(), tx);
        g.set_rtt_us(250);
        assert_eq!(hub.replicas(), vec![ReplicaInfo { rtt_us: 250, ..info }]);
        drop(g);
        assert!(hub.replicas().is_empty());
    }
}
