//! Compaction: merging a contiguous run of LTX files into one.
//!
//! The output covers `first.MinTXID..=last.MaxTXID`; it takes PageSize and Commit from the last
//! input, PreApply from the first, Timestamp from the last, and zeroes NodeID and the WAL fields
//! (they describe one transaction, not a range). Pages are merged with a k-way merge on page
//! number: the newest input holding a page wins and pages beyond the final Commit are dropped.
//! Every input is fully verified as it is read, and the chain is checked: each input's
//! PreApply must equal the previous input's PostApply.
//!
//! Memory is one page per input plus the LZ4 windows, whatever the file sizes.

use std::io::{Read, Write};

use super::error::LtxError;
use super::header::Header;
use super::reader::LtxReader;
use super::writer::LtxWriter;
use crate::core::types::{NodeId, PageNo, Txid};

/// Merges `inputs` (ordered oldest first) into one file written to `w` with the given header
/// `flags`. Returns the writer and the output header.
pub fn compact<R: Read, W: Write>(
    mut inputs: Vec<LtxReader<R>>,
    flags: u32,
    w: W,
) -> Result<(W, Header), LtxError> {
    let err = |m: String| LtxError::Compaction(m);
    let (Some(first), Some(last)) = (inputs.first(), inputs.last()) else {
        return Err(err("no input files".into()));
    };
    let (first_h, last_h) = (*first.header(), *last.header());
    for pair in inputs.windows(2) {
        let (a, b) = (pair[0].header(), pair[1].header());
        if a.page_size != b.page_size {
            return Err(err(format!("page size {} then {}", a.page_size, b.page_size)));
        }
        if a.max_txid.next() != Some(b.min_txid) {
            return Err(err(format!(
                "TXIDs not contiguous: {}..{} then {}..{}",
                a.min_txid, a.max_txid, b.min_txid, b.max_txid
            )));
        }
    }
    let header = Header {
        flags,
        page_size: last_h.page_size,
        commit: last_h.commit,
        min_txid: first_h.min_txid,
        max_txid: last_h.max_txid,
        timestamp: last_h.timestamp,
        pre_apply_checksum: first_h.pre_apply_checksum,
        wal_offset: 0,
        wal_size: 0,
        wal_salt1: 0,
        wal_salt2: 0,
        node_id: NodeId(0),
    };
    let mut out = LtxWriter::new(w, header)?;

    // current[i] is input i's next page number, already read into its buffer; None once its
    // trailer has been verified.
    let mut current: Vec<Option<PageNo>> = Vec::with_capacity(inputs.len());
    for r in inputs.iter_mut() {
        current.push(r.next_page()?.map(|p| p.pgno));
    }
    while let Some(min) = current.iter().flatten().min().copied() {
        // The newest input holding `min` wins: the highest index.
        let winner = current.iter().rposition(|c| *c == Some(min));
        for (i, (r, c)) in inputs.iter_mut().zip(current.iter_mut()).enumerate() {
            if *c != Some(min) {
                continue;
            }
            if Some(i) == winner && min.0 <= header.commit {
                out.write_page(min, r.current_page())?;
            }
            *c = r.next_page()?.map(|p| p.pgno);
        }
    }

    let mut prev_post = None;
    let mut final_post = None;
    for r in &inputs {
        // invariant: every input returned None above, which happens only after its trailer.
        let t = *r.trailer().ok_or(LtxError::Misuse("input not fully read"))?;
        let h = r.header();
        if let Some(p) = prev_post
            && !h.is_snapshot()
            && h.pre_apply_checksum != p
        {
            return Err(err(format!(
                "chain broken at TXID {}: pre-apply {} but previous post-apply {}",
                h.min_txid, h.pre_apply_checksum, p
            )));
        }
        prev_post = Some(t.post_apply_checksum);
        final_post = Some(t.post_apply_checksum);
    }
    let post = final_post.ok_or(LtxError::Misuse("no inputs"))?;
    let (w, _) = out.finish(post)?;
    Ok((w, header))
}

/// The TXID range a compaction of files covering these ranges would have, if contiguous.
pub fn merged_range(ranges: &[(Txid, Txid)]) -> Option<(Txid, Txid)> {
    let (first, last) = (ranges.first()?, ranges.last()?);
    ranges.windows(2).all(|w| w[0].1.next() == Some(w[1].0)).then_some((first.0, last.1))
}
