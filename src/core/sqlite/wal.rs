//! The write-ahead log: header, frame headers and the cumulative checksum (fileformat2 §4.3).
//!
//! A WAL is a 32-byte header followed by frames of a 24-byte header plus one page. A frame is
//! valid when its salts equal the header's and its checksum equals the running checksum over
//! the WAL header's first 24 bytes and every earlier frame's first 8 header bytes and page.
//! A frame with a nonzero "commit" field ends a transaction; SQLite only considers frames up to
//! the last valid commit frame. [`WalChecksum`] carries the running state so that a commit can
//! be verified from where the previous one ended, without rereading the log.

use crate::core::types::PageNo;

pub const WAL_HEADER_SIZE: usize = 32;
pub const WAL_FRAME_HEADER_SIZE: usize = 24;
const MAGIC_LE: u32 = 0x377f_0682;
const MAGIC_BE: u32 = 0x377f_0683;
const FORMAT_VERSION: u32 = 3_007_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalError {
    #[error("short WAL header: {0} bytes")]
    Short(usize),
    #[error("bad WAL magic 0x{0:08x}")]
    BadMagic(u32),
    #[error("unsupported WAL format version {0}")]
    BadVersion(u32),
    #[error("invalid WAL page size {0}")]
    BadPageSize(u32),
    #[error("WAL header checksum mismatch")]
    HeaderChecksum,
}

/// The running WAL checksum and the word order it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalChecksum {
    pub s1: u32,
    pub s2: u32,
    /// Words are big-endian when the magic is 0x377f0683.
    pub big_endian: bool,
}

impl WalChecksum {
    /// Folds `data` (a multiple of 8 bytes) into the checksum.
    pub fn update(&mut self, data: &[u8]) {
        debug_assert!(data.len().is_multiple_of(8));
        let (mut s1, mut s2) = (self.s1, self.s2);
        for w in data.chunks_exact(8) {
            let (a, b) = if self.big_endian {
                (
                    u32::from_be_bytes([w[0], w[1], w[2], w[3]]),
                    u32::from_be_bytes([w[4], w[5], w[6], w[7]]),
                )
            } else {
                (
                    u32::from_le_bytes([w[0], w[1], w[2], w[3]]),
                    u32::from_le_bytes([w[4], w[5], w[6], w[7]]),
                )
            };
            s1 = s1.wrapping_add(a).wrapping_add(s2);
            s2 = s2.wrapping_add(b).wrapping_add(s1);
        }
        self.s1 = s1;
        self.s2 = s2;
    }
}

/// A parsed, verified WAL header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalHeader {
    pub page_size: u32,
    pub checkpoint_seq: u32,
    pub salt1: u32,
    pub salt2: u32,
    /// The checksum after the header: the seed for the first frame.
    pub checksum: WalChecksum,
}

impl WalHeader {
    pub fn parse(b: &[u8]) -> Result<WalHeader, WalError> {
        if b.len() < WAL_HEADER_SIZE {
            return Err(WalError::Short(b.len()));
        }
        let be32 = |o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let magic = be32(0);
        let big_endian = match magic {
            MAGIC_BE => true,
            MAGIC_LE => false,
            m => return Err(WalError::BadMagic(m)),
        };
        if be32(4) != FORMAT_VERSION {
            return Err(WalError::BadVersion(be32(4)));
        }
        let raw = be32(8);
        let page_size = if raw == 1 { 65536 } else { raw };
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(WalError::BadPageSize(raw));
        }
        let mut checksum = WalChecksum { s1: 0, s2: 0, big_endian };
        checksum.update(&b[..24]);
        if (checksum.s1, checksum.s2) != (be32(24), be32(28)) {
            return Err(WalError::HeaderChecksum);
        }
        Ok(WalHeader {
            page_size,
            checkpoint_seq: be32(12),
            salt1: be32(16),
            salt2: be32(20),
            checksum,
        })
    }
}

/// A frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalFrameHeader {
    pub pgno: PageNo,
    /// Database size in pages after this frame for a commit frame, 0 otherwise.
    pub commit: u32,
    pub salt1: u32,
    pub salt2: u32,
    pub checksum1: u32,
    pub checksum2: u32,
}

impl WalFrameHeader {
    /// Parses 24 bytes.
    pub fn parse(b: &[u8; WAL_FRAME_HEADER_SIZE]) -> WalFrameHeader {
        let be32 = |o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        WalFrameHeader {
            pgno: PageNo(be32(0)),
            commit: be32(4),
            salt1: be32(8),
            salt2: be32(12),
            checksum1: be32(16),
            checksum2: be32(20),
        }
    }

