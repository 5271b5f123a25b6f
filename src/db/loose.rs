//! Writes to the database file outside any SQLite transaction (a tool patching bytes, `dd`,
//! a truncation): no journal is active and no WAL frame holds the pages, so no commit would
//! ever be seen. They are collected and recorded as one transaction of their own at the next
//! commit point: the file's fsync or last close, the start of a SQLite transaction, or a
//! snapshot.
//!
//! Crash safety: [`LOOSE_FILE`] is made durable before the first such page can be, and
//! removed only once the writes are a durable LTX file; startup recovery finding it records
//! the database as it is (see `super::recover`).

use std::fs::{self, File};
use std::io;

use super::pages::read_header;
use super::{Db, DbError, FileKind, Inner};

/// Marker under `dbs/<name>/` while writes outside a SQLite transaction are pending: made
/// durable before the first such write, removed once they are a durable LTX file. Startup
/// recovery finding it records the database as it is as the next transaction (a crash cut
/// the writes off); without it a database that differs from its LTX files is corruption.
pub const LOOSE_FILE: &str = "loose";

impl Db {
    /// Starts (once) a batch of writes outside a transaction: the marker is made durable
    /// before the first page of it can be.
    pub(super) fn begin_loose(&self, inner: &mut Inner) -> Result<(), DbError> {
        if inner.loose {
            return Ok(());
        }
        let path = self.dir.join(LOOSE_FILE);
        File::create(&path)?.sync_all()?;
        File::open(&self.dir)?.sync_all()?;
        inner.loose = true;
        tracing::warn!(db = %self.name,
            "database written outside a SQLite transaction (no journal, no WAL frame): the \
             writes become one replicated transaction when the file is synced or closed");
        Ok(())
    }

    /// Records pending writes outside a transaction as one durable transaction; returns
    /// whether there were any.
    pub(super) fn end_loose(&self, inner: &mut Inner) -> Result<bool, DbError> {
        if !inner.loose {
            return Ok(false);
        }
        if let Some(db) = self.file(FileKind::Database)
            && let Some(h) = read_header(&db)?
        {
            inner.mode = h.journal_mode();
            if inner.page_size == 0 {
                inner.page_size = h.page_size;
            }
        }
        self.commit_rollback(inner)?;
        match fs::remove_file(self.dir.join(LOOSE_FILE)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        inner.loose = false;
        tracing::info!(db = %self.name, pos = %self.pos(),
            "writes outside a SQLite transaction recorded as a transaction");
        Ok(true)
    }
}
