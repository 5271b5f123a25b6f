//! LTX transaction files, byte-compatible with LiteFS v0.5 (superfly/ltx v0.3, "version 1").
//!
//! A file is a 100-byte big-endian [`Header`], a page block of `[u32 pgno][page]` entries ended
//! by a zero pgno (one LZ4 frame when flag 0x1 is set), and a 16-byte [`Trailer`] holding the
//! post-apply database checksum and the file checksum. Layout and invariants are in
//! `protocol.md` §LTX.
//!
//! - [`LtxReader`] / [`verify`]: streaming decode with full verification.
//! - [`LtxWriter`]: streaming encode.
//! - [`apply`]: write a file onto a database through [`PageStore`], checking pre- and
//!   post-apply checksums.
//! - [`compact`]: merge a contiguous run of files.
//! - [`PageChecksums`]: the rolling database checksum, maintained per page.
//!
//! Nothing here opens files or reads the clock: callers pass readers, writers, stores and
//! timestamps in.

mod apply;
mod chain;
mod checksum;
mod compact;
mod error;
mod header;
mod name;
mod reader;
mod writer;

pub use apply::{DbState, MemStore, PageStore, apply};
pub use chain::{ChainBreak, check_chain};
pub use checksum::{PageChecksums, page_checksum};
pub use compact::{compact, merged_range};
pub use error::{HeaderError, LtxError, TrailerError};
pub use header::{FLAG_COMPRESS_LZ4, HEADER_SIZE, Header, MAGIC, TRAILER_SIZE, Trailer};
pub use name::{file_name, parse_file_name};
pub use reader::{LtxReader, MIN_FILE_SIZE, Page, Summary, verify};
pub use writer::LtxWriter;

#[cfg(test)]
mod tests;
