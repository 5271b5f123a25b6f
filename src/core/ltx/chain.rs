//! Checks that a run of verified LTX files forms one chain: TXIDs contiguous, page size
//! constant, and each file's pre-apply checksum equal to the previous file's post-apply
//! checksum. A snapshot (MinTXID 1) may start the chain or restart it, and so may a
//! deletion (Commit 0): it replaces whatever came before (a replica whose files up to it
//! were removed by retention gets it alone).

use super::reader::Summary;
use crate::core::types::{Checksum, Pos, Txid};

/// One way a run of files fails to chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("file {index} starts at TXID {min} but the previous file ends at {prev_max}")]
    TxidGap { index: usize, prev_max: Txid, min: Txid },
    #[error("file {index} expects checksum {pre} before it, the previous file leaves {prev_post}")]
    ChecksumBreak { index: usize, prev_post: Checksum, pre: Checksum },
}

/// Checks `files` (sorted by MinTXID) and returns every break plus the position after the
/// last file.
pub fn check_chain(files: &[Summary]) -> (Vec<ChainBreak>, Option<Pos>) {
    let mut breaks = Vec::new();
    for (i, pair) in files.windows(2).enumerate() {
        let (a, b) = (&pair[0], &pair[1]);
        let index = i + 1;
        if b.header.is_snapshot()
            || (b.header.is_deletion() && a.header.max_txid < b.header.min_txid)
        {
            continue;
        }
        if a.header.max_txid.next() != Some(b.header.min_txid) {
            breaks.push(ChainBreak::TxidGap {
                index,
                prev_max: a.header.max_txid,
                min: b.header.min_txid,
            });
        } else if a.trailer.post_apply_checksum != b.header.pre_apply_checksum {
            breaks.push(ChainBreak::ChecksumBreak {
                index,
                prev_post: a.trailer.post_apply_checksum,
                pre: b.header.pre_apply_checksum,
            });
        }
    }
    let end = files
        .last()
        .map(|s| Pos { txid: s.header.max_txid, checksum: s.trailer.post_apply_checksum });
    (breaks, end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ltx::{Header, Trailer};

    fn s(min: u64, max: u64, pre: u64, post: u64) -> Summary {
        Summary {
            header: Header {
                page_size: 4096,
                commit: 1,
                min_txid: Txid(min),
                max_txid: Txid(max),
                pre_apply_checksum: Checksum(pre),
                ..Header::default()
            },
            trailer: Trailer {
                post_apply_checksum: Checksum(post),
                file_checksum: Checksum(Checksum::FLAG),
            },
            page_count: 1,
        }
    }

    #[test]
    fn detects_gaps_and_checksum_breaks() {
        let ok = [s(1, 1, 0, 0x81), s(2, 3, 0x81, 0x82), s(4, 4, 0x82, 0x83)];
        assert_eq!(check_chain(&ok), (vec![], Some(Pos::new(4, 0x83))));
        let gap = [s(1, 1, 0, 0x81), s(3, 3, 0x81, 0x82)];
        assert!(matches!(check_chain(&gap).0[..], [ChainBreak::TxidGap { index: 1, .. }]));
        let brk = [s(1, 1, 0, 0x81), s(2, 2, 0x99, 0x82)];
        assert!(matches!(check_chain(&brk).0[..], [ChainBreak::ChecksumBreak { index: 1, .. }]));
        let mut ps = s(2, 2, 0x81, 0x82);
        ps.header.page_size = 512;
        // A page size change continues the history (the file rewrites every page).
        assert_eq!(check_chain(&[s(1, 1, 0, 0x81), ps]).0, vec![]);
        // A snapshot restarts the chain.
        let restart = [s(1, 1, 0, 0x81), s(1, 5, 0, 0x85), s(6, 6, 0x85, 0x86)];
        assert_eq!(check_chain(&restart).0, vec![]);
        assert_eq!(check_chain(&[]), (vec![], None));
    }
}
