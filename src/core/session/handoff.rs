//! The steps of a graceful handoff on the primary (`protocol.md` §12 steps 3–6): wait for
//! the target to catch up while writes go on, stop writes and take every database's final
//! position, wait for the target's ACK of exactly those, then move the lease. Writes resume
//! if any step after they stopped fails.
//!
//! This machine decides only the order of the steps, their deadlines and when each is
//! complete. It does not stop writes, read acknowledgements or talk to the lease backend:
//! the shell (`repl::primary`, and the simulation) does, and reports back.
//!
//! # Calling contract
//!
//! - [`Handoff::new`] when the primary accepted a handoff request ([`PrimaryEvent::HandOver`]),
//!   with every database's position at that moment.
//! - Whenever the target's acknowledgements may have changed (an ACK arrived, or its
//!   connection ended and they were withdrawn), [`Handoff::handle_acked`] for each database
//!   [`Handoff::awaited`] lists, with what the target durably holds of it *now* (a level,
//!   not an edge: `None` when the bookkeeping holds nothing for it). Call it once for each
//!   awaited database right after [`Handoff::new`] and after [`Handoff::handle_quiesced`]:
//!   an ACK that arrived before the step began counts.
//! - [`HandoffAction::StopWrites`]: stop application writes, wait for the write in progress
//!   on every database, and report every database's position (databases created meanwhile
//!   included) through [`Handoff::handle_quiesced`].
//! - [`HandoffAction::HandOffLease`]: run the lease transaction and report its outcome
//!   through [`Handoff::handle_lease`].
//! - [`HandoffAction::ResumeWrites`]: let applications write again (only ever emitted after
//!   `StopWrites`, and never after the lease moved).
//! - [`HandoffAction::Done`]: the handoff ended; it is the last action.
//! - At [`Handoff::poll_timeout`]: [`Handoff::handle_timeout`]. Time is monotonic.
//! - After every call, drain [`Handoff::poll_action`] in order and perform each action
//!   before the next `handle_*` call.
//!
//! Invariant: `HandOffLease` is emitted only after `StopWrites` was performed and the
//! target acknowledged every database at the position `handle_quiesced` reported (TXID 0
//! needs no acknowledgement), so the target holds every commit this node accepted when the
//! lease moves.
//!
//! Hazard: a lease transaction whose outcome the shell cannot know (the backend timed out
//! after it may have applied it) must be reported as an error only if the lease demonstrably
//! did not move; writes resumed while the target holds the lease would fork the history
//! until this node's fence expires. The Consul backend's transaction is one HTTP request,
//! and the lease actor's renewals still find out if the key moved.
//!
//! [`PrimaryEvent::HandOver`]: super::primary::PrimaryEvent::HandOver

use std::collections::{BTreeMap, VecDeque};

use crate::core::types::{Millis, Txid};

/// How long the target may take to catch up with the live writes (§12 step 3).
pub const CATCH_UP_MS: u64 = 30_000;
/// How long, with writes stopped, the target may take to acknowledge the final positions
/// (§12 step 5): the longest the pause may last before writes resume.
pub const FINAL_ACK_MS: u64 = 2_000;

/// Why a handoff did not complete. `E` is the shell's error for the steps it performs
/// (stopping writes, the lease transaction).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandoffFailure<E> {
    /// The target did not catch up with the live writes within [`CATCH_UP_MS`].
    #[error("{db} still behind")]
    Behind { db: String },
    /// With writes stopped, the target did not acknowledge `db`'s final position within
    /// [`FINAL_ACK_MS`].
    #[error("{db} did not acknowledge the final position")]
    NoFinalAck { db: String },
    /// Writes could not be stopped at a position.
    #[error("stopping writes: {0}")]
    Quiesce(E),
    /// The lease transaction failed (the lease did not move).
    #[error("{0}")]
    Lease(E),
}

/// How long each part of a completed handoff took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandoffStats {
    /// From stopping writes to the lease having moved.
    pub paused_ms: u64,
    /// Stopping writes and taking the final positions.
    pub quiesce_ms: u64,
    /// The target's final acknowledgement, after the final positions were taken.
    pub final_ack_ms: u64,
}

