//! Synchronous replication's bookkeeping, sans IO: which position of one database enough
//! replicas have durably acknowledged (`lease.sync-replicas`, `protocol.md` §11).
//!
//! Invariant: [`Quorum::reached`] only grows while the primary keeps its term, except when
//! a replica that counted disconnects; a commit that was released (its TXID was reached)
//! stays released, since its waiter already returned. A waiter therefore compares its TXID
//! with `reached` at the time it looks, never with an older reading.
//!
//! Hazard: one replica may briefly hold two connections (it redialled before the primary
//! noticed the old one die). Acknowledgements are keyed by node, not connection, so it
//! never counts twice; the connection id only keeps the old connection's end from erasing
//! the new one's entry.

use std::collections::HashMap;

use crate::core::types::{NodeId, Txid};

/// Acknowledged positions of one database, per replica node. See the module docs.
#[derive(Debug, Default, Clone)]
pub struct Quorum {
    /// node → (connection id, highest acknowledged TXID on that connection, whether it
    /// counts towards `lease.sync-replicas`).
    acked: HashMap<NodeId, (u64, Txid, bool)>,
}

impl Quorum {
    /// A replica acknowledged `txid` on connection `conn`. Lower TXIDs than one already
    /// acknowledged on the same connection are ignored (acknowledgements may be reordered
    /// with nothing lost: durability is monotonic on one connection).
    pub fn ack(&mut self, node: NodeId, conn: u64, txid: Txid, counts: bool) {
        let e = self.acked.entry(node).or_insert((conn, txid, counts));
        if e.0 != conn {
            // A newer connection of the same node: its acknowledgements replace the old.
            *e = (conn, txid, counts);
        } else if txid > e.1 {
            e.1 = txid;
        }
    }

    /// What `node` acknowledged on its current connection (handoff: the target must hold
    /// the exact position).
    pub fn acked_by(&self, node: NodeId) -> Option<Txid> {
        self.acked.get(&node).map(|e| e.1)
    }

    /// Connection `conn` of `node` ended: its acknowledgements stop counting (a replica
    /// reconnecting may have lost nothing, but its next ACK says so).
    pub fn drop_conn(&mut self, node: NodeId, conn: u64) {
        if self.acked.get(&node).is_some_and(|e| e.0 == conn) {
            self.acked.remove(&node);
        }
    }

    /// The highest TXID at least `n` replicas have acknowledged (`Txid::ZERO` if fewer than
    /// `n` replicas are connected; `n = 0` needs nobody: `Txid(u64::MAX)`).
    pub fn reached(&self, n: usize) -> Txid {
        if n == 0 {
            return Txid(u64::MAX);
        }
        let mut v: Vec<Txid> = self.acked.values().filter(|e| e.2).map(|e| e.1).collect();
        if v.len() < n {
            return Txid::ZERO;
        }
        v.sort_unstable_by(|a, b| b.cmp(a));
        v[n - 1]
    }

    /// How many replicas have acknowledged at least `txid`.
    pub fn count_at(&self, txid: Txid) -> usize {
        self.acked.values().filter(|e| e.2 && e.1 >= txid).count()
    }

    /// How many replicas that count are connected but have not acknowledged `txid` yet
    /// (graceful shutdown waits for none to be left behind).
    pub fn behind(&self, txid: Txid) -> usize {
        self.acked.values().filter(|e| e.2 && e.1 < txid).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nth_highest() {
        let mut q = Quorum::default();
        assert_eq!(q.reached(0), Txid(u64::MAX));
        assert_eq!(q.reached(1), Txid::ZERO);
        q.ack(NodeId(1), 1, Txid(5), true);
        q.ack(NodeId(2), 2, Txid(3), true);
        q.ack(NodeId(3), 3, Txid(9), true);
        // A replica that cannot become primary is tracked, not counted.
        q.ack(NodeId(4), 4, Txid(99), false);
        assert_eq!(q.acked_by(NodeId(4)), Some(Txid(99)));
        assert_eq!(q.reached(1), Txid(9));
        assert_eq!(q.reached(2), Txid(5));
        assert_eq!(q.behind(Txid(9)), 2);
        assert_eq!(q.behind(Txid(3)), 0);
        assert_eq!(q.reached(3), Txid(3));
        assert_eq!(q.reached(4), Txid::ZERO);
        assert_eq!(q.count_at(Txid(5)), 2);
    }

    #[test]
    fn one_node_never_counts_twice() {
        let mut q = Quorum::default();
        q.ack(NodeId(1), 1, Txid(7), true);
        // Redialled: the new connection starts over, the old one's end changes nothing.
        q.ack(NodeId(1), 2, Txid(4), true);
        assert_eq!(q.reached(1), Txid(4));
        assert_eq!(q.reached(2), Txid::ZERO);
        q.drop_conn(NodeId(1), 1);
        assert_eq!(q.reached(1), Txid(4));
        q.drop_conn(NodeId(1), 2);
        assert_eq!(q.reached(1), Txid::ZERO);
    }

    #[test]
    fn reordered_acks_never_lower() {
        let mut q = Quorum::default();
        q.ack(NodeId(1), 1, Txid(7), true);
        q.ack(NodeId(1), 1, Txid(6), true);
        assert_eq!(q.reached(1), Txid(7));
    }
}
