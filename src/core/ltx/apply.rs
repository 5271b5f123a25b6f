//! Applying an LTX file to a database.
//!
//! The database is reached through [`PageStore`], so the same code runs against a real file
//! (the shell's `FileStore`), an in-memory image ([`MemStore`]) in tests and fuzzing, or a
//! failing store. The caller owns the database's [`PageChecksums`] and position; `apply`
//! checks the file's pre-apply position and checksum against them, writes the pages, truncates
//! to `Commit` and checks the post-apply checksum.
//!
//! Hazard: pages are written as they are decoded, before the trailer proves the file intact.
//! Verify the file first ([`super::verify`]) — a receiver always holds the whole file before
//! applying — so that apply's own checks only fire on a bug or a file changed underneath. If
//! `apply` fails after writing, the database no longer matches any position: the caller must
//! restore it (for a replica: fetch a snapshot).

use std::io::{self, Read};

use super::checksum::{PageChecksums, page_checksum};
use super::error::LtxError;
use super::reader::LtxReader;
use crate::core::types::{PageNo, Pos};

/// Page-granular access to a database image. Implementations decide durability; `sync` is
/// called once at the end of a successful apply.
pub trait PageStore {
    /// Reads page `pgno` into `buf` (`buf.len()` is the page size). Pages past the end read as
    /// zeros.
    fn read_page(&mut self, pgno: PageNo, buf: &mut [u8]) -> io::Result<()>;
    /// Writes page `pgno` (`data.len()` is the page size), growing the image if needed.
    fn write_page(&mut self, pgno: PageNo, data: &[u8]) -> io::Result<()>;
    /// Sets the image length to `pages * page_size` bytes.
    fn truncate(&mut self, pages: u32, page_size: u32) -> io::Result<()>;
    /// Makes the writes so far durable.
    fn sync(&mut self) -> io::Result<()>;
}

/// A database image in memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemStore {
    pub bytes: Vec<u8>,
}

impl PageStore for MemStore {
    fn read_page(&mut self, pgno: PageNo, buf: &mut [u8]) -> io::Result<()> {
        let off = pgno.offset(buf.len() as u32) as usize;
        buf.fill(0);
        if off < self.bytes.len() {
            let end = (off + buf.len()).min(self.bytes.len());
            buf[..end - off].copy_from_slice(&self.bytes[off..end]);
        }
        Ok(())
    }

    fn write_page(&mut self, pgno: PageNo, data: &[u8]) -> io::Result<()> {
        let off = pgno.offset(data.len() as u32) as usize;
        let end = off + data.len();
        if self.bytes.len() < end {
            self.bytes.resize(end, 0);
        }
        self.bytes[off..end].copy_from_slice(data);
        Ok(())
    }

    fn truncate(&mut self, pages: u32, page_size: u32) -> io::Result<()> {
        self.bytes.resize(pages as usize * page_size as usize, 0);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Whether writing `pgno` to a database of `end` pages leaves no hole other than the lock page.
pub(super) fn extends(end: u32, pgno: PageNo, lock: PageNo) -> bool {
    let next = u64::from(end) + 1;
    u64::from(pgno.0) <= next || (next == u64::from(lock.0) && u64::from(pgno.0) == next + 1)
}

/// The state of a database as `apply` sees it: its position and page checksums.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DbState {
    pub pos: Pos,
    /// Page size of the database, 0 while it does not exist.
    pub page_size: u32,
    pub checksums: PageChecksums,
}

impl DbState {
    /// Computes the page checksums of an existing image of `pages` pages by reading every page.
    /// O(database); startup code should avoid it where a trusted checksum is at hand.
    pub fn scan<S: PageStore>(
        store: &mut S,
        pos: Pos,
        page_size: u32,
        pages: u32,
    ) -> io::Result<DbState> {
        let mut checksums = PageChecksums::new();
        let lock = PageNo::lock_page(page_size);
        let mut buf = vec![0u8; page_size as usize];
        for p in 1..=pages {
            let pgno = PageNo(p);
            if pgno == lock {
                continue;
            }
            store.read_page(pgno, &mut buf)?;
            checksums.set(pgno, page_checksum(pgno, &buf));
        }
        checksums.truncate(pages);
        Ok(DbState { pos, page_size, checksums })
    }
}

/// Applies one LTX file from `reader` to `store`, updating `state`. Returns the new position.
///
/// Checks, in order: the file's header; for an incremental file that `state.pos` equals
/// `(MinTXID-1, PreApplyChecksum)` and that the checksums in `state`
/// give that pre-apply checksum (a file with another page size must then hold every page);
/// then, after writing, the file checksum and that the database
/// checksum equals the trailer's post-apply checksum. A snapshot replaces the database.
pub fn apply<R: Read, S: PageStore>(
    mut reader: LtxReader<R>,
    store: &mut S,
    state: &mut DbState,
) -> Result<Pos, LtxError> {
    let h = *reader.header();
    if h.is_snapshot() {
        state.checksums = PageChecksums::new();
    } else {
        let want = h.pre_apply_pos();
        if state.pos != want {
            return Err(LtxError::PositionMismatch {
                actual: state.pos,
                min_txid: h.min_txid,
                pre_apply: h.pre_apply_checksum,
            });
        }
        let actual = state.checksums.checksum();
        if actual != h.pre_apply_checksum {
            return Err(LtxError::PreApplyChecksum { expected: h.pre_apply_checksum, actual });
        }
        // A page size change rewrites every page: the checks below then require the file
        // to hold all of them, from page 1.
        if state.page_size != 0 && state.page_size != h.page_size && h.commit != 0 {
            state.checksums = PageChecksums::new();
        }
    }
    // A database only grows by pages the file holds: the primary never ships a hole past the
    // end of the database (the lock page is the one page that is never stored). Checking this
    // before each write keeps a hostile page number or Commit from making us allocate
    // checksums for, or sparse-extend the file to, billions of pages, and keeps every page's
    // checksum known.
    let lock = PageNo::lock_page(h.page_size);
    let mut end = state.checksums.page_count();
    while let Some(page) = reader.next_page()? {
        if !extends(end, page.pgno, lock) {
            return Err(LtxError::HolePastEnd { pgno: page.pgno, pages: end });
        }
        end = end.max(page.pgno.0);
        store.write_page(page.pgno, page.data)?;
        state.checksums.set(page.pgno, page_checksum(page.pgno, page.data));
    }
    let (trailer, _) = reader.finish()?;
    if h.commit > end {
        return Err(LtxError::CommitPastPages { commit: h.commit, pages: end });
    }
    store.truncate(h.commit, h.page_size)?;
    state.checksums.truncate(h.commit);
    let actual = state.checksums.checksum();
    if actual != trailer.post_apply_checksum {
        return Err(LtxError::PostApplyMismatch { expected: trailer.post_apply_checksum, actual });
    }
    store.sync()?;
    state.pos = Pos { txid: h.max_txid, checksum: trailer.post_apply_checksum };
    state.page_size = if h.is_deletion() { 0 } else { h.page_size };
    Ok(state.pos)
}
