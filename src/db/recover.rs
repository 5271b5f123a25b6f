//! Startup recovery of one database: agree the database files with the LTX directory.
//!
//! In order:
//! 0. A checksum cache left by a clean shutdown ([`super::cache`]) is loaded and deleted; if
//!    the database file and newest LTX file are exactly as it recorded, it replaces the full
//!    scan of step 3 and the full verification of step 1.
//! 1. Temp files of interrupted LTX writes are removed. The newest LTX file must verify; a
//!    torn one (written without fsync, then a crash) is renamed `*.ltx.torn` with a warning
//!    and the one before it is used.
//! 2. A hot rollback journal means a transaction was interrupted. If the database file
//!    already matches the newest LTX file, the transaction's LTX was written and the journal
//!    is finalised (deleted); otherwise the journal is played back, as SQLite would.
//! 3. The database checksum (file plus committed WAL frames) is computed and compared with
//!    the newest LTX file's post-apply checksum. WAL transactions committed after the newest
//!    LTX file (a crash between SQLite's commit and the LTX write) get LTX files now. If the
//!    database lags the newest LTX file (its pages never reached the file), that file is
//!    applied again.
//! 4. A database with no LTX file (for example a SQLite file copied into `dbs/<name>/`) gets a
//!    snapshot at TXID 1.
//!
//! Anything else is an error naming the database, both checksums and the way out.

use std::fs;
use std::io;

use super::LOOSE_FILE;
use super::cache::{CACHE_FILE, Cache};
use super::image::build_snapshot;
use super::pages::{Backing, read_header, read_logical_page, scan_db};
use super::waltxn::{self, TxnFiles};
use super::{Commit, Db, DbError, FileKind, Inner, LtxLog, now_ms};
use crate::core::commit::WalTracker;
use crate::core::ltx::{self, DbState, PageChecksums};
use crate::core::sqlite::{JournalMode, journal_records, super_journal_name};
use crate::core::types::{Checksum, PageNo, Pos, Txid};
use crate::storage::FileStore;

