//! Seeing SQLite commits from the file operations of a database's files.
//!
//! The mount passes every write, truncate and unlink it performs on a database's files to
//! these trackers and asks them whether a transaction just committed, and which pages it
//! changed:
//!
//! - [`WalTracker`]: WAL mode. A transaction is committed once a frame with a nonzero
//!   "database size" field is in the log and every frame from the end of the previous
//!   transaction up to it carries the WAL header's salts and a valid running checksum —
//!   exactly SQLite's own recovery rule, so the tracker and SQLite agree on what is committed
//!   even after a crash. Checking on every write that touches a commit frame (rather than on
//!   lock release, as LiteFS does) needs no lock interception and works with
//!   `locking_mode=EXCLUSIVE`.
//! - [`RollbackTracker`]: rollback-journal modes. Pages written to the database file while
//!   the database is not in WAL mode are dirty; the transaction commits when SQLite finalises
//!   the journal: unlink (DELETE), truncate to 0 (TRUNCATE) or zeroing its header (PERSIST).
//!
//! The trackers read file bytes through [`ReadAt`], so they run on real files in the mount
//! and on byte vectors in tests. They never write.

mod rollback;
mod wal;

pub use rollback::{JournalEvent, RollbackTracker};
pub use wal::{WalTracker, WalTxn, WalWrite};

use std::io;

/// Positioned reads of a file. Short reads only at end of file.
pub trait ReadAt {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read (0 at or past
    /// the end).
    fn pread(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// Reads exactly `buf.len()` bytes, or returns `Ok(false)` if the file ends first.
    fn pread_exact(&self, buf: &mut [u8], offset: u64) -> io::Result<bool> {
        let mut done = 0;
        while done < buf.len() {
            let n = self.pread(&mut buf[done..], offset + done as u64)?;
            if n == 0 {
                return Ok(false);
            }
            done += n;
        }
        Ok(true)
    }
}

impl ReadAt for [u8] {
    fn pread(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let Ok(off) = usize::try_from(offset) else { return Ok(0) };
        if off >= self.len() {
            return Ok(0);
        }
        let n = buf.len().min(self.len() - off);
        buf[..n].copy_from_slice(&self[off..off + n]);
        Ok(n)
    }
}

impl ReadAt for Vec<u8> {
    fn pread(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.as_slice().pread(buf, offset)
    }
}

impl ReadAt for std::fs::File {
    fn pread(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, offset)
    }
}
