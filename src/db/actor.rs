//! The database actor: owns the [`LtxLog`] of one database and processes its commits in
//! order.
//!
//! The FUSE handler sends WAL commits as casts (SQLite's `write` returns without waiting for
//! the LTX file: the WAL itself holds the transaction until a checkpoint, and a barrier runs
//! before any checkpoint or WAL restart), and rollback-journal commits, deletions and
//! barriers as calls it waits for.
//!
//! Each commit is staged at once (TXID assigned, position advanced, subscribers notified)
//! and staged commits are written as one LTX file after [`FLUSH_DELAY`], when a barrier
//! asks, or when enough piled up (see [`LtxLog::stage`]).
//!
//! Failure: when an LTX write fails (disk full, I/O error) the transactions stay staged and
//! the write is retried on a timer; meanwhile [`Shared`] carries the error, and the FUSE
//! side refuses new writes to the database with it (a full disk reaches SQLite as
//! `SQLITE_FULL`), so nothing is lost and SQLite sees the failure on its next write instead
//! of a silent gap in the LTX chain.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::DbError;
use super::log::{Commit, LtxLog};
use crate::core::types::Pos;

/// How long staged transactions wait for more before their file is written.
const FLUSH_DELAY: Duration = Duration::from_millis(5);
/// Staged transactions or page bytes that force a write at once.
const MAX_STAGED_TXNS: usize = 1000;
const MAX_STAGED_BYTES: usize = 16 << 20;
/// How long a written LTX file may wait for its fdatasync.
const IDLE_SYNC: Duration = Duration::from_millis(1000);
/// How often a failed write is retried.
const RETRY_EVERY: Duration = Duration::from_millis(500);

/// Result sent back to callers.
pub type Reply<T> = RpcReplyPort<Result<T, LogFailure>>;

/// A failed LTX write, as the FUSE side reports it: the message and, for I/O errors, the
/// OS error number (so a full disk reaches SQLite as `ENOSPC`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFailure {
    pub msg: String,
    pub os: Option<i32>,
}

impl std::fmt::Display for LogFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl From<DbError> for LogFailure {
    fn from(e: DbError) -> LogFailure {
        let os = match &e {
            DbError::Io(io) => io.raw_os_error(),
            _ => None,
        };
        LogFailure { msg: e.to_string(), os }
    }
}

/// Messages of the database actor.
pub enum DbMsg {
    /// Commits were queued in [`Shared::queue`] (sent when the queue turns non-empty).
    Wake,
    /// The database was deleted: write a deletion LTX (durable).
    Delete { page_size: u32, timestamp_ms: i64, reply: Reply<Pos> },
    /// Everything queued before is written; with `durable`, also fdatasynced. Answers the
    /// position written (every transaction up to it is in the LTX directory).
    Barrier { durable: bool, reply: Reply<Pos> },
    /// Replica: verify and apply files received from the primary, in order; with `resync`,
    /// set the local LTX files aside first (the first file is a resync snapshot).
    Apply { ltxs: Vec<bytes::Bytes>, resync: bool, reply: Reply<Pos> },
    /// Replica: compare the database file with the position's checksum (applies are this
    /// actor's, so nothing changes the file meanwhile); answers the file's checksum when
    /// it differs.
    Scrub { reply: Reply<Option<crate::core::types::Checksum>> },
    /// Replica: copy the database file at the current position to `out` (applies wait).
    Export { out: std::fs::File, reply: Reply<super::export::Exported> },
    /// A copy of the database state (shutdown: the checksum cache).
    State { reply: Reply<crate::core::ltx::DbState> },
    /// Timer: write the staged file.
    Flush,
    /// Timer: fdatasync written files.
    Sync,
}

/// Shared between the actor and the FUSE side: the commit queue, and the last LTX write
/// error while commits are stuck.
///
/// The queue is a plain mutex-protected deque rather than one message per commit so the
/// actor can take every queued commit at once and write them as one file (group commit).
#[derive(Default)]
pub struct Shared {
    error: Mutex<Option<LogFailure>>,
    queue: Mutex<VecDeque<Commit>>,
    /// Replica: the local history was set aside; announce no position until a snapshot.
    resync: std::sync::atomic::AtomicBool,
    /// Primary: the database was found damaged (scrub); writes are refused for good.
    damaged: Mutex<Option<String>>,
}

