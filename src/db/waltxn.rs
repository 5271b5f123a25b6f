//! One committed WAL transaction ([`WalTxn`]) as the pages it leaves the database with: the
//! single definition the live commit path ([`super::commit`]), startup recovery and
//! `litefleet verify` share, so the `Commit` one of them records and the checksums another
//! computes for the same transaction cannot drift apart.
//!
//! The pages, in page order, the lock page never among them:
//! - every page the transaction wrote up to its commit size, from its newest frame in the
//!   transaction (frames past the commit size are dropped, as SQLite drops them);
//! - when the transaction grows the database, every page between the old end and the new one
//!   that it did not write ("growth pages"), read from the database file, zeros past its
//!   end: what a reader sees there.
//!
//! Growth pages never come from the WAL. Invariant behind that: `old` is the page count
//! after the previous transaction, and the WAL tracker drops every indexed page past each
//! commit's size, so no WAL copy of a page above `old` is visible at this transaction; the
//! tracker's index can only hold one from a *later* transaction of the same scan, which this
//! one must not see.
//!
//! Reads go through [`Backing`]: a WAL frame or database page cut short is an error.

use std::io;

use super::Commit;
use super::log::WalRange;
use super::pages::Backing;
use crate::core::commit::WalTxn;
use crate::core::ltx::{PageChecksums, page_checksum};
use crate::core::types::PageNo;

/// Where a transaction's pages are read from.
#[derive(Clone, Copy)]
pub(super) struct TxnFiles<'a> {
    pub wal: Backing<'a>,
    /// The database file, if it exists (growth pages read as zeros without one).
    pub db: Option<Backing<'a>>,
}

/// Calls `each` with every page `txn` leaves the database with (see the module docs), in
/// page order. `old` is the page count before the transaction; `ps` the page size.
pub(super) fn for_each_page(
    files: TxnFiles<'_>,
    txn: &WalTxn,
    ps: u32,
    old: u32,
    mut each: impl FnMut(PageNo, &[u8]),
) -> io::Result<()> {
    let lock = PageNo::lock_page(ps);
    let written = txn
        .pages
        .iter()
        .filter(|(p, _)| p.0 <= txn.commit && *p != lock)
        .map(|&(p, off)| (p, Some(off)));
    // `txn.pages` is sorted by page, one entry per page (see `WalTxn`).
    let grown = (old.saturating_add(1)..=txn.commit)
        .map(PageNo)
        .filter(|p| *p != lock && txn.pages.binary_search_by_key(p, |(q, _)| *q).is_err())
        .map(|p| (p, None));
    let mut plan: Vec<(PageNo, Option<u64>)> = written.chain(grown).collect();
    plan.sort_unstable_by_key(|(p, _)| *p);
    let mut buf = vec![0u8; ps as usize];
    for (pgno, frame) in plan {
        match (frame, files.db) {
            (Some(off), _) => files.wal.read_exact(&mut buf, off)?,
            (None, Some(db)) => db.read_page(pgno, &mut buf)?,
            (None, None) => buf.fill(0),
        }
        each(pgno, &buf);
    }
    Ok(())
}

/// The [`Commit`] of `txn`, for the LTX log: live (`durable: false`, the WAL keeps the
/// transaction until a barrier) or in recovery (`durable: true`).
pub(super) fn commit(
    files: TxnFiles<'_>,
    txn: &WalTxn,
    ps: u32,
    old: u32,
    durable: bool,
    timestamp_ms: i64,
) -> io::Result<Commit> {
    let mut pages = Vec::with_capacity(txn.pages.len());
    for_each_page(files, txn, ps, old, |p, d| pages.push((p, d.to_vec())))?;
    Ok(Commit {
        page_size: ps,
        commit: txn.commit,
        pages,
        wal: Some(WalRange {
            offset: txn.offset,
            size: txn.size,
            salt1: txn.salt1,
            salt2: txn.salt2,
        }),
        durable,
        timestamp_ms,
    })
}

