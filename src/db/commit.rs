//! Commit detection: the FUSE `write`, `truncate`, `fsync`, `release` and `unlink` hooks of a
//! database's files, which notice when SQLite committed a transaction (a WAL commit frame,
//! or the finalisation of a rollback journal) and hand it to the actor as a [`Commit`].
//!
//! Which protocol a write belongs to is decided here; the trackers of
//! [`crate::core::commit`] decide when a transaction committed; the pages of a WAL
//! transaction are read by [`super::waltxn`], shared with recovery. Writes outside any
//! transaction are [`super::loose`]'s.
//!
//! Whatever may commit runs under the commit lock ([`Db::lock`]); `-shm` never takes it.
//! Ordering hazards, from the module docs of [`super`]: a barrier runs before anything that
//! could destroy the WAL copy of a transaction (checkpoint, WAL restart, truncation,
//! unlink), and a rollback-journal commit writes its LTX file before the journal is
//! finalised.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::time::Instant;

use super::pages::{Backing, db_page_count, read_header};
use super::waltxn::{self, TxnFiles};
use super::{Commit, Db, DbError, FileKind, Inner, SyncPoint, now_ms};
use crate::core::commit::{JournalEvent, ReadAt, WalWrite};
use crate::core::sqlite::{DbHeader, JournalMode};
use crate::core::types::PageNo;

/// Casts a database actor may have queued before the FUSE side waits for it to catch up.
const MAX_INFLIGHT: usize = 256;

impl Db {
    /// Writes to the backing file and runs commit detection. The [`SyncPoint`] is the
    /// commit this write completed, if synchronous replication must confirm it.
    pub fn write(
        &self,
        kind: FileKind,
        data: &[u8],
        offset: u64,
    ) -> Result<(usize, SyncPoint), DbError> {
        let t0 = crate::clock::now();
        self.metrics.write(kind);
        if kind == FileKind::Shm {
            // Shared memory, no commit in it: never behind the commit lock. Hazard avoided:
            // the replica applier writes the wal-index header through the mount, and a
            // thread holding the commit lock may be waiting for that very apply (shutdown's
            // final sync does).
            let f = self.file(kind).ok_or(DbError::NotFound(kind.backing_name()))?;
            f.write_all_at(data, offset)?;
            return Ok((data.len(), SyncPoint(None)));
        }
        self.check_health()?;
        let mut inner = self.lock();
        // Under the lock: a handoff that paused writes and then took this lock
        // ([`Db::quiesce`]) has seen every write that passed this check.
        self.check_writable()?;
        let f = self.file(kind).ok_or(DbError::NotFound(kind.backing_name()))?;
        match kind {
            FileKind::Database => self.write_database(&mut inner, &f, data, offset)?,
            FileKind::Journal => {
                // A transaction starts: pending writes outside one come first.
                let _ = self.end_loose(&mut inner)?;
                // PERSIST mode: zeroing the header is the commit. Write the LTX first, as
                // for DELETE's unlink: a crash between the two then leaves a hot journal
                // over a database that matches its newest LTX file (recovery finalises
                // it), never a committed transaction without one (found by the
                // super-journal crash test: recovery quarantined the database).
                if inner.rollback.on_journal_write(offset, data) == JournalEvent::Finalized {
                    let done = self.commit_rollback(&mut inner)?;
                    f.write_all_at(data, offset)?;
                    return Ok((data.len(), self.committed(t0, done)?));
                }
                f.write_all_at(data, offset)?;
            }
            FileKind::Wal => {
                let _ = self.end_loose(&mut inner)?;
                if offset == 0 && inner.log_dirty {
                    // A new WAL header: SQLite restarts the WAL from the top.
                    self.barrier(true)?;
                    inner.log_dirty = false;
                }
                f.write_all_at(data, offset)?;
                if inner.page_size == 0
                    && let Some(db) = self.file(FileKind::Database)
                    && let Some(h) = read_header(&db)?
                {
                    inner.page_size = h.page_size;
                }
                let ps = inner.page_size;
                if inner.wal.on_write(offset, data, ps) == WalWrite::MaybeCommit {
                    let done = self.commit_wal(&mut inner, &f)?;
                    return Ok((data.len(), self.committed(t0, done)?));
                }
            }
            // Answered above, without the lock.
            FileKind::Shm => f.write_all_at(data, offset)?,
        }
        Ok((data.len(), SyncPoint(None)))
    }