/// What the shell must do next; see the calling contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandoffAction<E> {
    StopWrites,
    HandOffLease,
    ResumeWrites,
    Done(Result<HandoffStats, HandoffFailure<E>>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Writes on; waiting for the target's ACKs of the positions at the request.
    CatchUp,
    /// `StopWrites` emitted; waiting for the final positions.
    Quiescing,
    /// Writes stopped; waiting for the target's ACKs of the final positions.
    FinalAck,
    /// `HandOffLease` emitted; waiting for its outcome.
    Lease,
    Done,
}

/// See the module docs.
#[derive(Debug)]
pub struct Handoff<E> {
    step: Step,
    /// What the target must hold of each database for the current step (never TXID 0).
    want: BTreeMap<String, Txid>,
    /// What the target holds, as last reported.
    have: BTreeMap<String, Txid>,
    /// The current step's deadline (`None` while the shell performs a step).
    deadline: Option<Millis>,
    paused_at: Millis,
    quiesced_at: Millis,
    acked_at: Millis,
    actions: VecDeque<HandoffAction<E>>,
}

impl<E> Handoff<E> {
    /// A handoff accepted at `now`, when the databases were at `positions`.
    pub fn new(now: Millis, positions: impl IntoIterator<Item = (String, Txid)>) -> Handoff<E> {
        let mut h = Handoff {
            step: Step::CatchUp,
            want: wanted(positions),
            have: BTreeMap::new(),
            deadline: Some(now.plus(CATCH_UP_MS)),
            paused_at: now,
            quiesced_at: now,
            acked_at: now,
            actions: VecDeque::new(),
        };
        h.advance(now);
        h
    }

    /// The databases whose acknowledgement by the target the current step waits for.
    pub fn awaited(&self) -> impl Iterator<Item = &str> {
        let waiting = matches!(self.step, Step::CatchUp | Step::FinalAck);
        self.want
            .iter()
            .filter(move |(db, t)| waiting && self.have.get(*db).is_none_or(|h| h < *t))
            .map(|(db, _)| db.as_str())
    }

    /// Whether the handoff ended ([`HandoffAction::Done`] was queued).
    pub fn is_done(&self) -> bool {
        self.step == Step::Done
    }

    /// What the target durably holds of `db` now (`None`: nothing known, or its
    /// acknowledgements were withdrawn with its connection).
    pub fn handle_acked(&mut self, now: Millis, db: &str, txid: Option<Txid>) {
        match txid {
            Some(t) => self.have.insert(db.to_owned(), t),
            None => self.have.remove(db),
        };
        self.advance(now);
    }

    /// The outcome of [`HandoffAction::StopWrites`]: every database's final position.
    pub fn handle_quiesced(
        &mut self,
        now: Millis,
        finals: Result<impl IntoIterator<Item = (String, Txid)>, E>,
    ) {
        if self.step != Step::Quiescing {
            return;
        }
        match finals {
            Ok(finals) => {
                self.quiesced_at = now;
                self.want = wanted(finals);
                self.step = Step::FinalAck;
                self.deadline = Some(now.plus(FINAL_ACK_MS));
                self.advance(now);
            }
            Err(e) => self.fail(HandoffFailure::Quiesce(e)),
        }
    }

    /// The outcome of [`HandoffAction::HandOffLease`]. `Err` only when the lease did not
    /// move (see the hazard in the module docs).
    pub fn handle_lease(&mut self, now: Millis, r: Result<(), E>) {
        if self.step != Step::Lease {
            return;
        }
        match r {
            Ok(()) => {
                self.step = Step::Done;
                let stats = HandoffStats {
                    paused_ms: now.since(self.paused_at),
                    quiesce_ms: self.quiesced_at.since(self.paused_at),
                    final_ack_ms: self.acked_at.since(self.quiesced_at),
                };
                self.actions.push_back(HandoffAction::Done(Ok(stats)));
            }
            Err(e) => self.fail(HandoffFailure::Lease(e)),
        }
    }

    pub fn handle_timeout(&mut self, now: Millis) {
        if self.deadline.is_none_or(|d| now < d) {
            return;
        }
        // Still waiting (an `advance` would have moved on otherwise): `awaited` is not empty.
        let db = self.awaited().next().unwrap_or_default().to_owned();
        match self.step {
            Step::CatchUp => self.fail(HandoffFailure::Behind { db }),
            Step::FinalAck => self.fail(HandoffFailure::NoFinalAck { db }),
            Step::Quiescing | Step::Lease | Step::Done => {}
        }
    }

