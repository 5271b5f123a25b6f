//! The FUSE side's link to the database's actor ([`super::actor`]): calls that wait for an
//! answer, the commit queue it drains, and the health it reports back through [`Shared`].
//!
//! Two ways to wait, never mixed up: [`Db::call`] blocks the calling thread (FUSE threads
//! only: it would stall the runtime), [`Db::call_async`] awaits (replication and handoff
//! tasks). Either way an answer the actor could not give is [`DbError::Log`], and an actor
//! that is gone is [`DbError::ActorGone`].
//!
//! [`Shared`]: super::Shared

use ractor::ActorRef;
use tokio::sync::oneshot;

use super::actor::{self, DbMsg};
use super::{Commit, Db, DbError};
use crate::core::types::Pos;

impl Db {
    /// The database's actor.
    fn actor(&self) -> Result<&ActorRef<DbMsg>, DbError> {
        self.actor.get().ok_or(DbError::ActorGone)
    }

    /// Sends `msg` built around a reply port and waits for the answer. Called from FUSE
    /// threads, never from inside the runtime.
    pub(super) fn call<T>(&self, msg: impl FnOnce(actor::Reply<T>) -> DbMsg) -> Result<T, DbError> {
        let (tx, rx) = oneshot::channel();
        self.actor()?.send_message(msg(tx.into())).map_err(|_| DbError::ActorGone)?;
        match rx.blocking_recv() {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(DbError::Log(e)),
            Err(_) => Err(DbError::ActorGone),
        }
    }

    /// [`Db::call`] for async callers.
    pub(super) async fn call_async<T>(
        &self,
        msg: impl FnOnce(actor::Reply<T>) -> DbMsg,
    ) -> Result<T, DbError> {
        let (tx, rx) = oneshot::channel();
        self.actor()?.send_message(msg(tx.into())).map_err(|_| DbError::ActorGone)?;
        match rx.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(DbError::Log(e)),
            Err(_) => Err(DbError::ActorGone),
        }
    }

    /// Waits until every commit sent so far is written; with `durable`, fdatasynced too.
    pub(super) fn barrier(&self, durable: bool) -> Result<(), DbError> {
        self.call(|reply| DbMsg::Barrier { durable, reply }).map(|_| ())
    }

    /// Queues a commit for the actor, waking it if the queue was empty.
    pub(super) fn enqueue(&self, c: Commit) -> Result<(), DbError> {
        if self.shared.push(c) == 0 {
            self.actor()?.send_message(DbMsg::Wake).map_err(|_| DbError::ActorGone)?;
        }
        Ok(())
    }

    /// Stops the actor (it writes and syncs what it holds first).
    pub(super) fn stop_actor(&self) {
        if let Some(a) = self.actor.get() {
            a.stop(None);
        }
    }

    /// Replica: verifies and applies files received from the primary, in order (a run of
    /// consecutive files is applied as one; see [`super::replica::apply_run`]); returns the
    /// new position.
    ///
    /// `resync`: the first file is a resync snapshot (the primary found this database's
    /// history is not its own): the local LTX files are set aside first.
    pub async fn apply_ltx(&self, ltxs: Vec<bytes::Bytes>, resync: bool) -> Result<Pos, DbError> {
        self.call_async(|reply| DbMsg::Apply { ltxs, resync, reply }).await
    }

    /// Writes every staged transaction to the LTX directory (async callers: replication)
    /// and returns the position written. Hazard: [`Db::pos`] read after this may already be
    /// past it (commits go on), and the files for what lies between may not be written yet.
    pub async fn flush(&self) -> Result<Pos, DbError> {
        self.call_async(|reply| DbMsg::Barrier { durable: false, reply }).await
    }

    /// Refuses writes while the LTX log is failing (see [`actor`]) or the database was found
    /// damaged.
    pub(super) fn check_health(&self) -> Result<(), DbError> {
        if let Some(why) = self.shared.damaged() {
            return Err(DbError::Damaged(why));
        }
        match self.shared.error() {
            Some(e) => Err(DbError::Log(e)),
            None => Ok(()),
        }
    }

    /// Whether this replica's history was found to differ from the primary's and set
    /// aside: its position must not be announced (the primary then sends a snapshot).
    pub fn needs_resync(&self) -> bool {
        self.shared.needs_resync()
    }
}
