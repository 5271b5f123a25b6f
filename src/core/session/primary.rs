//! The primary's side of a session with one replica (`protocol.md` §2, §5.1, §10.2, §12).
//!
//! # Calling contract
//!
//! - [`PrimarySession::new`] when a connection's TLS handshake succeeded and the replica
//!   opened its control stream.
//! - Every frame read from the control stream goes to [`PrimarySession::handle_frame`] with
//!   the primary's databases and positions (read when POS_MAP arrives).
//! - A database created while the session runs: [`PrimarySession::handle_created`].
//! - The outcome of a handoff the session asked for ([`PrimaryEvent::HandOver`]):
//!   [`PrimarySession::handle_handoff_done`].
//! - At [`PrimarySession::poll_timeout`]: [`PrimarySession::handle_timeout`] with the wall
//!   clock (for HEARTBEAT) and how long the write fence has been expired.
//! - After every call: send every [`PrimarySession::poll_transmit`] frame in order and act
//!   on every [`PrimarySession::poll_event`]. An `Err` ends the session: send what
//!   `poll_transmit` still holds, then close.

use std::collections::{HashMap, HashSet, VecDeque};

use super::{Identity, SessionError, check};
use crate::core::lease::Holder;
use crate::core::types::{Millis, NodeId, Pos};
use crate::core::wire::{Frame, Hello, Role};

/// Replicas suspect a primary they have not heard from for `lease.consul.failover-timeout`
/// (1 s by default): several heartbeats fit in it.
pub const HEARTBEAT_MS: u64 = 250;
/// A primary whose write fence has been expired this long (it could not renew its lease)
/// stops heartbeating, so its candidates depose it (§10.2) instead of waiting for the
/// session's TTL. Shorter blips of the lease backend cost writes, not a failover.
pub const SILENT_AFTER_FENCE_MS: u64 = 1000;

/// What the shell must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrimaryEvent {
    /// The replica's HELLO was accepted.
    Connected { node: NodeId, role: Role, hostname: String },
    /// A handoff request from `target` was refused at once (the replica is told why).
    HandoffRefused { target: NodeId, why: String },
    /// Start streaming database `name` to the replica, from `from` (its announced
    /// position; `None`: it has no copy).
    Stream { name: String, from: Option<Pos> },
    /// The replica holds `pos` of `name` durably (sync replication, handoff, drain).
    Acked { name: String, pos: Pos },
    /// Hand the lease to the replica (§12): it must catch up, writes stop, it must
    /// acknowledge the final positions, then the lease moves with `token`. Report the
    /// outcome through [`PrimarySession::handle_handoff_done`].
    HandOver { target: NodeId, to: Holder, token: String },
}

#[derive(Debug)]
enum State {
    AwaitHello,
    AwaitPositions { peer: Hello },
    Serving { peer: Hello },
}

/// Why the lease cannot be offered to a session's replica.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferRefused {
    #[error("the replica's session is still starting")]
    NotReady,
    #[error("the replica is not a candidate")]
    NotCandidate,
    #[error("a handoff is in progress")]
    InProgress,
}

/// See the module docs.
#[derive(Debug)]
pub struct PrimarySession {
    id: Identity,
    /// A lease that can be handed over (a lease actor runs).
    can_hand_over: bool,
    state: State,
    /// Databases a stream was started for.
    streaming: HashSet<String>,
    handing_over: bool,
    next_heartbeat: Millis,
    transmits: VecDeque<Frame>,
    events: VecDeque<PrimaryEvent>,
}

