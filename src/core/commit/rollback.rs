//! Rollback-journal commit detection (DELETE, TRUNCATE, PERSIST).

use std::collections::BTreeSet;

use crate::core::sqlite::JOURNAL_HEADER_SIZE;
use crate::core::types::PageNo;

/// What a journal operation means for the transaction in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalEvent {
    /// Nothing to do.
    None,
    /// SQLite finalised the journal: the transaction ended (committed, or rolled back — a
    /// rollback rewrote the original pages, so building the LTX from the database file gives
    /// an empty change either way).
    Finalized,
}

/// Dirty-page tracking for rollback-journal modes. See the module docs of `core::commit`.
#[derive(Debug, Default, Clone)]
pub struct RollbackTracker {
    dirty: BTreeSet<PageNo>,
}

impl RollbackTracker {
    pub fn new() -> RollbackTracker {
        RollbackTracker::default()
    }

    /// Records a write of `len` bytes at `offset` of the database file. SQLite writes whole
    /// pages; a partial write still dirties every page it touches.
    pub fn on_db_write(&mut self, offset: u64, len: u64, page_size: u32) {
        if len == 0 || page_size == 0 {
            return;
        }
        let ps = u64::from(page_size);
        let first = offset / ps;
        let last = (offset + len - 1) / ps;
        for p in first..=last {
            // Pages past u32::MAX do not exist in SQLite; ignore rather than wrap.
            if let Ok(p) = u32::try_from(p + 1) {
                self.dirty.insert(PageNo(p));
            }
        }
    }

    /// Whether pages were written since the last commit.
    pub fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// The journal was unlinked (DELETE mode).
    pub fn on_journal_unlink(&self) -> JournalEvent {
        JournalEvent::Finalized
    }

    /// The journal was truncated to `size` (TRUNCATE mode finalises with size 0).
    pub fn on_journal_truncate(&self, size: u64) -> JournalEvent {
        if size == 0 { JournalEvent::Finalized } else { JournalEvent::None }
    }

    /// `data` was written at `offset` of the journal. PERSIST mode finalises by overwriting
    /// the header's first 28 bytes with zeros.
    pub fn on_journal_write(&self, offset: u64, data: &[u8]) -> JournalEvent {
        if offset == 0 && data.len() >= JOURNAL_HEADER_SIZE && data[..8].iter().all(|&b| b == 0) {
            JournalEvent::Finalized
        } else {
            JournalEvent::None
        }
    }

    /// Takes the dirty pages (sorted), leaving the tracker clean for the next transaction.
    pub fn take_dirty(&mut self) -> Vec<PageNo> {
        std::mem::take(&mut self.dirty).into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirty_pages_and_triggers() {
        let mut t = RollbackTracker::new();
        t.on_db_write(0, 4096, 4096);
        t.on_db_write(3 * 4096, 4096, 4096);
        t.on_db_write(4096 + 10, 20, 4096);
        t.on_db_write(0, 4096, 4096);
        assert!(t.has_dirty());
        assert_eq!(t.take_dirty(), vec![PageNo(1), PageNo(2), PageNo(4)]);
        assert!(!t.has_dirty());
        assert_eq!(t.on_journal_unlink(), JournalEvent::Finalized);
        assert_eq!(t.on_journal_truncate(0), JournalEvent::Finalized);
        assert_eq!(t.on_journal_truncate(512), JournalEvent::None);
        assert_eq!(t.on_journal_write(0, &[0; 28]), JournalEvent::Finalized);
        assert_eq!(t.on_journal_write(0, &[0xd9; 28]), JournalEvent::None);
        assert_eq!(t.on_journal_write(512, &[0; 28]), JournalEvent::None);
        assert_eq!(t.on_journal_write(0, &[0; 8]), JournalEvent::None);
    }
}
