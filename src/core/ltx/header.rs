//! The 100-byte LTX header and 16-byte trailer: layout, parsing and invariants.
//!
//! All integers are big-endian. The layout is LiteFS v0.5's (superfly/ltx v0.3 "version 1"),
//! documented byte by byte in `protocol.md` §LTX. Parsing never fails on field values;
//! [`Header::validate`] checks the invariants so that callers can report both the raw values and
//! what is wrong with them.

use bytes::{Buf, BufMut};

use super::error::{HeaderError, TrailerError};
use crate::core::types::{Checksum, NodeId, Pos, Txid};

/// Size of the encoded header.
pub const HEADER_SIZE: usize = 100;
/// Size of the encoded trailer.
pub const TRAILER_SIZE: usize = 16;
/// The magic at offset 0.
pub const MAGIC: [u8; 4] = *b"LTX1";
/// Header flag: everything between header and trailer is one LZ4 frame.
pub const FLAG_COMPRESS_LZ4: u32 = 0x0000_0001;

/// An LTX header. Field order and meaning follow the on-disk layout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// Offset 4. Only [`FLAG_COMPRESS_LZ4`] is defined.
    pub flags: u32,
    /// Offset 8. Power of two in 512..=65536.
    pub page_size: u32,
    /// Offset 12. Database size in pages after apply; 0 means the database is deleted.
    pub commit: u32,
    /// Offset 16. First transaction in the file; 1 means snapshot.
    pub min_txid: Txid,
    /// Offset 24. Last transaction in the file.
    pub max_txid: Txid,
    /// Offset 32. Milliseconds since the Unix epoch on the originating node.
    pub timestamp: i64,
    /// Offset 40. Database checksum before apply; 0 for snapshots.
    pub pre_apply_checksum: Checksum,
    /// Offset 48. WAL offset of the transaction's first frame, 0 for rollback journals.
    pub wal_offset: i64,
    /// Offset 56. Bytes of WAL frames in the transaction.
    pub wal_size: i64,
    /// Offset 64.
    pub wal_salt1: u32,
    /// Offset 68.
    pub wal_salt2: u32,
    /// Offset 72. Node that created the file; 0 if unknown.
    pub node_id: NodeId,
}

impl Header {
    /// Whether the file holds every page (MinTXID 1).
    pub fn is_snapshot(&self) -> bool {
        self.min_txid == Txid(1)
    }

    /// Whether the file deletes the database (Commit 0).
    pub fn is_deletion(&self) -> bool {
        self.commit == 0
    }

    /// Whether the page block is one LZ4 frame.
    pub fn is_compressed(&self) -> bool {
        self.flags & FLAG_COMPRESS_LZ4 != 0
    }

    /// The position a database must be at for this file to apply (ignored for snapshots).
    pub fn pre_apply_pos(&self) -> Pos {
        Pos { txid: Txid(self.min_txid.0.saturating_sub(1)), checksum: self.pre_apply_checksum }
    }

    /// Checks every header invariant of LTX v1.
    pub fn validate(&self) -> Result<(), HeaderError> {
        if self.flags & !FLAG_COMPRESS_LZ4 != 0 {
            return Err(HeaderError::InvalidFlags(self.flags));
        }
        if !(512..=65536).contains(&self.page_size) || !self.page_size.is_power_of_two() {
            return Err(HeaderError::InvalidPageSize(self.page_size));
        }
        if self.min_txid == Txid::ZERO {
            return Err(HeaderError::ZeroMinTxid);
        }
        if self.min_txid > self.max_txid {
            return Err(HeaderError::TxidsOutOfOrder { min: self.min_txid, max: self.max_txid });
        }
        if self.wal_offset < 0 {
            return Err(HeaderError::NegativeWalOffset(self.wal_offset));
        }
        if self.wal_size < 0 {
            return Err(HeaderError::NegativeWalSize(self.wal_size));
        }
        if (self.wal_salt1 != 0 || self.wal_salt2 != 0)
            && (self.wal_offset == 0 || self.wal_size == 0)
        {
            return Err(HeaderError::WalSaltWithoutFrames);
        }
        if (self.wal_offset == 0) != (self.wal_size == 0) {
            return Err(HeaderError::WalOffsetSizeMismatch {
                offset: self.wal_offset,
                size: self.wal_size,
            });
        }
        if self.is_snapshot() {
            if self.pre_apply_checksum.0 != 0 {
                return Err(HeaderError::SnapshotWithPreApply(self.pre_apply_checksum));
            }
        } else if self.pre_apply_checksum.0 == 0 {
            return Err(HeaderError::MissingPreApply);
        } else if !self.pre_apply_checksum.is_flagged() {
            return Err(HeaderError::UnflaggedPreApply(self.pre_apply_checksum));
        }
        Ok(())
    }

