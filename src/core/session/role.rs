//! The node's role (`protocol.md` §10, §12.2): what each lease view means for the mount, the
//! QUIC listener and the follower, how failed steps are retried, and when a replica
//! suspects its silent primary (fast failover). The replication supervisor
//! (`src/repl/supervisor.rs`) is the shell: it runs each [`RoleAction`] and reports back.
//!
//! # Calling contract
//!
//! - Every lease view goes to [`RoleMachine::handle_view`]. The shell has already made the
//!   mount read-only synchronously for any view but `Primary` (fencing: a demotion reported
//!   late would be a window with two writable primaries); the machine says it again.
//! - Each action that takes time reports its outcome: [`RoleAction::TakeOver`] through
//!   [`RoleMachine::handle_taken_over`], [`RoleAction::Demote`] through
//!   [`RoleMachine::handle_demoted`], [`RoleAction::StartFollower`] through
//!   [`RoleMachine::handle_follower_started`] (or `handle_follower_ended` when it could not
//!   start), a follower session's end through [`RoleMachine::handle_follower_ended`], the
//!   listener's through [`RoleMachine::handle_listener_ended`], the lease actor's through
//!   [`RoleMachine::handle_lease_ended`].
//! - At [`RoleMachine::poll_timeout`], [`RoleMachine::handle_timeout`] with what the node
//!   knows of its primary.
//! - After every call, run every [`RoleMachine::poll_action`] in order. Time is monotonic.

use std::collections::VecDeque;

use crate::core::lease::{Holder, LeaseView, Suspicion};
use crate::core::types::{Epoch, Millis};

/// A follower session is restarted after this long, doubling up to [`BACKOFF_MAX_MS`]...
pub const BACKOFF_MIN_MS: u64 = 100;
pub const BACKOFF_MAX_MS: u64 = 3_000;
/// ...and the backoff starts over after a session that lasted this long.
pub const LONG_SESSION_MS: u64 = 5_000;
/// A failed lease actor, listener or take-over is retried after this long.
pub const RESTART_DELAY_MS: u64 = 1_000;
/// How often a replica that may depose its primary checks when it was last heard from.
pub const CHECK_EVERY_MS: u64 = 100;

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleAction {
    /// Applications may write (`true`) or not.
    Writable(bool),
    /// A handoff of an earlier term paused writes: resume them.
    ResumeWrites,
    /// Remember `epoch` as seen (fencing).
    NoteEpoch(Epoch),
    /// Promotion: the FUSE side takes every database over from the replica applier.
    TakeOver,
    /// A former primary: bring every database to a replica's state before following.
    Demote,
    StartListener(Epoch),
    StopListener,
    StartFollower(Holder),
    /// Stop the follower and wait until its session ended (no apply in flight after).
    StopFollower,
    /// A new term: the primary's silence counts from now.
    HeardPrimary,
    /// Fast failover: ask the lease backend to depose the silent primary.
    Depose(Holder),
    /// Start the lease actor again (it ended).
    RestartLease,
}

/// See the module docs.
#[derive(Debug)]
pub struct RoleMachine {
    view: LeaseView,
    /// Fast failover's decision (`None`: off, or not a candidate).
    suspicion: Option<Suspicion>,
    /// A follower ran since this node was last primary: replicated files were applied
    /// behind the FUSE side's back, which must take the databases over on promotion.
    needs_take_over: bool,
    /// This node was the primary and has not been demoted since: its WAL may hold frames,
    /// so it cannot apply replicated files until demoted (or restarted).
    was_primary: bool,
    listening: bool,
    /// The follower runs since then.
    follower: Option<Millis>,
    demoting: bool,
    backoff_ms: u64,
    follower_at: Option<Millis>,
    listener_at: Option<Millis>,
    take_over_at: Option<Millis>,
    lease_at: Option<Millis>,
    check_at: Option<Millis>,
    actions: VecDeque<RoleAction>,
}

impl RoleMachine {
    /// `failover_after_ms`: fast failover's timeout on a candidate (`None`: off).
    pub fn new(failover_after_ms: Option<u64>) -> RoleMachine {
        RoleMachine {
            view: LeaseView::Replica { holder: None },
            suspicion: failover_after_ms.map(Suspicion::new),
            needs_take_over: false,
            was_primary: false,
            listening: false,
            follower: None,
            demoting: false,
            backoff_ms: BACKOFF_MIN_MS,
            follower_at: None,
            listener_at: None,
            take_over_at: None,
            lease_at: None,
            check_at: None,
            actions: VecDeque::from([RoleAction::Writable(false)]),
        }
    }