pub(super) fn recover(db: &Db, log: &mut LtxLog) -> Result<(), DbError> {
    let fail = |reason: String| DbError::Recovery { name: db.name.clone(), reason };
    let removed = db.ltx.remove_temp_files()?;
    if removed > 0 {
        tracing::warn!(db = %db.name, removed, "removed temporary LTX files of interrupted writes");
    }
    // 0. The checksum cache of a clean shutdown, if everything it describes is unchanged.
    let loaded = load_cache(db)?;
    // A cache file exists only after a clean shutdown, which fdatasynced every LTX file
    // first: then a file that fails verification was damaged afterwards, not torn.
    let clean = loaded.is_some();
    let cached = loaded.as_ref().filter(|l| l.trusted);
    // Positions the database may be at beyond its newest intact LTX file, as claimed by the
    // cache and by the ends of the files set aside below. Only an exact checksum match with
    // the database's content makes one count (see step 3).
    let mut later: Vec<Pos> = Vec::new();
    if let Some(l) = &loaded {
        later.push(l.cache.pos);
    }
    // 1. The newest LTX file that verifies.
    let mut last = None;
    for (_, _, path) in db.ltx.list()?.into_iter().rev() {
        let summary = match cached {
            // The cache vouches for this file's size: read only its header and trailer.
            Some(c) if last.is_none() && path.file_name() == Some(c.ltx_name.as_ref()) => {
                super::LtxDir::read_ends(&path)
            }
            _ => super::LtxDir::verify(&path),
        };
        match summary {
            Ok(s) => {
                last = Some((path, s));
                break;
            }
            Err(e) => {
                // Its header and trailer as written (unverified): a claim checked in step 3.
                if let Ok(ends) = super::LtxDir::read_ends(&path) {
                    later.push(Pos {
                        txid: ends.header.max_txid,
                        checksum: ends.trailer.post_apply_checksum,
                    });
                }
                let aside = if clean {
                    let aside = path.with_extension("ltx.damaged");
                    tracing::error!(db = %db.name, file = %path.display(), error = %e,
                        aside = %aside.display(),
                        "LTX file is damaged (it was complete and synced at the last clean \
                         shutdown); moved aside");
                    aside
                } else {
                    let aside = path.with_extension("ltx.torn");
                    tracing::warn!(db = %db.name, file = %path.display(), error = %e,
                        aside = %aside.display(),
                        "newest LTX file is torn (written without fsync, then a crash); moved \
                         aside");
                    aside
                };
                fs::rename(&path, &aside)?;
            }
        }
    }
    let mut inner = db.lock();
    let Some(dbf) = db.file(FileKind::Database) else {
        // No database file: fine if it was deleted (or never written).
        if let Some((path, s)) = &last {
            if !s.header.is_deletion() {
                return Err(fail(format!(
                    "the database file is missing but {} says it exists at {}; restore \
                     dbs/{}/database or remove dbs/{} to start over",
                    path.display(),
                    Pos { txid: s.header.max_txid, checksum: s.trailer.post_apply_checksum },
                    db.name,
                    db.name
                )));
            }
            let pos = Pos { txid: s.header.max_txid, checksum: s.trailer.post_apply_checksum };
            let state = DbState { pos, page_size: 0, checksums: PageChecksums::new() };
            log.set_recovered(state, true, s.header.timestamp);
        }
        return Ok(());
    };
    let db_path = db.path(FileKind::Database);
    let Some(header) = read_header(&dbf)? else {
        if dbf.metadata()?.len() == 0 && last.is_none() {
            return Ok(()); // created, never written
        }
        return Err(fail("database file has no valid SQLite header".into()));
    };
    let ps = header.page_size;
    inner.page_size = ps;
    inner.mode = header.journal_mode();

    // 2. Hot journal.
    if let Some(j) = db.file(FileKind::Journal) {
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut &*j, &mut bytes)?;
        if let Some((initial, records)) = journal_records(&bytes, ps) {
            let matches_ltx = match &last {
                Some((_, s)) => {
                    scan_db(&dbf, &db_path, ps)?.checksum() == s.trailer.post_apply_checksum
                }
                None => false,
            };
            // A child journal of a multi-database transaction whose super-journal is gone:
            // SQLite deleted the super-journal as the commit point, so the transaction
            // committed and the journal is not hot (SQLite would not play it back either).
            let committed_super = !matches_ltx
                && super_journal_name(&bytes, ps).is_some_and(|name| !super_exists(db, name));
            if matches_ltx {
                tracing::info!(db = %db.name, "hot journal of a transaction whose LTX exists: finalising it");
            } else if committed_super {
                // Recorded below as writes a crash cut off (the marker says so).
                tracing::warn!(db = %db.name,
                    "journal of a committed multi-database transaction (its super-journal is \
                     gone): keeping the database as it is and recording it as a transaction");
                let marker = db.dir.join(LOOSE_FILE);
                fs::File::create(&marker)?.sync_all()?;
                fs::File::open(&db.dir)?.sync_all()?;
            } else {
                tracing::info!(db = %db.name, records = records.len(), "rolling back hot journal");
                for (pgno, page) in &records {
                    std::os::unix::fs::FileExt::write_all_at(
                        &*dbf,
                        page,
                        PageNo(*pgno).offset(ps),
                    )?;
                }
                dbf.set_len(u64::from(initial) * u64::from(ps))?;
                dbf.sync_all()?;
            }
            drop(j);
            fs::remove_file(db.dir.join("journal"))?;
            db.set_file(FileKind::Journal, None);
        }
    }

    // 3. Checksum of what SQLite would read: the database file, then committed WAL frames.
    let mut checksums = match cached {
        Some(c) if c.cache.page_size == ps => {
            tracing::info!(db = %db.name, "clean shutdown: checksums from the cache, no scan");
            c.cache.checksums.clone()
        }
        _ => scan_db(&dbf, &db_path, ps)?,
    };
    let mut wal = WalTracker::new();
    let mut late_txns = Vec::new();
    let wal_path = db.path(FileKind::Wal);
    if let Some(w) = db.file(FileKind::Wal) {
        let files =
            TxnFiles { wal: Backing::new(&*w, &wal_path), db: Some(Backing::new(&*dbf, &db_path)) };
        let txns = wal.scan(&*w, ps)?;
        // Transactions at or before the newest LTX file's WAL range are already recorded;
        // later ones (same salts) are commits whose LTX write was cut off.
        let recorded_end = last.as_ref().and_then(|(_, s)| {
            let h = &s.header;
            let hdr = wal.header()?;
            (h.wal_offset > 0 && (h.wal_salt1, h.wal_salt2) == (hdr.salt1, hdr.salt2))
                .then_some((h.wal_offset + h.wal_size) as u64)
        });
        // Salts differ from the newest LTX file's (or it is a rollback-journal file): the
        // WAL is either an old one whose transactions are all recorded, or one restarted
        // after the newest LTX file, whose transactions all are late. The database file
        // alone matching the newest LTX file tells the second case.
        let all_late = recorded_end.is_none()
            && !txns.is_empty()
            && last
                .as_ref()
                .is_some_and(|(_, s)| checksums.checksum() == s.trailer.post_apply_checksum);
        for txn in txns {
            let recorded = !all_late && recorded_end.is_none_or(|end| txn.offset < end);
            if recorded {
                waltxn::apply(&mut checksums, files, &txn, ps)?;
            } else {
                late_txns.push(txn);
            }
        }
    }
    let actual = checksums.checksum();
    // The WAL index of the transactions counted in `checksums`: logical reads below see what
    // SQLite would read. (Late transactions are indexed too, and recorded at the end.)
    inner.wal = wal;
    let loose = db.dir.join(LOOSE_FILE);
    match &last {
        None => {
            log.set_recovered(
                DbState { pos: Pos::EMPTY, page_size: ps, checksums: PageChecksums::new() },
                false,
                0,
            );
            drop(inner);
            tracing::info!(db = %db.name, "database has no LTX files: writing a snapshot at TXID 1");
            let inner = db.lock();
            let commit = checksums.page_count();
            let mut pages = Vec::new();
            for p in 1..=commit {
                let pgno = PageNo(p);
                if pgno == PageNo::lock_page(ps) {
                    continue;
                }
                let mut buf = vec![0u8; ps as usize];
                read_logical_page(db, &inner, pgno, &mut buf)?;
                pages.push((pgno, buf));
            }
            let c = Commit {
                page_size: ps,
                commit,
                pages,
                wal: None,
                durable: true,
                timestamp_ms: now_ms(),
            };
            log.commit(c)?;
            remove_loose(&loose)?;
            return Ok(());
        }
        Some((path, s)) => {
            let mut want = Pos { txid: s.header.max_txid, checksum: s.trailer.post_apply_checksum };
            // The position right before the newest file, if its header says.
            let before = (s.header.min_txid.0 > 1).then_some(s.header.pre_apply_checksum);
            let wal_empty = inner.wal.committed_offset() <= 32 || db.file(FileKind::Wal).is_none();
            let mut state_checksums = checksums;
            // The newest intact file is where the last clean shutdown ended.
            let newest_is_clean = loaded.as_ref().is_some_and(|l| l.cache.pos == want);
            if actual != want.checksum && late_txns.is_empty() {
                if let Some(k) =
                    later.iter().copied().find(|k| k.txid > want.txid && k.checksum == actual)
                {
                    // The database is intact at a position its LTX history lost (files
                    // damaged or deleted after they were written): the database file is
                    // the authority. A snapshot at exactly that position continues the
                    // history every replica has; none of them is resynced backwards.
                    let commit = state_checksums.page_count();
                    snapshot_at(db, log, &inner, ps, commit, k)?;
                    tracing::warn!(db = %db.name, newest_intact = %want, pos = %k,
                        "the database file is intact at a position its LTX files no longer \
                         reach: wrote a snapshot LTX file at that position (no transaction \
                         lost; replicas continue from it)");
                    want = k;
                } else if wal_empty && (before == Some(actual) || newest_is_clean) {
                    // The LTX file was written but its pages never reached the database
                    // file (a replica's apply cut off by a crash), or a page it wrote was
                    // damaged: apply it again. Only a file exactly one step ahead of the
                    // database, or the one the last clean shutdown ended at: re-applying an
                    // older file (a newer one lost) onto a newer database would roll it back.
                    tracing::warn!(db = %db.name, file = %path.display(), %actual, expected = %want.checksum,
                        "database lags its newest LTX file: applying it again");
                    let mut store = FileStore::from_file(dbf.try_clone()?);
                    let r = super::LtxDir::open(path)?;
                    if let Err(e) = reapply(r, &mut store, ps) {
                        return Err(fail(format!("re-applying {}: {e}", path.display())));
                    }
                    state_checksums = scan_db(&dbf, &db_path, ps)?;
                } else if loose.exists() {
                    // Writes that bypassed SQLite's journal (recorded as they happened,
                    // see `Db::write`) were cut off by a crash before they became a
                    // transaction: they become one now.
                    //
                    // As a snapshot at the next TXID: the checksums at `want` are not known
                    // (the pages changed in place), so an incremental file could not say
                    // which pages changed. (Recording the file's pages against its own
                    // checksums found nothing changed and kept the old position: found by
                    // the super-journal crash test.)
                    let next =
                        want.txid.next().ok_or_else(|| fail("TXID space exhausted".into()))?;
                    let at = Pos { txid: next, checksum: actual };
                    snapshot_at(db, log, &inner, ps, state_checksums.page_count(), at)?;
                    tracing::warn!(db = %db.name, from = %want, txid = %next,
                        "the database holds writes made outside a SQLite transaction that a \
                         crash cut off: recorded as the next transaction (a snapshot LTX file)");
                    want = Pos { txid: next, checksum: actual };
                }
            }
            if state_checksums.checksum() != want.checksum && !db.node.writable() {
                // A replica: report the position with the checksum the file really has.
                // The primary sees the same TXID with another checksum (diverged) and
                // sends a snapshot; nothing here needs a person.
                tracing::warn!(db = %db.name, actual = %state_checksums.checksum(), expected = %want.checksum,
                    "replica database diverged from its LTX files; the primary will resync it");
                want = Pos { txid: want.txid, checksum: state_checksums.checksum() };
            }
            if state_checksums.checksum() != want.checksum {
                return Err(fail(format!(
                    "database checksum {} does not match position {} of {}. The database \
                     was changed outside litefleet or is corrupt, and no replica is resynced \
                     from it. Way out: on a replica, remove dbs/{} and it resyncs from the \
                     primary; on a primary, copy dbs/{} from a replica that has it (stopped), \
                     or inspect with `litefleet ltx verify {}` and rebuild with `litefleet ltx \
                     apply`, or move dbs/{}/ltx aside to adopt the file as it is (a new \
                     snapshot is written at TXID 1)",
                    state_checksums.checksum(),
                    want,
                    path.display(),
                    db.name,
                    db.name,
                    db.ltx.path().display(),
                    db.name
                )));
            }
            remove_loose(&loose)?;
            log.set_recovered(
                DbState { pos: want, page_size: ps, checksums: state_checksums },
                false,
                s.header.timestamp,
            );
        }
    }
    // Late WAL transactions: record them now, in order.
    if !late_txns.is_empty() {
        tracing::warn!(db = %db.name, count = late_txns.len(),
            "WAL holds commits without LTX files (crash during commit): recording them");
        let Some(w) = db.file(FileKind::Wal) else { return Ok(()) };
        let files =
            TxnFiles { wal: Backing::new(&*w, &wal_path), db: Some(Backing::new(&*dbf, &db_path)) };
        for txn in late_txns {
            // As the live path would have recorded it, from the page count after the
            // transaction before.
            let old = log.state.checksums.page_count();
            log.commit(waltxn::commit(files, &txn, ps, old, true, now_ms())?)?;
        }
    }
    if inner.mode == JournalMode::Wal {
        tracing::debug!(db = %db.name, wal_pages = inner.wal.indexed_pages(), "WAL mode");
    }
    Ok(())
}