    /// A write to the database file (`f`): checks it keeps a valid header and whole pages,
    /// tells which protocol it belongs to (rollback-journal transaction, checkpoint, or
    /// neither: a loose write), and writes it.
    fn write_database(
        &self,
        inner: &mut Inner,
        f: &File,
        data: &[u8],
        offset: u64,
    ) -> Result<(), DbError> {
        // Inside a rollback-journal transaction anything goes: the journal restores the
        // pages if it does not commit (SQLite's crash tests tear unsynced pages, the header
        // included, before the hot journal is played back).
        let in_txn = self.journal_active()?;
        if offset < 100 {
            // Page 1 carries the page size and journal mode: outside a transaction,
            // whatever writes into the header (SQLite a whole page, a tool a few bytes) must
            // leave a valid one, or no transaction of this file could be read back (the
            // mount then turns the file into a node-local one).
            let mut head = [0u8; 100];
            if offset > 0 || data.len() < 100 {
                // Not a page read: a file shorter than the header reads as zeros past its
                // end here, which is what the file holds after this write, and a header
                // that is still incomplete then fails to parse below.
                let _ = f.pread_exact(&mut head, 0)?;
            }
            let at = offset as usize;
            let n = data.len().min(100 - at);
            head[at..at + n].copy_from_slice(&data[..n]);
            match DbHeader::parse(&head) {
                Ok(h) => {
                    inner.mode = h.journal_mode();
                    if inner.page_size == 0 {
                        inner.page_size = h.page_size;
                    }
                }
                Err(_) if in_txn && inner.page_size != 0 => {}
                Err(_) => return Err(DbError::NotSqlite),
            }
        } else if inner.page_size == 0 {
            return Err(DbError::NotSqlite);
        }
        let ps = inner.page_size;
        let end = offset + data.len() as u64;
        // SQLite writes whole pages. A tool may write part of one (a byte patch, `dd`):
        // accepted inside the file, or when it ends on a page boundary, so the file stays
        // whole pages.
        // Any page size's pages (512 is the smallest): SQLite changing the page size (a
        // backup onto this database) writes pages of the new size before page 1 says so.
        let whole = offset.is_multiple_of(512) && data.len().is_multiple_of(512);
        let keeps_pages = end.is_multiple_of(u64::from(ps)) || end <= f.metadata()?.len();
        if data.is_empty() || !(whole || keeps_pages) {
            return Err(DbError::UnalignedWrite { offset, len: data.len(), page_size: ps });
        }
        // Which protocol this write belongs to: a rollback-journal transaction (the journal
        // holds a header with its magic: SQLite writes it before any page of the database),
        // or a checkpoint (every page has a committed WAL frame).
        let first = offset / u64::from(ps) + 1;
        let n = (end - 1) / u64::from(ps) + 2 - first;
        let wal_frames = inner.wal.indexed_pages() > 0;
        let checkpoint = wal_frames
            && (first..first + n).all(|p| {
                u32::try_from(p).is_ok_and(|p| inner.wal.page_offset(PageNo(p)).is_some())
            });
        let loose = !checkpoint && !in_txn;
        if loose {
            if wal_frames {
                return Err(DbError::OutsideTransaction(format!(
                    "write to pages {first}..{} of the database outside a SQLite transaction \
                     while its WAL holds newer pages: refused (write through SQLite, or \
                     checkpoint the WAL first)",
                    first + n - 1
                )));
            }
            self.begin_loose(inner)?;
        }
        if inner.log_dirty {
            // A checkpoint: WAL copies of transactions may be overwritten soon.
            self.barrier(true)?;
            inner.log_dirty = false;
        }
        f.write_all_at(data, offset)?;
        // `in_txn` too: the write that switches a database to WAL (header bytes 18/19 set
        // to 2) is itself a rollback-journal transaction, and `mode` already says WAL from
        // its own page 1.
        if inner.mode == JournalMode::Rollback || loose || in_txn {
            inner.rollback.on_db_write(offset, data.len() as u64, ps);
        }
        Ok(())
    }

