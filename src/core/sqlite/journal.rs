//! The rollback journal header (fileformat2 §4.1).

/// Size of the fields we read at the start of a journal.
pub const JOURNAL_HEADER_SIZE: usize = 28;
/// A valid, "hot" journal starts with these bytes. PERSIST mode commits by zeroing them.
pub const JOURNAL_MAGIC: [u8; 8] = [0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7];

/// The journal header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalHeader {
    /// Number of page records, or -1 (0xffffffff) meaning "compute from the file size".
    pub record_count: u32,
    pub nonce: u32,
    /// Database size in pages before the transaction began.
    pub initial_pages: u32,
    pub sector_size: u32,
    pub page_size: u32,
}

impl JournalHeader {
    /// Parses a journal's first bytes; `None` if the magic is absent (a committed or cleared
    /// journal) or the bytes are too short.
    pub fn parse(b: &[u8]) -> Option<JournalHeader> {
        if b.len() < JOURNAL_HEADER_SIZE || b[..8] != JOURNAL_MAGIC {
            return None;
        }
        let be32 = |o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        Some(JournalHeader {
            record_count: be32(8),
            nonce: be32(12),
            initial_pages: be32(16),
            sector_size: be32(20),
            page_size: be32(24),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_hot_journals() {
        let mut b = JOURNAL_MAGIC.to_vec();
        for v in [3u32, 0xdeadbeef, 10, 512, 4096] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        let h = JournalHeader::parse(&b).unwrap();
        assert_eq!((h.record_count, h.initial_pages, h.page_size), (3, 10, 4096));
        assert_eq!(JournalHeader::parse(&b[..27]), None);
        b[..8].fill(0);
        assert_eq!(JournalHeader::parse(&b), None);
    }
}
