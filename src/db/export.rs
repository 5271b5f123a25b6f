//! A consistent copy of the database as a plain SQLite file (`GET /export`): the image at
//! one position, spooled to a local file so that a slow client never holds a lock.
//!
//! Who waits: on the primary, writes to this database wait while the image is copied to
//! the spool file under the commit lock (a local copy, measured as [`Exported::locked`];
//! readers do not wait); on a replica, applies wait while the actor copies its database
//! file. The copy is then checked against the position's checksum after the lock is
//! released, so a wrong image is never served.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use super::actor::DbMsg;
use super::pages::{read_logical_page, scan_db};
use super::{Db, DbError};
use crate::core::types::{PageNo, Pos};

/// What [`Db::export`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exported {
    pub pos: Pos,
    pub page_size: u32,
    /// Pages written (the file is `page_size * commit` bytes).
    pub commit: u32,
    /// How long writes (primary) or applies (replica) waited for the copy.
    pub locked: Duration,
}

impl Exported {
    pub fn len(&self) -> u64 {
        u64::from(self.page_size) * u64::from(self.commit)
    }

    pub fn is_empty(&self) -> bool {
        self.commit == 0
    }
}

impl Db {
    /// Writes the database at its current position to `out` (from offset 0; the file at
    /// `path`, empty) and checks it against the position's checksum. Blocking. `NotFound`
    /// when the database has no content (never written, or deleted).
    pub fn export(&self, out: &File, path: &Path) -> Result<Exported, DbError> {
        let e = if self.node.writable() {
            self.export_primary(out)?
        } else {
            let out = out.try_clone()?;
            self.call(|reply| DbMsg::Export { out, reply })?
        };
        let actual = scan_db(out, path, e.page_size)?.checksum();
        if actual != e.pos.checksum {
            return Err(DbError::Recovery {
                name: self.name.clone(),
                reason: format!("export reads checksum {actual} but the position is {}", e.pos),
            });
        }
        Ok(e)
    }

    fn export_primary(&self, out: &File) -> Result<Exported, DbError> {
        let inner = self.lock_at_position()?;
        let t0 = crate::clock::now();
        self.barrier(false)?;
        let pos = self.pos();
        let (ps, commit) = (inner.page_size, inner.page_count);
        if ps == 0 || pos.txid.0 == 0 || inner.deleted || !self.exists() {
            return Err(DbError::NotFound("database"));
        }
        let mut w = BufWriter::with_capacity(1 << 20, out);
        let mut buf = vec![0u8; ps as usize];
        let lock = PageNo::lock_page(ps);
        for p in 1..=commit {
            let pgno = PageNo(p);
            if pgno == lock {
                // Never used by SQLite: zeros, so that offsets stay page-aligned.
                buf.fill(0);
            } else {
                read_logical_page(self, &inner, pgno, &mut buf)?;
            }
            w.write_all(&buf)?;
        }
        w.flush()?;
        drop(w);
        let locked = t0.elapsed();
        drop(inner);
        Ok(Exported { pos, page_size: ps, commit, locked })
    }
}

/// Copies `len` bytes of `from` to `to`, both from offset 0 (a replica's database file is
/// the whole database: it never has WAL frames).
pub(super) fn copy_prefix(from: &File, to: &File, len: u64) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < len {
        let n = buf.len().min((len - off) as usize);
        from.read_exact_at(&mut buf[..n], off)?;
        to.write_all_at(&buf[..n], off)?;
        off += n as u64;
    }
    Ok(())
}