impl PrimarySession {
    /// `id` is the primary's identity for its term (`role` Primary, `epoch` the term).
    pub fn new(id: Identity, now: Millis, can_hand_over: bool) -> PrimarySession {
        PrimarySession {
            id,
            can_hand_over,
            state: State::AwaitHello,
            streaming: HashSet::new(),
            handing_over: false,
            next_heartbeat: now,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The replica's HELLO, once accepted.
    pub fn peer(&self) -> Option<&Hello> {
        match &self.state {
            State::AwaitHello => None,
            State::AwaitPositions { peer } | State::Serving { peer } => Some(peer),
        }
    }

    /// A frame from the control stream; `primary` is whether this node still holds the
    /// lease; `dbs` lists the primary's databases and positions (called once, on POS_MAP).
    pub fn handle_frame(
        &mut self,
        now: Millis,
        frame: Frame,
        primary: bool,
        dbs: impl FnOnce() -> Vec<(String, Pos)>,
    ) -> Result<(), SessionError> {
        let r = match (&self.state, &frame) {
            // Demoted while the replica dialled (§2 rule 9).
            (State::AwaitHello, Frame::Hello(_)) if !primary => Err(SessionError::NotPrimary),
            _ => self.frame(now, frame, dbs),
        };
        if let Err(e) = &r
            && let Some(code) = e.code()
        {
            self.transmits.push_back(Frame::Error { code, message: e.to_string() });
        }
        r
    }

    fn frame(
        &mut self,
        now: Millis,
        frame: Frame,
        dbs: impl FnOnce() -> Vec<(String, Pos)>,
    ) -> Result<(), SessionError> {
        let state = std::mem::replace(&mut self.state, State::AwaitHello);
        let (next, r) = match (state, frame) {
            (state, Frame::Error { code, message }) => {
                (state, Err(SessionError::Remote { code, message }))
            }
            (State::AwaitHello, Frame::Hello(h)) => match check(&self.id, &h) {
                Ok(_) => {
                    self.transmits.push_back(Frame::Hello(self.id.hello()));
                    self.events.push_back(PrimaryEvent::Connected {
                        node: h.node_id,
                        role: h.role,
                        hostname: h.hostname.clone(),
                    });
                    // The first heartbeat goes out right after the handshake.
                    self.next_heartbeat = now;
                    (State::AwaitPositions { peer: h }, Ok(()))
                }
                Err(refusal) => (State::AwaitHello, Err(refusal.into())),
            },
            (State::AwaitPositions { peer }, Frame::PosMap(list)) => {
                let announced: HashMap<String, Pos> =
                    list.into_iter().map(|p| (p.name, p.pos)).collect();
                for (name, pos) in dbs() {
                    let from = announced.get(&name).copied();
                    // A replica already at the primary's position will not ACK until
                    // something new arrives: its announced position counts as acknowledged
                    // (handoff and sync replication wait for it).
                    if from == Some(pos) {
                        self.events.push_back(PrimaryEvent::Acked { name: name.clone(), pos });
                    }
                    self.stream(name, from);
                }
                (State::Serving { peer }, Ok(()))
            }
            (State::Serving { peer }, Frame::Ack { name, pos }) => {
                self.events.push_back(PrimaryEvent::Acked { name, pos });
                (State::Serving { peer }, Ok(()))
            }
            // Replicas may send heartbeats to keep the path alive (§4.7).
            (State::Serving { peer }, Frame::Heartbeat { .. }) => (State::Serving { peer }, Ok(())),
            (State::Serving { peer }, Frame::Handoff { epoch, target, token }) => {
                // `protocol.md` §12: a candidate asks for the lease.
                let why = if target != peer.node_id {
                    Some("a replica may only ask the lease for itself".to_owned())
                } else if peer.role != Role::Candidate {
                    Some("not a candidate".to_owned())
                } else if epoch > self.id.epoch {
                    Some(format!("epoch {epoch} is newer than ours"))
                } else if self.handing_over {
                    Some("a handoff is in progress".to_owned())
                } else {
                    (!self.can_hand_over).then(|| "no lease actor".to_owned())
                };
                match why {
                    Some(why) => {
                        self.transmits.push_back(Frame::Handoff {
                            epoch: self.id.epoch,
                            target,
                            token: format!("refused: {why}"),
                        });
                        self.events.push_back(PrimaryEvent::HandoffRefused { target, why });
                    }
                    None => {
                        self.handing_over = true;
                        let to = Holder {
                            hostname: peer.hostname.clone(),
                            advertise_url: peer.advertise_url.clone(),
                        };
                        self.events.push_back(PrimaryEvent::HandOver { target, to, token });
                    }
                }
                (State::Serving { peer }, Ok(()))
            }
            (state, other) => {
                let where_ = match state {
                    State::AwaitHello => "before the replica's HELLO",
                    State::AwaitPositions { .. } => "before POS_MAP",
                    State::Serving { .. } => "on the primary's control stream",
                };
                let e = SessionError::Unexpected { frame: other.name(), state: where_ };
                (state, Err(e))
            }
        };
        self.state = next;
        r
    }

    /// A database was created on the primary while the session runs.
    pub fn handle_created(&mut self, name: String) {
        if matches!(self.state, State::Serving { .. }) {
            self.stream(name, None);
        }
    }

    /// `POST /handoff`: offers the lease to this session's replica, which answers with a
    /// request of its own (a HANDOFF carrying its lease token) if it is a candidate.
    pub fn handle_offer(&mut self) -> Result<(), OfferRefused> {
        let State::Serving { peer } = &self.state else { return Err(OfferRefused::NotReady) };
        if peer.role != Role::Candidate {
            return Err(OfferRefused::NotCandidate);
        }
        if self.handing_over {
            return Err(OfferRefused::InProgress);
        }
        let target = peer.node_id;
        self.transmits.push_back(Frame::Handoff {
            epoch: self.id.epoch,
            target,
            token: super::replica::HANDOFF_OFFER.to_owned(),
        });
        Ok(())
    }

    /// The handoff asked for by [`PrimaryEvent::HandOver`] ended: the replica gets the
    /// answer (an empty token: handed over; else why not).
    pub fn handle_handoff_done(&mut self, result: Result<(), String>) {
        self.handing_over = false;
        let Some(target) = self.peer().map(|p| p.node_id) else { return };
        let token = match result {
            Ok(()) => String::new(),
            Err(why) => format!("refused: {why}"),
        };
        self.transmits.push_back(Frame::Handoff { epoch: self.id.epoch, target, token });
    }

    /// Heartbeats: `wall_ms` is the primary's clock (Unix milliseconds, for `.lag`),
    /// `fenced_for_ms` how long the write fence has been expired (0 while it holds).
    pub fn handle_timeout(&mut self, now: Millis, wall_ms: i64, fenced_for_ms: u64) {
        if self.peer().is_none() || now < self.next_heartbeat {
            return;
        }
        self.next_heartbeat = now.plus(HEARTBEAT_MS);
        // A primary that cannot renew its lease goes silent (it already refuses writes).
        if fenced_for_ms < SILENT_AFTER_FENCE_MS {
            self.transmits.push_back(Frame::Heartbeat { epoch: self.id.epoch, time_ms: wall_ms });
        }
    }

    pub fn poll_timeout(&self) -> Option<Millis> {
        self.peer().map(|_| self.next_heartbeat)
    }

    pub fn poll_transmit(&mut self) -> Option<Frame> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<PrimaryEvent> {
        self.events.pop_front()
    }

    fn stream(&mut self, name: String, from: Option<Pos>) {
        if self.streaming.insert(name.clone()) {
            self.events.push_back(PrimaryEvent::Stream { name, from });
        }
    }
}

/// One database stream's live feed (`protocol.md` §5.1 step 2): after catch-up, each new
/// transaction goes out from memory if it continues what was sent; otherwise the stream
/// goes back to catch-up from disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feed {
    /// The position the replica reaches with what was sent (`None`: nothing yet, and it
    /// announced no copy).
    pub at: Option<Pos>,
}

/// What to do with a committed transaction on a live stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Live {
    /// It continues what was sent: send it.
    Send,
    /// Catch-up already sent it.
    Skip,
    /// It does not continue what was sent (the feed lagged, or a gap): catch up from disk.
    CatchUp,
}

