//! WAL-mode commit detection. See the module docs of `core::commit`.

use std::collections::HashMap;
use std::io;

use super::ReadAt;
use crate::core::sqlite::{
    WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE, WalChecksum, WalFrameHeader, WalHeader,
};
use crate::core::types::PageNo;

/// What a WAL write means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalWrite {
    /// Nothing committed yet.
    None,
    /// The write touched a frame that may complete a transaction: call [`WalTracker::scan`].
    MaybeCommit,
}

/// One committed WAL transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalTxn {
    /// Pages the transaction wrote, sorted, each with the WAL offset of its newest page data
    /// in the transaction. May include pages beyond `commit` (dropped by the caller).
    pub pages: Vec<(PageNo, u64)>,
    /// Database size in pages after the transaction.
    pub commit: u32,
    /// Offset of the transaction's first frame.
    pub offset: u64,
    /// Bytes of frames in the transaction.
    pub size: u64,
    pub salt1: u32,
    pub salt2: u32,
}

/// Tracks the WAL of one database.
///
/// Invariant: when `header` is `Some`, every frame in `[WAL_HEADER_SIZE, committed)` is valid
/// and committed, `checksum` is the running checksum after the frame ending at `committed`,
/// and `index` maps each page to the offset of its newest committed page data.
#[derive(Debug, Default, Clone)]
pub struct WalTracker {
    header: Option<WalHeader>,
    committed: u64,
    checksum: Option<WalChecksum>,
    index: HashMap<PageNo, u64>,
    /// Start of the last frame seen written with a commit header, until it is scanned.
    pending_commit: Option<u64>,
}

impl WalTracker {
    pub fn new() -> WalTracker {
        WalTracker::default()
    }

    /// End of the last committed frame (0 before a header is known).
    pub fn committed_offset(&self) -> u64 {
        self.committed
    }

    /// The current WAL header, if one has been read.
    pub fn header(&self) -> Option<&WalHeader> {
        self.header.as_ref()
    }

