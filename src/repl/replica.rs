//! The replica's side: dials the primary, announces its positions, and applies what
//! arrives on each database stream. Any error ends the session; the supervisor reconnects
//! with backoff and the primary plans again from the replica's positions, so a bad or
//! interrupted transfer is re-fetched, never applied.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;

use super::{Identity, ReplError, framed, next_frame};
use crate::core::types::Pos;
use crate::core::wire::{DbPos, ErrorCode, Frame, LtxAssembler, LtxKind, Received};
use crate::lease::actor::LeaseMsg;
use crate::net::codec::FrameCodec;
use crate::store::Store;
use ractor::ActorRef;

/// A database whose apply failed on this node's disk is retried after this long (by a
/// reconnect); meanwhile the others keep following.
const LOCAL_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// At most this many files, or bytes, are applied as one run.
const MAX_RUN_FILES: usize = 512;
const MAX_RUN_BYTES: usize = 32 << 20;

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
    wr.send(id.hello()).await?;
    let hello = match next_frame(&mut rd).await? {
        Frame::Hello(h) => h,
        other => return Err(ReplError::Protocol(format!("expected HELLO, got {}", other.name()))),
    };
    if let Err((code, message)) = id.check(&hello) {
        let _ = wr.send(Frame::Error { code, message: message.clone() }).await;
        return Err(ReplError::Protocol(message));
    }
    // From now on frames from an older term than this primary's are refused.
    if !store.node().note_epoch(hello.epoch) {
        let message = format!("primary epoch {} is older than one seen", hello.epoch);
        let _ =
            wr.send(Frame::Error { code: ErrorCode::StaleEpoch, message: message.clone() }).await;
        return Err(ReplError::StaleEpoch(message));
    }
    let positions: Vec<DbPos> = store
        .list()
        .into_iter()
        .filter(|d| d.pos().txid.0 > 0 && !d.needs_resync())
        .map(|d| DbPos { name: d.name().to_owned(), pos: d.pos() })
        .collect();
    wr.send(Frame::PosMap(positions)).await?;
    store.node().heard_primary();
    store.node().set_primary(Some(hello.hostname.clone()));
    tracing::info!(host = %hello.hostname, "following the primary");

    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<(String, Pos)>();
    // Promotion requests (`litefleet promote`, `lease.promote`) for this session.
    let (promote_tx, mut promote_rx) = mpsc::unbounded_channel::<()>();
    store.node().set_promoter(Some(promote_tx.clone()));
    let _unregister = Unregister(store.clone());
    if auto_promote {
        let _ = promote_tx.send(());
    }
    let mut streams = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            () = store.node().resync_wanted() => {
                // A database was found damaged here and announces no position now.
                return Err(ReplError::Protocol(
                    "a database needs a snapshot from the primary; reconnecting".into(),
                ));
            }
            s = conn.accept_uni() => {
                let recv = s?;
                streams.spawn(db_stream(recv, store.clone(), ack_tx.clone()));
            }
            f = next_frame(&mut rd) => match f? {
                Frame::Heartbeat { time_ms, epoch } => {
                    if let Err(e) = stale(store, epoch) {
                        let message = e.to_string();
                        let _ = wr.send(Frame::Error { code: ErrorCode::StaleEpoch, message }).await;
                        return Err(e);
                    }
                    store.node().heard_primary();
                    store.node().note_primary_time(time_ms);
                }
                Frame::Ready { .. } => {}
                // The primary's answer to our handoff request (`protocol.md` §12).
                Frame::Handoff { token, .. } if token.is_empty() => {
                    tracing::info!("the primary handed the lease over");
                }
                Frame::Handoff { token, .. } => {
                    tracing::warn!(answer = %token, "the primary refused to hand the lease over");
                    store.node().set_promote_error(Some(token));
                    if auto_promote {
                        let tx = promote_tx.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(PROMOTE_RETRY).await;
                            let _ = tx.send(());
                        });
                    }
                }
                other => {
                    return Err(ReplError::Protocol(format!("unexpected {}", other.name())));
                }
            },
            Some((name, pos)) = ack_rx.recv() => {
                wr.send(Frame::Ack { name, pos }).await?;
            }
            Some(()) = promote_rx.recv() => {
                match handoff_token(lease.as_ref()).await {
                    Ok(token) => {
                        tracing::info!("asking the primary for the lease");
                        let epoch = store.node().max_epoch();
                        wr.send(Frame::Handoff { epoch, target: id.node_id, token }).await?;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot ask for the lease");
                        store.node().set_promote_error(Some(e));
                    }
                }
            }
            Some(r) = streams.join_next() => match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    let code = match &e {
                        ReplError::Db(_) => ErrorCode::InvalidLtx,
                        ReplError::StaleEpoch(_) => ErrorCode::StaleEpoch,
                        _ => ErrorCode::Internal,
                    };
                    let _ = wr.send(Frame::Error { code, message: e.to_string() }).await;
                    return Err(e);
                }
                Err(e) => return Err(ReplError::Protocol(format!("stream task: {e}"))),
            },
        }
    }
}

