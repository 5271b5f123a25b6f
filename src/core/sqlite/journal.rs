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

/// Original page images recorded in a hot rollback journal, in file order, for rolling the
/// database back after a crash (fileformat2 §4.1). Reading stops at the first record whose
/// checksum fails or that is incomplete, as SQLite's own playback does.
///
/// Returns the database size before the transaction (pages) and the records.
/// A journal's pre-transaction database size (pages) and its `(pgno, original page)` records.
pub type JournalRecords<'a> = (u32, Vec<(u32, &'a [u8])>);

pub fn journal_records(j: &[u8], db_page_size: u32) -> Option<JournalRecords<'_>> {
    let first = JournalHeader::parse(j)?;
    let mut records = Vec::new();
    let mut hdr_off = 0usize;
    let mut h = first;
    loop {
        let sector = h.sector_size as usize;
        let ps = h.page_size as usize;
        if !(32..=65536).contains(&sector)
            || !sector.is_power_of_two()
            || ps != db_page_size as usize
        {
            break;
        }
        let rec_size = 4 + ps + 4;
        let mut off = hdr_off + sector;
        let n = if h.record_count == u32::MAX || h.record_count == 0 {
            j.len().saturating_sub(off) / rec_size
        } else {
            h.record_count as usize
        };
        for _ in 0..n {
            let Some(rec) = j.get(off..off + rec_size) else {
                return Some((first.initial_pages, records));
            };
            let pgno = u32::from_be_bytes([rec[0], rec[1], rec[2], rec[3]]);
            let page = &rec[4..4 + ps];
            let want = u32::from_be_bytes([rec[4 + ps], rec[5 + ps], rec[6 + ps], rec[7 + ps]]);
            let mut sum = h.nonce;
            let mut i = ps as isize - 200;
            while i > 0 {
                sum = sum.wrapping_add(u32::from(page[i as usize]));
                i -= 200;
            }
            if pgno == 0 || sum != want {
                return Some((first.initial_pages, records));
            }
            records.push((pgno, page));
            off += rec_size;
        }
        // The next segment header starts at the next sector boundary.
        let next = off.div_ceil(sector) * sector;
        match j.get(next..).and_then(JournalHeader::parse) {
            Some(nh) if n > 0 => {
                hdr_off = next;
                h = nh;
            }
            _ => break,
        }
    }
    Some((first.initial_pages, records))
}

/// The super-journal a rollback journal names, if it names one: the path SQLite wrote (as the
/// application saw it) at the end of each child journal of a multi-database transaction.
///
/// Layout (SQLite's `writeSuperJournal`), at the very end of the journal: the lock page's
/// number (4 bytes, big-endian), the name, its length (4), the sum of its bytes as C `char`s
/// (4; signed on the platforms we run on), the journal magic (8). Anything that does not
/// check out is "no super-journal", as SQLite's `readSuperJournal` reads it.
///
/// Why it matters: SQLite deletes the super-journal as the commit point of the whole
/// transaction. A child journal whose super-journal is gone belongs to a committed
/// transaction and must not be played back.
pub fn super_journal_name(j: &[u8], db_page_size: u32) -> Option<&[u8]> {
    let n = j.len();
    if n < 16 + 4 || db_page_size == 0 || j[n - 8..] != JOURNAL_MAGIC {
        return None;
    }
    let be32 = |o: usize| u32::from_be_bytes([j[o], j[o + 1], j[o + 2], j[o + 3]]);
    let len = be32(n - 16) as usize;
    let sum = be32(n - 12);
    if len == 0 || len > 4096 || n < 16 + 4 + len {
        return None;
    }
    let name_at = n - 16 - len;
    let lock_page = 0x4000_0000 / db_page_size + 1;
    if be32(name_at - 4) != lock_page {
        return None;
    }
    let name = &j[name_at..name_at + len];
    let got = name.iter().fold(0u32, |s, &b| s.wrapping_add(b as i8 as i32 as u32));
    if got != sum {
        return None;
    }
    // SQLite writes the name without its terminator; stop at a NUL all the same.
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    (end > 0).then_some(&name[..end])
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

    fn journal(nonce: u32, initial: u32, pages: &[(u32, u8)], ps: usize) -> Vec<u8> {
        let mut j = JOURNAL_MAGIC.to_vec();
        for v in [pages.len() as u32, nonce, initial, 512, ps as u32] {
            j.extend_from_slice(&v.to_be_bytes());
        }
        j.resize(512, 0);
        for &(pgno, fill) in pages {
            let page = vec![fill; ps];
            let mut sum = nonce;
            let mut i = ps as isize - 200;
            while i > 0 {
                sum = sum.wrapping_add(u32::from(page[i as usize]));
                i -= 200;
            }
            j.extend_from_slice(&pgno.to_be_bytes());
            j.extend_from_slice(&page);
            j.extend_from_slice(&sum.to_be_bytes());
        }
        j
    }

    #[test]
    fn playback_records_stop_at_a_bad_checksum() {
        let j = journal(0x1234, 3, &[(1, 0xaa), (3, 0xbb)], 1024);
        let (initial, recs) = journal_records(&j, 1024).unwrap();
        assert_eq!(initial, 3);
        assert_eq!(
            recs.iter().map(|(p, d)| (*p, d[0])).collect::<Vec<_>>(),
            vec![(1, 0xaa), (3, 0xbb)]
        );
        let mut bad = j.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert_eq!(journal_records(&bad, 1024).unwrap().1.len(), 1);
        assert_eq!(journal_records(&j, 4096).unwrap().1.len(), 0, "page size mismatch");
        assert!(journal_records(&j[..20], 1024).is_none());
    }

    #[test]
    fn super_journal_pointer_at_the_end() {
        let mut j = journal(0x1234, 3, &[(1, 0xaa)], 1024);
        assert_eq!(super_journal_name(&j, 1024), None);
        let name = b"/mnt/a.db-mj0123ABCD";
        j.extend_from_slice(&(0x4000_0000u32 / 1024 + 1).to_be_bytes());
        j.extend_from_slice(name);
        j.extend_from_slice(&(name.len() as u32).to_be_bytes());
        let sum = name.iter().fold(0u32, |s, &b| s.wrapping_add(u32::from(b)));
        j.extend_from_slice(&sum.to_be_bytes());
        j.extend_from_slice(&JOURNAL_MAGIC);
        assert_eq!(super_journal_name(&j, 1024), Some(&name[..]));
        // The records before it still play back.
        assert_eq!(journal_records(&j, 1024).unwrap().1.len(), 1);
        // Wrong page size (lock page), bad checksum, bad magic: none.
        assert_eq!(super_journal_name(&j, 4096), None);
        let n = j.len();
        let mut bad = j.clone();
        bad[n - 9] ^= 1;
        assert_eq!(super_journal_name(&bad, 1024), None);
        let mut bad = j.clone();
        bad[n - 1] ^= 1;
        assert_eq!(super_journal_name(&bad, 1024), None);
        assert_eq!(super_journal_name(&j[..10], 1024), None);
    }
}
