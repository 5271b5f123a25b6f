//! The replica's side of a session (`protocol.md` §2, §5.1, §12).
//!
//! # Calling contract
//!
//! - [`ReplicaSession::new`] queues HELLO; send it first.
//! - Every frame read from the control stream goes to [`ReplicaSession::handle_frame`] with
//!   the newest epoch the node has seen and, for the primary's HELLO, the node's positions
//!   (read when HELLO arrives, so nothing applied before it is announced stale).
//! - A durably applied run goes to [`ReplicaSession::handle_applied`]; a run that could not
//!   be applied to [`ReplicaSession::handle_apply_failed`].
//! - `litefleet promote` calls [`ReplicaSession::handle_promote`]; the lease backend's token
//!   (asked for by [`ReplicaEvent::WantToken`]) comes back through
//!   [`ReplicaSession::handle_token`].
//! - After every call: send every [`ReplicaSession::poll_transmit`] frame in order, act on
//!   every [`ReplicaSession::poll_event`], and call [`ReplicaSession::handle_timeout`] once
//!   `now` reaches [`ReplicaSession::poll_timeout`]. Time is monotonic.
//! - An `Err` ends the session: send what `poll_transmit` still holds, then close.

use std::collections::VecDeque;

use bytes::Bytes;

use super::{Identity, SessionError, check, fence};
use crate::core::types::{ClusterId, Epoch, Millis, Pos};
use crate::core::wire::{DbPos, ErrorCode, Frame, LtxKind, Received, Role};

/// The token of a HANDOFF from the primary that offers the lease to the replica
/// (`protocol.md` §4.9): the replica answers with a request of its own. Never a lease
/// backend's token (Consul's are UUIDs).
pub const HANDOFF_OFFER: &str = "offer";

/// `lease.promote`: a refused handoff request is asked again after this long.
pub const PROMOTE_RETRY_MS: u64 = 5_000;

/// At most this many files, or bytes, are applied as one run.
pub const MAX_RUN_FILES: usize = 512;
pub const MAX_RUN_BYTES: usize = 32 << 20;

/// What the shell must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaEvent {
    /// The primary's HELLO was accepted: it is followed from now on (its epoch is the
    /// newest the node has seen; it was heard from).
    Following { hostname: String, epoch: Epoch },
    /// This node had no cluster id: it takes the primary's and keeps it.
    AdoptCluster(ClusterId),
    /// A heartbeat: the primary is alive; its clock read `time_ms` (Unix milliseconds).
    Heard { time_ms: i64 },
    /// Ask the lease backend for a token the primary can hand the lease to, and pass it to
    /// [`ReplicaSession::handle_token`].
    WantToken,
    /// The primary handed the lease over (this node becomes the primary through the lease).
    HandedOver,
    /// A promotion request failed (why; read back through `.promote`).
    PromoteFailed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    AwaitHello,
    Following,
}

/// See the module docs.
#[derive(Debug)]
pub struct ReplicaSession {
    id: Identity,
    state: State,
    /// `lease.promote`: ask for the lease once following, and again after a refusal.
    auto_promote: bool,
    /// A token request is out ([`ReplicaEvent::WantToken`] without its answer yet).
    asking: bool,
    retry_at: Option<Millis>,
    transmits: VecDeque<Frame>,
    events: VecDeque<ReplicaEvent>,
}

impl ReplicaSession {
    /// `id.epoch` is the newest epoch the node has seen.
    pub fn new(id: Identity, auto_promote: bool) -> ReplicaSession {
        let hello = Frame::Hello(id.hello());
        ReplicaSession {
            id,
            state: State::AwaitHello,
            auto_promote,
            asking: false,
            retry_at: None,
            transmits: VecDeque::from([hello]),
            events: VecDeque::new(),
        }
    }

    /// Whether the primary's HELLO was accepted.
    pub fn is_following(&self) -> bool {
        self.state == State::Following
    }