/// Applies `txn` to the page checksums `sums` of the database before it (its page count is
/// the old end), as the LTX log applies the transaction's [`commit`].
pub(super) fn apply(
    sums: &mut PageChecksums,
    files: TxnFiles<'_>,
    txn: &WalTxn,
    ps: u32,
) -> io::Result<()> {
    let old = sums.page_count();
    for_each_page(files, txn, ps, old, |p, d| sums.set(p, page_checksum(p, d)))?;
    sums.truncate(txn.commit);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::core::commit::WalTracker;
    use crate::core::sqlite::wal_tests::build_wal;

    const PS: u32 = 512;

    /// A database file of `fills.len()` pages, page `i + 1` filled with `fills[i]`.
    fn db_file(fills: &[u8]) -> Vec<u8> {
        fills.iter().flat_map(|&f| vec![f; PS as usize]).collect()
    }

    /// Checksums the LTX log keeps after staging `c` on top of `sums` (see `LtxLog::stage`).
    fn staged(mut sums: PageChecksums, c: &Commit) -> PageChecksums {
        for (p, d) in &c.pages {
            sums.set(*p, page_checksum(*p, d));
        }
        sums.truncate(c.commit);
        sums
    }

    fn checksums_of(db: &[u8]) -> PageChecksums {
        let mut s = PageChecksums::new();
        for (i, page) in db.chunks_exact(PS as usize).enumerate() {
            let pgno = PageNo(i as u32 + 1);
            s.set(pgno, page_checksum(pgno, page));
        }
        s
    }

    #[test]
    fn recovery_and_the_live_path_agree_on_growth_pages() {
        // The database file has 4 pages. Transaction 1 shrinks it to 2; transaction 2 grows
        // it to 6 writing only page 5: pages 3 and 4 come from the file (its stale copies,
        // which a reader sees), page 6 is past the file's end (zeros). Transaction 3 writes
        // page 3: transaction 2 must not see that copy, though the tracker indexes it.
        let db = db_file(&[0xa1, 0xa2, 0xa3, 0xa4]);
        let wal = build_wal(false, PS, (7, 9), &[(1, 2, 0xb1), (5, 6, 0xb5), (3, 6, 0xc3)]);
        let mut tracker = WalTracker::new();
        let txns = tracker.scan(&wal, PS).unwrap();
        assert_eq!(txns.len(), 3);
        let files = TxnFiles {
            wal: Backing::new(&wal, Path::new("wal")),
            db: Some(Backing::new(&db, Path::new("database"))),
        };

        // Live: `Db::commit_wal` with the page count after the previous transaction; the log
        // stages each commit.
        let mut live = checksums_of(&db);
        let mut old = live.page_count();
        let mut commits = Vec::new();
        for txn in &txns {
            let c = commit(files, txn, PS, old, false, 0).unwrap();
            live = staged(live, &c);
            old = c.commit;
            commits.push(c);
        }
        // Recovery (and `litefleet verify`): the file's checksums, then each transaction.
        let mut recovered = checksums_of(&db);
        for txn in &txns {
            apply(&mut recovered, files, txn, PS).unwrap();
        }
        assert_eq!(recovered, live);
        assert_eq!(recovered.missing(PS).count(), 0, "every page has a checksum");

        let pages = |c: &Commit| c.pages.iter().map(|(p, d)| (p.0, d[0])).collect::<Vec<_>>();
        assert_eq!(pages(&commits[0]), vec![(1, 0xb1)]);
        assert_eq!(pages(&commits[1]), vec![(3, 0xa3), (4, 0xa4), (5, 0xb5), (6, 0)]);
        assert_eq!(pages(&commits[2]), vec![(3, 0xc3)]);
    }

    #[test]
    fn a_wal_frame_cut_short_after_the_scan_is_an_error_not_zeros() {
        let db = db_file(&[0xa1]);
        let mut wal = build_wal(false, PS, (7, 9), &[(1, 1, 0xb1)]);
        let txns = WalTracker::new().scan(&wal, PS).unwrap();
        // SQLite (or anything) truncates the WAL between the scan and the read.
        wal.truncate(wal.len() - 100);
        let files = TxnFiles {
            wal: Backing::new(&wal, Path::new("dbs/t/wal")),
            db: Some(Backing::new(&db, Path::new("dbs/t/database"))),
        };
        let e = commit(files, &txns[0], PS, 1, false, 0).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(e.to_string().contains("dbs/t/wal: short read at offset 56"), "{e}");
        let mut sums = checksums_of(&db);
        let e = apply(&mut sums, files, &txns[0], PS).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_growth_page_the_database_file_ends_inside_reads_zero_filled() {
        // One page and a half: the transaction grows the database to 3 pages writing page 3;
        // page 2 is a growth page the file ends inside.
        let mut db = db_file(&[0xa1, 0xa2]);
        db.truncate(PS as usize + 100);
        let wal = build_wal(false, PS, (7, 9), &[(3, 3, 0xb3)]);
        let txns = WalTracker::new().scan(&wal, PS).unwrap();
        let files = TxnFiles {
            wal: Backing::new(&wal, Path::new("wal")),
            db: Some(Backing::new(&db, Path::new("dbs/t/database"))),
        };
        let c = commit(files, &txns[0], PS, 1, false, 0).unwrap();
        let p2 = c.pages.iter().find(|(p, _)| *p == PageNo(2)).expect("growth page recorded");
        assert_eq!(p2.1[..100], [0xa2; 100][..]);
        assert!(p2.1[100..].iter().all(|b| *b == 0), "zeros past the end, as SQLite reads");
    }
}
