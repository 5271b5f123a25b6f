//! Errors of the LTX layer. Each names what was wrong and, where it applies, the byte offset
//! (in the logical, uncompressed stream) or page number at which it was found.

use crate::core::types::{Checksum, PageNo, Pos, Txid};

/// A header field that breaks one of the LTX v1 invariants (`protocol.md` §LTX, header).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    #[error("bad magic {0:02x?}, expected \"LTX1\"")]
    BadMagic([u8; 4]),
    #[error("invalid flags 0x{0:08x}: only 0x00000001 (LZ4 body) is defined")]
    InvalidFlags(u32),
    #[error("invalid page size {0}: must be a power of two in 512..=65536")]
    InvalidPageSize(u32),
    #[error("minimum TXID is zero")]
    ZeroMinTxid,
    #[error("TXIDs out of order: min {min} > max {max}")]
    TxidsOutOfOrder { min: Txid, max: Txid },
    #[error("negative WAL offset {0}")]
    NegativeWalOffset(i64),
    #[error("negative WAL size {0}")]
    NegativeWalSize(i64),
    #[error("WAL salt set without WAL offset and size")]
    WalSaltWithoutFrames,
    #[error(
        "WAL offset and WAL size must be both zero or both nonzero (offset {offset}, size {size})"
    )]
    WalOffsetSizeMismatch { offset: i64, size: i64 },
    #[error("snapshot (min TXID 1) has nonzero pre-apply checksum {0}")]
    SnapshotWithPreApply(Checksum),
    #[error("incremental file has no pre-apply checksum")]
    MissingPreApply,
    #[error("pre-apply checksum {0} lacks the 1<<63 flag")]
    UnflaggedPreApply(Checksum),
    #[error("reserved header bytes 80..100 are not zero")]
    ReservedNotZero,
}

/// A trailer that breaks the LTX v1 invariants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrailerError {
    #[error("post-apply checksum {0} is zero or lacks the 1<<63 flag")]
    BadPostApply(Checksum),
    #[error("file checksum {0} is zero or lacks the 1<<63 flag")]
    BadFileChecksum(Checksum),
}

/// Everything that can go wrong reading, writing, applying or compacting an LTX file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LtxError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("file too short: {len} bytes, an LTX file has at least 120")]
    TooShort { len: u64 },
    #[error("invalid header: {0}")]
    Header(#[from] HeaderError),
    #[error("invalid trailer: {0}")]
    Trailer(#[from] TrailerError),
    #[error("truncated page block at offset {offset}: {what}")]
    Truncated { offset: u64, what: &'static str },
    #[error("LZ4 body at offset {offset}: {reason}")]
    Lz4 { offset: u64, reason: String },
    #[error("{extra} trailing bytes after the page block terminator at offset {offset}")]
    TrailingBody { offset: u64, extra: u64 },
    #[error(
        "page {pgno} at offset {offset} is not after page {prev}: pages must strictly increase"
    )]
    PageOrder { offset: u64, pgno: PageNo, prev: PageNo },
    #[error("page {pgno} at offset {offset} is beyond commit {commit}")]
    PageBeyondCommit { offset: u64, pgno: PageNo, commit: u32 },
    #[error("page {pgno} at offset {offset} is the lock page, which is never stored")]
    LockPage { offset: u64, pgno: PageNo },
    #[error(
        "snapshot page {pgno} at offset {offset}: expected page {expected} (snapshots hold every page)"
    )]
    SnapshotGap { offset: u64, pgno: PageNo, expected: PageNo },
    #[error("snapshot ends after page {last} but commit is {commit}")]
    SnapshotIncomplete { last: PageNo, commit: u32 },
    #[error("deletion file (commit 0) holds page {pgno}")]
    PageInDeletion { pgno: PageNo },
    #[error("file checksum mismatch: trailer says {expected}, content gives {actual}")]
    FileChecksum { expected: Checksum, actual: Checksum },
    #[error("post-apply checksum mismatch: trailer says {expected}, pages give {actual}")]
    PostApplyChecksum { expected: Checksum, actual: Checksum },
    #[error("database is at {actual}, but this file applies at txid {}/{}", .min_txid.0.wrapping_sub(1), .pre_apply)]
    PositionMismatch { actual: Pos, min_txid: Txid, pre_apply: Checksum },
    #[error("database checksum before apply is {actual}, the file expects {expected}")]
    PreApplyChecksum { expected: Checksum, actual: Checksum },
    #[error("database checksum after apply is {actual}, the file promises {expected}")]
    PostApplyMismatch { expected: Checksum, actual: Checksum },
    #[error("page {pgno} would leave a hole after the database's last page {pages}")]
    HolePastEnd { pgno: PageNo, pages: u32 },
    #[error("commit {commit} grows the database past its {pages} pages without supplying them")]
    CommitPastPages { commit: u32, pages: u32 },
    #[error("writer misuse: {0}")]
    Misuse(&'static str),
    #[error("compaction: {0}")]
    Compaction(String),
}
