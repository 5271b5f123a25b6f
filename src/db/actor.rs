//! The database actor: owns the [`LtxLog`] of one database and processes its commits in
//! order.
//!
//! The FUSE handler sends WAL commits as casts (SQLite's `write` returns without waiting for
//! the LTX file: the WAL itself holds the transaction until a checkpoint, and a barrier runs
//! before any checkpoint or WAL restart), and rollback-journal commits, deletions and
//! barriers as calls it waits for.
//!
//! Failure: a commit whose LTX write fails (disk full, I/O error) stays queued and is retried
//! on every later message and on a timer; meanwhile [`Health`] carries the error, and the
//! FUSE side refuses new writes to the database with it, so nothing is lost and SQLite sees
//! the failure on its next write instead of a silent gap in the LTX chain.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::DbError;
use super::log::{Commit, LtxLog};
use crate::core::types::Pos;

/// How long a non-durable LTX file may wait for its fdatasync when the database goes idle.
const IDLE_SYNC: Duration = Duration::from_millis(200);
/// How often a failed commit is retried while no message arrives.
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
    /// Everything queued before is written; with `durable`, also fdatasynced.
    Barrier { durable: bool, reply: Reply<()> },
    /// Timer: sync idle files, retry failed commits.
    Tick,
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
}

impl Shared {
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
    /// Commits taken from the queue but not yet written (only non-empty after a failure).
    retry: Vec<Commit>,
    tick_armed: bool,
}

pub struct DbActorArgs {
    pub log: LtxLog,
    pub shared: Arc<Shared>,
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
            retry: Vec::new(),
            tick_armed: false,
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
        if !st.tick_armed && (st.log.has_unsynced() || !st.retry.is_empty()) {
            st.tick_armed = true;
            let delay = if st.retry.is_empty() { IDLE_SYNC } else { RETRY_EVERY };
            myself.send_after(delay, || DbMsg::Tick);
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
            let _ = st.drain();
            if let Err(e) = st.log.sync() {
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
                // Failures are kept for retry and reported through `Shared::error`.
                let _ = self.drain();
            }
            DbMsg::Delete { page_size, timestamp_ms, reply } => {
                let r = match self.drain() {
                    Ok(()) => self.log.delete(page_size, timestamp_ms).map_err(LogFailure::from),
                    Err(e) => Err(e),
                };
                let _ = reply.send(r);
            }
            DbMsg::Barrier { durable, reply } => {
                let mut r = self.drain();
                if r.is_ok() && durable {
                    r = self.log.sync().map_err(LogFailure::from);
                }
                let _ = reply.send(r);
            }
            DbMsg::Tick => {
                self.tick_armed = false;
                if self.drain().is_ok()
                    && let Err(e) = self.log.sync()
                {
                    tracing::warn!(error = %e, "LTX sync failed; retrying");
                }
            }
        }
    }

    /// Writes every queued commit, in order, as few files as possible.
    fn drain(&mut self) -> Result<(), LogFailure> {
        self.retry.extend(self.shared.take());
        if self.retry.is_empty() {
            return Ok(());
        }
        match self.log.commit_batch(&self.retry) {
            Ok(()) => {
                self.retry.clear();
                if self.shared.error().is_some() {
                    tracing::info!("LTX writes succeed again");
                    self.shared.set(None);
                }
                Ok(())
            }
            Err((done, e)) => {
                // Groups before the failure are recorded; keep only the rest.
                self.retry.drain(..done);
                let f = LogFailure::from(e);
                if self.shared.error().is_none() {
                    tracing::error!(error = %f,
                        "LTX write failed; writes to this database are refused until it succeeds");
                }
                self.shared.set(Some(f.clone()));
                Err(f)
            }
        }
    }
}
