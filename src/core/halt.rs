//! The HALT lock's decisions (`protocol.md` §16.1), sans IO: a replica that wants to write a
//! database through its own mount asks the primary for a HALT on it; the primary grants one
//! HALT per database at a time, holds its own writers while it lasts, and accepts the
//! holder's transactions only while the HALT is current and each continues the database's
//! exact position; the holder writes only once it reached the position it was granted at,
//! and renews the HALT before it expires. A holder that dies or is cut off stops renewing,
//! and the primary drops its HALT at expiry, so it never wedges the primary.
//!
//! Not wired yet: the shells (the lock seen on `<db>-lock`, the `0x03`/`0x04` streams, the
//! replica's forwarded commits) are the next step of issue 16.
//!
//! Invariants: at most one grant per database ([`HaltTable`]); a transaction is accepted
//! only under the current grant, before its expiry, from the grant's position, and moves the
//! grant's position to its own post-apply position ([`HaltTable::check_tx`],
//! [`HaltTable::applied`]), so two holders' (or a holder's and the primary's) writes never
//! interleave.

use std::collections::BTreeMap;

use crate::core::types::{Millis, NodeId, Pos};

/// How long a HALT lasts without a renewal (LiteFS's 30 s).
pub const TTL_MS: u64 = 30_000;
/// How often the holder renews (a third of the TTL: two renewals may be lost).
pub const RENEW_EVERY_MS: u64 = TTL_MS / 3;

/// Identifies one HALT (the holder picks it at random, as `litefs-go` does per handle).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HaltId(pub u64);

/// Why the primary refused a HALT request or a transaction under one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this node is not the primary")]
    NotPrimary,
    #[error("no database {0} on the primary")]
    UnknownDb(String),
    #[error("{db} is halted by another node ({holder})")]
    Busy { db: String, holder: NodeId },
    #[error("no current HALT {id:?} on {db} (expired, released, or never granted)")]
    NoHalt { db: String, id: HaltId },
    #[error("the transaction starts at {pre}, {db} is at {at}")]
    NotContinuous { db: String, pre: Pos, at: Pos },
}

/// A HALT as granted: the holder may write from `pos` until `expires`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    pub pos: Pos,
    pub expires: Millis,
}

#[derive(Debug, Clone, Copy)]
struct Grant {
    id: HaltId,
    holder: NodeId,
    expires: Millis,
    /// The database's position under this grant (the last transaction applied).
    pos: Pos,
}

/// The primary's HALTs, one per database at most.
#[derive(Debug, Default)]
pub struct HaltTable {
    grants: BTreeMap<String, Grant>,
}

impl HaltTable {
    /// A HALT request from `holder` for `db`. `at`: the database's position on this node
    /// (`None`: there is no such database), taken with its writers held (the shell holds
    /// them before it asks, and releases them again on a refusal). A request from this
    /// node itself is granted with nothing to hold (LiteFS: a no-op on the primary); one
    /// from the current holder renews its HALT.
    #[allow(clippy::too_many_arguments)]
    pub fn acquire(
        &mut self,
        now: Millis,
        primary: bool,
        me: NodeId,
        holder: NodeId,
        id: HaltId,
        db: &str,
        at: Option<Pos>,
    ) -> Result<Granted, Refusal> {
        self.expire(now);
        if !primary {
            return Err(Refusal::NotPrimary);
        }
        let Some(at) = at else { return Err(Refusal::UnknownDb(db.to_owned())) };
        let expires = now.plus(TTL_MS);
        if holder == me {
            return Ok(Granted { pos: at, expires });
        }
        if let Some(g) = self.grants.get_mut(db) {
            if g.id != id {
                return Err(Refusal::Busy { db: db.to_owned(), holder: g.holder });
            }
            g.expires = expires;
            return Ok(Granted { pos: g.pos, expires });
        }
        self.grants.insert(db.to_owned(), Grant { id, holder, expires, pos: at });
        Ok(Granted { pos: at, expires })
    }

    /// The holder renews HALT `id` on `db`: its new expiry.
    pub fn renew(&mut self, now: Millis, db: &str, id: HaltId) -> Result<Millis, Refusal> {
        self.expire(now);
        match self.grants.get_mut(db) {
            Some(g) if g.id == id => {
                g.expires = now.plus(TTL_MS);
                Ok(g.expires)
            }
            _ => Err(Refusal::NoHalt { db: db.to_owned(), id }),
        }
    }

