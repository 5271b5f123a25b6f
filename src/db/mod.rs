//! One database on the primary: its files under `dbs/<name>/`, its position, and the commit
//! path that turns what SQLite writes into LTX files.
//!
//! The FUSE layer calls [`Db`] for every operation on `<db>`, `<db>-journal`, `<db>-wal` and
//! `<db>-shm`. Writes go straight to the backing files; the commit trackers of
//! [`crate::core::commit`] decide when a transaction committed, and [`Db`] then reads the
//! transaction's pages back, writes the LTX file (atomically, before the write that
//! completed the commit returns to SQLite, so no reader can see a transaction that has no LTX
//! file), advances the position and publishes it on a watch channel for subscribers
//! (replication streams, `-pos` readers).
//!
//! Durability follows SQLite's: LTX files of WAL transactions are fsynced when SQLite fsyncs
//! a file of the database (so `synchronous=FULL` commits are durable with their LTX, and
//! `NORMAL` pays no extra fsync); rollback-journal commits fsync their LTX at once.
//!
//! Locking: SQLite's POSIX locks are handled by the kernel on the mount (the filesystem does
//! not ask for `FUSE_POSIX_LOCKS`), so they cost no round trip; commit detection does not
//! depend on them.

mod ltxdir;
mod recover;

pub use ltxdir::LtxDir;

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::core::commit::{JournalEvent, ReadAt, RollbackTracker, WalTracker, WalWrite};
use crate::core::ltx::{DbState, FLAG_COMPRESS_LZ4, Header, LtxError, LtxWriter, page_checksum};
use crate::core::sqlite::{DbHeader, JournalMode};
use crate::core::types::{Checksum, NodeId, PageNo, Pos, Txid};

/// Which of a database's files an operation is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    Database,
    Journal,
    Wal,
    Shm,
}

impl FileKind {
    pub const ALL: [FileKind; 4] =
        [FileKind::Database, FileKind::Journal, FileKind::Wal, FileKind::Shm];

    /// Name of the backing file under `dbs/<name>/`.
    pub fn backing_name(self) -> &'static str {
        match self {
            FileKind::Database => "database",
            FileKind::Journal => "journal",
            FileKind::Wal => "wal",
            FileKind::Shm => "shm",
        }
    }

    /// Suffix of the file in the mount (`<db><suffix>`).
    pub fn suffix(self) -> &'static str {
        match self {
            FileKind::Database => "",
            FileKind::Journal => "-journal",
            FileKind::Wal => "-wal",
            FileKind::Shm => "-shm",
        }
    }

    fn index(self) -> usize {
        match self {
            FileKind::Database => 0,
            FileKind::Journal => 1,
            FileKind::Wal => 2,
            FileKind::Shm => 3,
        }
    }
}

/// Errors of database operations. `crate::fuse::errno` maps each to the errno the
/// application sees.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("{0} does not exist")]
    NotFound(&'static str),
    #[error(
        "database writes must be whole pages at page boundaries (offset {offset}, {len} bytes, page size {page_size})"
    )]
    UnalignedWrite { offset: u64, len: usize, page_size: u32 },
    #[error("the first write to a new database must be a SQLite header at offset 0")]
    NotSqlite,
    #[error("LTX: {0}")]
    Ltx(#[from] LtxError),
    #[error("database is read-only on this node")]
    ReadOnly,
    #[error("database {name}: {reason}")]
    Recovery { name: String, reason: String },
}

/// Options for the commit path.
#[derive(Debug, Clone, Copy)]
pub struct DbOptions {
    /// LZ4-compress LTX files (LiteFS `data.compress`).
    pub compress: bool,
    /// Stamped into every LTX file this node writes.
    pub node_id: NodeId,
}

type Files = [Option<Arc<File>>; 4];

/// Mutable state of a database, behind [`Db::inner`].
///
/// Invariant: `state.checksums` describes the database as SQLite sees it at `state.pos`
/// (database file plus committed WAL frames).
struct Inner {
    state: DbState,
    wal: WalTracker,
    rollback: RollbackTracker,
    /// Journal mode of the database file, from header bytes 18/19.
    mode: JournalMode,
    /// LTX files renamed into place without an fsync, made durable by the next SQLite fsync.
    unsynced: Vec<PathBuf>,
    /// Milliseconds timestamp of the last LTX.
    last_ltx_ms: i64,
    deleted: bool,
}