impl Shared {
    pub fn needs_resync(&self) -> bool {
        self.resync.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(super) fn set_resync(&self, on: bool) {
        self.resync.store(on, std::sync::atomic::Ordering::Release);
    }

    pub fn damaged(&self) -> Option<String> {
        self.damaged.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_damaged(&self, why: String) {
        *self.damaged.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
    }

    pub fn error(&self) -> Option<LogFailure> {
        self.error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, e: Option<LogFailure>) {
        *self.error.lock().unwrap_or_else(|e| e.into_inner()) = e;
    }

    /// Queues a commit. Returns the queue length before, so the caller wakes the actor
    /// when it was 0.
    pub fn push(&self, c: Commit) -> usize {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.push_back(c);
        q.len() - 1
    }

    pub fn queued(&self) -> usize {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn take(&self) -> VecDeque<Commit> {
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

pub struct DbActor;

pub struct DbActorState {
    log: LtxLog,
    shared: Arc<Shared>,
    apply: super::replica::ApplyCtx,
    flush_armed: bool,
    sync_armed: bool,
    /// Replicated files refused one after the other (reset by any applied file).
    refused_in_a_row: u32,
}

/// Refused files in a row after which a replica stops asking for files and asks for a
/// snapshot. One refusal is usually a race (a file the replica already has, from a stream
/// that started before its last apply) and the next session plans again from the announced
/// position, which keeps the primary's divergence checks; only a refusal that persists
/// needs the snapshot.
const REFUSALS_BEFORE_SNAPSHOT: u32 = 3;

pub struct DbActorArgs {
    pub log: LtxLog,
    pub shared: Arc<Shared>,
    pub apply: super::replica::ApplyCtx,
}

impl Actor for DbActor {
    type Msg = DbMsg;
    type State = DbActorState;
    type Arguments = DbActorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<DbMsg>,
        args: DbActorArgs,
    ) -> Result<DbActorState, ActorProcessingErr> {
        Ok(DbActorState {
            log: args.log,
            shared: args.shared,
            apply: args.apply,
            flush_armed: false,
            sync_armed: false,
            refused_in_a_row: 0,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<DbMsg>,
        msg: DbMsg,
        st: &mut DbActorState,
    ) -> Result<(), ActorProcessingErr> {
        // File I/O blocks: tell the runtime so other actors keep running meanwhile.
        tokio::task::block_in_place(|| st.process(msg));
        if !st.flush_armed && st.log.staged().0 > 0 {
            st.flush_armed = true;
            let delay = if st.shared.error().is_some() { RETRY_EVERY } else { FLUSH_DELAY };
            myself.send_after(delay, || DbMsg::Flush);
        }
        if !st.sync_armed && st.log.has_unsynced() {
            st.sync_armed = true;
            myself.send_after(IDLE_SYNC, || DbMsg::Sync);
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<DbMsg>,
        st: &mut DbActorState,
    ) -> Result<(), ActorProcessingErr> {
        tokio::task::block_in_place(|| {
            // A failure was logged; startup recovery rebuilds what is missing from the WAL.
            if st.drain().and_then(|()| st.flush()).is_ok()
                && let Err(e) = st.log.sync()
            {
                tracing::warn!(error = %e, "final LTX sync failed");
            }
        });
        Ok(())
    }
}

impl DbActorState {
    fn process(&mut self, msg: DbMsg) {
        match msg {
            DbMsg::Wake => {
                // Failures are reported through `Shared::error` and retried on a timer.
                let _ = self.drain();
                let (txns, bytes) = self.log.staged();
                if txns >= MAX_STAGED_TXNS || bytes >= MAX_STAGED_BYTES {
                    let _ = self.flush();
                }
            }
            DbMsg::Delete { page_size, timestamp_ms, reply } => {
                let r = self.drain().and_then(|()| self.flush()).and_then(|()| {
                    self.log.delete(page_size, timestamp_ms).map_err(LogFailure::from)
                });
                let _ = reply.send(r);
            }
            DbMsg::Barrier { durable, reply } => {
                let mut r = self.drain().and_then(|()| self.flush());
                if r.is_ok() && durable {
                    r = self.log.sync().map_err(LogFailure::from);
                }
                let _ = reply.send(r.map(|()| self.log.pos()));
            }
            DbMsg::Apply { ltxs, resync, reply } => {
                let mut r = Ok(());
                if resync {
                    r = super::replica::set_aside(
                        &mut self.log,
                        &self.apply,
                        "resync from the primary",
                    );
                }
                // Durable before the answer: the ACK that follows promises it (`protocol.md`
                // §2 rule 7; synchronous replication counts on it). Readers already see the
                // transaction: the sync only delays the acknowledgement.
                let r = r
                    .and_then(|()| super::replica::apply_run(&mut self.log, &mut self.apply, &ltxs))
                    .and_then(|p| self.log.sync().map(|()| p));
                match &r {
                    Ok(_) => {
                        self.shared.set_resync(false);
                        self.refused_in_a_row = 0;
                    }
                    Err(DbError::Diverged(why)) => {
                        // Found here (inside a ranged file the primary could not check):
                        // keep the local history aside and ask for a snapshot next session.
                        let why = why.clone();
                        match super::replica::set_aside(&mut self.log, &self.apply, &why) {
                            Ok(()) => self.shared.set_resync(true),
                            Err(e) => tracing::error!(db = %self.apply.name, error = %e,
                                "cannot set the diverged LTX files aside; not resyncing"),
                        }
                    }
                    Err(DbError::Rejected(why)) => {
                        self.refused_in_a_row += 1;
                        if self.refused_in_a_row < REFUSALS_BEFORE_SNAPSHOT {
                            tracing::warn!(db = %self.apply.name, error = %why,
                                in_a_row = self.refused_in_a_row, "replicated LTX refused");
                        } else {
                            // It persists (damaged in transit again and again, or a file that
                            // never fits this database): the next session announces no
                            // position for this database, so the primary sends a snapshot
                            // instead of the same file. The local LTX files are set aside
                            // first, as for a divergence: without a position the primary
                            // cannot check this history, and it may hold transactions no
                            // other node has (a copy too many, never one too few).
                            self.refused_in_a_row = 0;
                            let why = format!("replicated LTX refused repeatedly: {why}");
                            tracing::error!(db = %self.apply.name, error = %why,
                                "asking the primary for a snapshot");
                            match super::replica::set_aside(&mut self.log, &self.apply, &why) {
                                Ok(()) => self.shared.set_resync(true),
                                Err(e) => tracing::error!(db = %self.apply.name, error = %e,
                                    "cannot set the LTX files aside; not resyncing"),
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(db = %self.apply.name, error = %e, "replicated LTX refused")
                    }
                }
                let _ = reply.send(r.map_err(LogFailure::from));
            }
            DbMsg::Scrub { reply } => {
                let r = self.scrub_file().map_err(LogFailure::from);
                let _ = reply.send(r);
            }
            DbMsg::Export { out, reply } => {
                let _ = reply.send(self.export_file(&out).map_err(LogFailure::from));
            }
            DbMsg::State { reply } => {
                let _ = reply.send(Ok(self.log.state.clone()));
            }
            DbMsg::Flush => {
                self.flush_armed = false;
                let _ = self.drain().and_then(|()| self.flush());
            }
            DbMsg::Sync => {
                self.sync_armed = false;
                if let Err(e) = self.log.sync() {
                    tracing::warn!(error = %e, "LTX sync failed; retrying");
                }
            }
        }
    }

    /// Replica: copies the database file at the current position to `out`.
    fn export_file(&self, out: &std::fs::File) -> Result<super::export::Exported, DbError> {
        let t0 = crate::clock::now();
        let state = &self.log.state;
        let Some(f) = self.apply.file(super::FileKind::Database) else {
            return Err(DbError::NotFound("database"));
        };
        let commit = state.checksums.page_count();
        if state.page_size == 0 || state.pos.txid.0 == 0 || self.log.deleted {
            return Err(DbError::NotFound("database"));
        }
        super::export::copy_prefix(&f, out, u64::from(state.page_size) * u64::from(commit))?;
        Ok(super::export::Exported {
            pos: state.pos,
            page_size: state.page_size,
            commit,
            locked: t0.elapsed(),
        })
    }

    /// The database file's checksum if it differs from the position's (a replica's file is
    /// the whole database: it never has WAL frames).
    fn scrub_file(&self) -> Result<Option<crate::core::types::Checksum>, DbError> {
        let state = &self.log.state;
        let Some(f) = self.apply.file(super::FileKind::Database) else { return Ok(None) };
        if state.page_size == 0 || state.pos.txid.0 == 0 || self.log.deleted {
            return Ok(None);
        }
        let path = self.apply.dir.join(super::FileKind::Database.backing_name());
        let actual = super::pages::scan_db(&f, &path, state.page_size)?.checksum();
        Ok((actual != state.pos.checksum).then_some(actual))
    }

    /// Stages every queued commit, in order.
    fn drain(&mut self) -> Result<(), LogFailure> {
        for c in self.shared.take() {
            // Staging touches no disk; its only failure is a corrupt transaction (a
            // snapshot missing pages), which no retry can fix: report and drop it.
            if let Err(e) = self.log.stage(c) {
                let f = LogFailure::from(e);
                tracing::error!(error = %f, "transaction dropped");
                self.fail(f.clone());
                return Err(f);
            }
        }
        Ok(())
    }

    /// Writes the staged file; on failure it stays staged and writes are refused.
    fn flush(&mut self) -> Result<(), LogFailure> {
        match self.log.flush() {
            Ok(()) => {
                if self.shared.error().is_some() {
                    tracing::info!("LTX writes succeed again");
                    self.shared.set(None);
                }
                Ok(())
            }
            Err(e) => {
                let f = LogFailure::from(e);
                self.fail(f.clone());
                Err(f)
            }
        }
    }

    fn fail(&self, f: LogFailure) {
        if self.shared.error().is_none() {
            tracing::error!(error = %f,
                "LTX write failed; writes to this database are refused until it succeeds");
        }
        self.shared.set(Some(f));
    }
}
