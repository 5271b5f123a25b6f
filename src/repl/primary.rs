//! The primary's side: accepts replicas over mutually authenticated QUIC and streams every
//! database to each, one QUIC stream per database.
//!
//! Per database stream: subscribe to the database's committed transactions first (so none
//! is missed), flush staged ones to the LTX directory, then catch up from disk by
//! [`plan`] (files from the replica's position, or a snapshot), then follow the live
//! transactions. A gap in the live feed (the subscriber lagged, or a transaction that does
//! not continue from what was sent) goes back to catch-up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use ractor::{Actor, ActorCell, ActorRef};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::codec::FramedWrite;
use tracing::Instrument;

use super::link::{LinkActor, LinkArgs};
use super::{Identity, ReplError, Writer, file_pos, framed, now_ms, send_ltx};
use std::path::PathBuf;

use crate::core::lease::Holder;
use crate::core::ltx::LtxError;
use crate::core::repl::{Plan, on_history, plan};
use crate::core::session::handoff::{Handoff, HandoffAction, HandoffFailure};
use crate::core::session::primary::{Feed, Live, PrimaryEvent, PrimarySession};
use crate::core::types::{Epoch, Millis, NodeId, Pos, Txid};
use crate::core::wire::Role;
use crate::db::{Db, LtxDir};
use crate::lease::actor::LeaseMsg;
use crate::net::codec::FrameCodec;
use crate::store::Store;

/// Accepts connections until the endpoint closes. Each peer that completes the TLS handshake
/// (which verifies its client certificate against the cluster CA) gets a peer-link actor
/// supervised by `sup`; a failed handshake (wrong certificate, garbage datagrams, a timeout)
/// is logged once at WARN with the peer's address and never becomes a link.
pub async fn serve(
    endpoint: quinn::Endpoint,
    store: Arc<Store>,
    id: Identity,
    sup: ActorCell,
    lease: Option<ActorRef<LeaseMsg>>,
) -> Result<(), ReplError> {
    // Handshakes in progress, owned by this future: they end with it, so a listener stopped
    // (on demotion) never hands a late connection to a new link.
    let mut handshakes = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                let remote = incoming.remote_address();
                handshakes.spawn(async move { (remote, incoming.await) });
            }
            Some(done) = handshakes.join_next(), if !handshakes.is_empty() => {
                let (remote, conn) = match done {
                    Ok(done) => done,
                    Err(e) => {
                        tracing::error!(error = %e, "QUIC handshake task failed");
                        continue;
                    }
                };
                let conn = match conn {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::warn!(peer = %remote, error = %e, "QUIC handshake failed");
                        continue;
                    }
                };
                let span = tracing::info_span!("replica", peer = %remote);
                let session =
                    Box::pin(connection(conn, store.clone(), id.clone(), lease.clone()));
                if let Err(e) =
                    Actor::spawn_linked(None, LinkActor, LinkArgs { span, session }, sup.clone())
                        .await
                {
                    tracing::error!(peer = %remote, error = %e, "starting a replica link");
                }
            }
        }
    }
    Ok(())
}

