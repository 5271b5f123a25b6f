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

use crate::core::types::Epoch;

/// Pause before retrying an acquire that was refused while nobody held the lease.
pub const ACQUIRE_RETRY_MS: u64 = 1_000;

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
}

/// See the module docs.
#[derive(Debug)]
pub struct LeaseMachine {
    candidate: bool,
    timing: Option<Timing>,
    view: LeaseView,
    /// Primary only: writable strictly before this time.
    deadline_ms: u64,
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
        matches!(self.view, LeaseView::Primary { .. })
            && (self.timing.is_none() || now_ms < self.deadline_ms)
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
                self.renew_ms = self.timing.map_or(u64::MAX, |t| sent_ms + t.ttl_ms / 2);
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
                    self.renew_ms = now_ms + (t.ttl_ms / 10).clamp(1, 1_000);
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

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing { ttl_ms: 10_000, margin_ms: 1_000 };

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
        // Refused during the lock-delay: retried a second later, not before.
        assert!(m.handle(LeaseEvent::Refused, 5).is_empty());
        assert_eq!(m.next_tick_ms(), Some(1_005));
        assert!(m.handle(LeaseEvent::Tick, 1_004).is_empty());
        assert_eq!(m.handle(LeaseEvent::Tick, 1_005), vec![LeaseAction::Acquire]);
        // A holder appearing cancels a pending retry.
        m.handle(LeaseEvent::Refused, 1_006);
        m.handle(LeaseEvent::Holder(Some(other())), 1_007);
        assert_eq!(m.next_tick_ms(), None);
    }
}
