//! The 100-byte SQLite database header (fileformat2 §1.3).

/// The header fields the mount relies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbHeader {
    /// Page size in bytes (the on-disk value 1 means 65536).
    pub page_size: u32,
    /// Offset 18: 1 = legacy (rollback journal), 2 = WAL.
    pub write_version: u8,
    /// Offset 19: 1 = legacy, 2 = WAL.
    pub read_version: u8,
    /// Offset 24: file change counter.
    pub change_counter: u32,
    /// Offset 28: database size in pages; only valid when `version_valid_for` equals
    /// `change_counter` (offset 92).
    pub page_count: u32,
    /// Offset 92.
    pub version_valid_for: u32,
}

/// How the database is journaled, from header bytes 18/19.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalMode {
    Rollback,
    Wal,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DbHeaderError {
    #[error("short header: {0} bytes")]
    Short(usize),
    #[error("not a SQLite database (bad magic)")]
    BadMagic,
    #[error("invalid page size {0}")]
    BadPageSize(u32),
}

/// The first 16 bytes of every database file.
pub const HEADER_MAGIC: &[u8; 16] = b"SQLite format 3\0";
const MAGIC: &[u8; 16] = HEADER_MAGIC;

impl DbHeader {
    /// Parses the first 100 bytes of a database file.
    pub fn parse(b: &[u8]) -> Result<DbHeader, DbHeaderError> {
        if b.len() < 100 {
            return Err(DbHeaderError::Short(b.len()));
        }
        if &b[..16] != MAGIC {
            return Err(DbHeaderError::BadMagic);
        }
        let raw = u32::from(u16::from_be_bytes([b[16], b[17]]));
        let page_size = if raw == 1 { 65536 } else { raw };
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(DbHeaderError::BadPageSize(raw));
        }
        let be32 = |o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        Ok(DbHeader {
            page_size,
            write_version: b[18],
            read_version: b[19],
            change_counter: be32(24),
            page_count: be32(28),
            version_valid_for: be32(92),
        })
    }

    /// WAL when both version bytes say 2, rollback otherwise.
    pub fn journal_mode(&self) -> JournalMode {
        if self.write_version == 2 && self.read_version == 2 {
            JournalMode::Wal
        } else {
            JournalMode::Rollback
        }
    }

    /// The page count, if the header's in-header size is valid (SQLite ≥ 3.7.0 keeps it so).
    pub fn valid_page_count(&self) -> Option<u32> {
        (self.version_valid_for == self.change_counter && self.page_count > 0)
            .then_some(self.page_count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(page_size_raw: u16, wv: u8, count: u32, valid: bool) -> Vec<u8> {
        let mut b = vec![0u8; 100];
        b[..16].copy_from_slice(MAGIC);
        b[16..18].copy_from_slice(&page_size_raw.to_be_bytes());
        b[18] = wv;
        b[19] = wv;
        b[24..28].copy_from_slice(&7u32.to_be_bytes());
        b[28..32].copy_from_slice(&count.to_be_bytes());
        b[92..96].copy_from_slice(&(if valid { 7u32 } else { 6 }).to_be_bytes());
        b
    }

    #[test]
    fn parses_fields() {
        let h = DbHeader::parse(&header(4096, 2, 12, true)).unwrap();
        assert_eq!(h.page_size, 4096);
        assert_eq!(h.journal_mode(), JournalMode::Wal);
        assert_eq!(h.valid_page_count(), Some(12));
        let h = DbHeader::parse(&header(1, 1, 12, false)).unwrap();
        assert_eq!(h.page_size, 65536);
        assert_eq!(h.journal_mode(), JournalMode::Rollback);
        assert_eq!(h.valid_page_count(), None);
    }

    #[test]
    fn rejects_bad_headers() {
        assert_eq!(DbHeader::parse(&[0; 50]), Err(DbHeaderError::Short(50)));
        assert_eq!(DbHeader::parse(&[0; 100]), Err(DbHeaderError::BadMagic));
        assert_eq!(
            DbHeader::parse(&header(1000, 1, 1, true)),
            Err(DbHeaderError::BadPageSize(1000))
        );
        assert_eq!(DbHeader::parse(&header(256, 1, 1, true)), Err(DbHeaderError::BadPageSize(256)));
    }

    #[test]
    fn parses_a_litefs_vector_database() {
        let b = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/vectors/litefs-0.5.14/wal.db/expected.db"
        ))
        .unwrap();
        let h = DbHeader::parse(&b).unwrap();
        assert_eq!(h.page_size, 4096);
        assert_eq!(h.valid_page_count(), Some((b.len() / 4096) as u32));
    }
}
