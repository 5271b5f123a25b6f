//! Changes of this node's role for one database, and the checks that tie writes to it:
//! refusing writes on a replica, quiescing for a handoff, demotion (primary → replica) and
//! promotion (replica → primary), and folding the WAL into the file, which a replica needs.
//!
//! Ordering hazard: the writable check of [`Db::write`] runs under the commit lock, and
//! [`Db::quiesce`] takes that lock, so once the node paused writes and a quiesce returned,
//! no accepted write can still be on its way to the LTX log.

use std::io;
use std::os::unix::fs::FileExt;

use super::actor::DbMsg;
use super::pages::{Backing, read_header};
use super::{Db, DbError, FileKind, Inner, replica};
use crate::core::commit::{RollbackTracker, WalTracker};
use crate::core::sqlite::JournalMode;
use crate::core::types::{PageNo, Pos};

impl Db {
    /// Refuses application writes on a replica.
    pub(super) fn check_writable(&self) -> Result<(), DbError> {
        if self.node.writable() { Ok(()) } else { Err(DbError::ReadOnly) }
    }

    /// Handoff: waits for the write in progress (if any) and the actor, and returns the
    /// position every commit accepted so far reached. With writes paused first
    /// ([`NodeCtx::pause_writes`]), it is final: the writable check runs under the same
    /// lock. Blocking.
    ///
    /// [`NodeCtx::pause_writes`]: crate::node::NodeCtx::pause_writes
    pub fn quiesce(&self) -> Result<Pos, DbError> {
        let _inner = self.lock();
        self.barrier(false)?;
        Ok(self.pos())
    }

    /// Live demotion (primary → replica without a restart): once writes are refused and
    /// every accepted commit is in the LTX log, the database is brought to a replica's
    /// steady state so replicated files can be applied: in WAL mode the committed frames
    /// are folded into the file under SQLite's locks (readers wait; see
    /// `replica::demote_locked`). The logical content, and so the position, is unchanged;
    /// frames of a transaction that never committed are dropped, as SQLite would.
    ///
    /// Refused (the node must restart to follow) for a rollback-journal database with a
    /// journal present: a transaction was cut off by the demotion, and only startup
    /// recovery may roll it back. Blocking.
    pub fn demote(&self) -> Result<(), DbError> {
        self.quiesce()?;
        let mode = self.lock().mode;
        if self.file(FileKind::Database).is_none() {
            return Ok(());
        }
        if mode != JournalMode::Wal {
            if self.size(FileKind::Journal).unwrap_or(0) > 0 {
                return Err(DbError::Io(io::Error::other(
                    "a rollback journal is present: restart to recover it",
                )));
            }
            return Ok(());
        }
        let mut ctx = self.apply_ctx();
        replica::demote_locked(&mut ctx, || {
            let mut inner = self.lock();
            self.fold_into_file(&mut inner)?;
            Ok(inner.page_count)
        })
    }

    /// Promotion (replica → primary): the FUSE side's view of the database is rebuilt from
    /// the actor's state after every replicated file applied so far (the actor handles
    /// messages in order, so this waits for an apply in flight).
    pub async fn take_over(&self) -> Result<(), DbError> {
        let state = self.call_async(|reply| DbMsg::State { reply }).await?;
        let header = match self.file(FileKind::Database) {
            Some(f) => read_header(&f)?,
            None => None,
        };
        let mut inner = self.lock();
        inner.page_size = header.map(|h| h.page_size).unwrap_or(state.page_size);
        inner.page_count = state.checksums.page_count();
        inner.mode = header.map(|h| h.journal_mode()).unwrap_or(JournalMode::Rollback);
        inner.wal = WalTracker::new();
        inner.rollback = RollbackTracker::new();
        inner.log_dirty = false;
        inner.deleted = !self.exists();
        Ok(())
    }

    /// Replica startup: moves every committed WAL page into the database file and empties
    /// the WAL and the wal-index, so replicated pages can be written into the file.
    ///
    /// Hazard this removes: a replica applies into the database file and keeps `mxFrame`
    /// 0 in the wal-index, but a reader that rebuilds the wal-index (after `-shm` was
    /// removed) would lay the old WAL frames over newer pages. The logical content (file
    /// plus WAL) is unchanged, so the position stays. Crash-safe in any order: the file is
    /// synced before the WAL is truncated, and until then recovery still reads file + WAL.
    pub(super) fn fold_wal(&self) -> Result<(), DbError> {
        let mut inner = self.lock();
        self.fold_into_file(&mut inner)?;
        if let Some(shm) = self.file(FileKind::Shm) {
            shm.set_len(0)?;
        }
        Ok(())
    }

    /// Copies every committed WAL page into the database file (synced), then empties the
    /// WAL and forgets it. Nothing else: the wal-index is the caller's. A WAL frame cut
    /// short is an error before anything is written over the file's page.
    fn fold_into_file(&self, inner: &mut Inner) -> Result<(), DbError> {
        let (Some(db), Some(wal)) = (self.file(FileKind::Database), self.file(FileKind::Wal))
        else {
            return Ok(());
        };
        let ps = inner.page_size;
        let n = inner.wal.indexed_pages();
        if ps > 0 && n > 0 {
            let wal_path = self.path(FileKind::Wal);
            let frames = Backing::new(&*wal, &wal_path);
            let mut buf = vec![0u8; ps as usize];
            let pages: Vec<(PageNo, u64)> = inner.wal.pages().collect();
            for (pgno, off) in pages {
                frames.read_exact(&mut buf, off)?;
                db.write_all_at(&buf, pgno.offset(ps))?;
            }
            db.set_len(u64::from(inner.page_count) * u64::from(ps))?;
            db.sync_data()?;
            tracing::info!(db = %self.name, pages = n, "replica: WAL folded into the database file");
        }
        wal.set_len(0)?;
        inner.wal = WalTracker::new();
        Ok(())
    }

    /// What the actor's replica applier needs of this database.
    pub(super) fn apply_ctx(&self) -> replica::ApplyCtx {
        replica::ApplyCtx {
            name: self.name.clone(),
            dir: self.dir.clone(),
            files: self.files.clone(),
            node: self.node.clone(),
            lock_fds: None,
        }
    }
}
