//! Replication decisions, sans IO.
//!
//! - [`plan`]: on the primary, what a replica at some position needs: nothing, a run of LTX
//!   files, or a snapshot.
//! - [`Incoming`]: on a replica, a received LTX file decoded and checked against the local
//!   state *before* anything is written: the post-apply checksum the file promises must be
//!   what applying it to this database yields. A file that fails is never applied.
//!
//! Ranged files (one LTX file covering TXIDs `min..=max`, from group commit or compaction)
//! hold the final content of every page changed in the range, so they also apply to a
//! replica positioned *inside* the range (`min - 1 <= txid < max`): pages the replica
//! already has are rewritten with the same bytes. The pre-apply checksum only describes
//! `min - 1`, so inside a range the post-apply checksum, computed from the replica's own
//! page checksums, is the proof.

use std::io::Read;

use crate::core::ltx::{DbState, LtxError, LtxReader, PageChecksums, page_checksum};
use crate::core::types::{Checksum, PageNo, Pos, Txid};

/// What the primary sends a replica for one database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The replica is at the primary's position.
    UpToDate,
    /// These files, in order (indexes into the `files` given to [`plan`]).
    Files(Vec<usize>),
    /// A full snapshot at the primary's position.
    Snapshot(SnapshotReason),
    /// The database is deleted on the primary: send its deletion file (index).
    Deletion(usize),
    /// The replica's position is not on the primary's history: it holds transactions the
    /// primary never had (a deposed primary's unreplicated tail, or a changed file). Send a
    /// *resync* snapshot, on which the replica first sets its own LTX files aside.
    Resync(Divergence),
}

/// How a replica's history was found to differ from the primary's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Divergence {
    /// The replica claims a TXID the primary has not reached.
    Ahead,
    /// Same TXID, different checksum.
    SameTxid,
    /// The primary's checksum at the replica's TXID (a file boundary) differs.
    Boundary,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotReason {
    /// The replica has no copy.
    Empty,
    /// The files from the replica's position were removed by retention.
    Retention,
}

/// What the primary's files say of a replica's position: `Some(true)` on the primary's
/// history, `Some(false)` not, `None` unknown. `boundaries` are positions the primary knows
/// from its files without replaying them (the post-apply position of a file ending at the
/// replica's TXID, the pre-apply position of one starting right after it). A position
/// strictly inside a ranged file is unknown here; the replica's own post-apply check
/// decides it (see [`Incoming::check`]).
pub fn on_history(replica: Pos, boundaries: &[Pos]) -> Option<bool> {
    let mut verdict = None;
    for b in boundaries.iter().filter(|b| b.txid == replica.txid) {
        if b.checksum != replica.checksum {
            return Some(false);
        }
        verdict = Some(true);
    }
    verdict
}

/// Decides what a replica at `replica` needs. `files` are the primary's LTX files as
/// `(min, max)` sorted by `max` (the newest last), possibly overlapping (a replica that applied a ranged file
/// keeps it); `primary` is the position after the newest; `deleted` whether the newest
/// file is a deletion; `history` what [`on_history`] says of the replica's position.
pub fn plan(
    replica: Option<Pos>,
    primary: Pos,
    files: &[(Txid, Txid)],
    deleted: bool,
    history: Option<bool>,
) -> Plan {
    let replica = replica.unwrap_or(Pos::EMPTY);
    if replica == primary {
        return Plan::UpToDate;
    }
    if deleted && let Some(i) = files.len().checked_sub(1) {
        // A replica behind the deletion gets the transactions up to it when they are all
        // still here (its history stays one chain); otherwise, and a replica with no copy,
        // the deletion alone, which replaces any copy ([`Incoming::check`]).
        if replica.txid > Txid::ZERO && replica.txid < files[i].0 && history != Some(false) {
            let Plan::Files(mut out) = walk(replica.txid, Txid(files[i].0.0 - 1), files) else {
                return Plan::Deletion(i);
            };
            out.push(i);
            return Plan::Files(out);
        }
        return Plan::Deletion(i);
    }
    if replica.txid == Txid::ZERO {
        return Plan::Snapshot(SnapshotReason::Empty);
    }
    if replica.txid > primary.txid {
        return Plan::Resync(Divergence::Ahead);
    }
    if replica.txid == primary.txid {
        return Plan::Resync(Divergence::SameTxid);
    }
    if history == Some(false) {
        return Plan::Resync(Divergence::Boundary);
    }
    walk(replica.txid, primary.txid, files)
}

