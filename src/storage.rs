//! File-backed storage for the core's [`PageStore`] trait: a SQLite database file accessed by
//! page with positioned reads and writes.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::core::ltx::PageStore;
use crate::core::types::PageNo;

/// A database file. Reads past the end return zeros, matching [`PageStore`]'s contract.
#[derive(Debug)]
pub struct FileStore {
    file: File,
}

impl FileStore {
    /// Opens (creating if needed) the database file at `path` for reading and writing.
    pub fn open(path: &Path) -> io::Result<FileStore> {
        let file =
            File::options().read(true).write(true).create(true).truncate(false).open(path)?;
        Ok(FileStore { file })
    }

    /// Wraps an already open file.
    pub fn from_file(file: File) -> FileStore {
        FileStore { file }
    }

    /// Length of the file in bytes.
    pub fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

impl PageStore for FileStore {
    fn read_page(&mut self, pgno: PageNo, buf: &mut [u8]) -> io::Result<()> {
        let mut off = pgno.offset(buf.len() as u32);
        let mut rest = &mut buf[..];
        while !rest.is_empty() {
            match self.file.read_at(rest, off) {
                Ok(0) => break,
                Ok(n) => {
                    rest = &mut rest[n..];
                    off += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        rest.fill(0);
        Ok(())
    }

    fn write_page(&mut self, pgno: PageNo, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, pgno.offset(data.len() as u32))
    }

    fn truncate(&mut self, pages: u32, page_size: u32) -> io::Result<()> {
        self.file.set_len(u64::from(pages) * u64::from(page_size))
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_round_trip_and_short_reads_are_zero() {
        let dir = std::env::temp_dir().join(format!("litefleet-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db");
        let mut s = FileStore::open(&path).unwrap();
        s.write_page(PageNo(2), &[7; 512]).unwrap();
        let mut buf = [1u8; 512];
        s.read_page(PageNo(1), &mut buf).unwrap();
        assert_eq!(buf, [0; 512]);
        s.read_page(PageNo(2), &mut buf).unwrap();
        assert_eq!(buf, [7; 512]);
        s.read_page(PageNo(3), &mut buf).unwrap();
        assert_eq!(buf, [0; 512]);
        s.truncate(1, 512).unwrap();
        assert_eq!(s.len().unwrap(), 512);
        s.sync().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