    /// Parses the 100 header bytes. Only the magic and the reserved bytes are checked here;
    /// call [`Header::validate`] for the rest.
    pub fn decode(bytes: &[u8; HEADER_SIZE]) -> Result<Header, HeaderError> {
        let mut b = &bytes[..];
        let mut magic = [0u8; 4];
        b.copy_to_slice(&mut magic);
        if magic != MAGIC {
            return Err(HeaderError::BadMagic(magic));
        }
        let h = Header {
            flags: b.get_u32(),
            page_size: b.get_u32(),
            commit: b.get_u32(),
            min_txid: Txid(b.get_u64()),
            max_txid: Txid(b.get_u64()),
            timestamp: b.get_i64(),
            pre_apply_checksum: Checksum(b.get_u64()),
            wal_offset: b.get_i64(),
            wal_size: b.get_i64(),
            wal_salt1: b.get_u32(),
            wal_salt2: b.get_u32(),
            node_id: NodeId(b.get_u64()),
        };
        // b now holds the 20 reserved bytes.
        if b.iter().any(|&x| x != 0) {
            return Err(HeaderError::ReservedNotZero);
        }
        Ok(h)
    }

    /// Encodes the header into its 100 bytes.
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut out = [0u8; HEADER_SIZE];
        let mut b = &mut out[..];
        b.put_slice(&MAGIC);
        b.put_u32(self.flags);
        b.put_u32(self.page_size);
        b.put_u32(self.commit);
        b.put_u64(self.min_txid.0);
        b.put_u64(self.max_txid.0);
        b.put_i64(self.timestamp);
        b.put_u64(self.pre_apply_checksum.0);
        b.put_i64(self.wal_offset);
        b.put_i64(self.wal_size);
        b.put_u32(self.wal_salt1);
        b.put_u32(self.wal_salt2);
        b.put_u64(self.node_id.0);
        out
    }
}

/// The 16-byte trailer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trailer {
    /// Database checksum after applying the file.
    pub post_apply_checksum: Checksum,
    /// Checksum of the file's logical content (see [`super::checksum`]).
    pub file_checksum: Checksum,
}

impl Trailer {
    pub fn decode(bytes: &[u8; TRAILER_SIZE]) -> Trailer {
        let mut b = &bytes[..];
        Trailer { post_apply_checksum: Checksum(b.get_u64()), file_checksum: Checksum(b.get_u64()) }
    }

    pub fn encode(&self) -> [u8; TRAILER_SIZE] {
        let mut out = [0u8; TRAILER_SIZE];
        out[..8].copy_from_slice(&self.post_apply_checksum.0.to_be_bytes());
        out[8..].copy_from_slice(&self.file_checksum.0.to_be_bytes());
        out
    }