    /// A frame from the control stream. `seen` is the newest epoch the node knows now;
    /// `positions` its databases' positions (called once, on the primary's HELLO).
    pub fn handle_frame(
        &mut self,
        now: Millis,
        frame: Frame,
        seen: Epoch,
        positions: impl FnOnce() -> Vec<DbPos>,
    ) -> Result<(), SessionError> {
        let r = self.frame(now, frame, seen, positions);
        self.refuse_on(r)
    }

    fn frame(
        &mut self,
        _now: Millis,
        frame: Frame,
        seen: Epoch,
        positions: impl FnOnce() -> Vec<DbPos>,
    ) -> Result<(), SessionError> {
        match (&self.state, frame) {
            (_, Frame::Error { code, message }) => Err(SessionError::Remote { code, message }),
            (State::AwaitHello, Frame::Hello(h)) => {
                let local = Identity { epoch: self.id.epoch.max(seen), ..self.id.clone() };
                let agreed = check(&local, &h)?;
                // From now on frames from an older term than this primary's are refused.
                fence(h.epoch, seen)?;
                if let Some(c) = agreed.adopt_cluster {
                    self.events.push_back(ReplicaEvent::AdoptCluster(c));
                }
                self.transmits.push_back(Frame::PosMap(positions()));
                self.state = State::Following;
                self.events
                    .push_back(ReplicaEvent::Following { hostname: h.hostname, epoch: h.epoch });
                if self.auto_promote {
                    self.want_token();
                }
                Ok(())
            }
            (State::Following, Frame::Heartbeat { epoch, time_ms }) => {
                fence(epoch, seen)?;
                self.events.push_back(ReplicaEvent::Heard { time_ms });
                Ok(())
            }
            // READY is no longer sent (`protocol.md` §4.6); one from an older primary is
            // harmless.
            (State::Following, Frame::Ready { epoch }) => fence(epoch, seen),
            // The primary's answer to a handoff request (§12).
            (State::Following, Frame::Handoff { epoch, token, .. }) => {
                fence(epoch, seen)?;
                if token == HANDOFF_OFFER {
                    // The primary offers the lease (`POST /handoff`, §12): a candidate asks
                    // for it as `litefleet promote` would; anyone else cannot take it.
                    if self.id.role == Role::Candidate {
                        self.want_token();
                    } else {
                        self.events.push_back(ReplicaEvent::PromoteFailed(
                            "offered the lease, but this node is not a candidate".into(),
                        ));
                    }
                } else if token.is_empty() {
                    self.events.push_back(ReplicaEvent::HandedOver);
                } else {
                    self.events.push_back(ReplicaEvent::PromoteFailed(token));
                    if self.auto_promote {
                        self.retry_at = Some(_now.plus(PROMOTE_RETRY_MS));
                    }
                }
                Ok(())
            }
            (state, other) => Err(SessionError::Unexpected {
                frame: other.name(),
                state: match state {
                    State::AwaitHello => "before the primary's HELLO",
                    State::Following => "on the replica's control stream",
                },
            }),
        }
    }

    /// A run of `name` was durably applied: the database is at `pos`.
    pub fn handle_applied(&mut self, name: String, pos: Pos) {
        self.transmits.push_back(Frame::Ack { name, pos });
    }

    /// A run could not be applied; the session ends with ERROR `failure.code`.
    pub fn handle_apply_failed(&mut self, failure: SessionError) -> Result<(), SessionError> {
        self.refuse_on(Err(failure))
    }

    /// `litefleet promote`: ask the primary for the lease.
    pub fn handle_promote(&mut self, _now: Millis) {
        if self.state != State::Following {
            self.events.push_back(ReplicaEvent::PromoteFailed("not following a primary".into()));
            return;
        }
        self.want_token();
    }

