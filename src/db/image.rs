//! The whole database as SQLite reads it (the file, then committed WAL frames), read at a
//! position: snapshot LTX files for replicas and recovery, and scrubs that compare it with
//! the position's checksum.
//!
//! Invariant: an image is only ever read while the database is at a position (no loose
//! writes pending, no rollback-journal transaction in progress, every commit handed to the
//! actor written), under the commit lock; a snapshot whose checksum is not its position's is
//! never sent or stored.

use std::io;

use super::actor::DbMsg;
use super::pages::read_logical_page;
use super::{Db, DbError, now_ms};
use crate::core::ltx::{FLAG_COMPRESS_LZ4, Header, LtxWriter, PageChecksums, page_checksum};
use crate::core::types::{Checksum, NodeId, PageNo, Pos, Txid};

impl Db {
    /// Takes the commit lock once the file is at a position: pending writes outside a
    /// transaction are recorded, and a rollback-journal transaction whose pages are already
    /// in the file is waited out (up to 10 s, then an error the caller retries). Blocking.
    pub(super) fn lock_at_position(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, super::Inner>, DbError> {
        let started = crate::clock::now();
        loop {
            let mut inner = self.lock();
            let _ = self.end_loose(&mut inner)?;
            // Only pages a rollback transaction already wrote are off the position: a hot
            // journal with none (just begun, or a copy of one placed beside the database, as
            // SQLite's faultsim_save does) leaves the file at its position. Waiting on the
            // journal alone never ended for such a copy (tkt-f3e5abed55.test).
            if !inner.rollback.has_dirty() || !self.journal_active()? {
                return Ok(inner);
            }
            drop(inner);
            if started.elapsed() > std::time::Duration::from_secs(10) {
                return Err(DbError::Io(io::Error::other(
                    "a rollback-journal transaction has been in progress for 10 s; the \
                     snapshot is retried",
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// A snapshot LTX file (MinTXID 1) of the database at its current position, as SQLite
    /// sees it (database file plus committed WAL frames), for a replica that needs one.
    /// Blocking: holds the database's commit lock while it reads every page, so the image
    /// and the position agree.
    ///
    /// The file must be at a position: pending writes outside a transaction are recorded
    /// first, and a rollback-journal transaction in progress (pages written, not yet
    /// committed) is waited out (up to 10 s, then an error the caller retries). Reading the
    /// file in either state once made the snapshot check fail and marked a healthy database
    /// damaged (found by SQLite's jrnlmode3.test with a replica attached).
    pub fn snapshot(&self) -> Result<(Pos, Vec<u8>), DbError> {
        let inner = self.lock_at_position()?;
        self.barrier(false)?;
        let pos = self.pos();
        let ps = inner.page_size;
        let commit = inner.page_count;
        if ps == 0 || pos.txid.0 == 0 {
            return Err(DbError::NotFound("database"));
        }
        let read = |pgno, buf: &mut [u8]| read_logical_page(self, &inner, pgno, buf);
        let (actual, out) =
            build_snapshot(read, ps, commit, pos.txid, self.opts.compress, self.node_id)?;
        if actual != pos.checksum {
            return Err(DbError::Recovery {
                name: self.name.clone(),
                reason: format!("snapshot reads checksum {actual} but the position is {pos}"),
            });
        }
        Ok((pos, out))
    }

    /// Compares the database, as SQLite reads it, with its position's checksum: `Ok(None)`
    /// when they agree, else the checksum it really has. Blocking.
    ///
    /// On the primary it holds the commit lock while it reads every page (writes to this
    /// database wait, readers do not), so the content and the position agree; on a replica
    /// the actor does it between applies.
    pub fn scrub(&self) -> Result<Option<Checksum>, DbError> {
        if !self.node.writable() {
            return self.call(|reply| DbMsg::Scrub { reply });
        }
        let inner = self.lock();
        // Not at a position now: writes outside a transaction pending, or a rollback-journal
        // transaction in progress (its pages are in the file before it commits).
        if inner.loose
            || inner.deleted
            || inner.page_size == 0
            || !self.exists()
            || self.journal_active()?
        {
            return Ok(None);
        }
        self.barrier(false)?;
        let pos = self.pos();
        if pos.txid.0 == 0 {
            return Ok(None);
        }
        let mut sums = PageChecksums::new();
        let mut buf = vec![0u8; inner.page_size as usize];
        let lock = PageNo::lock_page(inner.page_size);
        for p in 1..=inner.page_count {
            let pgno = PageNo(p);
            if pgno == lock {
                continue;
            }
            read_logical_page(self, &inner, pgno, &mut buf)?;
            sums.set(pgno, page_checksum(pgno, &buf));
        }
        sums.truncate(inner.page_count);
        let actual = sums.checksum();
        Ok((actual != pos.checksum).then_some(actual))
    }

    /// Marks the database damaged on this node: a primary refuses writes to it from now on
    /// (the replicas hold the intact copy), a replica asks the primary for a snapshot.
    pub fn mark_damaged(&self, reason: String) {
        if self.node.writable() {
            self.shared.set_damaged(reason);
        } else {
            self.shared.set_resync(true);
            self.node.request_resync();
        }
    }
}

/// A snapshot LTX file (MinTXID 1, MaxTXID `txid`) of `commit` pages of `page_size` bytes,
/// each read by `read`; returns the checksum of what was read (the file's post-apply
/// checksum) with the file. The caller compares that checksum with the position it expects:
/// a snapshot is only ever sent or stored for a position it matches.
pub(super) fn build_snapshot(
    mut read: impl FnMut(PageNo, &mut [u8]) -> io::Result<()>,
    page_size: u32,
    commit: u32,
    txid: Txid,
    compress: bool,
    node_id: NodeId,
) -> Result<(Checksum, Vec<u8>), DbError> {
    let header = Header {
        flags: if compress { FLAG_COMPRESS_LZ4 } else { 0 },
        page_size,
        commit,
        min_txid: Txid(1),
        max_txid: txid,
        timestamp: now_ms(),
        pre_apply_checksum: Checksum(0),
        wal_offset: 0,
        wal_size: 0,
        wal_salt1: 0,
        wal_salt2: 0,
        node_id,
    };
    let ps = page_size as usize;
    // A guess (half the pages, compressed), capped: the page count comes from the file.
    let guess = (commit as usize).saturating_mul(ps + 4) / 2 + 256;
    let mut out = Vec::with_capacity(guess.min(64 << 20));
    let mut w = LtxWriter::new(&mut out, header)?;
    let mut sums = PageChecksums::new();
    let mut buf = vec![0u8; ps];
    let lock = PageNo::lock_page(page_size);
    for p in 1..=commit {
        let pgno = PageNo(p);
        if pgno == lock {
            continue;
        }
        read(pgno, &mut buf)?;
        sums.set(pgno, page_checksum(pgno, &buf));
        w.write_page(pgno, &buf)?;
    }
    sums.truncate(commit);
    let actual = sums.checksum();
    w.finish(actual)?;
    Ok((actual, out))
}