/// The files leading from `from` to `to`, walking forward from `from`, each step taking the
/// file that covers the next TXID and reaches furthest; a snapshot (retention) where none
/// does.
fn walk(from: Txid, to: Txid, files: &[(Txid, Txid)]) -> Plan {
    let mut at = from;
    let mut out = Vec::new();
    while at < to {
        let next = Txid(at.0 + 1);
        let best = files
            .iter()
            .enumerate()
            .filter(|(_, (min, max))| *min <= next && next <= *max)
            .max_by_key(|(_, (_, max))| *max);
        match best {
            Some((i, (_, max))) => {
                out.push(i);
                at = *max;
            }
            None => return Plan::Snapshot(SnapshotReason::Retention),
        }
    }
    Plan::Files(out)
}

/// Why a received file is refused.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("invalid LTX: {0}")]
    Ltx(#[from] LtxError),
    #[error("file covers TXIDs {min}..={max} but the database is at {at}")]
    Position { at: Pos, min: Txid, max: Txid },
    #[error("pre-apply checksum {expected} does not match the database's {actual}")]
    PreApply { expected: Checksum, actual: Checksum },
    #[error("applying would give checksum {actual}, the file promises {expected}")]
    PostApply { expected: Checksum, actual: Checksum },
    #[error("page {pgno} leaves a hole past the end ({pages} pages)")]
    Hole { pgno: PageNo, pages: u32 },
    #[error("snapshot page {pgno} leaves a hole past page {pages}")]
    SnapshotHole { pgno: PageNo, pages: u32 },
    /// The database holds transactions this node wrote as a primary after `since` that no
    /// other node confirmed, and the file covers them from before (`min` to `max`, the
    /// database strictly inside): applying it could overwrite them unseen, since the
    /// post-apply check passes whenever they changed only pages the file rewrites.
    #[error(
        "own transactions after {since} unconfirmed, and the file ({min}..={max}) covers them from before: histories may differ"
    )]
    Unconfirmed { since: Txid, min: Txid, max: Txid },
}

impl ApplyError {
    /// The file is intact (its own checksums verified) but does not continue this
    /// database: the histories diverged (or the local file was changed). A replica that
    /// was a primary whose last commits no one got, and whose TXID falls inside one of
    /// the new primary's ranged files, sees a changed pre-apply state, a page count the
    /// file's pages do not continue (a hole), or another end checksum.
    pub fn is_divergence(&self) -> bool {
        matches!(
            self,
            ApplyError::PreApply { .. }
                | ApplyError::PostApply { .. }
                | ApplyError::Hole { .. }
                | ApplyError::Unconfirmed { .. }
        )
    }
}

/// A received LTX file, decoded and verified against the local state; apply with
/// [`Incoming::commit_to`] after writing [`Incoming::pages`].
#[derive(Debug)]
pub struct Incoming {
    pub page_size: u32,
    pub commit: u32,
    pub min_txid: Txid,
    pub pos: Pos,
    pub timestamp_ms: i64,
    /// The file replaces the whole database: a snapshot, or a page size change.
    pub snapshot: bool,
    pub pages: Vec<(PageNo, Vec<u8>, Checksum)>,
}

