//! The lease state machine: whether this node may accept writes, and whom it follows.
//!
//! The lease actor feeds it what the lease backend answered (acquired, renewed, failed,
//! who holds the lease) and the time (milliseconds on a monotonic clock, passed in); it
//! answers with what to do. Nothing here does I/O, so every path (including a backend that
//! stops answering) is tested on simulated time.
//!
//! Safety invariant: this node is writable only while `now < deadline`, where `deadline` is
//! computed from the time the acquire or renew request was *sent* (the backend restarted its
//! TTL no earlier than that) plus the TTL minus a safety margin. A node that cannot renew
//! demotes itself at the deadline, before the backend can hand the lease to anyone else.
//! A backend with no TTL (the static lease) never expires.
//!
//! With a write fence ([`Timing::fence_ms`]) writes stop earlier, at the send time of the
//! last grant plus the fence, and the lease is renewed every third of it; the shell checks
//! [`LeaseMachine::write_until_ms`] on every write, not only when a timer fires, so a
//! process paused past it (SIGSTOP, a VM freeze) refuses writes when it wakes.

use crate::core::types::Epoch;

/// Pause before retrying an acquire that was refused while nobody held the lease.
pub const ACQUIRE_RETRY_MS: u64 = 200;

/// Who holds the lease, as the backend reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub hostname: String,
    pub advertise_url: String,
}

/// What the node is, as far as the lease goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseView {
    /// This node holds the lease for `epoch` and may accept writes.
    Primary { epoch: Epoch },
    /// Another node holds it (or nobody, `holder: None`); this node is read-only.
    Replica { holder: Option<Holder> },
}

/// Inputs to the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseEvent {
    /// An acquire or renew sent at `sent_ms` succeeded (for `epoch`).
    Granted { epoch: Epoch, sent_ms: u64 },
    /// An acquire found the lease held by someone else.
    Refused,
    /// A renew failed (backend unreachable or the lease is gone).
    RenewFailed { lost: bool },
    /// The backend reports who holds the lease: another node (`Some`) or nobody (`None`).
    /// The backend recognises its own session and never reports this node here.
    Holder(Option<Holder>),
    /// Time passes.
    Tick,
}

/// What the lease actor should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseAction {
    /// The view changed: apply it (mount writable or not, start serving or following).
    Publish(LeaseView),
    /// Try to take the lease (a candidate with no live holder).
    Acquire,
    /// Renew the lease now.
    Renew,
}

/// Timing of a TTL lease, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub ttl_ms: u64,
    /// Subtracted from the TTL: covers clock rate differences and the time a demotion takes.
    pub margin_ms: u64,
    /// The write fence: writes are accepted only until the send time of the last grant
    /// plus this, and the lease is renewed every third of it. It must be shorter than the
    /// time the backend keeps the lease from others after invalidating it (Consul's
    /// lock-delay), so a deposed primary stops writing before anyone else may start, even
    /// when its session is destroyed early (fast failover, `protocol.md` §10).
    pub fence_ms: Option<u64>,
}