    /// Every page with a committed copy in the WAL, with the offset of its newest copy.
    pub fn pages(&self) -> impl Iterator<Item = (PageNo, u64)> + '_ {
        self.index.iter().map(|(p, o)| (*p, *o))
    }

    /// Offset of the newest committed copy of `pgno` in the WAL, if any.
    pub fn page_offset(&self, pgno: PageNo) -> Option<u64> {
        self.index.get(&pgno).copied()
    }

    /// Number of pages with a committed copy in the WAL.
    pub fn indexed_pages(&self) -> usize {
        self.index.len()
    }

    /// Forgets the log: it was truncated, deleted, or its header rewritten (a new
    /// generation after a checkpoint restarts it with new salts).
    pub fn reset(&mut self) {
        *self = WalTracker::default();
    }

    /// Called after SQLite wrote `data` at `offset`. Says whether a scan could find a new
    /// commit: only writes that carry a commit frame's header (nonzero database size) or the
    /// page of such a frame can, so a large transaction costs one scan, not one per frame.
    pub fn on_write(&mut self, offset: u64, data: &[u8], page_size: u32) -> WalWrite {
        let hdr = WAL_HEADER_SIZE as u64;
        if offset < hdr {
            // A header write starts a new generation of the log.
            self.reset();
            return WalWrite::None;
        }
        if offset + data.len() as u64 <= self.committed || page_size == 0 {
            return WalWrite::None;
        }
        let fs = (WAL_FRAME_HEADER_SIZE + page_size as usize) as u64;
        let start = hdr + (offset - hdr) / fs * fs;
        let within = offset - start;
        if within == 0 && data.len() >= 8 {
            let commit = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
            if commit != 0 {
                self.pending_commit = Some(start);
                return WalWrite::MaybeCommit;
            }
            if self.pending_commit == Some(start) {
                self.pending_commit = None;
            }
            return WalWrite::None;
        }
        if self.pending_commit == Some(start) {
            return WalWrite::MaybeCommit;
        }
        WalWrite::None
    }

    /// Scans forward from the last commit and returns every transaction now committed, in
    /// order. Frames after the last valid commit frame are left for a later scan (they may be
    /// a transaction still being written, or rewritten in place before its commit).
    pub fn scan<R: ReadAt + ?Sized>(&mut self, wal: &R, page_size: u32) -> io::Result<Vec<WalTxn>> {
        let mut txns = Vec::new();
        if self.header.is_none() {
            let mut hb = [0u8; WAL_HEADER_SIZE];
            if !wal.pread_exact(&mut hb, 0)? {
                return Ok(txns);
            }
            let Ok(h) = WalHeader::parse(&hb) else { return Ok(txns) };
            if h.page_size != page_size {
                return Ok(txns);
            }
            self.header = Some(h);
            self.committed = WAL_HEADER_SIZE as u64;
            self.checksum = Some(h.checksum);
        }
        let (Some(header), Some(mut running)) = (self.header, self.checksum) else {
            return Ok(txns);
        };
        let frame_size = (WAL_FRAME_HEADER_SIZE + page_size as usize) as u64;
        let mut off = self.committed;
        let mut txn_start = off;
        let mut pages: HashMap<PageNo, u64> = HashMap::new();
        let mut fb = vec![0u8; frame_size as usize];
        loop {
            if !wal.pread_exact(&mut fb, off)? {
                break;
            }
            let (hdr, page) = fb.split_at(WAL_FRAME_HEADER_SIZE);
            // invariant: split_at(24) of a frame-sized buffer gives a 24-byte head.
            let raw: &[u8; WAL_FRAME_HEADER_SIZE] = hdr.try_into().expect("24-byte frame header");
            let fh = WalFrameHeader::parse(raw);
            if !fh.verify(raw, page, &header, &mut running) {
                break;
            }
            pages.insert(fh.pgno, off + WAL_FRAME_HEADER_SIZE as u64);
            off += frame_size;
            if fh.commit != 0 {
                let mut list: Vec<(PageNo, u64)> = pages.drain().collect();
                list.sort_unstable();
                for &(p, o) in &list {
                    self.index.insert(p, o);
                }
                // Pages past the new end are gone from the database.
                self.index.retain(|p, _| p.0 <= fh.commit);
                txns.push(WalTxn {
                    pages: list,
                    commit: fh.commit,
                    offset: txn_start,
                    size: off - txn_start,
                    salt1: header.salt1,
                    salt2: header.salt2,
                });
                self.committed = off;
                self.checksum = Some(running);
                if self.pending_commit.is_some_and(|p| p < off) {
                    self.pending_commit = None;
                }
                txn_start = off;
            }
        }
        Ok(txns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::sqlite::wal_tests::build_wal;

    const PS: u32 = 512;

    #[test]
    fn finds_each_committed_transaction_once() {
        let w = build_wal(false, PS, (7, 8), &[(1, 0, 1), (2, 2, 2), (2, 0, 3), (3, 3, 4)]);
        let mut t = WalTracker::new();
        assert_eq!(t.on_write(0, &w[..32], PS), WalWrite::None);
        // Frame 1's header has commit 0: nothing to scan; frame 2's has commit 2.
        assert_eq!(t.on_write(32, &w[32..56], PS), WalWrite::None);
        assert_eq!(t.on_write(56, &w[56..568], PS), WalWrite::None);
        assert_eq!(t.on_write(568, &w[568..592], PS), WalWrite::MaybeCommit);
        assert_eq!(t.on_write(592, &w[592..1104], PS), WalWrite::MaybeCommit);
        let txns = t.scan(&w, PS).unwrap();
        assert_eq!(txns.len(), 2);
        let fs = 24 + 512u64;
        assert_eq!(txns[0].pages, vec![(PageNo(1), 32 + 24), (PageNo(2), 32 + fs + 24)]);
        assert_eq!((txns[0].commit, txns[0].offset, txns[0].size), (2, 32, 2 * fs));
        assert_eq!(
            txns[1].pages,
            vec![(PageNo(2), 32 + 2 * fs + 24), (PageNo(3), 32 + 3 * fs + 24)]
        );
        assert_eq!(t.committed_offset(), 32 + 4 * fs);
        assert_eq!(t.page_offset(PageNo(2)), Some(32 + 2 * fs + 24));
        assert!(t.scan(&w, PS).unwrap().is_empty(), "nothing new");
        assert_eq!(t.on_write(32, &w[32..56], PS), WalWrite::None, "inside the committed region");
    }

    #[test]
    fn uncommitted_and_torn_tails_wait() {
        let full = build_wal(true, PS, (1, 2), &[(1, 0, 1), (2, 2, 2)]);
        let mut t = WalTracker::new();
        // Only the first frame is there: no commit yet.
        let partial = full[..32 + 536].to_vec();
        assert!(t.scan(&partial, PS).unwrap().is_empty());
        // The commit frame's header is there, its page only half written.
        let torn = full[..full.len() - 100].to_vec();
        assert!(t.scan(&torn, PS).unwrap().is_empty());
        assert_eq!(t.scan(&full, PS).unwrap().len(), 1);
    }

    #[test]
    fn stale_frames_after_a_restart_are_not_commits() {
        // Generation 2 (salts 5,6) wrote one frame over generation 1's first frame; the old
        // commit frame that follows has old salts and must not count.
        let old = build_wal(false, PS, (1, 2), &[(1, 0, 1), (2, 2, 2)]);
        let new = build_wal(false, PS, (5, 6), &[(1, 0, 9)]);
        let mut mixed = old.clone();
        mixed[..new.len()].copy_from_slice(&new);
        let mut t = WalTracker::new();
        assert!(t.scan(&mixed, PS).unwrap().is_empty());
        t.reset();
        assert_eq!(t.scan(&old, PS).unwrap().len(), 1);
        assert_eq!(t.on_write(0, &old[..32], PS), WalWrite::None);
        assert!(t.header().is_none(), "a header write resets");
    }

    #[test]
    fn truncation_drops_pages_past_commit_from_the_index() {
        let w = build_wal(false, PS, (1, 2), &[(5, 5, 1), (1, 2, 2)]);
        let mut t = WalTracker::new();
        assert_eq!(t.scan(&w, PS).unwrap().len(), 2);
        assert_eq!(t.page_offset(PageNo(5)), None);
        assert!(t.page_offset(PageNo(1)).is_some());
        assert_eq!(t.indexed_pages(), 1);
    }

    #[test]
    fn wrong_page_size_or_garbage_header_is_not_a_log() {
        let w = build_wal(false, PS, (1, 2), &[(1, 1, 1)]);
        assert!(WalTracker::new().scan(&w, 1024).unwrap().is_empty());
        assert!(WalTracker::new().scan(&vec![0u8; 600], PS).unwrap().is_empty());
    }
}