    pub fn view(&self) -> &LeaseView {
        &self.view
    }

    /// The lease says `view`.
    pub fn handle_view(&mut self, now: Millis, view: LeaseView) {
        self.view = view.clone();
        self.follower_at = None;
        self.take_over_at = None;
        match view {
            LeaseView::Primary { epoch } => {
                self.push(RoleAction::NoteEpoch(epoch));
                self.stop_follower();
                if self.needs_take_over {
                    self.push(RoleAction::TakeOver);
                } else {
                    self.become_primary(epoch);
                }
            }
            LeaseView::Replica { holder } => {
                self.push(RoleAction::Writable(false));
                self.listener_at = None;
                if self.listening {
                    self.listening = false;
                    self.push(RoleAction::StopListener);
                }
                self.stop_follower();
                self.backoff_ms = BACKOFF_MIN_MS;
                if holder.is_some() {
                    self.push(RoleAction::HeardPrimary);
                    if let Some(s) = &mut self.suspicion {
                        s.new_term();
                    }
                    self.start_follower(now);
                    if self.suspicion.is_some() && self.check_at.is_none() {
                        self.check_at = Some(now.plus(CHECK_EVERY_MS));
                    }
                }
            }
        }
    }

    /// The outcome of [`RoleAction::TakeOver`].
    pub fn handle_taken_over(&mut self, now: Millis, r: Result<(), String>) {
        let LeaseView::Primary { epoch } = self.view else { return };
        match r {
            Ok(()) => {
                self.needs_take_over = false;
                self.become_primary(epoch);
            }
            // Read-only meanwhile; the whole promotion is tried again.
            Err(_) => self.take_over_at = Some(now.plus(RESTART_DELAY_MS)),
        }
    }

    /// The outcome of [`RoleAction::Demote`].
    pub fn handle_demoted(&mut self, now: Millis, r: Result<(), String>) {
        self.demoting = false;
        match r {
            Ok(()) => {
                self.was_primary = false;
                // Writes stay refused (not writable); the pause of a handoff is over.
                self.push(RoleAction::ResumeWrites);
                self.start_follower(now);
            }
            Err(_) => self.retry_follower(now),
        }
    }

    /// [`RoleAction::StartFollower`] started a session.
    pub fn handle_follower_started(&mut self, now: Millis) {
        self.follower = Some(now);
        self.needs_take_over = true;
    }

    /// The follower's session ended (or could not start): reconnect with backoff.
    pub fn handle_follower_ended(&mut self, now: Millis) {
        if let Some(started) = self.follower.take()
            && now.since(started) > LONG_SESSION_MS
        {
            self.backoff_ms = BACKOFF_MIN_MS;
        }
        self.retry_follower(now);
    }

    /// The listener ended (or could not start): restarted while this node is the primary.
    pub fn handle_listener_ended(&mut self, now: Millis) {
        self.listening = false;
        if matches!(self.view, LeaseView::Primary { .. }) {
            self.listener_at = Some(now.plus(RESTART_DELAY_MS));
        }
    }

    /// The lease actor ended: read-only until it is restarted.
    pub fn handle_lease_ended(&mut self, now: Millis) {
        self.handle_view(now, LeaseView::Replica { holder: None });
        self.lease_at = Some(now.plus(RESTART_DELAY_MS));
    }

    /// Timers. `silent_ms`: how long the primary has not been heard from; `connected`: a
    /// session with it is up; `own_fault`: the last session ended by a local failure.
    pub fn handle_timeout(
        &mut self,
        now: Millis,
        silent_ms: u64,
        connected: bool,
        own_fault: bool,
    ) {
        let due = |t: &mut Option<Millis>| t.is_some_and(|t| now >= t) && t.take().is_some();
        if due(&mut self.lease_at) {
            self.push(RoleAction::RestartLease);
        }
        if due(&mut self.take_over_at)
            && let LeaseView::Primary { .. } = self.view
        {
            self.push(RoleAction::TakeOver);
        }
        if due(&mut self.listener_at)
            && let LeaseView::Primary { epoch } = self.view
            && !self.listening
        {
            self.listening = true;
            self.push(RoleAction::StartListener(epoch));
        }
        if due(&mut self.follower_at) {
            self.start_follower(now);
        }
        if due(&mut self.check_at) {
            self.check_primary(now, silent_ms, connected, own_fault);
        }
    }

