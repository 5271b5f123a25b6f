//! Replicas' acknowledgements of this database on the primary: the bookkeeping behind
//! synchronous replication (`lease.sync-replicas`) and handoff.
//!
//! A commit that must be confirmed leaves its write with a [`SyncPoint`]; the FUSE side
//! answers the application only once [`Db::replicated`] says enough replicas durably hold
//! it. Acknowledgements arrive from the replication streams ([`Db::note_ack`]) and are
//! withdrawn when a stream ends ([`Db::forget_replica`]); the counting itself is
//! [`Quorum`]'s. Handoff asks who is behind ([`Db::replicas_behind`], [`Db::acked_by`])
//! and waits on [`Db::ack_changes`].
//!
//! Invariant: after every change of `acks`, `replicated` holds `Quorum::reached` for
//! `lease.sync-replicas` and `ack_seq` moves on, both under the `acks` lock, so a waiter that
//! read either and then waits for it to change misses no acknowledgement.
//!
//! [`Quorum`]: crate::core::quorum::Quorum

use tokio::sync::watch;

use super::{Db, DbError, SyncPoint};
use crate::core::quorum::Quorum;
use crate::core::types::{NodeId, Txid};

impl Db {
    /// The acknowledgements, locked.
    fn acks(&self) -> std::sync::MutexGuard<'_, Quorum> {
        self.acks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes what `q` now says: the TXID enough replicas reached, and a change.
    fn ack_changed(&self, q: &Quorum) {
        let r = q.reached(self.node.sync_replicas());
        self.replicated.send_if_modified(|v| std::mem::replace(v, r) != r);
        self.ack_seq.send_modify(|s| *s += 1);
    }

    /// Synchronous replication: the TXID a commit just cast (`committed`) must reach
    /// before it is answered. Called with the commit lock held, so no later commit is
    /// queued: the position after the barrier is this commit's (or a later one's, never an
    /// earlier one's).
    pub(super) fn sync_point(&self, committed: bool) -> Result<SyncPoint, DbError> {
        if !committed || self.node.sync_replicas() == 0 {
            return Ok(SyncPoint(None));
        }
        self.barrier(false)?;
        Ok(SyncPoint(Some(self.pos().txid)))
    }

    /// Primary: replica `node` (connection `conn`) durably holds this database up to
    /// `txid`. Only replicas that count towards `lease.sync-replicas` are reported.
    pub fn note_ack(&self, node: NodeId, conn: u64, txid: Txid, counts: bool) {
        let mut q = self.acks();
        q.ack(node, conn, txid.min(self.pos().txid), counts);
        self.ack_changed(&q);
    }

    /// Primary: the connection `conn` of replica `node` ended.
    pub fn forget_replica(&self, node: NodeId, conn: u64) {
        let mut q = self.acks();
        q.drop_conn(node, conn);
        self.ack_changed(&q);
    }

    /// A receiver that changes whenever an acknowledgement arrives or a replica's
    /// acknowledgements are withdrawn.
    pub fn ack_changes(&self) -> watch::Receiver<u64> {
        self.ack_seq.subscribe()
    }

    /// Primary: how many replicas that could take over (see [`Quorum::behind`]) are
    /// connected but have not acknowledged `txid`.
    pub fn replicas_behind(&self, txid: Txid) -> usize {
        self.acks().behind(txid)
    }

    /// Primary: what replica `node` acknowledged of this database.
    pub fn acked_by(&self, node: NodeId) -> Option<Txid> {
        self.acks().acked_by(node)
    }

    /// Synchronous replication: waits until `lease.sync-replicas` replicas durably hold
    /// `txid` (at once when asynchronous). Gives up only when this node loses the primary
    /// role: a late lease renewal (the write fence) is not a reason, because failing a
    /// commit SQLite already wrote to its WAL while the node stays primary would make the
    /// LTX history and SQLite's disagree.
    pub async fn replicated(&self, txid: Txid) -> Result<(), DbError> {
        let need = self.node.sync_replicas();
        if need == 0 {
            return Ok(());
        }
        let mut rx = self.replicated.subscribe();
        let mut waited = 0u32;
        loop {
            if *rx.borrow_and_update() >= txid {
                return Ok(());
            }
            if !self.node.is_primary() {
                let have = self.acks().count_at(txid);
                return Err(DbError::Unreplicated { txid, need, have });
            }
            // The role is polled: losing it sends nothing on this channel.
            let tick = tokio::time::sleep(std::time::Duration::from_millis(50));
            tokio::select! {
                _ = rx.changed() => {}
                _ = tick => {
                    waited += 1;
                    if waited.is_multiple_of(100) {
                        let have = self.acks().count_at(txid);
                        tracing::warn!(db = %self.name, %txid, need, have,
                            waited_ms = waited * 50,
                            "commit waiting for synchronous replicas");
                    }
                }
            }
        }
    }
}