    pub fn poll_timeout(&self) -> Option<Millis> {
        self.deadline
    }

    pub fn poll_action(&mut self) -> Option<HandoffAction<E>> {
        self.actions.pop_front()
    }

    /// Moves to the next step once the target acknowledged everything the current one
    /// waits for.
    fn advance(&mut self, now: Millis) {
        if self.awaited().next().is_some() {
            return;
        }
        match self.step {
            Step::CatchUp => {
                self.step = Step::Quiescing;
                self.deadline = None;
                self.paused_at = now;
                self.actions.push_back(HandoffAction::StopWrites);
            }
            Step::FinalAck => {
                self.step = Step::Lease;
                self.deadline = None;
                self.acked_at = now;
                self.actions.push_back(HandoffAction::HandOffLease);
            }
            Step::Quiescing | Step::Lease | Step::Done => {}
        }
    }

    fn fail(&mut self, why: HandoffFailure<E>) {
        // Writes stopped in every step after catch-up; the lease has not moved (a
        // successful lease step never fails).
        if self.step != Step::CatchUp {
            self.actions.push_back(HandoffAction::ResumeWrites);
        }
        self.step = Step::Done;
        self.deadline = None;
        self.actions.push_back(HandoffAction::Done(Err(why)));
    }
}

/// The positions an acknowledgement must reach: TXID 0 (an empty database) needs none.
fn wanted(positions: impl IntoIterator<Item = (String, Txid)>) -> BTreeMap<String, Txid> {
    positions.into_iter().filter(|(_, t)| *t > Txid::ZERO).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    type H = Handoff<&'static str>;
    type A = HandoffAction<&'static str>;

    fn dbs(list: &[(&str, u64)]) -> Vec<(String, Txid)> {
        list.iter().map(|(n, t)| (n.to_string(), Txid(*t))).collect()
    }

    fn actions(h: &mut H) -> Vec<A> {
        std::iter::from_fn(|| h.poll_action()).collect()
    }

    /// A handoff that reached the final ACK step at `t` ms, writes stopped at 100.
    fn at_final_ack(finals: &[(&str, u64)], t: u64) -> H {
        let mut h = H::new(Millis(0), dbs(&[("a.db", 3)]));
        h.handle_acked(Millis(100), "a.db", Some(Txid(3)));
        assert_eq!(actions(&mut h), vec![A::StopWrites]);
        h.handle_quiesced(Millis(t), Ok(dbs(finals)));
        h
    }

    #[test]
    fn success_path_with_timings() {
        let mut h = H::new(Millis(0), dbs(&[("a.db", 3), ("b.db", 7)]));
        assert_eq!(h.poll_timeout(), Some(Millis(CATCH_UP_MS)));
        assert_eq!(h.awaited().collect::<Vec<_>>(), ["a.db", "b.db"]);
        h.handle_acked(Millis(10), "a.db", Some(Txid(3)));
        h.handle_acked(Millis(10), "b.db", Some(Txid(6)));
        assert!(actions(&mut h).is_empty(), "b.db still behind: writes go on");
        h.handle_acked(Millis(100), "b.db", Some(Txid(7)));
        assert_eq!(actions(&mut h), vec![A::StopWrites]);
        assert_eq!(h.poll_timeout(), None, "stopping writes has no deadline of its own");
        // Commits went on meanwhile: the final positions are newer.
        h.handle_quiesced(Millis(105), Ok(dbs(&[("a.db", 5), ("b.db", 7)])));
        assert_eq!(h.poll_timeout(), Some(Millis(105 + FINAL_ACK_MS)));
        assert_eq!(h.awaited().collect::<Vec<_>>(), ["a.db"], "b.db was acknowledged already");
        assert!(actions(&mut h).is_empty());
        h.handle_acked(Millis(120), "a.db", Some(Txid(5)));
        assert_eq!(actions(&mut h), vec![A::HandOffLease]);
        // Late inputs change nothing while the lease moves.
        h.handle_timeout(Millis(10_000));
        h.handle_acked(Millis(130), "a.db", None);
        assert!(actions(&mut h).is_empty());
        h.handle_lease(Millis(150), Ok(()));
        assert_eq!(
            actions(&mut h),
            vec![A::Done(Ok(HandoffStats { paused_ms: 50, quiesce_ms: 5, final_ack_ms: 15 }))]
        );
        assert!(h.is_done());
    }

    #[test]
    fn a_target_that_does_not_catch_up_fails_without_touching_writes() {
        let mut h = H::new(Millis(0), dbs(&[("a.db", 3)]));
        h.handle_acked(Millis(10), "a.db", Some(Txid(2)));
        h.handle_timeout(Millis(CATCH_UP_MS - 1));
        assert!(actions(&mut h).is_empty(), "not due yet");
        h.handle_timeout(Millis(CATCH_UP_MS));
        // Writes were never stopped: nothing to resume.
        assert_eq!(
            actions(&mut h),
            vec![A::Done(Err(HandoffFailure::Behind { db: "a.db".into() }))]
        );
        assert_eq!(h.poll_timeout(), None);
    }

    #[test]
    fn no_final_ack_resumes_writes() {
        let mut h = at_final_ack(&[("a.db", 4)], 200);
        h.handle_acked(Millis(300), "a.db", Some(Txid(3)));
        h.handle_timeout(Millis(200 + FINAL_ACK_MS - 1));
        assert!(actions(&mut h).is_empty());
        h.handle_timeout(Millis(200 + FINAL_ACK_MS));
        assert_eq!(
            actions(&mut h),
            vec![A::ResumeWrites, A::Done(Err(HandoffFailure::NoFinalAck { db: "a.db".into() }))]
        );
        // An ACK after the end starts nothing.
        h.handle_acked(Millis(3_000), "a.db", Some(Txid(4)));
        assert!(actions(&mut h).is_empty());
    }

    #[test]
    fn withdrawn_acknowledgements_do_not_count() {
        let mut h = at_final_ack(&[("a.db", 4)], 200);
        h.handle_acked(Millis(210), "a.db", None);
        assert_eq!(h.awaited().collect::<Vec<_>>(), ["a.db"], "the ACK of 3 was withdrawn");
        h.handle_acked(Millis(220), "a.db", Some(Txid(4)));
        assert_eq!(actions(&mut h), vec![A::HandOffLease]);
    }

    #[test]
    fn a_refused_lease_transaction_resumes_writes() {
        let mut h = at_final_ack(&[("a.db", 3)], 200);
        assert_eq!(actions(&mut h), vec![A::HandOffLease], "3 was acknowledged before");
        h.handle_lease(Millis(250), Err("session invalid"));
        assert_eq!(
            actions(&mut h),
            vec![A::ResumeWrites, A::Done(Err(HandoffFailure::Lease("session invalid")))]
        );
    }

    #[test]
    fn a_failed_quiesce_resumes_writes() {
        let mut h = H::new(Millis(0), dbs(&[("a.db", 3)]));
        h.handle_acked(Millis(100), "a.db", Some(Txid(3)));
        assert_eq!(actions(&mut h), vec![A::StopWrites]);
        h.handle_quiesced(Millis(110), Err::<Vec<(String, Txid)>, _>("disk"));
        assert_eq!(
            actions(&mut h),
            vec![A::ResumeWrites, A::Done(Err(HandoffFailure::Quiesce("disk")))]
        );
    }

    #[test]
    fn a_database_created_mid_handoff_must_be_acknowledged_too() {
        let mut h = at_final_ack(&[("a.db", 3), ("new.db", 1)], 200);
        assert_eq!(h.awaited().collect::<Vec<_>>(), ["new.db"]);
        assert!(actions(&mut h).is_empty());
        h.handle_timeout(Millis(200 + FINAL_ACK_MS));
        assert_eq!(
            actions(&mut h),
            vec![A::ResumeWrites, A::Done(Err(HandoffFailure::NoFinalAck { db: "new.db".into() }))]
        );
    }

    #[test]
    fn txid_zero_needs_no_acknowledgement() {
        // Nothing written anywhere: writes stop at once, and the lease moves without an ACK.
        let mut h = H::new(Millis(0), dbs(&[("empty.db", 0)]));
        assert_eq!(h.awaited().count(), 0);
        assert_eq!(actions(&mut h), vec![A::StopWrites]);
        h.handle_quiesced(Millis(5), Ok(dbs(&[("empty.db", 0), ("created.db", 0)])));
        assert_eq!(actions(&mut h), vec![A::HandOffLease]);
        h.handle_lease(Millis(9), Ok(()));
        assert!(matches!(&actions(&mut h)[..], [A::Done(Ok(s))] if s.paused_ms == 9));
    }
}