/// A replica's session on a connection whose TLS handshake succeeded.
async fn connection(
    conn: quinn::Connection,
    store: Arc<Store>,
    id: Identity,
    lease: Option<ActorRef<LeaseMsg>>,
) -> Result<(), ReplError> {
    let (send, recv) = conn.accept_bi().await?;
    let (mut wr, mut rd) = framed(send, recv);
    let node = store.node().clone();
    let now = || Millis(node.now_ms());
    let epoch = id.epoch;
    let mut s = PrimarySession::new(id, now(), lease.is_some());
    // Subscribed before POS_MAP is read: a database created meanwhile is in the list or
    // announced here (the session starts one stream per database either way).
    let mut created = store.subscribe_created();
    let mut streams = tokio::task::JoinSet::new();
    // The replica's acknowledgements, withdrawn from every database when the connection
    // ends (however it ends); and whether they count for synchronous replication.
    let mut acks: Option<(Acks, bool)> = None;
    // Listed in `/info` while the session lives; `POST /handoff`'s offers arrive here.
    let mut listed: Option<crate::observe::ReplicaGuard> = None;
    let (offer_tx, mut offers) =
        tokio::sync::mpsc::unbounded_channel::<crate::observe::OfferReply>();
    let mut offer_tx = Some(offer_tx);
    let mut target: Option<NodeId> = None;
    // A handoff to this replica in progress.
    let mut handoff: Option<tokio::task::JoinHandle<Result<(), HandoffError>>> = None;
    loop {
        super::send_queued(&mut wr, || s.poll_transmit()).await?;
        let timeout = s.poll_timeout();
        let r: Result<(), ReplError> = tokio::select! {
            r = async { handoff.as_mut().expect("guarded").await }, if handoff.is_some() => {
                // Taken whatever the outcome: a finished JoinHandle must not be polled again.
                handoff = None;
                let r = r.unwrap_or_else(|source| {
                    let e = HandoffError::Task { what: "handoff", source };
                    // The task itself died; it tells every other outcome.
                    if let Some(t) = target {
                        node.hub().handoff_done(t, Err(e.to_string()));
                    }
                    Err(e)
                });
                if let Err(why) = &r {
                    tracing::warn!(reason = %why, "handoff refused");
                }
                s.handle_handoff_done(r.map_err(|e| e.to_string()));
                Ok(())
            }
            Some(reply) = offers.recv() => {
                let _ = reply.send(s.handle_offer());
                Ok(())
            }
            () = super::sleep_until(&node, timeout), if timeout.is_some() => {
                if let Some(l) = &listed {
                    l.set_rtt_us(conn.rtt().as_micros() as u64);
                }
                s.handle_timeout(now(), now_ms(), node.fenced_for_ms());
                Ok(())
            }
            f = rd.next() => match f {
                Some(Ok(f)) => s
                    .handle_frame(now(), f, node.is_primary(), || db_positions(&store))
                    .map_err(ReplError::from),
                Some(Err(e)) => Err(e.into()),
                None => Err(ReplError::Closed),
            },
            name = created.recv() => match name {
                Ok(name) => {
                    s.handle_created(name);
                    Ok(())
                }
                // Missed creations: the replica reconnects and gets a stream for each.
                Err(RecvError::Lagged(_)) => {
                    Err(ReplError::CreationsMissed)
                }
                Err(RecvError::Closed) => return Ok(()),
            },
            Some(r) = streams.join_next() => match r {
                Ok(r) => r,
                Err(source) => Err(ReplError::Task { what: "database stream", source }),
            },
            // Every later bidirectional stream is a request the replica's proxy forwards
            // (`protocol.md` §16); served in its own task, refused unread if this node is
            // not the primary.
            st = conn.accept_bi() => match st {
                Ok((send, recv)) => {
                    tokio::spawn(crate::proxy::serve_stream(
                        node.clone(),
                        send,
                        recv,
                        conn.remote_address(),
                    ));
                    Ok(())
                }
                Err(e) => Err(e.into()),
            },
        };
        if let Err(e) = r {
            let queued = std::iter::from_fn(|| s.poll_transmit()).collect();
            super::end_with(&conn, queued, &mut wr, &e).await;
            return Err(e);
        }
        while let Some(ev) = s.poll_event() {
            match ev {
                PrimaryEvent::Connected { node: peer, role, hostname } => {
                    tracing::info!(node = %peer, host = %hostname, ?role, "replica connected");
                    // Synchronous replication counts this replica's acknowledgements while it
                    // is connected.
                    let counts = node.sync_counts(role == Role::Candidate);
                    target = Some(peer);
                    let info = crate::observe::ReplicaInfo {
                        node: peer,
                        hostname: hostname.clone(),
                        role,
                        addr: conn.remote_address(),
                        since_ms: crate::clock::wall_ms(),
                        rtt_us: conn.rtt().as_micros() as u64,
                    };
                    if let Some(tx) = offer_tx.take() {
                        listed = Some(node.hub().replica_connected(info, tx));
                    }
                    acks = Some((
                        Acks {
                            store: store.clone(),
                            node: peer,
                            hostname: hostname.clone(),
                            conn: next_conn(),
                        },
                        counts,
                    ));
                }
                PrimaryEvent::Stream { name, from } => {
                    if let Some(db) = store.get(&name) {
                        streams.spawn(db_stream(conn.clone(), db, from, epoch));
                    }
                }
                PrimaryEvent::Acked { name, pos } => {
                    tracing::trace!(db = %name, %pos, "ack");
                    if let (Some(db), Some((a, counts))) = (store.get(&name), &acks) {
                        db.note_ack(a.node, a.conn, pos.txid, *counts);
                        db.metrics().acked(a.node, &a.hostname, pos.txid, crate::clock::now());
                    }
                }
                PrimaryEvent::HandoffRefused { target, why } => {
                    tracing::warn!(reason = %why, "handoff request refused");
                    node.hub().handoff_done(target, Err(why));
                }
                PrimaryEvent::HandOver { target, to, token } => {
                    let Some(l) = lease.clone() else { continue };
                    tracing::info!(to = %to.hostname, "handing the lease over");
                    let (st, hub) = (store.clone(), node.hub().clone());
                    // The outcome is told from the task itself: a handoff that succeeds ends
                    // this session (the node demotes) before the loop above sees the result.
                    handoff = Some(tokio::spawn(async move {
                        let r = hand_over(st, l, target, to, token).await;
                        hub.handoff_done(target, r.as_ref().map(|_| ()).map_err(|e| e.to_string()));
                        r
                    }));
                }
            }
        }
    }
}