impl Timing {
    fn renew_every_ms(&self) -> u64 {
        match self.fence_ms {
            Some(f) => (f / 3).clamp(1, self.ttl_ms / 2),
            None => self.ttl_ms / 2,
        }
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct LeaseMachine {
    candidate: bool,
    timing: Option<Timing>,
    view: LeaseView,
    /// Primary only: the role ends at this time (send time of the last grant + TTL −
    /// margin).
    deadline_ms: u64,
    /// Primary only: writable strictly before this time (the fence; `deadline_ms` without
    /// one).
    fence_ms: u64,
    /// Primary only: when to send the next renew (half the TTL after a grant was sent, or
    /// a short pause after a failed renew).
    renew_ms: u64,
    renewing: bool,
    acquiring: bool,
    /// A refused acquire while nobody was known to hold the lease (Consul's lock-delay,
    /// or the backend unreachable) is retried at this time.
    retry_acquire_ms: Option<u64>,
    /// The newest epoch seen; a grant for an older one is ignored (fencing).
    epoch: Epoch,
}

impl LeaseMachine {
    pub fn new(candidate: bool, timing: Option<Timing>) -> LeaseMachine {
        LeaseMachine {
            candidate,
            timing,
            view: LeaseView::Replica { holder: None },
            deadline_ms: 0,
            fence_ms: 0,
            renew_ms: 0,
            renewing: false,
            acquiring: false,
            retry_acquire_ms: None,
            epoch: Epoch(0),
        }
    }

    pub fn view(&self) -> &LeaseView {
        &self.view
    }

    /// Whether this node may accept writes at `now_ms`.
    pub fn writable(&self, now_ms: u64) -> bool {
        now_ms < self.write_until_ms()
    }

    /// Until when (exclusive) this node may accept writes: 0 if it is not the primary,
    /// `u64::MAX` for a lease without expiry. The shell checks it on every write, so a
    /// paused process that wakes past it refuses writes before any timer runs.
    pub fn write_until_ms(&self) -> u64 {
        match (&self.view, self.timing) {
            (LeaseView::Primary { .. }, None) => u64::MAX,
            (LeaseView::Primary { .. }, Some(_)) => self.fence_ms,
            (LeaseView::Replica { .. }, _) => 0,
        }
    }

    /// When the actor should tick next (renewal, deadline or acquire retry), if ever.
    pub fn next_tick_ms(&self) -> Option<u64> {
        match self.view {
            LeaseView::Primary { .. } => {
                self.timing?;
                Some(self.renew_ms.min(self.deadline_ms))
            }
            LeaseView::Replica { .. } => self.retry_acquire_ms,
        }
    }

    /// First actions at startup.
    pub fn start(&mut self) -> Vec<LeaseAction> {
        if self.candidate {
            self.acquiring = true;
            vec![LeaseAction::Acquire]
        } else {
            Vec::new()
        }
    }

    pub fn handle(&mut self, ev: LeaseEvent, now_ms: u64) -> Vec<LeaseAction> {
        let mut out = Vec::new();
        match ev {
            LeaseEvent::Granted { epoch, sent_ms } => {
                self.acquiring = false;
                self.renewing = false;
                if epoch < self.epoch {
                    return out;
                }
                self.epoch = epoch;
                let deadline = match self.timing {
                    Some(t) => (sent_ms + t.ttl_ms).saturating_sub(t.margin_ms),
                    None => u64::MAX,
                };
                if deadline <= now_ms {
                    // Granted too long ago to be of use: never writable on it.
                    return self.demote(out, None);
                }
                self.deadline_ms = deadline;
                self.fence_ms = match self.timing.and_then(|t| t.fence_ms) {
                    Some(f) => deadline.min(sent_ms + f),
                    None => deadline,
                };
                self.renew_ms = self.timing.map_or(u64::MAX, |t| sent_ms + t.renew_every_ms());
                if self.view != (LeaseView::Primary { epoch }) {
                    self.view = LeaseView::Primary { epoch };
                    out.push(LeaseAction::Publish(self.view.clone()));
                }
            }
            LeaseEvent::Refused => {
                self.acquiring = false;
                if self.view == (LeaseView::Replica { holder: None }) {
                    self.retry_acquire_ms = Some(now_ms + ACQUIRE_RETRY_MS);
                }
            }
            LeaseEvent::RenewFailed { lost } => {
                self.renewing = false;
                if lost {
                    return self.demote(out, None);
                }
                if let Some(t) = self.timing {
                    self.renew_ms =
                        now_ms + (t.ttl_ms / 10).clamp(1, 1_000).min(t.renew_every_ms());
                }
            }
            LeaseEvent::Holder(h) => {
                match &self.view {
                    LeaseView::Primary { .. } => {
                        // Someone else holds it: our term ended whatever our deadline says.
                        if h.is_some() {
                            return self.demote(out, h);
                        }
                    }
                    LeaseView::Replica { holder } => {
                        if *holder != h {
                            self.view = LeaseView::Replica { holder: h.clone() };
                            out.push(LeaseAction::Publish(self.view.clone()));
                        }
                        if h.is_some() {
                            self.retry_acquire_ms = None;
                        } else if self.candidate && !self.acquiring {
                            self.acquiring = true;
                            self.retry_acquire_ms = None;
                            out.push(LeaseAction::Acquire);
                        }
                    }
                }
            }
            LeaseEvent::Tick => {
                if self.retry_acquire_ms.is_some_and(|t| now_ms >= t) && !self.acquiring {
                    self.retry_acquire_ms = None;
                    self.acquiring = true;
                    out.push(LeaseAction::Acquire);
                }
            }
        }
        // Timers.
        if let (LeaseView::Primary { .. }, Some(_)) = (&self.view, self.timing) {
            if now_ms >= self.deadline_ms {
                return self.demote(out, None);
            }
            if !self.renewing && now_ms >= self.renew_ms {
                self.renewing = true;
                out.push(LeaseAction::Renew);
            }
        }
        out
    }

    fn demote(&mut self, mut out: Vec<LeaseAction>, holder: Option<Holder>) -> Vec<LeaseAction> {
        self.renewing = false;
        self.deadline_ms = 0;
        self.fence_ms = 0;
        if matches!(self.view, LeaseView::Primary { .. }) || self.view_holder() != holder {
            self.view = LeaseView::Replica { holder };
            out.push(LeaseAction::Publish(self.view.clone()));
        }
        out
    }

    fn view_holder(&self) -> Option<Holder> {
        match &self.view {
            LeaseView::Replica { holder } => holder.clone(),
            LeaseView::Primary { .. } => None,
        }
    }
}

/// Fast failover (`protocol.md` §10.2): when a replica suspects its silent primary. The
/// shell passes how long the primary has been silent and whether a session with it is up;
/// this says when to ask the lease backend to depose it.
#[derive(Debug, Clone)]
pub struct Suspicion {
    after_ms: u64,
    /// A session with this term's primary came up: until then a longer silence is allowed
    /// (a newly elected primary takes its databases over before it listens).
    term_heard: bool,
    last_ms: Option<u64>,
}

/// Silence allowed, in units of the failover timeout, before the first session of a term.
pub const NEW_TERM_GRACE: u64 = 3;

impl Suspicion {
    pub fn new(after_ms: u64) -> Suspicion {
        Suspicion { after_ms, term_heard: false, last_ms: None }
    }

    /// A new primary: forget the last one.
    pub fn new_term(&mut self) {
        self.term_heard = false;
        self.last_ms = None;
    }

    /// Whether to suspect the primary now (at most once per failover timeout). `own_fault`:
    /// this node's last session with it ended by a local failure and none was attempted
    /// since, so the primary's silence means nothing (a replica that cannot apply must not
    /// depose a healthy primary).
    pub fn check(&mut self, now_ms: u64, silent_ms: u64, connected: bool, own_fault: bool) -> bool {
        self.term_heard |= connected;
        if own_fault {
            return false;
        }
        let after = if self.term_heard { self.after_ms } else { self.after_ms * NEW_TERM_GRACE };
        let due = self.last_ms.is_none_or(|t| now_ms.saturating_sub(t) >= after);
        if silent_ms >= after && due {
            self.last_ms = Some(now_ms);
            return true;
        }
        false
    }
}

/// A candidate's databases and their TXIDs, as it publishes them before acquiring the lease
/// (`protocol.md` §10.4).
pub type Positions = std::collections::BTreeMap<String, u64>;

/// Whether `other` holds everything `mine` does and more: at least `mine`'s TXID of every
/// database (a database one side lacks counts as TXID 0), and beyond it in at least one.
pub fn dominates(other: &Positions, mine: &Positions) -> bool {
    let get = |p: &Positions, k: &str| p.get(k).copied().unwrap_or(0);
    let names = || other.keys().chain(mine.keys());
    names().all(|k| get(other, k) >= get(mine, k)) && names().any(|k| get(other, k) > get(mine, k))
}

/// Whether the candidate that published `other` = (round, positions) should take the lease
/// before this one, `mine`. A round is the epoch of the last primary a candidate followed
/// (0: none since it started). A later round wins whatever the TXIDs: that candidate has
/// the newer term's history, and TXIDs of an older term may be a deposed primary's
/// unreplicated tail, which must not win over the newer term's commits. In the same round
/// every candidate holds a prefix of the same history, so more TXIDs means more of it.
pub fn preferred(other: (u64, &Positions), mine: (u64, &Positions)) -> bool {
    other.0 > mine.0 || (other.0 == mine.0 && dominates(other.1, mine.1))
}

/// The election's preference for up-to-date candidates: a candidate that knows of a
/// [`preferred`] one holds back from acquiring, for at most
/// `after_ms` per round counted from the first time it held back, so the better candidate
/// takes the lease when it can and a dead better candidate delays the election by at most
/// that much. Only availability depends on it, never safety (the lease decides).
#[derive(Debug, Clone)]
pub struct Deference {
    after_ms: u64,
    /// (round, when this node first held back in it)
    since: Option<(u64, u64)>,
}

impl Deference {
    pub fn new(after_ms: u64) -> Deference {
        Deference { after_ms, since: None }
    }

    /// Whether to hold back from acquiring now in the election after `round`; `better`:
    /// some candidate is [`preferred`] to this one.
    pub fn hold_back(&mut self, round: u64, better: bool, now_ms: u64) -> bool {
        if !better {
            return false;
        }
        let since = match self.since {
            Some((r, t)) if r == round => t,
            _ => {
                self.since = Some((round, now_ms));
                now_ms
            }
        };
        now_ms.saturating_sub(since) < self.after_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(v: &[(&str, u64)]) -> Positions {
        v.iter().map(|(k, t)| (k.to_string(), *t)).collect()
    }

    #[test]
    fn a_candidate_defers_to_a_more_advanced_one_for_a_while() {
        let mine = pos(&[("a.db", 5), ("b.db", 7)]);
        assert!(dominates(&pos(&[("a.db", 6), ("b.db", 7)]), &mine));
        assert!(dominates(&pos(&[("a.db", 5), ("b.db", 7), ("c.db", 1)]), &mine));
        // Equal, behind somewhere, or lacking a database: no preference.
        assert!(!dominates(&mine, &mine));
        assert!(!dominates(&pos(&[("a.db", 9), ("b.db", 6)]), &mine));
        assert!(!dominates(&pos(&[("a.db", 9)]), &mine));
        // A later round wins whatever the TXIDs (an older term's may be a divergent tail).
        let ahead = pos(&[("a.db", 99), ("b.db", 99)]);
        assert!(preferred((8, &mine), (7, &ahead)));
        assert!(!preferred((7, &ahead), (8, &mine)));
        assert!(preferred((7, &ahead), (7, &mine)));
        // A restarted candidate (round 0) defers to those that followed a primary.
        assert!(preferred((7, &mine), (0, &ahead)));

        let mut d = Deference::new(2_000);
        assert!(!d.hold_back(7, false, 0));
        assert!(d.hold_back(7, true, 100));
        assert!(d.hold_back(7, true, 2_099));
        // The better candidate did not take it in time: go ahead.
        assert!(!d.hold_back(7, true, 2_100));
        // A new round counts afresh.
        assert!(d.hold_back(8, true, 5_000));
    }

    const T: Timing = Timing { ttl_ms: 10_000, margin_ms: 1_000, fence_ms: None };
    const R: u64 = ACQUIRE_RETRY_MS;

    fn other() -> Holder {
        Holder { hostname: "n2".into(), advertise_url: "http://n2:20202".into() }
    }

    #[test]
    fn static_candidate_is_primary_forever() {
        let mut m = LeaseMachine::new(true, None);
        assert_eq!(m.start(), vec![LeaseAction::Acquire]);
        let a = m.handle(LeaseEvent::Granted { epoch: Epoch(1), sent_ms: 0 }, 5);
        assert_eq!(a, vec![LeaseAction::Publish(LeaseView::Primary { epoch: Epoch(1) })]);
        assert!(m.writable(u64::MAX - 1));
        assert_eq!(m.next_tick_ms(), None);
        assert!(m.handle(LeaseEvent::Tick, 1 << 50).is_empty());
    }

    #[test]
    fn static_replica_follows_the_configured_primary() {
        let mut m = LeaseMachine::new(false, None);
        assert!(m.start().is_empty());
        let a = m.handle(LeaseEvent::Holder(Some(other())), 0);
        assert_eq!(a, vec![LeaseAction::Publish(LeaseView::Replica { holder: Some(other()) })]);
        assert!(!m.writable(1));
        assert!(m.handle(LeaseEvent::Holder(Some(other())), 2).is_empty());
    }

    #[test]
    fn deadline_counts_from_the_send_time() {
        let mut m = LeaseMachine::new(true, Some(T));
        m.start();
        // The reply took 4 s to arrive: the lease may already be 4 s old server-side.
        m.handle(LeaseEvent::Granted { epoch: Epoch(3), sent_ms: 1_000 }, 5_000);
        assert!(m.writable(9_999));
        assert!(!m.writable(10_000)); // 1000 + 10000 - 1000
        assert_eq!(m.next_tick_ms(), Some(6_000));
    }

    #[test]
    fn renews_at_half_ttl_and_demotes_at_the_deadline_without_answers() {
        let mut m = LeaseMachine::new(true, Some(T));
        m.start();
        m.handle(LeaseEvent::Granted { epoch: Epoch(1), sent_ms: 0 }, 10);
        assert!(m.handle(LeaseEvent::Tick, 4_999).is_empty());
        assert_eq!(m.handle(LeaseEvent::Tick, 5_000), vec![LeaseAction::Renew]);
        // The backend never answers: no second renew while one is out, then demotion.
        assert!(m.handle(LeaseEvent::Tick, 7_000).is_empty());
        assert!(m.writable(8_999));
        let a = m.handle(LeaseEvent::Tick, 9_000);
        assert_eq!(a, vec![LeaseAction::Publish(LeaseView::Replica { holder: None })]);
        assert!(!m.writable(9_000));
    }

    #[test]
    fn renewal_extends_and_failure_retries() {
        let mut m = LeaseMachine::new(true, Some(T));
        m.start();
        m.handle(LeaseEvent::Granted { epoch: Epoch(1), sent_ms: 0 }, 10);
        assert_eq!(m.handle(LeaseEvent::Tick, 5_000), vec![LeaseAction::Renew]);
        assert!(m.handle(LeaseEvent::RenewFailed { lost: false }, 5_100).is_empty());
        // Retried after a pause (TTL/10 here), not in a tight loop.
        assert!(m.handle(LeaseEvent::Tick, 5_500).is_empty());
        assert_eq!(m.next_tick_ms(), Some(6_100));
        assert_eq!(m.handle(LeaseEvent::Tick, 6_100), vec![LeaseAction::Renew]);
        assert!(
            m.handle(LeaseEvent::Granted { epoch: Epoch(1), sent_ms: 6_100 }, 6_200).is_empty()
        );
        assert!(m.writable(15_099));
        assert!(!m.writable(15_100));
    }

    #[test]
    fn a_lost_lease_or_another_holder_demotes_at_once() {
        let mut m = LeaseMachine::new(true, Some(T));
        m.start();
        m.handle(LeaseEvent::Granted { epoch: Epoch(1), sent_ms: 0 }, 10);
        let a = m.handle(LeaseEvent::RenewFailed { lost: true }, 20);
        assert_eq!(a, vec![LeaseAction::Publish(LeaseView::Replica { holder: None })]);
        m.handle(LeaseEvent::Granted { epoch: Epoch(2), sent_ms: 30 }, 40);
        let a = m.handle(LeaseEvent::Holder(Some(other())), 50);
        assert_eq!(a, vec![LeaseAction::Publish(LeaseView::Replica { holder: Some(other()) })]);
        assert!(!m.writable(51));
    }

    #[test]
    fn stale_grants_are_ignored() {
        let mut m = LeaseMachine::new(true, Some(T));
        m.start();
        m.handle(LeaseEvent::Granted { epoch: Epoch(5), sent_ms: 0 }, 10);
        m.handle(LeaseEvent::RenewFailed { lost: true }, 20);
        assert!(m.handle(LeaseEvent::Granted { epoch: Epoch(4), sent_ms: 30 }, 40).is_empty());
        assert!(!m.writable(41));
        // A grant that arrives after its own deadline never makes the node writable.
        assert!(m.handle(LeaseEvent::Granted { epoch: Epoch(6), sent_ms: 0 }, 9_500).is_empty());
        assert!(!m.writable(9_500));
    }

    #[test]
    fn a_candidate_acquires_when_the_holder_goes_away() {
        let mut m = LeaseMachine::new(true, Some(T));
        m.start();
        m.handle(LeaseEvent::Refused, 1);
        m.handle(LeaseEvent::Holder(Some(other())), 2);
        let a = m.handle(LeaseEvent::Holder(None), 3);
        assert_eq!(
            a,
            vec![LeaseAction::Publish(LeaseView::Replica { holder: None }), LeaseAction::Acquire]
        );
        // Only one acquire in flight.
        assert!(m.handle(LeaseEvent::Holder(None), 4).is_empty());
        // Refused during the lock-delay: retried after a pause, not before.
        assert!(m.handle(LeaseEvent::Refused, 5).is_empty());
        assert_eq!(m.next_tick_ms(), Some(R + 5));
        assert!(m.handle(LeaseEvent::Tick, R + 4).is_empty());
        assert_eq!(m.handle(LeaseEvent::Tick, R + 5), vec![LeaseAction::Acquire]);
        // A holder appearing cancels a pending retry.
        m.handle(LeaseEvent::Refused, R + 6);
        m.handle(LeaseEvent::Holder(Some(other())), R + 7);
        assert_eq!(m.next_tick_ms(), None);
    }

    #[test]
    fn a_silent_primary_is_suspected_once_per_timeout() {
        let mut s = Suspicion::new(1_000);
        // Never reached this term's primary: three timeouts of grace.
        assert!(!s.check(1_000, 1_000, false, false));
        assert!(s.check(3_000, 3_000, false, false));
        // Connected, then silent: one timeout; repeated only a timeout later.
        s.new_term();
        assert!(!s.check(5_000, 100, true, false));
        assert!(!s.check(5_900, 999, false, false));
        assert!(s.check(6_000, 1_000, false, false));
        assert!(!s.check(6_500, 1_500, false, false));
        assert!(s.check(7_000, 2_000, false, false));
        // Its own session failed: not the primary's silence.
        assert!(!s.check(9_000, 4_000, false, true));
    }

    #[test]
    fn the_write_fence_stops_writes_long_before_the_lease_ends() {
        let t = Timing { fence_ms: Some(750), ..T };
        let mut m = LeaseMachine::new(true, Some(t));
        m.start();
        m.handle(LeaseEvent::Granted { epoch: Epoch(2), sent_ms: 100 }, 110);
        // Writable until the send time + fence; still the primary until the TTL deadline.
        assert!(m.writable(849));
        assert!(!m.writable(850));
        assert_eq!(m.view(), &LeaseView::Primary { epoch: Epoch(2) });
        // Renewed every third of the fence; each grant moves the fence from its send time.
        assert_eq!(m.next_tick_ms(), Some(350));
        assert_eq!(m.handle(LeaseEvent::Tick, 350), vec![LeaseAction::Renew]);
        m.handle(LeaseEvent::Granted { epoch: Epoch(2), sent_ms: 350 }, 360);
        assert!(m.writable(1_099));
        assert!(!m.writable(1_100));
        // A failed renew is retried within the fence.
        m.handle(LeaseEvent::Tick, 600);
        m.handle(LeaseEvent::RenewFailed { lost: false }, 610);
        assert_eq!(m.next_tick_ms(), Some(860));
        // Paused past the fence (no timer ran): not writable when it wakes, and a late
        // grant sent before the pause only counts from its send time.
        m.handle(LeaseEvent::Granted { epoch: Epoch(2), sent_ms: 600 }, 5_000);
        assert!(!m.writable(5_000));
    }
}