    pub fn validate(&self) -> Result<(), TrailerError> {
        if !self.post_apply_checksum.is_flagged() {
            return Err(TrailerError::BadPostApply(self.post_apply_checksum));
        }
        if !self.file_checksum.is_flagged() {
            return Err(TrailerError::BadFileChecksum(self.file_checksum));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Header {
        Header {
            flags: FLAG_COMPRESS_LZ4,
            page_size: 4096,
            commit: 7,
            min_txid: Txid(5),
            max_txid: Txid(6),
            timestamp: 0x0102_0304_0506_0708,
            pre_apply_checksum: Checksum(0x8111_2233_4455_6677),
            wal_offset: 32,
            wal_size: 4120,
            wal_salt1: 0xdead_beef,
            wal_salt2: 0xcafe_f00d,
            node_id: NodeId(0x1122_3344_5566_7788),
        }
    }

    #[test]
    fn header_fixture_round_trips() {
        let h = valid();
        let bytes = h.encode();
        #[rustfmt::skip]
        let expected: [u8; 80] = [
            b'L', b'T', b'X', b'1', 0, 0, 0, 1,                   // magic, flags
            0, 0, 0x10, 0, 0, 0, 0, 7,                            // page size, commit
            0, 0, 0, 0, 0, 0, 0, 5,                               // min txid
            0, 0, 0, 0, 0, 0, 0, 6,                               // max txid
            1, 2, 3, 4, 5, 6, 7, 8,                               // timestamp
            0x81, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,       // pre-apply
            0, 0, 0, 0, 0, 0, 0, 32,                              // wal offset
            0, 0, 0, 0, 0, 0, 0x10, 0x18,                         // wal size
            0xde, 0xad, 0xbe, 0xef, 0xca, 0xfe, 0xf0, 0x0d,       // salts
            0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,       // node id
        ];
        assert_eq!(&bytes[..80], &expected);
        assert_eq!(&bytes[80..], &[0u8; 20]);
        assert_eq!(Header::decode(&bytes), Ok(h));
        assert_eq!(h.validate(), Ok(()));
    }

    #[test]
    fn decode_rejects_magic_and_reserved() {
        let mut b = valid().encode();
        b[3] = b'2';
        assert_eq!(Header::decode(&b), Err(HeaderError::BadMagic(*b"LTX2")));
        let mut b = valid().encode();
        b[99] = 1;
        assert_eq!(Header::decode(&b), Err(HeaderError::ReservedNotZero));
    }

    #[test]
    fn each_invariant_is_checked() {
        type Mutation = Box<dyn Fn(&mut Header)>;
        let cases: Vec<(Mutation, HeaderError)> = vec![
            (Box::new(|h| h.flags = 2), HeaderError::InvalidFlags(2)),
            (Box::new(|h| h.page_size = 256), HeaderError::InvalidPageSize(256)),
            (Box::new(|h| h.page_size = 131072), HeaderError::InvalidPageSize(131072)),
            (Box::new(|h| h.page_size = 4097), HeaderError::InvalidPageSize(4097)),
            (Box::new(|h| h.min_txid = Txid(0)), HeaderError::ZeroMinTxid),
            (
                Box::new(|h| h.max_txid = Txid(4)),
                HeaderError::TxidsOutOfOrder { min: Txid(5), max: Txid(4) },
            ),
            (Box::new(|h| h.wal_offset = -1), HeaderError::NegativeWalOffset(-1)),
            (Box::new(|h| h.wal_size = -1), HeaderError::NegativeWalSize(-1)),
            (
                Box::new(|h| {
                    h.wal_offset = 0;
                    h.wal_size = 0;
                }),
                HeaderError::WalSaltWithoutFrames,
            ),
            (
                Box::new(|h| {
                    h.wal_salt1 = 0;
                    h.wal_salt2 = 0;
                    h.wal_size = 0;
                }),
                HeaderError::WalOffsetSizeMismatch { offset: 32, size: 0 },
            ),
            (
                Box::new(|h| {
                    h.wal_salt1 = 0;
                    h.wal_salt2 = 0;
                    h.wal_offset = 0;
                }),
                HeaderError::WalOffsetSizeMismatch { offset: 0, size: 4120 },
            ),
            (
                Box::new(|h| h.min_txid = Txid(1)),
                HeaderError::SnapshotWithPreApply(Checksum(0x8111_2233_4455_6677)),
            ),
            (Box::new(|h| h.pre_apply_checksum = Checksum(0)), HeaderError::MissingPreApply),
            (
                Box::new(|h| h.pre_apply_checksum = Checksum(5)),
                HeaderError::UnflaggedPreApply(Checksum(5)),
            ),
        ];
        for (i, (mutate, err)) in cases.into_iter().enumerate() {
            let mut h = valid();
            mutate(&mut h);
            assert_eq!(h.validate(), Err(err), "case {i}");
        }
        // A snapshot with no pre-apply checksum and a journal-mode file without WAL fields are fine.
        let mut h = valid();
        h.min_txid = Txid(1);
        h.pre_apply_checksum = Checksum(0);
        h.wal_offset = 0;
        h.wal_size = 0;
        h.wal_salt1 = 0;
        h.wal_salt2 = 0;
        assert_eq!(h.validate(), Ok(()));
    }

    #[test]
    fn trailer_requires_flagged_checksums() {
        let t = Trailer {
            post_apply_checksum: Checksum(0x8000_0000_0000_0001),
            file_checksum: Checksum(0x9000_0000_0000_0002),
        };
        assert_eq!(Trailer::decode(&t.encode()), t);
        assert_eq!(t.validate(), Ok(()));
        let bad = Trailer { post_apply_checksum: Checksum(1), ..t };
        assert_eq!(bad.validate(), Err(TrailerError::BadPostApply(Checksum(1))));
        let bad = Trailer { file_checksum: Checksum(0), ..t };
        assert_eq!(bad.validate(), Err(TrailerError::BadFileChecksum(Checksum(0))));
    }
}
