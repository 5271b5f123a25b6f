//! A database's backing files under `dbs/<name>/`: which kinds there are, their names, and
//! the open handles [`Db`] keeps for them.
//!
//! Plain file access only: whether a write or an unlink is a commit is decided in
//! [`super::commit`]. The handles are shared with the actor's replica applier
//! ([`super::replica::ApplyCtx`]), which swaps them when it replaces a file.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Db, DbError};

/// Which of a database's files an operation is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    Database,
    Journal,
    Wal,
    Shm,
}

impl FileKind {
    pub const ALL: [FileKind; 4] =
        [FileKind::Database, FileKind::Journal, FileKind::Wal, FileKind::Shm];

    /// Name of the backing file under `dbs/<name>/`.
    pub fn backing_name(self) -> &'static str {
        match self {
            FileKind::Database => "database",
            FileKind::Journal => "journal",
            FileKind::Wal => "wal",
            FileKind::Shm => "shm",
        }
    }

    /// Suffix of the file in the mount (`<db><suffix>`).
    pub fn suffix(self) -> &'static str {
        match self {
            FileKind::Database => "",
            FileKind::Journal => "-journal",
            FileKind::Wal => "-wal",
            FileKind::Shm => "-shm",
        }
    }

    /// Index of the kind in [`Files`].
    pub fn index(self) -> usize {
        match self {
            FileKind::Database => 0,
            FileKind::Journal => 1,
            FileKind::Wal => 2,
            FileKind::Shm => 3,
        }
    }
}

/// Open backing files, indexed by [`FileKind::index`]; `None` when the file does not exist.
pub(crate) type Files = [Option<Arc<File>>; 4];

/// Opens a backing file for reading and writing, never truncating it.
pub(super) fn open_rw(path: &Path, create: bool) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).create(create).truncate(false).open(path)
}

impl Db {
    /// Whether the database file exists (it does not after a deletion, until re-created).
    pub fn exists(&self) -> bool {
        self.file(FileKind::Database).is_some()
    }

    /// The open backing file of `kind`, if it exists.
    pub fn file(&self, kind: FileKind) -> Option<Arc<File>> {
        let files = self.files.read().unwrap_or_else(|e| e.into_inner());
        files[kind.index()].clone()
    }

    pub(super) fn set_file(&self, kind: FileKind, f: Option<Arc<File>>) {
        let mut files = self.files.write().unwrap_or_else(|e| e.into_inner());
        files[kind.index()] = f;
    }

    /// Path of the backing file of `kind` (whether or not it exists).
    pub(super) fn path(&self, kind: FileKind) -> PathBuf {
        self.dir.join(kind.backing_name())
    }

    /// Size of the backing file of `kind`.
    pub fn size(&self, kind: FileKind) -> Result<u64, DbError> {
        let f = self.file(kind).ok_or(DbError::NotFound(kind.backing_name()))?;
        Ok(f.metadata()?.len())
    }

    /// Creates the backing file of `kind` if missing.
    pub fn create(&self, kind: FileKind) -> Result<(), DbError> {
        if matches!(kind, FileKind::Database | FileKind::Journal) {
            self.check_writable()?;
        }
        let _g = self.lock();
        if self.file(kind).is_none() {
            let f = open_rw(&self.path(kind), true)?;
            self.set_file(kind, Some(Arc::new(f)));
        }
        Ok(())
    }

    /// Makes the file at `from` (a node-local `<db>-journal`, `-wal` or `-shm` made
    /// before the database existed, or a copy) this database's file of `kind`: moved, not
    /// copied, so a hot journal keeps its contents for SQLite to roll back.
    ///
    /// The database file itself is adopted only in place of an empty one (a new database:
    /// the node-local file it was created as holds no data yet, see `crate::fuse`).
    pub fn adopt(&self, kind: FileKind, from: &Path) -> Result<(), DbError> {
        self.check_writable()?;
        let _g = self.lock();
        let taken = match self.file(kind) {
            Some(f) if kind == FileKind::Database => f.metadata()?.len() > 0,
            Some(_) => true,
            None => false,
        };
        if taken {
            return Err(io::Error::from_raw_os_error(libc::EEXIST).into());
        }
        let to = self.path(kind);
        fs::rename(from, &to)?;
        let f = open_rw(&to, false)?;
        self.set_file(kind, Some(Arc::new(f)));
        tracing::info!(db = %self.name, file = kind.suffix(), "node-local file adopted by the database");
        Ok(())
    }

    /// Reads from the backing file for the application (FUSE `read`): short only at end of
    /// file, as POSIX reads are. Page reads of the commit path go through
    /// `pages::Backing` instead, where a short read is an error.
    pub fn read(&self, kind: FileKind, buf: &mut [u8], offset: u64) -> Result<usize, DbError> {
        let f = self.file(kind).ok_or(DbError::NotFound(kind.backing_name()))?;
        let mut done = 0;
        while done < buf.len() {
            match f.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(done)
    }
}