impl Feed {
    /// A transaction from `pre` to `post` was committed.
    pub fn live(&self, pre: Pos, post: Pos) -> Live {
        match self.at {
            Some(at) if at == pre => Live::Send,
            Some(at) if post.txid <= at.txid => Live::Skip,
            _ => Live::CatchUp,
        }
    }

    /// A file leading to `pos` was sent.
    pub fn sent(&mut self, pos: Pos) {
        self.at = Some(pos);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::types::{Checksum, ClusterId, Epoch, Txid};
    use crate::core::wire::{DbPos, ErrorCode};

    fn primary() -> Identity {
        Identity {
            cluster_id: ClusterId(0),
            node_id: NodeId(1),
            epoch: Epoch(5),
            role: Role::Primary,
            hostname: "n1".into(),
            advertise_url: "http://n1:20202".into(),
        }
    }

    fn replica_hello(role: Role, epoch: u64) -> Frame {
        Frame::Hello(
            Identity {
                node_id: NodeId(2),
                epoch: Epoch(epoch),
                role,
                hostname: "n2".into(),
                advertise_url: "http://n2:20202".into(),
                ..primary()
            }
            .hello(),
        )
    }

    fn pos(n: u64) -> Pos {
        Pos { txid: Txid(n), checksum: Checksum(Checksum::FLAG | n) }
    }

    fn drain(s: &mut PrimarySession) -> (Vec<Frame>, Vec<PrimaryEvent>) {
        let f = std::iter::from_fn(|| s.poll_transmit()).collect();
        let e = std::iter::from_fn(|| s.poll_event()).collect();
        (f, e)
    }

    fn serving(role: Role) -> PrimarySession {
        let mut s = PrimarySession::new(primary(), Millis(0), true);
        s.handle_frame(Millis(0), replica_hello(role, 3), true, Vec::new).unwrap();
        s.handle_frame(Millis(0), Frame::PosMap(Vec::new()), true, Vec::new).unwrap();
        drain(&mut s);
        s
    }

    #[test]
    fn the_lease_is_offered_to_candidates_only_and_one_at_a_time() {
        let mut s = serving(Role::Replica);
        assert_eq!(s.handle_offer(), Err(OfferRefused::NotCandidate));
        let mut s = PrimarySession::new(primary(), Millis(0), true);
        assert_eq!(s.handle_offer(), Err(OfferRefused::NotReady));
        let mut s = serving(Role::Candidate);
        s.handle_offer().unwrap();
        let (f, _) = drain(&mut s);
        assert!(
            matches!(&f[..], [Frame::Handoff { token, epoch: Epoch(5), .. }] if token == "offer"),
            "{f:?}"
        );
        // The replica asks; while that handoff runs, no second offer.
        let ask = Frame::Handoff { epoch: Epoch(5), target: NodeId(2), token: "sess".into() };
        s.handle_frame(Millis(1), ask, true, Vec::new).unwrap();
        let (_, e) = drain(&mut s);
        assert!(matches!(&e[..], [PrimaryEvent::HandOver { .. }]), "{e:?}");
        assert_eq!(s.handle_offer(), Err(OfferRefused::InProgress));
    }

    #[test]
    fn handshake_then_a_stream_per_database() {
        let mut s = PrimarySession::new(primary(), Millis(0), true);
        assert_eq!(s.poll_timeout(), None, "no heartbeat before the handshake");
        s.handle_frame(Millis(0), replica_hello(Role::Candidate, 3), true, Vec::new).unwrap();
        let (f, e) = drain(&mut s);
        assert!(matches!(&f[..], [Frame::Hello(h)] if h.epoch == Epoch(5)));
        assert_eq!(
            e,
            vec![PrimaryEvent::Connected {
                node: NodeId(2),
                role: Role::Candidate,
                hostname: "n2".into()
            }]
        );
        let announced = vec![
            DbPos { name: "a.db".into(), pos: pos(4) },
            DbPos { name: "b.db".into(), pos: pos(2) },
        ];
        let dbs = || {
            vec![
                ("a.db".to_owned(), pos(4)),
                ("b.db".to_owned(), pos(9)),
                ("c.db".to_owned(), pos(1)),
            ]
        };
        s.handle_frame(Millis(0), Frame::PosMap(announced), true, dbs).unwrap();
        let (_, e) = drain(&mut s);
        assert_eq!(
            e,
            vec![
                PrimaryEvent::Acked { name: "a.db".into(), pos: pos(4) },
                PrimaryEvent::Stream { name: "a.db".into(), from: Some(pos(4)) },
                PrimaryEvent::Stream { name: "b.db".into(), from: Some(pos(2)) },
                PrimaryEvent::Stream { name: "c.db".into(), from: None },
            ]
        );
        // A database created later gets a stream once; one already streamed does not.
        s.handle_created("d.db".into());
        s.handle_created("a.db".into());
        assert_eq!(drain(&mut s).1, vec![PrimaryEvent::Stream { name: "d.db".into(), from: None }]);
        s.handle_frame(Millis(0), Frame::Ack { name: "b.db".into(), pos: pos(9) }, true, Vec::new)
            .unwrap();
        assert_eq!(drain(&mut s).1, vec![PrimaryEvent::Acked { name: "b.db".into(), pos: pos(9) }]);
        // A second HELLO is not allowed.
        let e =
            s.handle_frame(Millis(0), replica_hello(Role::Replica, 3), true, Vec::new).unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::UnexpectedFrame));
        assert!(matches!(
            &drain(&mut s).0[..],
            [Frame::Error { code: ErrorCode::UnexpectedFrame, .. }]
        ));
    }

    #[test]
    fn a_demoted_node_answers_not_primary() {
        let mut s = PrimarySession::new(primary(), Millis(0), true);
        let e = s.handle_frame(Millis(0), replica_hello(Role::Replica, 3), false, Vec::new);
        assert_eq!(e.unwrap_err().code(), Some(ErrorCode::NotPrimary));
        assert!(matches!(&drain(&mut s).0[..], [Frame::Error { code: ErrorCode::NotPrimary, .. }]));
    }

    #[test]
    fn a_replica_of_a_newer_term_deposes_this_primary() {
        let mut s = PrimarySession::new(primary(), Millis(0), true);
        let e =
            s.handle_frame(Millis(0), replica_hello(Role::Replica, 6), true, Vec::new).unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::StaleEpoch));
        assert!(matches!(&drain(&mut s).0[..], [Frame::Error { code: ErrorCode::StaleEpoch, .. }]));
        // POS_MAP before HELLO.
        let mut s = PrimarySession::new(primary(), Millis(0), true);
        let e = s.handle_frame(Millis(0), Frame::PosMap(Vec::new()), true, Vec::new).unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::UnexpectedFrame));
    }

    #[test]
    fn heartbeats_stop_once_the_fence_has_been_expired_a_while() {
        let mut s = serving(Role::Replica);
        assert_eq!(s.poll_timeout(), Some(Millis(0)));
        s.handle_timeout(Millis(0), 1_000, 0);
        assert_eq!(drain(&mut s).0, vec![Frame::Heartbeat { epoch: Epoch(5), time_ms: 1_000 }]);
        assert_eq!(s.poll_timeout(), Some(Millis(HEARTBEAT_MS)));
        s.handle_timeout(Millis(HEARTBEAT_MS - 1), 1_100, 0);
        assert!(drain(&mut s).0.is_empty(), "not due yet");
        s.handle_timeout(Millis(HEARTBEAT_MS), 1_250, SILENT_AFTER_FENCE_MS - 1);
        assert_eq!(drain(&mut s).0.len(), 1, "a short fence blip keeps heartbeating");
        s.handle_timeout(Millis(2 * HEARTBEAT_MS), 1_500, SILENT_AFTER_FENCE_MS);
        assert!(drain(&mut s).0.is_empty(), "silent: the candidates depose it");
    }

    #[test]
    fn handoff_requests() {
        let handoff = |target, epoch| Frame::Handoff {
            epoch: Epoch(epoch),
            target: NodeId(target),
            token: "t".into(),
        };
        let refused = |s: &mut PrimarySession| match &drain(s).0[..] {
            [Frame::Handoff { token, .. }] => token.clone(),
            other => panic!("{other:?}"),
        };
        // Only a candidate, only for itself, not from a newer term.
        let mut s = serving(Role::Replica);
        s.handle_frame(Millis(0), handoff(2, 5), true, Vec::new).unwrap();
        assert_eq!(refused(&mut s), "refused: not a candidate");
        let mut s = serving(Role::Candidate);
        s.handle_frame(Millis(0), handoff(3, 5), true, Vec::new).unwrap();
        assert!(refused(&mut s).contains("only ask the lease for itself"));
        s.handle_frame(Millis(0), handoff(2, 6), true, Vec::new).unwrap();
        assert!(refused(&mut s).contains("newer than ours"));
        // Accepted: the shell runs it; a second request meanwhile is refused.
        s.handle_frame(Millis(0), handoff(2, 5), true, Vec::new).unwrap();
        let (_, e) = drain(&mut s);
        assert!(matches!(&e[..], [PrimaryEvent::HandOver { target: NodeId(2), to, token }]
            if to.hostname == "n2" && to.advertise_url == "http://n2:20202" && token == "t"));
        s.handle_frame(Millis(0), handoff(2, 5), true, Vec::new).unwrap();
        assert!(refused(&mut s).contains("in progress"));
        s.handle_handoff_done(Err("still behind".into()));
        assert_eq!(refused(&mut s), "refused: still behind");
        s.handle_frame(Millis(0), handoff(2, 5), true, Vec::new).unwrap();
        assert_eq!(drain(&mut s).1.len(), 1, "asked again after the first ended");
        s.handle_handoff_done(Ok(()));
        assert_eq!(refused(&mut s), "");
        // Without a lease actor there is nothing to hand over.
        let mut s = PrimarySession::new(primary(), Millis(0), false);
        s.handle_frame(Millis(0), replica_hello(Role::Candidate, 3), true, Vec::new).unwrap();
        s.handle_frame(Millis(0), Frame::PosMap(Vec::new()), true, Vec::new).unwrap();
        drain(&mut s);
        s.handle_frame(Millis(0), handoff(2, 5), true, Vec::new).unwrap();
        assert_eq!(refused(&mut s), "refused: no lease actor");
    }

    #[test]
    fn live_feed() {
        let mut f = Feed { at: Some(pos(4)) };
        assert_eq!(f.live(pos(4), pos(5)), Live::Send);
        f.sent(pos(5));
        assert_eq!(f.live(pos(4), pos(5)), Live::Skip, "sent by catch-up");
        assert_eq!(f.live(pos(6), pos(7)), Live::CatchUp, "a gap");
        assert_eq!(f.live(Pos { txid: Txid(5), checksum: Checksum(1) }, pos(6)), Live::CatchUp);
        assert_eq!(Feed { at: None }.live(pos(0), pos(1)), Live::CatchUp);
    }
}