    /// The lease backend's answer to [`ReplicaEvent::WantToken`]. `seen` is the newest epoch
    /// the node knows (sent with the request).
    pub fn handle_token(&mut self, now: Millis, token: Result<String, String>, seen: Epoch) {
        self.asking = false;
        match token {
            Ok(token) => self.transmits.push_back(Frame::Handoff {
                epoch: seen,
                target: self.id.node_id,
                token,
            }),
            Err(why) => {
                self.events.push_back(ReplicaEvent::PromoteFailed(why));
                if self.auto_promote {
                    self.retry_at = Some(now.plus(PROMOTE_RETRY_MS));
                }
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Millis) {
        if self.retry_at.is_some_and(|t| now >= t) {
            self.retry_at = None;
            self.want_token();
        }
    }

    pub fn poll_timeout(&self) -> Option<Millis> {
        self.retry_at
    }

    pub fn poll_transmit(&mut self) -> Option<Frame> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ReplicaEvent> {
        self.events.pop_front()
    }

    fn want_token(&mut self) {
        if !self.asking {
            self.asking = true;
            self.events.push_back(ReplicaEvent::WantToken);
        }
    }

    /// Queues ERROR for an error this side detected.
    fn refuse_on(&mut self, r: Result<(), SessionError>) -> Result<(), SessionError> {
        if let Err(e) = &r
            && let Some(code) = e.code()
        {
            self.transmits.push_back(Frame::Error { code, message: e.to_string() });
        }
        r
    }
}

/// The ERROR code for a file the replica refused: damaged (`INVALID_LTX`) or not applicable
/// at its position (`POSITION_MISMATCH`, a divergence included).
pub fn refusal_code(not_at_position: bool) -> ErrorCode {
    if not_at_position { ErrorCode::PositionMismatch } else { ErrorCode::InvalidLtx }
}

/// Files of one database stream applied together: a replica that fell behind applies
/// every file that already arrived as one run (one lock acquisition, readers jump over it
/// at once). A resync snapshot is applied alone: it starts a run of its own.
#[derive(Debug)]
pub struct Run {
    pub name: String,
    /// The oldest epoch of its files' LTX_BEGINs: the run is fenced on it (one file from a
    /// deposed primary refuses the run).
    pub epoch: Epoch,
    /// The run is a resync snapshot (its receiver sets its own files aside first).
    pub resync: bool,
    pub files: Vec<Bytes>,
    bytes: usize,
}

/// What [`Run::offer`] did with a file.
#[derive(Debug)]
pub enum Offer {
    /// Added to the run.
    Taken,
    /// Starts the next run (a resync snapshot): hold it.
    Held(Received),
}

impl Run {
    pub fn start(first: Received) -> Run {
        let bytes = first.file.len();
        Run {
            resync: first.begin.kind == LtxKind::Resync,
            name: first.begin.name,
            epoch: first.begin.epoch,
            files: vec![first.file],
            bytes,
        }
    }

    /// Whether the run takes no more files.
    pub fn is_full(&self) -> bool {
        self.resync || self.files.len() >= MAX_RUN_FILES || self.bytes >= MAX_RUN_BYTES
    }

    /// A file that arrived after the run's first, on the same stream.
    pub fn offer(&mut self, next: Received) -> Result<Offer, SessionError> {
        if next.begin.name != self.name {
            return Err(SessionError::MixedStream {
                first: self.name.clone(),
                got: next.begin.name,
            });
        }
        if next.begin.kind == LtxKind::Resync || self.is_full() {
            return Ok(Offer::Held(next));
        }
        self.epoch = self.epoch.min(next.begin.epoch);
        self.bytes += next.file.len();
        self.files.push(next.file);
        Ok(Offer::Taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::types::{Checksum, NodeId, Txid};
    use crate::core::wire::{LtxBegin, Role};

    fn id() -> Identity {
        Identity {
            cluster_id: ClusterId(0),
            node_id: NodeId(2),
            epoch: Epoch(3),
            role: Role::Candidate,
            hostname: "n2".into(),
            advertise_url: String::new(),
        }
    }

    fn primary_hello(epoch: u64) -> Frame {
        Frame::Hello(
            Identity {
                cluster_id: ClusterId(9),
                node_id: NodeId(1),
                epoch: Epoch(epoch),
                role: Role::Primary,
                hostname: "n1".into(),
                advertise_url: String::new(),
            }
            .hello(),
        )
    }

    fn drain(s: &mut ReplicaSession) -> (Vec<Frame>, Vec<ReplicaEvent>) {
        let f = std::iter::from_fn(|| s.poll_transmit()).collect();
        let e = std::iter::from_fn(|| s.poll_event()).collect();
        (f, e)
    }

    fn pos(n: u64) -> Pos {
        Pos { txid: Txid(n), checksum: Checksum(Checksum::FLAG | n) }
    }

    #[test]
    fn handshake_positions_heartbeats_acks() {
        let mut s = ReplicaSession::new(id(), false);
        let (f, _) = drain(&mut s);
        assert!(matches!(&f[..], [Frame::Hello(h)] if h.node_id == NodeId(2)));
        let t = Millis(0);
        // Anything but HELLO first is refused.
        let mut early = ReplicaSession::new(id(), false);
        let e = early.handle_frame(
            t,
            Frame::Heartbeat { epoch: Epoch(3), time_ms: 1 },
            Epoch(3),
            Vec::new,
        );
        assert_eq!(e.unwrap_err().code(), Some(ErrorCode::UnexpectedFrame));
        let at = vec![DbPos { name: "a.db".into(), pos: pos(4) }];
        s.handle_frame(t, primary_hello(5), Epoch(3), || at.clone()).unwrap();
        let (f, e) = drain(&mut s);
        assert_eq!(f, vec![Frame::PosMap(at)]);
        assert_eq!(
            e,
            vec![
                ReplicaEvent::AdoptCluster(ClusterId(9)),
                ReplicaEvent::Following { hostname: "n1".into(), epoch: Epoch(5) }
            ]
        );
        s.handle_frame(t, Frame::Heartbeat { epoch: Epoch(5), time_ms: 77 }, Epoch(5), Vec::new)
            .unwrap();
        assert_eq!(drain(&mut s).1, vec![ReplicaEvent::Heard { time_ms: 77 }]);
        s.handle_applied("a.db".into(), pos(6));
        assert_eq!(drain(&mut s).0, vec![Frame::Ack { name: "a.db".into(), pos: pos(6) }]);
        // A heartbeat of an older term (the node has seen epoch 6 since): STALE_EPOCH.
        let e =
            s.handle_frame(t, Frame::Heartbeat { epoch: Epoch(5), time_ms: 1 }, Epoch(6), Vec::new);
        assert_eq!(e.unwrap_err().code(), Some(ErrorCode::StaleEpoch));
        assert!(matches!(&drain(&mut s).0[..], [Frame::Error { code: ErrorCode::StaleEpoch, .. }]));
    }

    #[test]
    fn a_deposed_primary_is_refused_at_hello() {
        let mut s = ReplicaSession::new(id(), false);
        drain(&mut s);
        // The node saw epoch 7 after the session started: the primary of epoch 5 is stale.
        let e = s.handle_frame(Millis(0), primary_hello(5), Epoch(7), Vec::new).unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::StaleEpoch));
        assert!(matches!(&drain(&mut s).0[..], [Frame::Error { code: ErrorCode::StaleEpoch, .. }]));
        // An ERROR from the primary ends the session without an answer.
        let mut s = ReplicaSession::new(id(), false);
        drain(&mut s);
        let err = Frame::Error { code: ErrorCode::NotPrimary, message: "no".into() };
        let e = s.handle_frame(Millis(0), err, Epoch(3), Vec::new).unwrap_err();
        assert_eq!(e.code(), None);
        assert!(drain(&mut s).0.is_empty());
    }

    #[test]
    fn promotion_asks_again_after_a_refusal() {
        let mut s = ReplicaSession::new(id(), true);
        drain(&mut s);
        s.handle_frame(Millis(0), primary_hello(5), Epoch(5), Vec::new).unwrap();
        let (_, e) = drain(&mut s);
        assert_eq!(e.last(), Some(&ReplicaEvent::WantToken));
        // A second request while one is out is folded into it.
        s.handle_promote(Millis(1));
        assert!(drain(&mut s).1.is_empty());
        s.handle_token(Millis(2), Ok("sess".into()), Epoch(5));
        assert_eq!(
            drain(&mut s).0,
            vec![Frame::Handoff { epoch: Epoch(5), target: NodeId(2), token: "sess".into() }]
        );
        let refused =
            Frame::Handoff { epoch: Epoch(5), target: NodeId(2), token: "refused: x".into() };
        s.handle_frame(Millis(10), refused, Epoch(5), Vec::new).unwrap();
        assert_eq!(drain(&mut s).1, vec![ReplicaEvent::PromoteFailed("refused: x".into())]);
        assert_eq!(s.poll_timeout(), Some(Millis(10 + PROMOTE_RETRY_MS)));
        s.handle_timeout(Millis(10 + PROMOTE_RETRY_MS - 1));
        assert!(drain(&mut s).1.is_empty());
        s.handle_timeout(Millis(10 + PROMOTE_RETRY_MS));
        assert_eq!(drain(&mut s).1, vec![ReplicaEvent::WantToken]);
        let done = Frame::Handoff { epoch: Epoch(5), target: NodeId(2), token: String::new() };
        s.handle_frame(Millis(20), done, Epoch(5), Vec::new).unwrap();
        assert_eq!(drain(&mut s).1, vec![ReplicaEvent::HandedOver]);
    }

    fn received(name: &str, kind: LtxKind, len: usize) -> Received {
        Received {
            begin: LtxBegin {
                name: name.into(),
                epoch: Epoch(1),
                kind,
                min_txid: Txid(1),
                max_txid: Txid(1),
                size: len as u64,
            },
            file: Bytes::from(vec![0u8; len]),
        }
    }

    #[test]
    fn runs_batch_until_full_or_a_resync() {
        let mut run = Run::start(received("a.db", LtxKind::Incremental, 10));
        assert!(matches!(run.offer(received("a.db", LtxKind::Incremental, 10)), Ok(Offer::Taken)));
        assert!(matches!(run.offer(received("a.db", LtxKind::Resync, 10)), Ok(Offer::Held(_))));
        assert!(run.offer(received("b.db", LtxKind::Incremental, 10)).is_err());
        assert_eq!(run.files.len(), 2);
        // A resync snapshot runs alone.
        let run = Run::start(received("a.db", LtxKind::Resync, 10));
        assert!(run.resync && run.is_full());
        let mut big = Run::start(received("a.db", LtxKind::Incremental, MAX_RUN_BYTES));
        assert!(matches!(big.offer(received("a.db", LtxKind::Incremental, 1)), Ok(Offer::Held(_))));
    }

    #[test]
    fn an_offered_lease_is_asked_for_by_a_candidate_only() {
        for (role, asks) in [(Role::Candidate, true), (Role::Replica, false)] {
            let mut s = ReplicaSession::new(Identity { role, ..id() }, false);
            s.handle_frame(Millis(0), primary_hello(5), Epoch(3), Vec::new).unwrap();
            drain(&mut s);
            let offer =
                Frame::Handoff { epoch: Epoch(5), target: NodeId(2), token: "offer".into() };
            s.handle_frame(Millis(1), offer, Epoch(5), Vec::new).unwrap();
            let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
            assert_eq!(
                matches!(&events[..], [ReplicaEvent::WantToken]),
                asks,
                "{role:?}: {events:?}"
            );
            assert!(std::iter::from_fn(|| s.poll_transmit()).next().is_none());
        }
    }
}
