//! Facts about SQLite's on-disk files that the mount needs to see commits: the database
//! header, WAL header and frames (with their cumulative checksum), and the rollback journal
//! header. Parsing only; nothing here reads a file.
//!
//! References: <https://www.sqlite.org/fileformat2.html> §1.3 (database header), §4.1
//! (rollback journal), §4.3–4.4 (WAL and its checksum).

mod db;
mod journal;
mod upload;
mod wal;

pub use db::{DbHeader, DbHeaderError, HEADER_MAGIC, JournalMode};
pub use journal::{
    JOURNAL_HEADER_SIZE, JOURNAL_MAGIC, JournalHeader, journal_records, super_journal_name,
};
pub use upload::{UploadError, check_upload};
pub use wal::{
    WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE, WalChecksum, WalError, WalFrameHeader, WalHeader,
};

#[cfg(test)]
pub(crate) use wal::tests as wal_tests;