    pub fn poll_timeout(&self) -> Option<Millis> {
        [self.lease_at, self.take_over_at, self.listener_at, self.follower_at, self.check_at]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn poll_action(&mut self) -> Option<RoleAction> {
        self.actions.pop_front()
    }

    fn push(&mut self, a: RoleAction) {
        self.actions.push_back(a);
    }

    fn become_primary(&mut self, epoch: Epoch) {
        self.was_primary = true;
        // Writable before the listener starts: a replica's HELLO is answered NOT_PRIMARY by
        // a node that is not (`protocol.md` §2 rule 9).
        self.push(RoleAction::ResumeWrites);
        self.push(RoleAction::Writable(true));
        if !self.listening {
            self.listening = true;
            self.push(RoleAction::StartListener(epoch));
        }
    }

    fn stop_follower(&mut self) {
        if self.follower.take().is_some() {
            self.push(RoleAction::StopFollower);
        }
    }

    fn start_follower(&mut self, now: Millis) {
        let LeaseView::Replica { holder: Some(h) } = &self.view else { return };
        if self.follower.is_some() || self.demoting {
            return;
        }
        if self.was_primary {
            // Demoted while running: writes are refused already. Following needs every
            // database in a replica's state.
            self.demoting = true;
            self.push(RoleAction::Demote);
            return;
        }
        let h = h.clone();
        // Counted as running from now: a second start waits for its outcome.
        self.follower = Some(now);
        self.push(RoleAction::StartFollower(h));
    }

    fn retry_follower(&mut self, now: Millis) {
        self.follower = None;
        if matches!(self.view, LeaseView::Replica { holder: Some(_) }) {
            self.follower_at = Some(now.plus(self.backoff_ms));
            self.backoff_ms = (self.backoff_ms * 2).min(BACKOFF_MAX_MS);
        }
    }

    /// Fast failover: a candidate following a primary it has not heard from for the
    /// failover timeout asks the lease backend to depose it (at most once per timeout).
    fn check_primary(&mut self, now: Millis, silent_ms: u64, connected: bool, own_fault: bool) {
        let LeaseView::Replica { holder: Some(h) } = &self.view else { return };
        let Some(s) = &mut self.suspicion else { return };
        self.check_at = Some(now.plus(CHECK_EVERY_MS));
        // Not following anyone yet (still demoting): its silence means nothing.
        if self.was_primary {
            return;
        }
        if s.check(now.0, silent_ms, connected, own_fault) {
            let h = h.clone();
            self.push(RoleAction::Depose(h));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(n: u32) -> Holder {
        Holder { hostname: format!("n{n}"), advertise_url: format!("http://n{n}:20202") }
    }

    fn drain(m: &mut RoleMachine) -> Vec<RoleAction> {
        std::iter::from_fn(|| m.poll_action()).collect()
    }

    fn replica(n: u32) -> LeaseView {
        LeaseView::Replica { holder: Some(holder(n)) }
    }

    #[test]
    fn follow_promote_demote_follow() {
        let mut m = RoleMachine::new(Some(1_000));
        assert_eq!(drain(&mut m), vec![RoleAction::Writable(false)]);
        m.handle_view(Millis(0), replica(1));
        assert_eq!(
            drain(&mut m),
            vec![
                RoleAction::Writable(false),
                RoleAction::HeardPrimary,
                RoleAction::StartFollower(holder(1))
            ]
        );
        m.handle_follower_started(Millis(5));
        // Promotion after following: take over first, then writable, then listen.
        m.handle_view(Millis(10), LeaseView::Primary { epoch: Epoch(4) });
        assert_eq!(
            drain(&mut m),
            vec![RoleAction::NoteEpoch(Epoch(4)), RoleAction::StopFollower, RoleAction::TakeOver]
        );
        m.handle_taken_over(Millis(20), Ok(()));
        assert_eq!(
            drain(&mut m),
            vec![
                RoleAction::ResumeWrites,
                RoleAction::Writable(true),
                RoleAction::StartListener(Epoch(4))
            ]
        );
        // Deposed: read-only, no listener, demote before following the new primary.
        m.handle_view(Millis(30), replica(2));
        assert_eq!(
            drain(&mut m),
            vec![
                RoleAction::Writable(false),
                RoleAction::StopListener,
                RoleAction::HeardPrimary,
                RoleAction::Demote
            ]
        );
        m.handle_demoted(Millis(40), Err("busy".into()));
        assert!(drain(&mut m).is_empty());
        // Retried after the backoff (the suspicion check's timer may come first).
        assert!(m.poll_timeout() <= Some(Millis(40 + BACKOFF_MIN_MS)));
        m.handle_timeout(Millis(40 + BACKOFF_MIN_MS), 0, false, false);
        assert_eq!(drain(&mut m), vec![RoleAction::Demote]);
        m.handle_demoted(Millis(150), Ok(()));
        assert_eq!(
            drain(&mut m),
            vec![RoleAction::ResumeWrites, RoleAction::StartFollower(holder(2))]
        );
    }

    #[test]
    fn a_failed_take_over_is_retried_read_only() {
        let mut m = RoleMachine::new(None);
        m.handle_view(Millis(0), replica(1));
        m.handle_follower_started(Millis(0));
        m.handle_view(Millis(10), LeaseView::Primary { epoch: Epoch(2) });
        drain(&mut m);
        m.handle_taken_over(Millis(10), Err("db busy".into()));
        assert!(drain(&mut m).is_empty(), "not writable");
        m.handle_timeout(Millis(10 + RESTART_DELAY_MS), 0, false, false);
        assert_eq!(drain(&mut m), vec![RoleAction::TakeOver]);
    }

    #[test]
    fn followers_reconnect_with_backoff() {
        let mut m = RoleMachine::new(None);
        m.handle_view(Millis(0), replica(1));
        drain(&mut m);
        m.handle_follower_started(Millis(0));
        let mut t = 10;
        for want in [100, 200, 400, 800, 1_600, 3_000, 3_000] {
            m.handle_follower_ended(Millis(t));
            assert_eq!(m.poll_timeout(), Some(Millis(t + want)));
            t += want;
            m.handle_timeout(Millis(t), 0, false, false);
            assert_eq!(drain(&mut m), vec![RoleAction::StartFollower(holder(1))]);
            m.handle_follower_started(Millis(t));
        }
        // A long session resets it.
        m.handle_follower_ended(Millis(t + LONG_SESSION_MS + 1));
        assert_eq!(m.poll_timeout(), Some(Millis(t + LONG_SESSION_MS + 1 + BACKOFF_MIN_MS)));
    }

    #[test]
    fn a_silent_primary_is_deposed_once_per_timeout() {
        let mut m = RoleMachine::new(Some(1_000));
        m.handle_view(Millis(0), replica(1));
        m.handle_follower_started(Millis(0));
        drain(&mut m);
        let mut t = 0;
        let mut deposed = Vec::new();
        while t < 10_000 {
            t = m.poll_timeout().expect("checking").0;
            // Heard until 2 s, then silent.
            let silent = t.saturating_sub(2_000);
            m.handle_timeout(Millis(t), silent, true, false);
            if drain(&mut m).contains(&RoleAction::Depose(holder(1))) {
                deposed.push(t);
            }
        }
        assert_eq!(deposed.first(), Some(&3_000));
        assert!(deposed.windows(2).all(|w| w[1] - w[0] >= 1_000), "{deposed:?}");
        // A replica whose own session failed never deposes; a primary never checks.
        let mut m = RoleMachine::new(Some(1_000));
        m.handle_view(Millis(0), replica(1));
        drain(&mut m);
        m.handle_timeout(Millis(100), 60_000, true, true);
        assert!(drain(&mut m).is_empty());
    }

    #[test]
    fn a_lost_lease_actor_or_listener_is_restarted() {
        let mut m = RoleMachine::new(None);
        m.handle_view(Millis(0), LeaseView::Primary { epoch: Epoch(1) });
        drain(&mut m);
        m.handle_listener_ended(Millis(5));
        m.handle_timeout(Millis(5 + RESTART_DELAY_MS), 0, false, false);
        assert_eq!(drain(&mut m), vec![RoleAction::StartListener(Epoch(1))]);
        m.handle_lease_ended(Millis(10));
        assert_eq!(drain(&mut m), vec![RoleAction::Writable(false), RoleAction::StopListener]);
        m.handle_timeout(Millis(10 + RESTART_DELAY_MS), 0, false, false);
        assert_eq!(drain(&mut m), vec![RoleAction::RestartLease]);
    }
}