    /// The holder released HALT `id` on `db`: whether it was current (the primary's
    /// writers resume either way once no grant holds them).
    pub fn release(&mut self, db: &str, id: HaltId) -> bool {
        if self.grants.get(db).is_some_and(|g| g.id == id) {
            self.grants.remove(db);
            return true;
        }
        false
    }

    /// May a transaction of HALT `id` on `db`, starting at `pre`, be applied? Only under
    /// the current, unexpired grant, and only if it continues the grant's position.
    pub fn check_tx(&mut self, now: Millis, db: &str, id: HaltId, pre: Pos) -> Result<(), Refusal> {
        self.expire(now);
        let g = match self.grants.get(db) {
            Some(g) if g.id == id => g,
            _ => return Err(Refusal::NoHalt { db: db.to_owned(), id }),
        };
        if g.pos != pre {
            return Err(Refusal::NotContinuous { db: db.to_owned(), pre, at: g.pos });
        }
        Ok(())
    }

    /// A transaction checked by [`HaltTable::check_tx`] was applied durably: `db` is at
    /// `post`.
    pub fn applied(&mut self, db: &str, id: HaltId, post: Pos) {
        if let Some(g) = self.grants.get_mut(db).filter(|g| g.id == id) {
            g.pos = post;
        }
    }

    /// Drops every grant expired at `now` and returns them (their databases' writers
    /// resume).
    pub fn expire(&mut self, now: Millis) -> Vec<(String, HaltId)> {
        let gone: Vec<(String, HaltId)> = self
            .grants
            .iter()
            .filter(|(_, g)| g.expires <= now)
            .map(|(db, g)| (db.clone(), g.id))
            .collect();
        for (db, _) in &gone {
            self.grants.remove(db);
        }
        gone
    }

    /// Whether `db`'s own writers must wait (a replica holds a HALT on it).
    pub fn holds(&self, db: &str) -> bool {
        self.grants.contains_key(db)
    }

    /// When the next grant expires (call [`HaltTable::expire`] then).
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.grants.values().map(|g| g.expires).min()
    }

    /// This node stopped being the primary: every HALT ends (the holders' next
    /// transaction or renewal is refused by whoever is primary now).
    pub fn clear(&mut self) {
        self.grants.clear();
    }
}

/// Where a holder's HALT is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HolderState {
    /// Asked; no answer yet.
    Requested,
    /// Granted at `target`: waiting until this node's copy is exactly there.
    CatchingUp { target: Pos, expires: Millis },
    /// This node may write the database; each commit goes to the primary first.
    Writable { expires: Millis, renew_at: Millis },
    /// Over: writes fail until the HALT is asked for again (and the copy is resynced if it
    /// may hold a commit the primary refused).
    Lost(String),
}

/// What the holder's shell does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HolderAction {
    /// Send a renewal now.
    Renew,
    /// The HALT ended: fail the writers, release locally.
    Lost(String),
}

/// The replica side of one HALT.
#[derive(Debug, Clone)]
pub struct Holder {
    pub id: HaltId,
    state: HolderState,
}

impl Holder {
    pub fn new(id: HaltId) -> Holder {
        Holder { id, state: HolderState::Requested }
    }

    pub fn state(&self) -> &HolderState {
        &self.state
    }

    /// The primary answered the request; `local` is this node's copy's position.
    pub fn handle_answer(&mut self, now: Millis, answer: Result<Granted, Refusal>, local: Pos) {
        self.state = match answer {
            Ok(g) => HolderState::CatchingUp { target: g.pos, expires: g.expires },
            Err(e) => HolderState::Lost(e.to_string()),
        };
        self.handle_position(now, local);
    }

    /// This node's copy reached `local` (a replicated transaction, or its own commit
    /// confirmed by the primary).
    pub fn handle_position(&mut self, now: Millis, local: Pos) {
        if let HolderState::CatchingUp { target, expires } = self.state {
            if local == target {
                self.state = HolderState::Writable { expires, renew_at: now.plus(RENEW_EVERY_MS) };
            } else if local.txid >= target.txid {
                // Past the granted position, or at its TXID with another checksum: this
                // copy is not the primary's history at the grant.
                self.state = HolderState::Lost(format!(
                    "this copy is at {local}, the HALT was granted at {target}"
                ));
            }
        }
    }