    /// Checks this frame against the WAL header's salts and the running checksum; on success
    /// `running` has absorbed the frame. On failure `running` is unchanged.
    pub fn verify(
        &self,
        raw_header: &[u8; WAL_FRAME_HEADER_SIZE],
        page: &[u8],
        wal: &WalHeader,
        running: &mut WalChecksum,
    ) -> bool {
        if self.pgno.0 == 0 || (self.salt1, self.salt2) != (wal.salt1, wal.salt2) {
            return false;
        }
        let mut c = *running;
        c.update(&raw_header[..8]);
        c.update(page);
        if (c.s1, c.s2) != (self.checksum1, self.checksum2) {
            return false;
        }
        *running = c;
        true
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a WAL the way SQLite does, for tests elsewhere too.
    pub(crate) fn build_wal(
        big_endian: bool,
        page_size: u32,
        salts: (u32, u32),
        frames: &[(u32, u32, u8)],
    ) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&(if big_endian { MAGIC_BE } else { MAGIC_LE }).to_be_bytes());
        b.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        b.extend_from_slice(&page_size.to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&salts.0.to_be_bytes());
        b.extend_from_slice(&salts.1.to_be_bytes());
        let mut c = WalChecksum { s1: 0, s2: 0, big_endian };
        c.update(&b[..24]);
        b.extend_from_slice(&c.s1.to_be_bytes());
        b.extend_from_slice(&c.s2.to_be_bytes());
        for &(pgno, commit, fill) in frames {
            let mut h = Vec::new();
            h.extend_from_slice(&pgno.to_be_bytes());
            h.extend_from_slice(&commit.to_be_bytes());
            h.extend_from_slice(&salts.0.to_be_bytes());
            h.extend_from_slice(&salts.1.to_be_bytes());
            let page = vec![fill; page_size as usize];
            c.update(&h[..8]);
            c.update(&page);
            h.extend_from_slice(&c.s1.to_be_bytes());
            h.extend_from_slice(&c.s2.to_be_bytes());
            b.extend_from_slice(&h);
            b.extend_from_slice(&page);
        }
        b
    }

    fn frames_valid(wal: &[u8]) -> usize {
        let h = WalHeader::parse(wal).unwrap();
        let mut c = h.checksum;
        let fs = WAL_FRAME_HEADER_SIZE + h.page_size as usize;
        let mut n = 0;
        for f in wal[WAL_HEADER_SIZE..].chunks_exact(fs) {
            let raw: &[u8; 24] = f[..24].try_into().unwrap();
            if !WalFrameHeader::parse(raw).verify(raw, &f[24..], &h, &mut c) {
                break;
            }
            n += 1;
        }
        n
    }

    #[test]
    fn both_byte_orders_verify() {
        for be in [false, true] {
            let w = build_wal(be, 512, (0x1111, 0x2222), &[(1, 0, 1), (2, 2, 2), (1, 2, 3)]);
            assert_eq!(frames_valid(&w), 3, "big endian {be}");
        }
    }

    #[test]
    fn corruption_and_stale_salts_end_the_log() {
        let mut w = build_wal(false, 512, (1, 2), &[(1, 1, 1), (1, 1, 2), (1, 1, 3)]);
        let second = WAL_HEADER_SIZE + 536 + 24 + 7;
        w[second] ^= 1;
        assert_eq!(frames_valid(&w), 1);
        let mut w = build_wal(false, 512, (1, 2), &[(1, 1, 1), (1, 1, 2)]);
        w[WAL_HEADER_SIZE + 536 + 8] ^= 1; // salt1 of frame 2
        assert_eq!(frames_valid(&w), 1);
    }

    #[test]
    fn header_errors() {
        let w = build_wal(false, 4096, (1, 2), &[]);
        assert_eq!(WalHeader::parse(&w[..10]), Err(WalError::Short(10)));
        let mut b = w.clone();
        b[0] = 0;
        assert!(matches!(WalHeader::parse(&b), Err(WalError::BadMagic(_))));
        let mut b = w.clone();
        b[31] ^= 1;
        assert_eq!(WalHeader::parse(&b), Err(WalError::HeaderChecksum));
        let mut b = w.clone();
        b[8..12].copy_from_slice(&1000u32.to_be_bytes());
        assert_eq!(WalHeader::parse(&b), Err(WalError::BadPageSize(1000)));
    }
}