    /// Sets the backing file's length (a rollback-journal commit in TRUNCATE mode).
    pub fn truncate(&self, kind: FileKind, size: u64) -> Result<SyncPoint, DbError> {
        let t0 = crate::clock::now();
        if kind == FileKind::Shm {
            // As in [`Db::write`]: never behind the commit lock.
            let f = self.file(kind).ok_or(DbError::NotFound(kind.backing_name()))?;
            f.set_len(size)?;
            return Ok(SyncPoint(None));
        }
        let mut inner = self.lock();
        self.check_writable()?;
        let f = self.file(kind).ok_or(DbError::NotFound(kind.backing_name()))?;
        if kind == FileKind::Wal && inner.log_dirty {
            self.barrier(true)?;
            inner.log_dirty = false;
        }
        if kind == FileKind::Database {
            return self.truncate_database(&mut inner, &f, size);
        }
        // TRUNCATE mode: truncating the journal to 0 is the commit; the LTX first (see the
        // PERSIST case in `write`).
        if kind == FileKind::Journal
            && inner.rollback.on_journal_truncate(size) == JournalEvent::Finalized
        {
            let done = self.commit_rollback(&mut inner)?;
            f.set_len(size)?;
            return self.committed(t0, done);
        }
        f.set_len(size)?;
        match kind {
            FileKind::Wal if size < inner.wal.committed_offset() => inner.wal.reset(),
            _ => {}
        }
        Ok(SyncPoint(None))
    }

    /// Truncation of the database file. Part of SQLite's protocol inside a rollback-journal
    /// transaction, or at the end of a checkpoint (to the last commit's size); otherwise it
    /// is a transaction of its own, recorded at once: to zero bytes a deletion (as `rm`),
    /// else the database at its new length.
    fn truncate_database(
        &self,
        inner: &mut Inner,
        f: &File,
        size: u64,
    ) -> Result<SyncPoint, DbError> {
        let ps = u64::from(inner.page_size);
        let wal_frames = inner.wal.indexed_pages() > 0;
        if self.journal_active()? || (wal_frames && size == u64::from(inner.page_count) * ps) {
            f.set_len(size)?;
            return Ok(SyncPoint(None));
        }
        if wal_frames {
            return Err(DbError::OutsideTransaction(format!(
                "truncation of the database to {size} bytes outside a SQLite transaction while \
                 its WAL holds newer pages: refused"
            )));
        }
        if size == 0 {
            let _ = self.end_loose(inner)?;
            if inner.page_size == 0 {
                f.set_len(0)?;
                return Ok(SyncPoint(None));
            }
            let page_size = inner.page_size;
            let timestamp_ms = now_ms();
            self.call(|reply| super::DbMsg::Delete { page_size, timestamp_ms, reply })?;
            f.set_len(0)?;
            f.sync_data()?;
            inner.page_size = 0;
            inner.page_count = 0;
            inner.rollback.take_dirty();
            tracing::warn!(db = %self.name, pos = %self.pos(),
                "database truncated to 0 bytes outside a SQLite transaction: recorded as its \
                 deletion");
            return Ok(SyncPoint(None));
        }
        if ps == 0 || !size.is_multiple_of(ps) {
            return Err(DbError::UnalignedWrite {
                offset: size,
                len: 0,
                page_size: inner.page_size,
            });
        }
        self.begin_loose(inner)?;
        f.set_len(size)?;
        let done = self.end_loose(inner)?;
        self.sync_point(done)
    }

    /// fsyncs the backing file. LTX files need no sync here: see the module docs of
    /// [`super`]. Writes to the database outside a transaction become one first (the
    /// application asked for them to be durable).
    pub fn fsync(&self, kind: FileKind) -> Result<(), DbError> {
        if kind == FileKind::Database {
            let mut inner = self.lock();
            let _ = self.end_loose(&mut inner)?;
        }
        if let Some(f) = self.file(kind) {
            f.sync_data()?;
        }
        Ok(())
    }

    /// The last descriptor of a file was closed (FUSE release): writes outside a
    /// transaction become one.
    pub fn release(&self, kind: FileKind) -> Result<(), DbError> {
        if kind == FileKind::Database {
            let mut inner = self.lock();
            let _ = self.end_loose(&mut inner)?;
        }
        Ok(())
    }

    /// Unlinks the backing file of an auxiliary file (`-journal`, `-wal`, `-shm`); in
    /// DELETE mode, the journal's unlink is a commit.
    pub fn unlink(&self, kind: FileKind) -> Result<SyncPoint, DbError> {
        let t0 = crate::clock::now();
        let mut inner = self.lock();
        self.check_writable()?;
        if self.file(kind).is_none() {
            return Err(DbError::NotFound(kind.backing_name()));
        }
        let mut done = false;
        match kind {
            // DELETE mode: the unlink is the commit. Write the LTX first, so a crash after
            // the unlink never leaves a committed transaction without one.
            FileKind::Journal => done = self.commit_rollback(&mut inner)?,
            FileKind::Wal if inner.log_dirty => {
                self.barrier(true)?;
                inner.log_dirty = false;
            }
            _ => {}
        }
        fs::remove_file(self.path(kind))?;
        self.set_file(kind, None);
        if kind == FileKind::Wal {
            inner.wal.reset();
        }
        self.committed(t0, done)
    }