    /// The primary renewed the HALT until `expires` (or refused: it is over).
    pub fn handle_renewed(&mut self, now: Millis, r: Result<Millis, Refusal>) {
        match (r, &mut self.state) {
            (Ok(e), HolderState::Writable { expires, renew_at }) => {
                *expires = e;
                *renew_at = now.plus(RENEW_EVERY_MS);
            }
            (Ok(e), HolderState::CatchingUp { expires, .. }) => *expires = e,
            (Err(e), _) => self.state = HolderState::Lost(e.to_string()),
            (Ok(_), _) => {}
        }
    }

    /// May a commit go to the primary now? Only while writable and before the expiry as
    /// last granted (the primary refuses later ones anyway; this fails them sooner).
    pub fn may_commit(&self, now: Millis) -> bool {
        matches!(self.state, HolderState::Writable { expires, .. } if now < expires)
    }

    /// A commit under the HALT was refused by the primary: the HALT is over.
    pub fn handle_refused(&mut self, why: &Refusal) {
        self.state = HolderState::Lost(why.to_string());
    }

    /// Timers: a renewal due, or the expiry passed without one.
    pub fn handle_timeout(&mut self, now: Millis) -> Option<HolderAction> {
        match self.state.clone() {
            HolderState::Writable { expires, .. } | HolderState::CatchingUp { expires, .. }
                if now >= expires =>
            {
                let why = "the HALT expired before it was renewed".to_owned();
                self.state = HolderState::Lost(why.clone());
                Some(HolderAction::Lost(why))
            }
            HolderState::Writable { renew_at, expires } if now >= renew_at => {
                // Asked again at the next interval if this one is lost.
                self.state = HolderState::Writable { expires, renew_at: now.plus(RENEW_EVERY_MS) };
                Some(HolderAction::Renew)
            }
            _ => None,
        }
    }