impl Incoming {
    /// Decodes `r` (a whole LTX file of `len` bytes) and checks it applies to `state`.
    ///
    /// `own_since`: this node wrote the transactions after this TXID itself, as a primary,
    /// and no other node has confirmed them yet (see [`ApplyError::Unconfirmed`]). A file
    /// that starts right after the database's position confirms the whole history (its
    /// pre-apply checksum must match); one the database sits strictly inside cannot.
    pub fn check<R: Read>(
        r: R,
        len: u64,
        state: &DbState,
        own_since: Option<Txid>,
    ) -> Result<Incoming, ApplyError> {
        let mut rd = LtxReader::new(r, len)?;
        let h = *rd.header();
        let at = state.pos;
        // A deletion that does not continue this database's position replaces whatever copy
        // it holds, as a snapshot does (a replica with no copy, or one whose files up to the
        // deletion were removed by retention): the end state, no database, does not depend
        // on the pages before. Never over this node's own unconfirmed transactions: those
        // are set aside first (a divergence).
        let replaces = h.is_deletion() && at.txid.0 + 1 < h.min_txid.0;
        if replaces && let Some(since) = own_since.filter(|since| *since < at.txid) {
            while rd.next_page()?.is_some() {}
            rd.finish()?;
            return Err(ApplyError::Unconfirmed { since, min: h.min_txid, max: h.max_txid });
        }
        // A snapshot replaces the whole database: never over this node's own unconfirmed
        // transactions either (a deposed primary's tail meeting a snapshot the new primary
        // sends from its files or for a position retention passed): they are set aside
        // first, by the resync that follows this refusal. Found by the cluster simulation
        // (`core::sim`).
        if h.is_snapshot()
            && let Some(since) = own_since.filter(|since| *since < at.txid)
        {
            while rd.next_page()?.is_some() {}
            rd.finish()?;
            return Err(ApplyError::Unconfirmed { since, min: h.min_txid, max: h.max_txid });
        }
        let snapshot = h.is_snapshot() || replaces;
        if !snapshot {
            if at.txid.0 + 1 < h.min_txid.0 || at.txid >= h.max_txid {
                return Err(ApplyError::Position { at, min: h.min_txid, max: h.max_txid });
            }
            let inside = h.min_txid.0 <= at.txid.0;
            if let Some(since) = own_since
                && since < at.txid
                && inside
            {
                // Read the file anyway: a damaged file is a refusal, not a divergence.
                while rd.next_page()?.is_some() {}
                rd.finish()?;
                return Err(ApplyError::Unconfirmed { since, min: h.min_txid, max: h.max_txid });
            }
            if at.txid.0 + 1 == h.min_txid.0 && at.checksum != h.pre_apply_checksum {
                return Err(ApplyError::PreApply {
                    expected: h.pre_apply_checksum,
                    actual: at.checksum,
                });
            }
        }
        // A page size change (SQLite's VACUUM after `PRAGMA page_size`, a backup restored
        // over the database) rewrites every page: the file must hold all of them, as a
        // snapshot does, while it still continues this database's history (checked above).
        let resized =
            !snapshot && state.page_size != 0 && state.page_size != h.page_size && h.commit != 0;
        let whole = snapshot || resized;
        let base = if whole { 0 } else { state.checksums.page_count() };
        let lock = PageNo::lock_page(h.page_size);
        let mut end = base;
        let mut pages = Vec::new();
        let mut hole = None;
        while let Some(p) = rd.next_page()? {
            if hole.is_some() {
                continue; // read to the end only to verify the file's own checksum
            }
            // Growth only by pages the file holds (the lock page excepted): a hostile page
            // number cannot make us allocate for billions of pages.
            let next = if PageNo(end + 1) == lock { end + 2 } else { end + 1 };
            if p.pgno.0 > next {
                hole = Some(if whole {
                    // Not about this database's history: the snapshot itself is malformed.
                    ApplyError::SnapshotHole { pgno: p.pgno, pages: end }
                } else {
                    ApplyError::Hole { pgno: p.pgno, pages: end }
                });
                continue;
            }
            end = end.max(p.pgno.0);
            pages.push((p.pgno, p.data.to_vec(), page_checksum(p.pgno, p.data)));
        }
        let (trailer, _) = rd.finish()?;
        // An intact file (checksum verified just above) that would leave a hole in this
        // database was written for another history: a divergence, not a corrupt file.
        if let Some(e) = hole {
            return Err(e);
        }
        let actual = preview(if whole { None } else { Some(&state.checksums) }, &pages, h.commit);
        if actual != trailer.post_apply_checksum {
            return Err(ApplyError::PostApply { expected: trailer.post_apply_checksum, actual });
        }
        Ok(Incoming {
            page_size: h.page_size,
            commit: h.commit,
            min_txid: h.min_txid,
            pos: Pos { txid: h.max_txid, checksum: trailer.post_apply_checksum },
            timestamp_ms: h.timestamp,
            snapshot: whole,
            pages,
        })
    }

    /// Updates `state` as the file's pages were written and the database truncated.
    pub fn commit_to(&self, state: &mut DbState) {
        if self.snapshot {
            state.checksums = PageChecksums::new();
        }
        for (p, _, sum) in &self.pages {
            state.checksums.set(*p, *sum);
        }
        state.checksums.truncate(self.commit);
        state.pos = self.pos;
        state.page_size = self.page_size;
    }
}

