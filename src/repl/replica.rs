//! The replica's side: dials the primary, announces its positions, and applies what
//! arrives on each database stream. Any error ends the session; the supervisor reconnects
//! with backoff and the primary plans again from the replica's positions, so a bad or
//! interrupted transfer is re-fetched, never applied.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;

use super::{Identity, ReplError, framed};
use crate::core::session::fence;
use crate::core::session::replica::{Offer, ReplicaEvent, ReplicaSession, Run};
use crate::core::types::{Millis, Pos};
use crate::core::wire::{DbPos, Frame, LtxAssembler, Received};
use crate::lease::actor::LeaseMsg;
use crate::net::codec::FrameCodec;
use crate::store::Store;
use ractor::ActorRef;

/// A database whose apply failed on this node's disk is retried after this long (by a
/// reconnect); meanwhile the others keep following.
const LOCAL_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// Where the primary is.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// Name the primary's certificate must carry (host of its advertise URL).
    pub server_name: String,
}

/// One session with the primary: handshake, positions, then apply every database stream
/// until something fails. The follower peer-link actor runs it; its supervisor reconnects.
pub async fn session(
    endpoint: &quinn::Endpoint,
    store: &Arc<Store>,
    id: &Identity,
    target: &Target,
    lease: Option<ActorRef<LeaseMsg>>,
    auto_promote: bool,
) -> Result<(), ReplError> {
    store.node().set_local_fault(false);
    let r = run(endpoint, store, id, target, lease, auto_promote).await;
    if let Err(ReplError::Db(_) | ReplError::Store(_)) = &r {
        // This node failed, not the primary or the network: the primary was just heard.
        store.node().heard_primary();
        store.node().set_local_fault(true);
    }
    r
}

async fn run(
    endpoint: &quinn::Endpoint,
    store: &Arc<Store>,
    id: &Identity,
    target: &Target,
    lease: Option<ActorRef<LeaseMsg>>,
    auto_promote: bool,
) -> Result<(), ReplError> {
    let conn = endpoint.connect(target.addr, &target.server_name)?.await?;
    let (send, recv) = conn.open_bi().await?;
    let (mut wr, mut rd) = framed(send, recv);
    let node = store.node().clone();
    let now = || Millis(node.now_ms());
    let mut s = ReplicaSession::new(id.clone(), auto_promote);
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<(String, Pos)>();
    // Promotion requests (`litefleet promote`, `lease.promote`) for this session.
    let (promote_tx, mut promote_rx) = mpsc::unbounded_channel::<()>();
    let (token_tx, mut token_rx) = mpsc::unbounded_channel::<Result<String, String>>();
    // Unregisters the promotion channel when the session ends, however it ends.
    let mut _registered: Option<Unregister> = None;
    let mut streams = tokio::task::JoinSet::new();
    loop {
        super::send_queued(&mut wr, || s.poll_transmit()).await?;
        let timeout = s.poll_timeout();
        let r: Result<(), ReplError> = tokio::select! {
            () = node.resync_wanted(), if s.is_following() => {
                // A database was found damaged here and announces no position now.
                Err(ReplError::ResyncWanted)
            }
            st = conn.accept_uni(), if s.is_following() => {
                streams.spawn(db_stream(st?, store.clone(), ack_tx.clone()));
                Ok(())
            }
            f = rd.next() => match f {
                Some(Ok(f)) => {
                    s.handle_frame(now(), f, node.max_epoch(), || positions(store))
                        .map_err(ReplError::from)
                }
                Some(Err(e)) => Err(e.into()),
                None => Err(ReplError::Closed),
            },
            Some((name, pos)) = ack_rx.recv() => {
                s.handle_applied(name, pos);
                Ok(())
            }
            Some(()) = promote_rx.recv() => {
                s.handle_promote(now());
                Ok(())
            }
            Some(token) = token_rx.recv() => {
                s.handle_token(now(), token, node.max_epoch());
                Ok(())
            }
            () = super::sleep_until(&node, timeout), if timeout.is_some() => {
                s.handle_timeout(now());
                Ok(())
            }
            Some(r) = streams.join_next() => match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e),
                Err(source) => Err(ReplError::Task { what: "database stream", source }),
            },
        };
        if let Err(e) = r {
            super::end_with(&conn, std::iter::from_fn(|| s.poll_transmit()).collect(), &mut wr, &e)
                .await;
            return Err(e);
        }
        while let Some(ev) = s.poll_event() {
            match ev {
                ReplicaEvent::Following { hostname, epoch } => {
                    node.note_epoch(epoch);
                    node.heard_primary();
                    node.set_primary(Some(hostname.clone()));
                    node.hub().name_primary(&hostname);
                    node.set_promoter(Some(promote_tx.clone()));
                    // The proxy forwards writes on this connection (`protocol.md` §16).
                    node.set_primary_link(Some(conn.clone()));
                    _registered = Some(Unregister(store.clone()));
                    tracing::info!(host = %hostname, "following the primary");
                }
                ReplicaEvent::AdoptCluster(c) => match store.adopt_cluster_id(c) {
                    Ok(()) => tracing::info!(cluster = %c, "joined the primary's cluster"),
                    Err(e) => {
                        tracing::warn!(cluster = %c, error = %e, "cannot record the cluster id")
                    }
                },
                ReplicaEvent::Heard { time_ms } => {
                    node.heard_primary();
                    node.note_primary_time(time_ms);
                }
                ReplicaEvent::WantToken => {
                    let (lease, tx) = (lease.clone(), token_tx.clone());
                    tokio::spawn(async move {
                        let _ = tx.send(handoff_token(lease.as_ref()).await);
                    });
                }
                ReplicaEvent::HandedOver => tracing::info!("the primary handed the lease over"),
                ReplicaEvent::PromoteFailed(why) => {
                    tracing::warn!(answer = %why, "promotion refused");
                    node.set_promote_error(Some(why));
                }
            }
        }
    }
}