/// Every database of the primary with its position (for POS_MAP).
fn db_positions(store: &Store) -> Vec<(String, Pos)> {
    store.list().into_iter().map(|d| (d.name().to_owned(), d.pos())).collect()
}

/// Why a graceful handoff (or a drain) did not complete. Writes resume after a failed
/// handoff; the replica is told the reason.
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    /// The target did not catch up with the live writes in time.
    #[error("{db} still behind")]
    Behind { db: String },
    /// With writes stopped, the target did not acknowledge the final position in time.
    #[error("{db} did not acknowledge the final position")]
    NoFinalAck { db: String },
    /// Writes could not be stopped at a position (a database failed to quiesce).
    #[error("stopping writes: {0}")]
    Quiesce(#[from] crate::db::DbError),
    /// The lease actor is not running.
    #[error("the lease actor is gone")]
    LeaseGone,
    /// The lease backend refused to move the lease.
    #[error("{0}")]
    Lease(#[from] crate::lease::LeaseError),
    #[error("{what} task: {source}")]
    Task { what: &'static str, source: tokio::task::JoinError },
    /// Another replica's handoff runs on this node (one at a time: they share the pause of
    /// writes, and one resuming writes after its failure would let commits in under the
    /// other's final positions).
    #[error("a handoff to another node is in progress")]
    InProgress,
}

impl From<HandoffFailure<HandoffError>> for HandoffError {
    fn from(f: HandoffFailure<HandoffError>) -> HandoffError {
        match f {
            HandoffFailure::Behind { db } => HandoffError::Behind { db },
            HandoffFailure::NoFinalAck { db } => HandoffError::NoFinalAck { db },
            HandoffFailure::Quiesce(e) | HandoffFailure::Lease(e) => e,
        }
    }
}

/// Graceful handoff to the replica `target` (`protocol.md` §12): the shell of [`Handoff`],
/// which decides the steps (catch up with writes on, stop writes and take the final
/// positions, the target's ACK of exactly those, the lease transaction) and when writes
/// resume; this function performs them and feeds it the target's acknowledgements.
async fn hand_over(
    store: Arc<Store>,
    lease: ActorRef<LeaseMsg>,
    target: NodeId,
    to: Holder,
    token: String,
) -> Result<(), HandoffError> {
    let node = store.node().clone();
    if !node.claim_handoff() {
        return Err(HandoffError::InProgress);
    }
    // Released however this future ends (dropped included).
    let _slot = HandoffSlot(node.clone());
    let now = || Millis(node.now_ms());
    let current = store.list().into_iter().map(|d| (d.name().to_owned(), d.pos().txid));
    let mut h = Handoff::<HandoffError>::new(now(), current);
    loop {
        // Subscribed before the acknowledgements are read, so none that arrives between
        // the reading and the wait below is missed.
        let dbs: Vec<Arc<Db>> = h.awaited().filter_map(|name| store.get(name)).collect();
        let mut rxs: Vec<_> = dbs.iter().map(|d| d.ack_changes()).collect();
        for d in &dbs {
            h.handle_acked(now(), d.name(), d.acked_by(target));
        }
        let mut acted = false;
        while let Some(action) = h.poll_action() {
            acted = true;
            match action {
                HandoffAction::StopWrites => {
                    let finals = stop_writes(&store)
                        .await
                        .map(|finals| finals.into_iter().map(|(d, t)| (d.name().to_owned(), t)));
                    h.handle_quiesced(now(), finals);
                }
                HandoffAction::HandOffLease => {
                    let r = lease_hand_off(&lease, token.clone(), to.clone()).await;
                    h.handle_lease(now(), r);
                }
                HandoffAction::ResumeWrites => node.pause_writes(false),
                HandoffAction::Done(Ok(s)) => {
                    tracing::info!(
                        to = %to.hostname,
                        paused_ms = s.paused_ms,
                        quiesce_ms = s.quiesce_ms,
                        final_ack_ms = s.final_ack_ms,
                        "lease handed over; this node is read-only"
                    );
                    return Ok(());
                }
                HandoffAction::Done(Err(why)) => return Err(why.into()),
            }
        }
        if acted {
            // A step began: read the acknowledgements it waits for.
            continue;
        }
        let deadline = super::sleep_until(&node, h.poll_timeout());
        if rxs.is_empty() {
            // An awaited database left the store: only the deadline can end the step.
            deadline.await;
            h.handle_timeout(now());
            continue;
        }
        // The senders live in the `Db`s held by `dbs`, so `changed` cannot fail.
        let any = futures_util::future::select_all(rxs.iter_mut().map(|rx| Box::pin(rx.changed())));
        tokio::select! {
            _ = any => {}
            () = deadline => h.handle_timeout(now()),
        }
    }
}

/// The node's one handoff slot, claimed by [`hand_over`].
struct HandoffSlot(Arc<crate::node::NodeCtx>);

impl Drop for HandoffSlot {
    fn drop(&mut self) {
        self.0.release_handoff();
    }
}

/// The lease transaction of a handoff, run by the lease actor.
async fn lease_hand_off(
    lease: &ActorRef<LeaseMsg>,
    token: String,
    to: Holder,
) -> Result<(), HandoffError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    lease
        .send_message(LeaseMsg::HandOff { token, to, reply: tx })
        .map_err(|_| HandoffError::LeaseGone)?;
    rx.await.map_err(|_| HandoffError::LeaseGone)??;
    Ok(())
}

/// Stops writes on this node (checked under each database's commit lock) and returns every
/// database's final position: no commit is accepted after it until writes resume.
async fn stop_writes(store: &Arc<Store>) -> Result<Vec<(Arc<Db>, Txid)>, HandoffError> {
    store.node().pause_writes(true);
    let dbs = store.list();
    let finals = tokio::task::spawn_blocking(move || {
        dbs.into_iter().map(|d| d.quiesce().map(|p| (d, p.txid))).collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|source| HandoffError::Task { what: "quiesce", source })??;
    Ok(finals)
}

/// Waits until `done(db, txid)` holds for every pair in `dbs`, woken by acknowledgements;
/// on timeout returns the name of a database still waiting.
async fn wait_acks(
    dbs: &[(Arc<Db>, Txid)],
    within: Duration,
    done: impl Fn(&Db, Txid) -> bool,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + within;
    // Subscribed before the first check, so no acknowledgement between a check and the
    // wait after it is missed.
    let mut rxs: Vec<_> = dbs.iter().map(|(d, _)| d.ack_changes()).collect();
    loop {
        for rx in &mut rxs {
            rx.borrow_and_update();
        }
        let Some((d, _)) = dbs.iter().find(|(d, t)| !done(d, *t)) else { return Ok(()) };
        // Non-empty here: `d` came from `dbs`. The senders live in the `Db`s held by `dbs`,
        // so `changed` cannot fail.
        let any = futures_util::future::select_all(rxs.iter_mut().map(|rx| Box::pin(rx.changed())));
        if tokio::time::timeout_at(deadline, any).await.is_err() {
            return Err(d.name().to_owned());
        }
    }
}

/// How a primary's graceful shutdown left its replicas.
#[derive(Debug)]
pub struct Drained {
    /// Databases whose every connected candidate acknowledged the final position.
    pub caught_up: usize,
    /// Databases some connected candidate had not acknowledged when the wait ended.
    pub behind: Vec<String>,
}

/// Graceful shutdown of the primary (`protocol.md` §12.1): writes stop, the final
/// positions are flushed, and the node waits (at most `within`) until every connected
/// replica that could take over acknowledged them, so that whichever candidate takes the
/// released lease has every commit this node accepted. Writes stay stopped. A no-op on a
/// node that is not the primary.
pub async fn drain(store: &Arc<Store>, within: Duration) -> Result<Drained, HandoffError> {
    if !store.node().is_primary() {
        return Ok(Drained { caught_up: 0, behind: Vec::new() });
    }
    let finals = stop_writes(store).await?;
    let _ = wait_acks(&finals, within, |d, t| d.replicas_behind(t) == 0).await;
    let behind: Vec<String> = finals
        .iter()
        .filter(|(d, t)| d.replicas_behind(*t) > 0)
        .map(|(d, _)| d.name().to_owned())
        .collect();
    Ok(Drained { caught_up: finals.len() - behind.len(), behind })
}

/// A replica connection's acknowledgements, withdrawn from every database when the
/// connection ends (however it ends).
struct Acks {
    store: Arc<Store>,
    node: NodeId,
    /// The replica's HELLO hostname (its metrics' `replica` label).
    hostname: String,
    conn: u64,
}

impl Drop for Acks {
    fn drop(&mut self) {
        for db in self.store.list() {
            db.forget_replica(self.node, self.conn);
        }
    }
}

fn next_conn() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Streams one database to one replica, forever.
async fn db_stream(
    conn: quinn::Connection,
    db: Arc<Db>,
    replica: Option<Pos>,
    epoch: Epoch,
) -> Result<(), ReplError> {
    let name = db.name().to_owned();
    let span = tracing::info_span!("db", db = %name);
    async move {
        let send = conn.open_uni().await?;
        let mut wr: Writer = FramedWrite::new(send, FrameCodec::default());
        let mut events = db.events();
        let mut at = replica;
        loop {
            at = match catch_up(&db, &mut wr, at, epoch).await {
                Ok(at) => at,
                Err(ReplError::Db(crate::db::DbError::Recovery { reason, .. })) => {
                    // The database does not read back as its position (a snapshot checks
                    // that): damaged here. It stops being served to this replica, and takes
                    // no more writes; the replicas keep their copies, and the connection
                    // goes on for the other databases.
                    tracing::error!(%reason,
                        "database damaged on the primary: not replicated from here, writes \
                         refused");
                    db.mark_damaged(reason);
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            // Live: one file per transaction, straight from memory.
            let mut feed = Feed { at };
            loop {
                match events.recv().await {
                    Ok(c) => match feed.live(c.pre, c.pos) {
                        Live::Send => {
                            send_ltx(&mut wr, &db, epoch, c.ltx.clone(), false).await?;
                            feed.sent(c.pos);
                        }
                        Live::Skip => {}
                        Live::CatchUp => break,
                    },
                    Err(RecvError::Lagged(_)) => break, // missed some: back to disk
                    Err(RecvError::Closed) => return Ok(()),
                }
            }
            at = feed.at;
        }
    }
    .instrument(span)
    .await
}

/// Sends what the replica at `at` needs to reach the primary's current position.
async fn catch_up(
    db: &Arc<Db>,
    wr: &mut Writer,
    mut at: Option<Pos>,
    epoch: Epoch,
) -> Result<Option<Pos>, ReplError> {
    // Only what is on disk is planned from: the live feed brings whatever is committed
    // after the flush (a later position read here could lie in a file not yet written,
    // which the plan would take for one removed by retention and answer with a snapshot).
    let target = db.flush().await?;
    if target.txid == Txid::ZERO {
        return Ok(at);
    }
    // Planned again after a damaged file was set aside (at most once per file).
    'plan: loop {
        let dir = db.ltx_dir().clone();
        let files = tokio::task::spawn_blocking(move || dir.list())
            .await
            .map_err(|source| ReplError::Task { what: "LTX file read", source })??;
        let ranges: Vec<(Txid, Txid)> = files.iter().map(|(a, b, _)| (*a, *b)).collect();
        let deleted = !db.exists();
        let history = match at {
            Some(p) if p.txid > Txid::ZERO && p.txid < target.txid => {
                let near: Vec<PathBuf> = files
                    .iter()
                    .filter(|(min, max, _)| *max == p.txid || min.0 == p.txid.0 + 1)
                    .map(|(_, _, path)| path.clone())
                    .collect();
                let b = tokio::task::spawn_blocking(move || boundaries(&near))
                    .await
                    .map_err(|source| ReplError::Task { what: "LTX file read", source })??;
                on_history(p, &b)
            }
            _ => None,
        };
        let plan_kind = plan(at, target, &ranges, deleted, history);
        match plan_kind.clone() {
            Plan::UpToDate => {}
            Plan::Files(idx) => {
                for i in idx {
                    let path = files[i].2.clone();
                    // Every file read from disk is verified before it is sent: a file damaged
                    // at rest (a flipped bit the checksum cache could not see) is set aside and
                    // the replica gets a snapshot instead, rather than refusing the same file
                    // on every reconnect.
                    let read =
                        tokio::task::spawn_blocking(move || read_verified(&path)).await.map_err(
                            |source| ReplError::Task { what: "LTX file read", source },
                        )??;
                    let bytes = match read {
                        Ok(b) => Bytes::from(b),
                        Err(()) => continue 'plan,
                    };
                    let (_, pos) = file_pos(&bytes).ok_or(ReplError::ShortFile(bytes.len()))?;
                    send_ltx(wr, db, epoch, bytes, false).await?;
                    at = Some(pos);
                }
            }
            Plan::Deletion(i) => {
                let bytes = Bytes::from(std::fs::read(&files[i].2)?);
                let (_, pos) = file_pos(&bytes).ok_or(ReplError::ShortFile(bytes.len()))?;
                send_ltx(wr, db, epoch, bytes, false).await?;
                at = Some(pos);
            }
            Plan::Snapshot(_) | Plan::Resync(_) => {
                let resync = matches!(plan_kind, Plan::Resync(_));
                match &plan_kind {
                    Plan::Resync(why) => tracing::warn!(?why, replica = ?at, primary = %target,
                    "replica's history is not ours: sending a resync snapshot (it sets its \
                     own LTX files aside)"),
                    _ => tracing::info!(reason = ?plan_kind, replica = ?at, primary = %target,
                    "sending a snapshot"),
                }
                let d = db.clone();
                let (pos, bytes) = tokio::task::spawn_blocking(move || d.snapshot())
                    .await
                    .map_err(|source| ReplError::Task { what: "snapshot", source })??;
                send_ltx(wr, db, epoch, Bytes::from(bytes), resync).await?;
                at = Some(pos);
            }
        }
        return Ok(at);
    }
}

/// Reads the LTX file at `path` and verifies it completely. A damaged file is renamed
/// `*.ltx.damaged` (kept for inspection, out of the history) and logged: `Ok(Err(()))`.
fn read_verified(path: &std::path::Path) -> std::io::Result<Result<Vec<u8>, ()>> {
    let bytes = std::fs::read(path)?;
    match crate::core::ltx::verify(std::io::Cursor::new(&bytes[..]), bytes.len() as u64) {
        Ok(_) => Ok(Ok(bytes)),
        Err(e) => {
            let aside = path.with_extension("ltx.damaged");
            tracing::error!(file = %path.display(), error = %e, aside = %aside.display(),
                "LTX file on disk is damaged: moved aside; replicas that need it get a snapshot");
            std::fs::rename(path, &aside)?;
            Ok(Err(()))
        }
    }
}

/// Positions known from the header (pre-apply) and trailer (post-apply) of `paths`.
fn boundaries(paths: &[PathBuf]) -> Result<Vec<Pos>, ReplError> {
    let mut out = Vec::new();
    for path in paths {
        let s = match LtxDir::read_ends(path) {
            Ok(s) => s,
            // Removed by retention meanwhile: it says nothing.
            Err(LtxError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(LtxError::Io(e)) => return Err(e.into()),
            Err(_) => continue, // a bad file proves nothing either way
        };
        let (h, t) = (s.header, s.trailer);
        if h.min_txid.0 > 1 {
            out.push(Pos { txid: Txid(h.min_txid.0 - 1), checksum: h.pre_apply_checksum });
        }
        out.push(Pos { txid: h.max_txid, checksum: t.post_apply_checksum });
    }
    Ok(out)
}