/// One database. See the module docs.
pub struct Db {
    name: String,
    dir: PathBuf,
    ltx: LtxDir,
    opts: DbOptions,
    /// Open backing files, indexed by [`FileKind::index`]. Reads clone the `Arc` and read
    /// without holding `inner`.
    files: RwLock<Files>,
    inner: Mutex<Inner>,
    pos_tx: watch::Sender<Pos>,
}

fn now_ms() -> i64 {
    // The shell owns the clock; the core gets timestamps passed in.
    #[allow(clippy::disallowed_methods)]
    let now = SystemTime::now();
    now.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn open_rw(path: &Path, create: bool) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).create(create).truncate(false).open(path)
}

impl Db {
    /// Opens the database stored in `dir` (`dbs/<name>`), creating the directory layout if
    /// needed, and recovers its position (see [`recover`]).
    pub fn open(name: &str, dir: PathBuf, opts: DbOptions) -> Result<Arc<Db>, DbError> {
        fs::create_dir_all(dir.join("ltx"))?;
        let ltx = LtxDir::new(dir.join("ltx"));
        let mut files: Files = Default::default();
        for kind in FileKind::ALL {
            let path = dir.join(kind.backing_name());
            if path.exists() {
                files[kind.index()] = Some(Arc::new(open_rw(&path, false)?));
            }
        }
        let (pos_tx, _) = watch::channel(Pos::EMPTY);
        let db = Db {
            name: name.to_owned(),
            dir,
            ltx,
            opts,
            files: RwLock::new(files),
            inner: Mutex::new(Inner {
                state: DbState::default(),
                wal: WalTracker::new(),
                rollback: RollbackTracker::new(),
                mode: JournalMode::Rollback,
                unsynced: Vec::new(),
                last_ltx_ms: 0,
                deleted: false,
            }),
            pos_tx,
        };
        recover::recover(&db)?;
        Ok(Arc::new(db))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn ltx_dir(&self) -> &LtxDir {
        &self.ltx
    }

    /// The current position.
    pub fn pos(&self) -> Pos {
        *self.pos_tx.borrow()
    }

    /// Subscribes to position changes (one value per committed LTX).
    pub fn subscribe(&self) -> watch::Receiver<Pos> {
        self.pos_tx.subscribe()
    }

    /// Timestamp (ms since the Unix epoch) of the last LTX file.
    pub fn last_ltx_ms(&self) -> i64 {
        self.lock().last_ltx_ms
    }

    /// Whether the database file exists (it does not after a deletion, until re-created).
    pub fn exists(&self) -> bool {
        self.file(FileKind::Database).is_some()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves state we cannot trust; poisoning propagates
        // it instead of serving from it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The open backing file of `kind`, if it exists.
    pub fn file(&self, kind: FileKind) -> Option<Arc<File>> {
        let files = self.files.read().unwrap_or_else(|e| e.into_inner());
        files[kind.index()].clone()
    }

    fn set_file(&self, kind: FileKind, f: Option<Arc<File>>) {
        let mut files = self.files.write().unwrap_or_else(|e| e.into_inner());
        files[kind.index()] = f;
    }

    /// Size of the backing file of `kind`.
    pub fn size(&self, kind: FileKind) -> Result<u64, DbError> {
        let f = self.file(kind).ok_or(DbError::NotFound(kind.backing_name()))?;
        Ok(f.metadata()?.len())
    }

    /// Creates the backing file of `kind` if missing.
    pub fn create(&self, kind: FileKind) -> Result<(), DbError> {
        let _g = self.lock();
        if self.file(kind).is_none() {
            let f = open_rw(&self.dir.join(kind.backing_name()), true)?;
            self.set_file(kind, Some(Arc::new(f)));
        }
        Ok(())
    }

    /// Reads from the backing file; short only at end of file.
    pub fn read(&self, kind: FileKind, buf: &mut [u8], offset: u64) -> Result<usize, DbError> {
        let f = self.file(kind).ok_or(DbError::NotFound(kind.backing_name()))?;
        let mut done = 0;
        while done < buf.len() {
            match f.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(done)
    }

    /// Writes to the backing file and runs commit detection.
    pub fn write(&self, kind: FileKind, data: &[u8], offset: u64) -> Result<usize, DbError> {
        let mut inner = self.lock();
        let f = self.file(kind).ok_or(DbError::NotFound(kind.backing_name()))?;
        match kind {
            FileKind::Database => {
                if offset == 0 {
                    // Page 1 carries the page size and journal mode.
                    let h = DbHeader::parse(data).map_err(|_| DbError::NotSqlite)?;
                    inner.mode = h.journal_mode();
                    if inner.state.page_size == 0 {
                        inner.state.page_size = h.page_size;
                    }
                } else if inner.state.page_size == 0 {
                    return Err(DbError::NotSqlite);
                }
                let ps = inner.state.page_size;
                if !offset.is_multiple_of(u64::from(ps)) || data.len() != ps as usize {
                    return Err(DbError::UnalignedWrite { offset, len: data.len(), page_size: ps });
                }
                f.write_all_at(data, offset)?;
                if inner.mode == JournalMode::Rollback {
                    inner.rollback.on_db_write(offset, data.len() as u64, ps);
                }
            }
            FileKind::Journal => {
                f.write_all_at(data, offset)?;
                if inner.rollback.on_journal_write(offset, data) == JournalEvent::Finalized {
                    self.commit_rollback(&mut inner)?;
                }
            }
            FileKind::Wal => {
                f.write_all_at(data, offset)?;
                if inner.state.page_size == 0
                    && let Some(db) = self.file(FileKind::Database)
                    && let Some(h) = read_header(&db)?
                {
                    inner.state.page_size = h.page_size;
                }
                let ps = inner.state.page_size;
                if inner.wal.on_write(offset, data, ps) == WalWrite::MaybeCommit {
                    self.commit_wal(&mut inner, &f)?;
                }
            }
            FileKind::Shm => f.write_all_at(data, offset)?,
        }
        Ok(data.len())
    }

    /// Sets the backing file's length.
    pub fn truncate(&self, kind: FileKind, size: u64) -> Result<(), DbError> {
        let mut inner = self.lock();
        let f = self.file(kind).ok_or(DbError::NotFound(kind.backing_name()))?;
        f.set_len(size)?;
        match kind {
            FileKind::Journal
                if inner.rollback.on_journal_truncate(size) == JournalEvent::Finalized =>
            {
                self.commit_rollback(&mut inner)?;
            }
            FileKind::Wal if size < inner.wal.committed_offset() => inner.wal.reset(),
            _ => {}
        }
        Ok(())
    }

    /// fsyncs the backing file, and with it every LTX file not yet durable.
    pub fn fsync(&self, kind: FileKind) -> Result<(), DbError> {
        let mut inner = self.lock();
        if let Some(f) = self.file(kind) {
            f.sync_data()?;
        }
        self.sync_ltx(&mut inner)
    }

    /// Makes every LTX file written so far durable.
    pub fn sync_pending(&self) -> Result<(), DbError> {
        let mut inner = self.lock();
        self.sync_ltx(&mut inner)
    }

    fn sync_ltx(&self, inner: &mut Inner) -> Result<(), DbError> {
        if inner.unsynced.is_empty() {
            return Ok(());
        }
        for path in &inner.unsynced {
            // A file removed by retention since needs no sync.
            match File::open(path) {
                Ok(f) => f.sync_data()?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.ltx.sync_dir()?;
        inner.unsynced.clear();
        Ok(())
    }

    /// Unlinks the backing file of an auxiliary file (`-journal`, `-wal`, `-shm`).
    pub fn unlink(&self, kind: FileKind) -> Result<(), DbError> {
        let mut inner = self.lock();
        if self.file(kind).is_none() {
            return Err(DbError::NotFound(kind.backing_name()));
        }
        if kind == FileKind::Journal {
            // DELETE mode: the unlink is the commit. Write the LTX first, so a crash after
            // the unlink never leaves a committed transaction without one.
            self.commit_rollback(&mut inner)?;
        }
        fs::remove_file(self.dir.join(kind.backing_name()))?;
        self.set_file(kind, None);
        if kind == FileKind::Wal {
            inner.wal.reset();
        }
        Ok(())
    }

    /// Deletes the database (`rm <db>`): writes a deletion LTX (Commit 0) and removes the
    /// database, journal, WAL and shm files. The LTX directory and the position remain, so a
    /// database re-created under the same name continues from the next TXID.
    pub fn delete(&self) -> Result<(), DbError> {
        let mut inner = self.lock();
        if self.file(FileKind::Database).is_none() {
            return Err(DbError::NotFound("database"));
        }
        let page_size = if inner.state.page_size == 0 { 4096 } else { inner.state.page_size };
        self.write_ltx(&mut inner, page_size, 0, &[], None, true)?;
        for kind in FileKind::ALL {
            let _ = fs::remove_file(self.dir.join(kind.backing_name()));
            self.set_file(kind, None);
        }
        inner.state.page_size = 0;
        inner.wal.reset();
        inner.rollback.take_dirty();
        inner.deleted = true;
        Ok(())
    }

    /// Re-creates the database file after a deletion or for a new database.
    pub fn create_database(&self) -> Result<(), DbError> {
        self.create(FileKind::Database)?;
        self.lock().deleted = false;
        Ok(())
    }

    // ===== Commit path ===== //

    /// A rollback-journal transaction ended: build its LTX from the dirty pages.
    fn commit_rollback(&self, inner: &mut Inner) -> Result<(), DbError> {
        let dirty = inner.rollback.take_dirty();
        let Some(db) = self.file(FileKind::Database) else { return Ok(()) };
        if inner.state.page_size == 0 {
            return Ok(()); // nothing was ever written
        }
        let ps = inner.state.page_size;
        let commit = db_page_count(&db, ps)?;
        let mut pages = Vec::new();
        let mut buf = vec![0u8; ps as usize];
        let old = inner.state.checksums.page_count();
        let candidates = dirty.iter().copied().filter(|p| p.0 <= commit).chain(
            // Pages the database grew by but SQLite never wrote read as what is on disk.
            (old + 1..=commit).map(PageNo).filter(|p| dirty.binary_search(p).is_err()),
        );
        let mut list: Vec<PageNo> = candidates.collect();
        list.sort_unstable();
        let lock = PageNo::lock_page(ps);
        for pgno in list {
            if pgno == lock {
                continue;
            }
            read_page(&*db, pgno, &mut buf)?;
            pages.push((pgno, buf.clone()));
        }
        self.commit_pages(inner, ps, commit, pages, None, true)
    }

    /// Scans the WAL after a write that may have completed a transaction.
    fn commit_wal(&self, inner: &mut Inner, wal: &File) -> Result<(), DbError> {
        let ps = match inner.state.page_size {
            0 => match self.file(FileKind::Database) {
                Some(db) => match read_header(&db)? {
                    Some(h) => h.page_size,
                    None => return Ok(()),
                },
                None => return Ok(()),
            },
            ps => ps,
        };
        inner.state.page_size = ps;
        let txns = inner.wal.scan(wal, ps)?;
        for txn in txns {
            let mut pages = Vec::with_capacity(txn.pages.len());
            let lock = PageNo::lock_page(ps);
            for &(pgno, off) in &txn.pages {
                if pgno.0 > txn.commit || pgno == lock {
                    continue;
                }
                let mut buf = vec![0u8; ps as usize];
                if !wal.pread_exact(&mut buf, off)? {
                    return Err(DbError::Io(io::Error::other("WAL frame vanished during commit")));
                }
                pages.push((pgno, buf));
            }
            let old = inner.state.checksums.page_count();
            if txn.commit > old {
                // Growth SQLite did not write (free pages): what a reader would see.
                let db = self.file(FileKind::Database);
                for p in old + 1..=txn.commit {
                    let pgno = PageNo(p);
                    if pgno == lock || txn.pages.iter().any(|(q, _)| *q == pgno) {
                        continue;
                    }
                    let mut buf = vec![0u8; ps as usize];
                    if let Some(o) = inner.wal.page_offset(pgno) {
                        wal.pread_exact(&mut buf, o)?;
                    } else if let Some(db) = &db {
                        read_page(&**db, pgno, &mut buf)?;
                    }
                    pages.push((pgno, buf));
                }
                pages.sort_by_key(|(p, _)| *p);
            }
            let wal_fields = Some((txn.offset, txn.size, txn.salt1, txn.salt2));
            self.commit_pages(inner, ps, txn.commit, pages, wal_fields, false)?;
        }
        Ok(())
    }

    /// Writes the LTX for a transaction that left the database with `commit` pages and the
    /// given page contents, and advances the position. Pages whose content did not change
    /// are left out; a transaction that changed nothing writes no file.
    fn commit_pages(
        &self,
        inner: &mut Inner,
        page_size: u32,
        commit: u32,
        pages: Vec<(PageNo, Vec<u8>)>,
        wal: Option<(u64, u64, u32, u32)>,
        sync: bool,
    ) -> Result<(), DbError> {
        let old = inner.state.checksums.page_count();
        let snapshot = inner.state.pos.txid == Txid::ZERO || inner.deleted;
        let changed: Vec<(PageNo, Vec<u8>, Checksum)> = pages
            .into_iter()
            .map(|(p, d)| {
                let c = page_checksum(p, &d);
                (p, d, c)
            })
            .filter(|(p, _, c)| snapshot || p.0 > old || inner.state.checksums.page(*p) != Some(*c))
            .collect();
        if !snapshot && changed.is_empty() && commit == old {
            return Ok(());
        }
        let page_refs: Vec<(PageNo, &[u8], Checksum)> =
            changed.iter().map(|(p, d, c)| (*p, d.as_slice(), *c)).collect();
        self.write_ltx(inner, page_size, commit, &page_refs, wal, sync)
    }

    /// Writes one LTX file moving the database from its position to `commit` pages with
    /// `pages` changed, then publishes the new position.
    fn write_ltx(
        &self,
        inner: &mut Inner,
        page_size: u32,
        commit: u32,
        pages: &[(PageNo, &[u8], Checksum)],
        wal: Option<(u64, u64, u32, u32)>,
        sync: bool,
    ) -> Result<(), DbError> {
        let txid = inner.state.pos.txid.next().ok_or(DbError::Recovery {
            name: self.name.clone(),
            reason: "TXID space exhausted".into(),
        })?;
        // TXID 1 is a snapshot by definition; so is the first file after a deletion, which
        // must carry every page. A snapshot has no pre-apply checksum.
        let snapshot = txid == Txid(1);
        let mut next = if snapshot || inner.deleted {
            crate::core::ltx::PageChecksums::new()
        } else {
            inner.state.checksums.clone()
        };
        for (p, _, c) in pages {
            next.set(*p, *c);
        }
        next.truncate(commit);
        let post = next.checksum();
        let (wal_offset, wal_size, salt1, salt2) = wal.unwrap_or_default();
        let ts = now_ms();
        let header = Header {
            flags: if self.opts.compress { FLAG_COMPRESS_LZ4 } else { 0 },
            page_size,
            commit,
            min_txid: txid,
            max_txid: txid,
            timestamp: ts,
            pre_apply_checksum: if snapshot { Checksum(0) } else { inner.state.pos.checksum },
            wal_offset: wal_offset as i64,
            wal_size: wal_size as i64,
            wal_salt1: salt1,
            wal_salt2: salt2,
            node_id: self.opts.node_id,
        };
        if snapshot && commit > 0 {
            // A snapshot must hold every page: fill any the transaction did not touch.
            let missing: Vec<PageNo> = next.missing(page_size).collect();
            if !missing.is_empty() {
                return Err(DbError::Recovery {
                    name: self.name.clone(),
                    reason: format!("snapshot at TXID 1 lacks {} pages", missing.len()),
                });
            }
        }
        let path = self.ltx.write_atomic(txid, txid, sync, |w| {
            let mut lw = LtxWriter::new(w, header).map_err(ltx_io)?;
            for (p, d, _) in pages {
                lw.write_page(*p, d).map_err(ltx_io)?;
            }
            lw.finish(post).map_err(ltx_io)?;
            Ok(())
        })?;
        if !sync {
            inner.unsynced.push(path);
        }
        inner.state.checksums = next;
        inner.state.pos = Pos { txid, checksum: post };
        inner.state.page_size = page_size;
        inner.last_ltx_ms = ts;
        inner.deleted = false;
        self.pos_tx.send_replace(inner.state.pos);
        tracing::debug!(db = %self.name, pos = %inner.state.pos, pages = pages.len(), commit, "committed");
        Ok(())
    }
}

fn ltx_io(e: LtxError) -> io::Error {
    match e {
        LtxError::Io(e) => e,
        e => io::Error::other(e.to_string()),
    }
}

/// Reads page `pgno`; pages past the end read as zeros.
fn read_page<R: ReadAt + ?Sized>(f: &R, pgno: PageNo, buf: &mut [u8]) -> io::Result<()> {
    let off = pgno.offset(buf.len() as u32);
    let mut done = 0;
    while done < buf.len() {
        let n = f.pread(&mut buf[done..], off + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    buf[done..].fill(0);
    Ok(())
}

/// The database header, if the file has one.
fn read_header(f: &File) -> io::Result<Option<DbHeader>> {
    let mut b = [0u8; 100];
    if !f.pread_exact(&mut b, 0)? {
        return Ok(None);
    }
    Ok(DbHeader::parse(&b).ok())
}

/// Pages in the database file: the header's count when valid, else the file size.
fn db_page_count(f: &File, page_size: u32) -> io::Result<u32> {
    if let Some(h) = read_header(f)?
        && let Some(n) = h.valid_page_count()
    {
        return Ok(n);
    }
    Ok((f.metadata()?.len() / u64::from(page_size)) as u32)
}