    /// [`Db::sync_point`] of a write that began at `t0`; a commit's time goes to
    /// `litefleet_commit_seconds`.
    fn committed(&self, t0: Instant, done: bool) -> Result<SyncPoint, DbError> {
        let p = self.sync_point(done)?;
        if done {
            self.metrics.commit_latency(t0.elapsed());
        }
        Ok(p)
    }

    /// Whether a rollback-journal transaction is in progress: the journal's header carries
    /// its magic. SQLite writes it (in synchronous modes, right after syncing the journal)
    /// before writing any page of the database; between transactions the journal is gone
    /// (DELETE), empty (TRUNCATE) or has a zeroed header (PERSIST).
    pub(super) fn journal_active(&self) -> io::Result<bool> {
        let Some(j) = self.file(FileKind::Journal) else { return Ok(false) };
        let mut b = [0u8; 8];
        Ok(j.pread_exact(&mut b, 0)? && b == crate::core::sqlite::JOURNAL_MAGIC)
    }

    /// A rollback-journal transaction ended: build its LTX from the dirty pages and wait
    /// until it is durable.
    pub(super) fn commit_rollback(&self, inner: &mut Inner) -> Result<bool, DbError> {
        let dirty = inner.rollback.take_dirty();
        let Some(db) = self.file(FileKind::Database) else { return Ok(false) };
        if inner.page_size == 0 {
            return Ok(false); // nothing was ever written
        }
        // SQLite changes the page size only by rewriting the whole file (VACUUM after
        // `PRAGMA page_size`, a backup restored over it): every page of the new size goes
        // into this transaction.
        let mut old = inner.page_count;
        if let Some(h) = read_header(&db)?
            && h.page_size != inner.page_size
        {
            tracing::info!(db = %self.name, from = inner.page_size, to = h.page_size, "page size changed");
            inner.page_size = h.page_size;
            old = 0;
        }
        let ps = inner.page_size;
        let commit = db_page_count(&db, ps)?;
        let candidates = dirty.iter().copied().filter(|p| p.0 <= commit).chain(
            // Pages the database grew by but SQLite never wrote read as what is on disk.
            (old + 1..=commit).map(PageNo).filter(|p| dirty.binary_search(p).is_err()),
        );
        let mut list: Vec<PageNo> = candidates.collect();
        list.sort_unstable();
        let lock = PageNo::lock_page(ps);
        let db_path = self.path(FileKind::Database);
        let file = Backing::new(&*db, &db_path);
        let mut pages = Vec::with_capacity(list.len());
        for pgno in list {
            if pgno == lock {
                continue;
            }
            let mut buf = vec![0u8; ps as usize];
            file.read_page(pgno, &mut buf)?;
            pages.push((pgno, buf));
        }
        let c = Commit {
            page_size: ps,
            commit,
            pages,
            wal: None,
            durable: true,
            timestamp_ms: now_ms(),
        };
        self.enqueue(c)?;
        self.barrier(true)?;
        inner.page_count = commit;
        inner.log_dirty = false;
        Ok(true)
    }

    /// Scans the WAL after a write that may have completed a transaction, and casts each
    /// committed transaction to the actor.
    fn commit_wal(&self, inner: &mut Inner, wal: &File) -> Result<bool, DbError> {
        let ps = match inner.page_size {
            0 => match self.file(FileKind::Database) {
                Some(db) => match read_header(&db)? {
                    Some(h) => h.page_size,
                    None => return Ok(false),
                },
                None => return Ok(false),
            },
            ps => ps,
        };
        inner.page_size = ps;
        let txns = inner.wal.scan(wal, ps)?;
        let committed = !txns.is_empty();
        let (wal_path, db_path) = (self.path(FileKind::Wal), self.path(FileKind::Database));
        let db = self.file(FileKind::Database);
        let files = TxnFiles {
            wal: Backing::new(wal, &wal_path),
            db: db.as_deref().map(|f| Backing::new(f, &db_path)),
        };
        for txn in txns {
            let c = waltxn::commit(files, &txn, ps, inner.page_count, false, now_ms())?;
            self.enqueue(c)?;
            inner.page_count = txn.commit;
            inner.log_dirty = true;
        }
        if self.shared.queued() > MAX_INFLIGHT {
            // Backpressure: the actor is behind; let it catch up before SQLite goes on.
            self.barrier(false)?;
        }
        Ok(committed)
    }
}