    /// When [`Holder::handle_timeout`] should run next.
    pub fn poll_timeout(&self) -> Option<Millis> {
        match self.state {
            HolderState::Writable { expires, renew_at } => Some(renew_at.min(expires)),
            HolderState::CatchingUp { expires, .. } => Some(expires),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::types::{Checksum, Txid};

    fn pos(t: u64) -> Pos {
        Pos { txid: Txid(t), checksum: Checksum(t * 7) }
    }

    const ME: NodeId = NodeId(1);
    const R2: NodeId = NodeId(2);
    const R3: NodeId = NodeId(3);

    #[test]
    fn one_halt_per_database_and_only_on_the_primary() {
        let mut t = HaltTable::default();
        let now = Millis(1_000);
        assert_eq!(
            t.acquire(now, false, ME, R2, HaltId(9), "a.db", Some(pos(5))),
            Err(Refusal::NotPrimary)
        );
        assert_eq!(
            t.acquire(now, true, ME, R2, HaltId(9), "x.db", None),
            Err(Refusal::UnknownDb("x.db".into()))
        );
        // On the primary itself: granted, nothing held.
        assert!(t.acquire(now, true, ME, ME, HaltId(1), "a.db", Some(pos(5))).is_ok());
        assert!(!t.holds("a.db"));
        let g = t.acquire(now, true, ME, R2, HaltId(9), "a.db", Some(pos(5))).unwrap();
        assert_eq!(g, Granted { pos: pos(5), expires: now.plus(TTL_MS) });
        assert!(t.holds("a.db"));
        assert_eq!(
            t.acquire(now, true, ME, R3, HaltId(4), "a.db", Some(pos(5))),
            Err(Refusal::Busy { db: "a.db".into(), holder: R2 })
        );
        // Another database is free.
        assert!(t.acquire(now, true, ME, R3, HaltId(4), "b.db", Some(pos(1))).is_ok());
        assert!(t.release("a.db", HaltId(9)));
        assert!(!t.release("a.db", HaltId(9)));
        assert!(t.acquire(now, true, ME, R3, HaltId(4), "a.db", Some(pos(5))).is_ok());
    }

    #[test]
    fn transactions_only_under_the_current_grant_and_in_order() {
        let mut t = HaltTable::default();
        let now = Millis(0);
        t.acquire(now, true, ME, R2, HaltId(9), "a.db", Some(pos(5))).unwrap();
        assert_eq!(
            t.check_tx(now, "a.db", HaltId(8), pos(5)),
            Err(Refusal::NoHalt { db: "a.db".into(), id: HaltId(8) })
        );
        assert!(matches!(
            t.check_tx(now, "a.db", HaltId(9), pos(4)),
            Err(Refusal::NotContinuous { .. })
        ));
        t.check_tx(now, "a.db", HaltId(9), pos(5)).unwrap();
        t.applied("a.db", HaltId(9), pos(6));
        // The next one continues from 6, not 5 (no replay, no gap).
        assert!(t.check_tx(now, "a.db", HaltId(9), pos(5)).is_err());
        t.check_tx(now, "a.db", HaltId(9), pos(6)).unwrap();
    }

    #[test]
    fn a_silent_holder_never_wedges_the_primary() {
        let mut t = HaltTable::default();
        t.acquire(Millis(0), true, ME, R2, HaltId(9), "a.db", Some(pos(5))).unwrap();
        assert_eq!(t.poll_timeout(), Some(Millis(TTL_MS)));
        // Renewed at 10 s: good until 40 s.
        assert_eq!(t.renew(Millis(10_000), "a.db", HaltId(9)), Ok(Millis(10_000 + TTL_MS)));
        assert!(t.expire(Millis(39_999)).is_empty());
        assert_eq!(t.expire(Millis(40_000)), vec![("a.db".to_owned(), HaltId(9))]);
        assert!(!t.holds("a.db"));
        // The late holder's transaction and renewal are refused; another node may halt.
        assert!(t.check_tx(Millis(40_001), "a.db", HaltId(9), pos(5)).is_err());
        assert!(t.renew(Millis(40_001), "a.db", HaltId(9)).is_err());
        assert!(t.acquire(Millis(40_001), true, ME, R3, HaltId(2), "a.db", Some(pos(5))).is_ok());
        // A primary change ends every HALT.
        t.clear();
        assert!(!t.holds("a.db"));
    }

    #[test]
    fn the_holder_writes_only_at_the_granted_position_and_until_expiry() {
        let mut h = Holder::new(HaltId(9));
        let g = Granted { pos: pos(7), expires: Millis(TTL_MS) };
        h.handle_answer(Millis(0), Ok(g), pos(5));
        assert!(!h.may_commit(Millis(0)), "still catching up");
        h.handle_position(Millis(100), pos(6));
        assert!(!h.may_commit(Millis(100)));
        h.handle_position(Millis(200), pos(7));
        assert!(h.may_commit(Millis(200)));
        assert_eq!(h.poll_timeout(), Some(Millis(200 + RENEW_EVERY_MS)));
        assert_eq!(h.handle_timeout(Millis(200 + RENEW_EVERY_MS)), Some(HolderAction::Renew));
        // The renewal's answer is lost; the next is due one interval later, and the
        // expiry passes first if none comes.
        assert_eq!(h.handle_timeout(Millis(200 + 2 * RENEW_EVERY_MS)), Some(HolderAction::Renew));
        assert!(matches!(h.handle_timeout(Millis(TTL_MS)), Some(HolderAction::Lost(_))));
        assert!(!h.may_commit(Millis(TTL_MS)));
    }

    #[test]
    fn a_copy_off_the_granted_history_or_a_refusal_ends_the_halt() {
        let mut h = Holder::new(HaltId(9));
        let g = Granted { pos: pos(7), expires: Millis(TTL_MS) };
        // Same TXID, another checksum: not the primary's history.
        let other = Pos { txid: Txid(7), checksum: Checksum(1) };
        h.handle_answer(Millis(0), Ok(g), other);
        assert!(matches!(h.state(), HolderState::Lost(_)));

        let mut h = Holder::new(HaltId(9));
        h.handle_answer(Millis(0), Err(Refusal::NotPrimary), pos(7));
        assert_eq!(h.state(), &HolderState::Lost("this node is not the primary".into()));

        let mut h = Holder::new(HaltId(9));
        h.handle_answer(Millis(0), Ok(g), pos(7));
        assert!(h.may_commit(Millis(1)));
        h.handle_refused(&Refusal::NoHalt { db: "a.db".into(), id: HaltId(9) });
        assert!(!h.may_commit(Millis(2)));
        // A renewal refused ends it too.
        let mut h = Holder::new(HaltId(9));
        h.handle_answer(Millis(0), Ok(g), pos(7));
        h.handle_renewed(Millis(5), Err(Refusal::NotPrimary));
        assert!(!h.may_commit(Millis(6)));
    }
}
