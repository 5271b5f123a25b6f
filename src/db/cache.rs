//! The checksum cache: lets a restart after a clean shutdown skip the full scan of the
//! database file and the full verification of the newest LTX file.
//!
//! Written at clean shutdown to `dbs/<name>/checksums` only when the database file alone is
//! the state at the position (no WAL frames, no journal), read and deleted at the next
//! startup. It is trusted only if everything it describes is unchanged: the database file's
//! size, mtime and ctime (nanoseconds) and inode, and the newest LTX file's name and size.
//! Anything else, or a crash (no file), falls back to the full scan.
//!
//! Why ctime: `touch -d` or `utimensat` can put an mtime back after a write, but every change
//! to a file (its data or its times) sets ctime to the current time, and nothing can set it
//! back without changing the clock. A page flipped behind litefleet's back with the mtime
//! restored still changes ctime.
//!
//! Layout, big-endian: `LFCS` | version u32 = 2 | txid u64 | checksum u64 | page size u32 |
//! db len u64 | db mtime s i64 | db mtime ns u32 | db ctime s i64 | db ctime ns u32 | db inode
//! u64 | ltx min u64 | ltx max u64 | ltx len u64 | n u32 | n × page checksum u64 |
//! CRC-64/GO-ISO of everything before, u64. Version 1 files (no ctime) are not trusted.

use crate::core::ltx::PageChecksums;
use crate::core::types::{Checksum, Pos, Txid};

/// File name under `dbs/<name>/`.
pub const CACHE_FILE: &str = "checksums";

const MAGIC: &[u8; 4] = b"LFCS";
const VERSION: u32 = 2;
const FIXED: usize = 4 + 4 + 8 + 8 + 4 + 8 + 8 + 4 + 8 + 4 + 8 + 8 + 8 + 8 + 4;

/// What the cache claims; [`Cache::checksums`] is only valid if the rest matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    pub pos: Pos,
    pub page_size: u32,
    pub db_len: u64,
    pub db_mtime: (i64, u32),
    pub db_ctime: (i64, u32),
    pub db_ino: u64,
    /// Newest LTX file: min, max TXID and length.
    pub ltx: (Txid, Txid, u64),
    pub checksums: PageChecksums,
}

fn crc(b: &[u8]) -> u64 {
    crc::Crc::<u64>::new(&crc::CRC_64_GO_ISO).checksum(b)
}

impl Cache {
    /// Whether `meta` (of the database file) is exactly the file this cache describes.
    pub fn describes(&self, meta: &std::fs::Metadata) -> bool {
        use std::os::unix::fs::MetadataExt;
        meta.len() == self.db_len
            && (meta.mtime(), meta.mtime_nsec() as u32) == self.db_mtime
            && (meta.ctime(), meta.ctime_nsec() as u32) == self.db_ctime
            && meta.ino() == self.db_ino
    }

    pub fn encode(&self) -> Vec<u8> {
        let raw = self.checksums.raw();
        let mut b = Vec::with_capacity(FIXED + raw.len() * 8 + 8);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&VERSION.to_be_bytes());
        b.extend_from_slice(&self.pos.txid.0.to_be_bytes());
        b.extend_from_slice(&self.pos.checksum.0.to_be_bytes());
        b.extend_from_slice(&self.page_size.to_be_bytes());
        b.extend_from_slice(&self.db_len.to_be_bytes());
        b.extend_from_slice(&self.db_mtime.0.to_be_bytes());
        b.extend_from_slice(&self.db_mtime.1.to_be_bytes());
        b.extend_from_slice(&self.db_ctime.0.to_be_bytes());
        b.extend_from_slice(&self.db_ctime.1.to_be_bytes());
        b.extend_from_slice(&self.db_ino.to_be_bytes());
        b.extend_from_slice(&self.ltx.0.0.to_be_bytes());
        b.extend_from_slice(&self.ltx.1.0.to_be_bytes());
        b.extend_from_slice(&self.ltx.2.to_be_bytes());
        b.extend_from_slice(&(raw.len() as u32).to_be_bytes());
        for c in raw {
            b.extend_from_slice(&c.to_be_bytes());
        }
        let sum = crc(&b);
        b.extend_from_slice(&sum.to_be_bytes());
        b
    }

    /// Decodes a cache file; `None` for anything malformed (the caller then scans).
    pub fn decode(b: &[u8]) -> Option<Cache> {
        if b.len() < FIXED + 8 || &b[..4] != MAGIC {
            return None;
        }
        let (body, tail) = b.split_at(b.len() - 8);
        if crc(body) != u64::from_be_bytes(tail.try_into().ok()?) {
            return None;
        }
        let mut at = 4;
        let mut take = |n: usize| {
            let s = &body[at..at + n];
            at += n;
            s
        };
        let u32_ = |s: &[u8]| u32::from_be_bytes(s.try_into().unwrap_or_default());
        let u64_ = |s: &[u8]| u64::from_be_bytes(s.try_into().unwrap_or_default());
        if u32_(take(4)) != VERSION {
            return None;
        }
        let txid = Txid(u64_(take(8)));
        let checksum = Checksum(u64_(take(8)));
        let page_size = u32_(take(4));
        let db_len = u64_(take(8));
        let mtime_s = u64_(take(8)) as i64;
        let mtime_ns = u32_(take(4));
        let ctime_s = u64_(take(8)) as i64;
        let ctime_ns = u32_(take(4));
        let db_ino = u64_(take(8));
        let ltx = (Txid(u64_(take(8))), Txid(u64_(take(8))), u64_(take(8)));
        let n = u32_(take(4)) as usize;
        if body.len() != FIXED + n * 8 {
            return None;
        }
        let raw = body[FIXED..].chunks_exact(8).map(u64_).collect();
        Some(Cache {
            pos: Pos { txid, checksum },
            page_size,
            db_len,
            db_mtime: (mtime_s, mtime_ns),
            db_ctime: (ctime_s, ctime_ns),
            db_ino,
            ltx,
            checksums: PageChecksums::from_raw(raw),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ltx::page_checksum;
    use crate::core::types::PageNo;

    #[test]
    fn roundtrip_and_rejects_damage() {
        let mut sums = PageChecksums::new();
        for p in 1..=5 {
            sums.set(PageNo(p), page_checksum(PageNo(p), &[p as u8; 512]));
        }
        let c = Cache {
            pos: Pos { txid: Txid(9), checksum: sums.checksum() },
            page_size: 512,
            db_len: 2560,
            db_mtime: (1_700_000_000, 123),
            db_ctime: (1_700_000_001, 456),
            db_ino: 77,
            ltx: (Txid(9), Txid(9), 4242),
            checksums: sums,
        };
        let b = c.encode();
        assert_eq!(Cache::decode(&b), Some(c));
        for i in [0, 5, 30, b.len() - 1] {
            let mut d = b.clone();
            d[i] ^= 1;
            assert_eq!(Cache::decode(&d), None, "byte {i}");
        }
        assert_eq!(Cache::decode(&b[..b.len() - 9]), None);
        assert_eq!(Cache::decode(&[]), None);
    }
}