/// Writes every page of an LTX file and truncates to its commit, without position checks.
fn reapply<R: io::Read>(
    mut r: ltx::LtxReader<R>,
    store: &mut FileStore,
    ps: u32,
) -> Result<Checksum, ltx::LtxError> {
    use crate::core::ltx::PageStore;
    let commit = r.header().commit;
    while let Some(p) = r.next_page()? {
        store.write_page(p.pgno, p.data)?;
    }
    let (t, _) = r.finish()?;
    store.truncate(commit, ps)?;
    store.sync()?;
    Ok(t.post_apply_checksum)
}

/// The checksum cache a clean shutdown left.
struct Loaded {
    cache: Cache,
    /// The database file and the newest LTX file are exactly as it recorded them: it
    /// replaces the scan and the newest file's full verification.
    trusted: bool,
    ltx_name: String,
}

/// Loads and deletes the cache (`None`: no clean shutdown, or a damaged cache).
fn load_cache(db: &Db) -> io::Result<Option<Loaded>> {
    let path = db.dir.join(CACHE_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    // One use only: a later crash must not find a cache from before it.
    fs::remove_file(&path)?;
    let Some(cache) = Cache::decode(&bytes) else {
        tracing::warn!(db = %db.name, "checksum cache is damaged: scanning");
        return Ok(None);
    };
    let newest = db.ltx.list()?.pop();
    let ltx_len = match &newest {
        Some(n) => fs::metadata(&n.2)?.len(),
        None => 0,
    };
    let db_ok = fs::metadata(db.dir.join("database")).is_ok_and(|m| cache.describes(&m));
    let trusted = newest.as_ref().is_some_and(|n| (n.0, n.1, ltx_len) == cache.ltx)
        && cache.ltx.1 == cache.pos.txid
        && db_ok
        && !db.dir.join("journal").exists()
        && fs::metadata(db.dir.join("wal")).map(|m| m.len() <= 32).unwrap_or(true);
    if !trusted {
        tracing::info!(db = %db.name, "files changed since the checksum cache was written: scanning");
    }
    let ltx_name = ltx::file_name(cache.ltx.0, cache.ltx.1);
    Ok(Some(Loaded { cache, trusted, ltx_name }))
}

/// Writes a snapshot LTX file of the database (as SQLite reads it, `commit` pages) at
/// `at.txid`, durably, after checking that it reads back at exactly `at`.
fn snapshot_at(
    db: &Db,
    log: &mut LtxLog,
    inner: &Inner,
    ps: u32,
    commit: u32,
    at: Pos,
) -> Result<(), DbError> {
    let read = |pgno, buf: &mut [u8]| read_logical_page(db, inner, pgno, buf);
    let (sum, bytes) = build_snapshot(read, ps, commit, at.txid, db.opts.compress, db.node_id)?;
    if sum != at.checksum {
        return Err(DbError::Recovery {
            name: db.name.clone(),
            reason: format!("the database changed while it was read for a snapshot at {at}"),
        });
    }
    log.store_received(Txid(1), at.txid, &bytes)?;
    log.sync()?;
    Ok(())
}

/// Whether the super-journal SQLite named (`name`, the path the application used) still
/// exists. Recovery runs before the mount is up: a super-journal in the mount is a node-local
/// file, found by its name under `<data.dir>/local/`; one elsewhere (the main database of
/// the transaction outside the mount) is looked up where it is. Errs towards "exists" (a
/// rollback, as SQLite would do) when the name cannot be read.
fn super_exists(db: &Db, name: &[u8]) -> bool {
    let path =
        std::path::Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name));
    if path.exists() {
        return true;
    }
    let Some(base) = path.file_name() else { return true };
    let Some(data) = db.dir.parent().and_then(|d| d.parent()) else { return true };
    data.join(crate::store::LOCAL_DIR).join(base).exists()
}

/// Removes the marker of writes outside a transaction once they are recorded.
fn remove_loose(path: &std::path::Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