/// The database checksum after writing `pages` onto `base` (None: an empty database) and
/// truncating to `commit`, without changing `base`: O(pages + truncated pages).
pub fn preview(
    base: Option<&PageChecksums>,
    pages: &[(PageNo, Vec<u8>, Checksum)],
    commit: u32,
) -> Checksum {
    let empty = PageChecksums::new();
    let base = base.unwrap_or(&empty);
    let mut xor = base.checksum().0 & !Checksum::FLAG;
    let mut touched = std::collections::HashSet::with_capacity(pages.len());
    for (p, _, sum) in pages {
        if p.0 > commit || !touched.insert(p.0) {
            continue;
        }
        let old = base.page(*p).map(|c| c.0).unwrap_or(0);
        xor ^= old ^ sum.0;
    }
    // Pages beyond `commit` drop out.
    for p in commit + 1..=base.page_count() {
        if !touched.contains(&p) {
            xor ^= base.page(PageNo(p)).map(|c| c.0).unwrap_or(0);
        }
    }
    Checksum(Checksum::FLAG | (xor & !Checksum::FLAG))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(n: u64) -> Txid {
        Txid(n)
    }

    fn pos(n: u64, c: u64) -> Pos {
        Pos { txid: t(n), checksum: Checksum(Checksum::FLAG | c) }
    }

    #[test]
    fn plans() {
        let files = [(t(1), t(1)), (t(2), t(5)), (t(6), t(6)), (t(7), t(9))];
        let p = pos(9, 9);
        assert_eq!(plan(Some(p), p, &files, false, None), Plan::UpToDate);
        assert_eq!(plan(None, p, &files, false, None), Plan::Snapshot(SnapshotReason::Empty));
        assert_eq!(plan(Some(pos(10, 1)), p, &files, false, None), Plan::Resync(Divergence::Ahead));
        assert_eq!(
            plan(Some(pos(9, 1)), p, &files, false, None),
            Plan::Resync(Divergence::SameTxid)
        );
        // Off the primary's history at a file boundary: resync, whatever files exist.
        assert_eq!(
            plan(Some(pos(5, 1)), p, &files, false, Some(false)),
            Plan::Resync(Divergence::Boundary)
        );
        assert_eq!(plan(Some(pos(5, 1)), p, &files, false, Some(true)), Plan::Files(vec![2, 3]));
        assert_eq!(plan(Some(pos(1, 1)), p, &files, false, None), Plan::Files(vec![1, 2, 3]));
        // Inside a ranged file: that file again, then on.
        assert_eq!(plan(Some(pos(3, 1)), p, &files, false, None), Plan::Files(vec![1, 2, 3]));
        assert_eq!(plan(Some(pos(6, 1)), p, &files, false, None), Plan::Files(vec![3]));
        // Retention removed what is needed.
        assert_eq!(
            plan(Some(pos(1, 1)), p, &files[2..], false, None),
            Plan::Snapshot(SnapshotReason::Retention)
        );
        // Overlapping files: the one reaching furthest.
        let over = [(t(1), t(3)), (t(2), t(2)), (t(2), t(6))];
        assert_eq!(plan(Some(pos(1, 1)), pos(6, 6), &over, false, None), Plan::Files(vec![2]));
        // A deleted database: the transactions up to the deletion while they are all here,
        // else (no copy, retention, another history) the deletion alone.
        assert_eq!(plan(Some(pos(1, 1)), p, &files, true, None), Plan::Files(vec![1, 2, 3]));
        assert_eq!(plan(Some(pos(6, 1)), p, &files, true, None), Plan::Files(vec![3]));
        assert_eq!(plan(None, p, &files, true, None), Plan::Deletion(3));
        assert_eq!(plan(Some(pos(1, 1)), p, &files[2..], true, None), Plan::Deletion(1));
        assert_eq!(plan(Some(pos(5, 1)), p, &files, true, Some(false)), Plan::Deletion(3));
        assert_eq!(plan(Some(pos(12, 1)), p, &files, true, None), Plan::Deletion(3));
    }

    /// A deletion file (commit 0) at TXIDs `min..=max`, after `pre`.
    fn deletion(min: u64, max: u64, pre: Checksum) -> Vec<u8> {
        use crate::core::ltx::{Header, LtxWriter};
        let h = Header {
            page_size: 512,
            commit: 0,
            min_txid: t(min),
            max_txid: t(max),
            pre_apply_checksum: pre,
            node_id: crate::core::types::NodeId(1),
            ..Header::default()
        };
        LtxWriter::new(Vec::new(), h).unwrap().finish(PageChecksums::new().checksum()).unwrap().0
    }

    #[test]
    fn a_deletion_replaces_any_older_copy_but_never_unconfirmed_own_transactions() {
        let mut state = DbState { pos: pos(5, 3), page_size: 512, ..DbState::default() };
        state.checksums.set(PageNo(1), page_checksum(PageNo(1), &[1; 512]));
        // Continuing the position: the pre-apply checksum must match.
        let next = deletion(6, 6, state.pos.checksum);
        let inc = Incoming::check(&next[..], next.len() as u64, &state, None).unwrap();
        assert_eq!((inc.pos.txid, inc.commit, inc.snapshot), (t(6), 0, false));
        let wrong = deletion(6, 6, Checksum(Checksum::FLAG | 4));
        let e = Incoming::check(&wrong[..], wrong.len() as u64, &state, None).unwrap_err();
        assert!(matches!(e, ApplyError::PreApply { .. }), "{e}");
        // Far past the position (the files between are gone), or onto no copy at all.
        let far = deletion(40, 40, Checksum(Checksum::FLAG | 4));
        let mut applied = state.clone();
        let inc = Incoming::check(&far[..], far.len() as u64, &state, None).unwrap();
        inc.commit_to(&mut applied);
        assert_eq!(applied.pos, Pos { txid: t(40), checksum: PageChecksums::new().checksum() });
        assert_eq!(applied.checksums.page_count(), 0);
        Incoming::check(&far[..], far.len() as u64, &DbState::default(), None).unwrap();
        // Over this node's own unconfirmed transactions: a divergence (set aside first).
        let e = Incoming::check(&far[..], far.len() as u64, &state, Some(t(3))).unwrap_err();
        assert!(matches!(e, ApplyError::Unconfirmed { .. }) && e.is_divergence(), "{e}");
        // Before the position: never.
        let old = deletion(2, 2, Checksum(Checksum::FLAG | 4));
        let e = Incoming::check(&old[..], old.len() as u64, &state, None).unwrap_err();
        assert!(matches!(e, ApplyError::Position { .. }), "{e}");
    }

    #[test]
    fn history_from_boundaries() {
        let b = [pos(4, 40), pos(5, 50)];
        assert_eq!(on_history(pos(5, 50), &b), Some(true));
        assert_eq!(on_history(pos(5, 51), &b), Some(false));
        assert_eq!(on_history(pos(6, 60), &b), None);
        // Two boundaries at one TXID (a file ends there, the next starts after): both must
        // agree.
        assert_eq!(on_history(pos(4, 40), &[pos(4, 40), pos(4, 41)]), Some(false));
    }

    /// A file of pages `pgnos` (512-byte pages), TXIDs `min..=max`.
    fn file(min: u64, max: u64, commit: u32, pgnos: &[u32]) -> Vec<u8> {
        use crate::core::ltx::{Header, LtxWriter};
        let h = Header {
            flags: 0,
            page_size: 512,
            commit,
            min_txid: t(min),
            max_txid: t(max),
            timestamp: 0,
            pre_apply_checksum: Checksum(Checksum::FLAG | 7),
            wal_offset: 0,
            wal_size: 0,
            wal_salt1: 0,
            wal_salt2: 0,
            node_id: crate::core::types::NodeId(1),
        };
        let mut w = LtxWriter::new(Vec::new(), h).unwrap();
        for &p in pgnos {
            w.write_page(PageNo(p), &[p as u8; 512]).unwrap();
        }
        w.finish(Checksum(Checksum::FLAG | 9)).unwrap().0
    }

    #[test]
    fn a_hole_in_an_intact_file_is_a_divergence_but_not_in_a_damaged_one() {
        // A replica at TXID 5 with 2 pages; the primary's ranged file 3..=8 grew its own
        // history to 6 pages but only wrote pages 1 and 5..=6 after the replica's fork.
        let mut state = DbState { pos: pos(5, 3), page_size: 512, ..DbState::default() };
        for p in 1..=2 {
            state.checksums.set(PageNo(p), page_checksum(PageNo(p), &[0; 512]));
        }
        let f = file(3, 8, 6, &[1, 5, 6]);
        let e = Incoming::check(&f[..], f.len() as u64, &state, None).unwrap_err();
        assert!(matches!(e, ApplyError::Hole { .. }) && e.is_divergence(), "{e}");
        // The same file damaged in transit: its own checksum fails first, not a divergence.
        let mut bad = f.clone();
        let at = bad.len() - 40;
        bad[at] ^= 1;
        let e = Incoming::check(&bad[..], bad.len() as u64, &state, None).unwrap_err();
        assert!(!e.is_divergence(), "{e}");
    }

    #[test]
    fn own_unconfirmed_transactions_are_never_covered_from_before() {
        // A replica at TXID 6 whose transactions after 4 it wrote itself as a primary; the
        // new primary's ranged file 3..=8 rewrites exactly the pages they changed, so the
        // post-apply check alone would pass and overwrite them unseen.
        let mut state = DbState { pos: pos(6, 3), page_size: 512, ..DbState::default() };
        for p in 1..=2 {
            state.checksums.set(PageNo(p), page_checksum(PageNo(p), &[9; 512]));
        }
        let f = file(3, 8, 2, &[1, 2]);
        let e = Incoming::check(&f[..], f.len() as u64, &state, Some(t(4))).unwrap_err();
        assert!(matches!(e, ApplyError::Unconfirmed { .. }) && e.is_divergence(), "{e}");
        // Without own transactions (or with all of them confirmed) the range applies.
        let ok = |since| Incoming::check(&f[..], f.len() as u64, &state, since);
        let promised = ok(None).unwrap_err();
        assert!(matches!(promised, ApplyError::PostApply { .. }), "the fixture's end checksum");
        assert!(matches!(ok(Some(t(6))).unwrap_err(), ApplyError::PostApply { .. }));
        // A damaged file stays a refusal.
        let mut bad = f.clone();
        let at = bad.len() - 40;
        bad[at] ^= 1;
        let e = Incoming::check(&bad[..], bad.len() as u64, &state, Some(t(4))).unwrap_err();
        assert!(!e.is_divergence(), "{e}");
    }

    #[test]
    fn a_snapshot_never_replaces_own_unconfirmed_transactions() {
        use crate::core::ltx::{Header, LtxWriter};
        // A deposed primary at TXID 6 whose transactions after 4 are its own; the new
        // primary's files hold a snapshot covering TXID 6 (it got one itself, or retention
        // passed the position): applied, it would drop them unseen.
        let mut state = DbState { pos: pos(6, 3), page_size: 512, ..DbState::default() };
        state.checksums.set(PageNo(1), page_checksum(PageNo(1), &[9; 512]));
        let h = Header {
            page_size: 512,
            commit: 1,
            min_txid: t(1),
            max_txid: t(8),
            node_id: crate::core::types::NodeId(1),
            ..Header::default()
        };
        let mut w = LtxWriter::new(Vec::new(), h).unwrap();
        w.write_page(PageNo(1), &[1; 512]).unwrap();
        let mut sums = PageChecksums::new();
        sums.set(PageNo(1), page_checksum(PageNo(1), &[1; 512]));
        let f = w.finish(sums.checksum()).unwrap().0;
        let e = Incoming::check(&f[..], f.len() as u64, &state, Some(t(4))).unwrap_err();
        assert!(matches!(e, ApplyError::Unconfirmed { .. }) && e.is_divergence(), "{e}");
        // Confirmed (or set aside first, as a resync does): the snapshot applies.
        assert!(Incoming::check(&f[..], f.len() as u64, &state, None).unwrap().snapshot);
        assert!(Incoming::check(&f[..], f.len() as u64, &state, Some(t(6))).is_ok());
    }

    #[test]
    fn preview_matches_applying() {
        let mut base = PageChecksums::new();
        for p in 1..=6 {
            base.set(PageNo(p), page_checksum(PageNo(p), &[p as u8; 64]));
        }
        let pages: Vec<(PageNo, Vec<u8>, Checksum)> = [2u32, 5, 7]
            .iter()
            .map(|&p| (PageNo(p), vec![0xee; 64], page_checksum(PageNo(p), &[0xee; 64])))
            .collect();
        for commit in [4, 6, 7] {
            let mut want = base.clone();
            for (p, _, s) in &pages {
                if p.0 <= commit {
                    want.set(*p, *s);
                }
            }
            want.truncate(commit);
            assert_eq!(preview(Some(&base), &pages, commit), want.checksum(), "commit {commit}");
        }
    }
}
