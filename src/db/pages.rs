//! Reading pages of a database's backing files for the commit path, recovery, snapshots and
//! scrubs: a short read of the WAL is an error, never made-up data.
//!
//! Invariant: every page handed on from here (into a [`super::Commit`], a checksum, a
//! snapshot) holds exactly the bytes SQLite would read:
//! - the database file: a page past its end, or the part of a last page past its end, reads
//!   as zeros, as SQLite's pager reads it (it turns a short read of the database file into
//!   zeros: `SQLITE_IOERR_SHORT_READ` is not an error there). In WAL mode the file lags the
//!   database; a backup that changes the page size truncates the file to the new size before
//!   the commit that records it reads the old page size's last page (SQLite's
//!   `backup4.test` 3.3 failed with "disk I/O error" when that read was an error);
//! - a WAL frame the tracker indexed that is no longer whole is
//!   [`io::ErrorKind::UnexpectedEof`] naming the file and offset: SQLite never reads a
//!   partial frame, and zero-filling one would record bytes no reader ever saw.
//!
//! The FUSE `read` of the application is not here ([`Db::read`]): short reads at the end of
//! a file are POSIX behaviour there.

use std::fs::File;
use std::io;
use std::path::Path;

use super::{Db, FileKind, Inner};
use crate::core::commit::ReadAt;
use crate::core::ltx::{PageChecksums, page_checksum};
use crate::core::sqlite::DbHeader;
use crate::core::types::PageNo;

/// A backing file with its path, which read errors name.
#[derive(Clone, Copy)]
pub(super) struct Backing<'a> {
    file: &'a dyn ReadAt,
    path: &'a Path,
}

impl<'a> Backing<'a> {
    pub(super) fn new(file: &'a dyn ReadAt, path: &'a Path) -> Backing<'a> {
        Backing { file, path }
    }

    /// Reads as much of `buf` as the file holds at `offset`; returns the bytes read.
    fn read_upto(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            let n = self.file.pread(&mut buf[done..], offset + done as u64)?;
            if n == 0 {
                break;
            }
            done += n;
        }
        Ok(done)
    }

    fn short(&self, offset: u64, got: usize, want: usize) -> io::Error {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "{}: short read at offset {offset}: {got} of {want} bytes before the end of \
                 the file",
                self.path.display()
            ),
        )
    }

    /// Reads exactly `buf.len()` bytes at `offset` (a WAL frame's page): anything less is an
    /// `UnexpectedEof` error.
    pub(super) fn read_exact(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let got = self.read_upto(buf, offset)?;
        if got < buf.len() {
            return Err(self.short(offset, got, buf.len()));
        }
        Ok(())
    }

    /// Reads database page `pgno` (`buf.len()` is the page size) as SQLite reads it: what
    /// lies past the end of the file reads as zeros.
    pub(super) fn read_page(&self, pgno: PageNo, buf: &mut [u8]) -> io::Result<()> {
        // invariant: buffers are one page, and SQLite pages are at most 65536 bytes.
        let off = pgno.offset(buf.len() as u32);
        let n = self.read_upto(buf, off)?;
        buf[n..].fill(0);
        Ok(())
    }
}

/// The database header, if the file has one (a file shorter than the header has none).
pub(super) fn read_header(f: &File) -> io::Result<Option<DbHeader>> {
    let mut b = [0u8; 100];
    if !f.pread_exact(&mut b, 0)? {
        return Ok(None);
    }
    Ok(DbHeader::parse(&b).ok())
}

/// Pages in the database file: the header's count when valid, else the file size.
pub(super) fn db_page_count(f: &File, page_size: u32) -> io::Result<u32> {
    let len = f.metadata()?.len();
    if let Some(h) = read_header(f)?
        && let Some(n) = h.valid_page_count()
    {
        // A file shorter than its header says (truncated outside SQLite, as corruption
        // tests do) is recorded as it is: SQLite reads it as corrupt, on every node alike.
        // A last page the file ends inside counts, zero-filled as SQLite reads it.
        let in_file = len.div_ceil(u64::from(page_size)).max(1) as u32;
        return Ok(n.min(in_file));
    }
    Ok((len / u64::from(page_size)) as u32)
}

/// Page checksums of the database file (at `path`) as it is on disk: its whole pages (a
/// partial page at the end is not one).
pub(super) fn scan_db(f: &File, path: &Path, ps: u32) -> io::Result<PageChecksums> {
    let pages = (f.metadata()?.len() / u64::from(ps)) as u32;
    let file = Backing::new(f, path);
    let mut c = PageChecksums::new();
    let lock = PageNo::lock_page(ps);
    let mut buf = vec![0u8; ps as usize];
    for p in 1..=pages {
        let pgno = PageNo(p);
        if pgno == lock {
            continue;
        }
        file.read_page(pgno, &mut buf)?;
        c.set(pgno, page_checksum(pgno, &buf));
    }
    c.truncate(pages);
    Ok(c)
}

/// Page `pgno` as SQLite reads it: the newest committed WAL copy, else the database file
/// (zeros past its end, or when there is none).
pub(super) fn read_logical_page(
    db: &Db,
    inner: &Inner,
    pgno: PageNo,
    buf: &mut [u8],
) -> io::Result<()> {
    if let (Some(off), Some(w)) = (inner.wal.page_offset(pgno), db.file(FileKind::Wal)) {
        return Backing::new(&*w, &db.path(FileKind::Wal)).read_exact(buf, off);
    }
    match db.file(FileKind::Database) {
        Some(f) => Backing::new(&*f, &db.path(FileKind::Database)).read_page(pgno, buf),
        None => {
            buf.fill(0);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PS: usize = 512;

    #[test]
    fn a_page_the_file_ends_inside_reads_zero_filled_as_sqlite_reads_it() {
        // One and a half pages: page 2 is cut after 256 bytes.
        let file: Vec<u8> = [vec![0x11; PS], vec![0x22; PS / 2]].concat();
        let path = Path::new("dbs/t/database");
        let mut buf = vec![0xee; PS];
        Backing::new(&file, path).read_page(PageNo(2), &mut buf).unwrap();
        assert_eq!(buf, [vec![0x22; PS / 2], vec![0; PS / 2]].concat());
    }

    #[test]
    fn a_page_wholly_past_the_end_reads_as_zeros() {
        let file = vec![0x11u8; PS];
        let b = Backing::new(&file, Path::new("database"));
        let mut buf = vec![0xee; PS];
        b.read_page(PageNo(1), &mut buf).unwrap();
        assert_eq!(buf, vec![0x11; PS]);
        b.read_page(PageNo(3), &mut buf).unwrap();
        assert_eq!(buf, vec![0; PS], "as SQLite reads a page past the end of the file");
    }

    #[test]
    fn a_wal_frame_cut_short_is_an_error() {
        let wal = vec![0x33u8; 32 + 24 + PS - 1];
        let mut buf = vec![0xee; PS];
        let e = Backing::new(&wal, Path::new("dbs/t/wal")).read_exact(&mut buf, 56).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(e.to_string().contains("dbs/t/wal: short read at offset 56"), "{e}");
        // Nothing at all there is short too: a WAL page is never "past the end".
        let e = Backing::new(&wal, Path::new("wal")).read_exact(&mut buf, 4096).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }
}