/// `lease.promote`: a refused request is asked again after this long.
const PROMOTE_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// Unregisters the session's promotion channel when it ends.
struct Unregister(Arc<Store>);

impl Drop for Unregister {
    fn drop(&mut self) {
        self.0.node().set_promoter(None);
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
        let got = match held.take() {
            Some(g) => g,
            None => match next_file(&mut rd, &mut asm).await? {
                Some(g) => g,
                None => return Ok(()),
            },
        };
        stale(&store, got.begin.epoch)?;
        let name = got.begin.name.clone();
        let resync = got.begin.kind == LtxKind::Resync;
        // Take every file that already arrived too (without waiting): a replica that fell
        // behind applies them as one run instead of paying the locks per transaction. A
        // resync snapshot is applied alone.
        let mut run = vec![got.file];
        let mut run_bytes = run[0].len();
        while !resync && run.len() < MAX_RUN_FILES && run_bytes < MAX_RUN_BYTES {
            let Some(next) = rd.next().now_or_never() else { break };
            let Some(f) = next else { break };
            let f = f?;
            if let Frame::Error { code, message } = f {
                return Err(ReplError::Remote { code, message });
            }
            if let Some(more) = asm.handle(f).map_err(|e| ReplError::Protocol(e.to_string()))? {
                if more.begin.name != name {
                    return Err(ReplError::Protocol("two databases on one stream".into()));
                }
                if more.begin.kind == LtxKind::Resync {
                    held = Some(more);
                    break;
                }
                run_bytes += more.file.len();
                run.push(more.file);
            }
        }
        let stamp = run.last().and_then(|f| super::file_pos(f)).map(|(h, _)| h.timestamp);
        let db = match store.get(&name) {
            Some(db) => db,
            None => {
                // Opening a database starts its actor, which blocks: not on a runtime thread.
                let (s, n) = (store.clone(), name.clone());
                tokio::task::spawn_blocking(move || s.create(&n))
                    .await
                    .map_err(|e| ReplError::Protocol(e.to_string()))??
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

/// Fencing: a frame from an epoch older than the newest this node has seen comes from a
/// deposed primary; the session ends (`protocol.md` §2 rule 4).
fn stale(store: &Store, epoch: crate::core::types::Epoch) -> Result<(), ReplError> {
    let newest = store.node().max_epoch();
    if epoch < newest {
        return Err(ReplError::StaleEpoch(format!(
            "frame from epoch {epoch}, but epoch {newest} was seen"
        )));
    }
    Ok(())
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
        if let Some(got) = asm.handle(f).map_err(|e| ReplError::Protocol(e.to_string()))? {
            return Ok(Some(got));
        }
    }
    Ok(None)
}