/// This node's positions for POS_MAP: every database with a copy, except those that need
/// a snapshot (damaged here).
fn positions(store: &Store) -> Vec<DbPos> {
    store
        .list()
        .into_iter()
        .filter(|d| d.pos().txid.0 > 0 && !d.needs_resync())
        .map(|d| DbPos { name: d.name().to_owned(), pos: d.pos() })
        .collect()
}

/// Unregisters the session's promotion channel and its connection (the proxy's link to
/// the primary) when the session ends.
struct Unregister(Arc<Store>);

impl Drop for Unregister {
    fn drop(&mut self) {
        self.0.node().set_promoter(None);
        self.0.node().set_primary_link(None);
    }
}

/// A token the primary can hand the lease to (the lease actor asks its backend).
async fn handoff_token(lease: Option<&ActorRef<LeaseMsg>>) -> Result<String, String> {
    let l = lease.ok_or("no lease actor")?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    l.send_message(LeaseMsg::Token { reply: tx }).map_err(|_| "the lease actor is gone")?;
    rx.await.map_err(|_| "the lease actor is gone")?.map_err(|e| e.to_string())
}

/// Applies the files of one database stream in order.
async fn db_stream(
    recv: quinn::RecvStream,
    store: Arc<Store>,
    acks: mpsc::UnboundedSender<(String, Pos)>,
) -> Result<(), ReplError> {
    let mut rd = FramedRead::new(recv, FrameCodec::default());
    let mut asm = LtxAssembler::new();
    // A resync snapshot found while collecting a run: it starts the next one.
    let mut held: Option<Received> = None;
    loop {
        let first = match held.take() {
            Some(g) => g,
            None => match next_file(&mut rd, &mut asm).await? {
                Some(g) => g,
                None => return Ok(()),
            },
        };
        // Take every file that already arrived too (without waiting): a replica that fell
        // behind applies them as one run instead of paying the locks per transaction.
        let mut run = Run::start(first);
        while !run.is_full() {
            let Some(next) = rd.next().now_or_never() else { break };
            let Some(f) = next else { break };
            let f = f?;
            if let Frame::Error { code, message } = f {
                return Err(ReplError::Remote { code, message });
            }
            if let Some(more) = assemble(&mut asm, f)?
                && let Offer::Held(h) = run.offer(more)?
            {
                held = Some(h);
                break;
            }
        }
        fence(run.epoch, store.node().max_epoch())?;
        let Run { name, resync, files: run, .. } = run;
        let stamp = run.last().and_then(|f| super::file_pos(f)).map(|(h, _)| h.timestamp);
        let db = match store.get(&name) {
            Some(db) => db,
            None => {
                // Opening a database starts its actor, which blocks: not on a runtime thread.
                let (s, n) = (store.clone(), name.clone());
                tokio::task::spawn_blocking(move || s.create(&n))
                    .await
                    .map_err(|source| ReplError::Task { what: "database creation", source })??
            }
        };
        let files = run.len();
        let pos = match db.apply_ltx(run, resync).await {
            Ok(p) => p,
            Err(crate::db::DbError::Log(f)) if f.os.is_some() => {
                // This node's disk failed for this database (full, read-only, locked out
                // for too long): it pauses, the others keep following. The stream is read
                // and dropped until the session ends; a reconnect after a pause retries.
                tracing::error!(db = %name, error = %f, retry_in = ?LOCAL_RETRY,
                    "applying failed on this node; this database pauses, the others go on");
                let node = store.node().clone();
                tokio::spawn(async move {
                    tokio::time::sleep(LOCAL_RETRY).await;
                    node.request_resync();
                });
                while next_file(&mut rd, &mut asm).await?.is_some() {}
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        store.node().heard_primary();
        if let Some(ms) = stamp {
            store.node().note_primary_time(ms);
        }
        tracing::debug!(db = %name, %pos, files, "applied");
        let _ = acks.send((name, pos));
    }
}

/// The next whole file on a database stream; `None` at its end.
async fn next_file(
    rd: &mut FramedRead<quinn::RecvStream, FrameCodec>,
    asm: &mut LtxAssembler,
) -> Result<Option<Received>, ReplError> {
    while let Some(f) = rd.next().await {
        let f = f?;
        if let Frame::Error { code, message } = f {
            return Err(ReplError::Remote { code, message });
        }
        if let Some(got) = assemble(asm, f)? {
            return Ok(Some(got));
        }
    }
    Ok(None)
}

/// Feeds one transfer frame to `asm`, noting when a snapshot starts to arrive: a snapshot is
/// the one transfer long enough to be seen in progress.
fn assemble(asm: &mut LtxAssembler, f: Frame) -> Result<Option<Received>, ReplError> {
    if let Frame::LtxBegin(b) = &f
        && b.kind.is_snapshot()
    {
        tracing::debug!(db = %b.name, size = b.size, "receiving a snapshot");
    }
    Ok(asm.handle(f)?)
}
