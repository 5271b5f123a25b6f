//! One database on the primary: its files under `dbs/<name>/`, its position, and the commit
//! path that turns what SQLite writes into LTX files.
//!
//! The FUSE layer calls [`Db`] for every operation on `<db>`, `<db>-journal`, `<db>-wal` and
//! `<db>-shm`. Writes go straight to the backing files; the commit trackers of
//! [`crate::core::commit`] decide when a transaction committed, and [`Db`] then reads the
//! transaction's pages back and sends them to the database's actor ([`actor`]), which writes
//! the LTX file, advances the position and publishes it to subscribers.
//!
//! Invariant (crash safety): every transaction SQLite committed is, at every instant, in the
//! WAL or journal, or in a durable LTX file.
//! - WAL mode: commits are casts; SQLite's `write` does not wait for the LTX file, because
//!   the WAL holds the transaction. Before anything could destroy a WAL copy (the first
//!   write to the database file, which is a checkpoint; rewriting the WAL header, which is a
//!   restart; truncating or unlinking the WAL) a durable barrier waits until every LTX file
//!   so far is written and fdatasynced. Startup recovery turns committed WAL frames without
//!   an LTX file into LTX files. SQLite's own fsync of the WAL therefore costs no LTX fsync.
//! - Rollback journal: the commit (journal unlink, truncate or header zeroing) destroys the
//!   only other copy of the transaction, so it waits for its LTX file to be fdatasynced.
//!
//! Locking: SQLite's POSIX locks are handled by the kernel on the mount (the filesystem does
//! not ask for `FUSE_POSIX_LOCKS`), so they cost no round trip; commit detection does not
//! depend on them.

mod actor;
mod cache;
mod log;
mod ltxdir;
mod recover;
mod replica;
pub mod verify;

pub use actor::{DbMsg, LogFailure, Shared};
pub use log::{Commit, Committed, LtxLog, WalRange};
pub use ltxdir::LtxDir;

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use ractor::{Actor, ActorRef};
use tokio::sync::{broadcast, oneshot, watch};

use crate::core::commit::{JournalEvent, ReadAt, RollbackTracker, WalTracker, WalWrite};
use crate::core::ltx::LtxError;
use crate::core::quorum::Quorum;
use crate::core::sqlite::{DbHeader, JournalMode};
use crate::core::types::{NodeId, PageNo, Pos, Txid};
use crate::node::NodeCtx;

/// Casts a database actor may have queued before the FUSE side waits for it to catch up.
const MAX_INFLIGHT: usize = 256;

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
    #[error("LTX log of this database is failing, writes refused until it recovers: {0}")]
    Log(LogFailure),
    #[error("the database actor is not running")]
    ActorGone,
    /// A write or truncation of the database file that is not part of SQLite's commit
    /// protocol and cannot be made into a transaction (the WAL holds newer pages).
    #[error("{0}")]
    OutsideTransaction(String),
    /// The database was found damaged on this node; writes are refused.
    #[error("database damaged on this node, writes refused: {0}")]
    Damaged(String),
    #[error("replicated LTX refused: {0}")]
    Rejected(String),
    /// A replicated file is intact but does not continue this database: the local history
    /// is not the primary's. The local LTX files were set aside; a resync follows.
    #[error("history diverged from the primary's: {0}")]
    Diverged(String),
    /// Synchronous replication: the node lost the primary role before enough replicas
    /// confirmed the commit. Its outcome is unknown to the application: it is in this
    /// node's WAL and LTX files, and in the cluster's history only if a replica got it.
    #[error(
        "commit {txid} not confirmed by {need} replica(s) ({have} did) before this node lost the primary role"
    )]
    Unreplicated { txid: Txid, need: usize, have: usize },
}

/// A commit an operation completed that must reach `lease.sync-replicas` replicas before
/// the operation is answered ([`Db::replicated`]); `None` when there is nothing to wait
/// for.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncPoint(pub Option<Txid>);

/// Options for the commit path.
#[derive(Debug, Clone, Copy)]
pub struct DbOptions {
    /// LZ4-compress LTX files (LiteFS `data.compress`).
    pub compress: bool,
    /// Stamped into every LTX file this node writes.
    pub node_id: NodeId,
}

pub(crate) type Files = [Option<Arc<File>>; 4];

/// What the FUSE side tracks of a database, behind [`Db::inner`].
struct Inner {
    /// Page size, 0 until the database has a header.
    page_size: u32,
    /// Page count after the last transaction handed to the actor.
    page_count: u32,
    wal: WalTracker,
    rollback: RollbackTracker,
    /// Journal mode of the database file, from header bytes 18/19.
    mode: JournalMode,
    /// Commits were cast since the last durable barrier.
    log_dirty: bool,
    deleted: bool,
    /// Pages were written to the database file outside any SQLite transaction (no journal
    /// active, no WAL frame of theirs): they are in `rollback`'s dirty set, the
    /// [`LOOSE_FILE`] marker exists, and they become one transaction at the next commit
    /// point (see [`Db::end_loose`]).
    loose: bool,
}

/// Marker under `dbs/<name>/` while writes outside a SQLite transaction are pending: made
/// durable before the first such write, removed once they are a durable LTX file. Startup
/// recovery finding it records the database as it is as the next transaction (a crash cut
/// the writes off); without it a database that differs from its LTX files is corruption.
pub const LOOSE_FILE: &str = "loose";

impl Inner {
    /// The database file is gone (deleted, or turned into a node-local file): no page size,
    /// no pages, nothing pending.
    fn forget_file(&mut self) {
        self.page_size = 0;
        self.page_count = 0;
        self.wal.reset();
        self.rollback.take_dirty();
        self.deleted = true;
        self.log_dirty = false;
    }
}

/// One database. See the module docs.
pub struct Db {
    name: String,
    dir: PathBuf,
    ltx: LtxDir,
    /// Open backing files, indexed by [`FileKind::index`]. Reads clone the `Arc` and read
    /// without holding `inner`.
    files: Arc<RwLock<Files>>,
    inner: Mutex<Inner>,
    node: Arc<NodeCtx>,
    opts: DbOptions,
    node_id: NodeId,
    actor: OnceLock<ActorRef<DbMsg>>,
    shared: Arc<Shared>,
    pos_rx: watch::Receiver<Pos>,
    events: broadcast::Sender<Arc<Committed>>,
    last_ltx_ms: Arc<AtomicI64>,
    /// Synchronous replication: replicas' durable acknowledgements, and the TXID enough of
    /// them reached (see [`Quorum`]).
    acks: Mutex<Quorum>,
    replicated: watch::Sender<Txid>,
    /// Bumped on every change of `acks`: waiters for one replica's acknowledgement
    /// (handoff, shutdown) wake on it instead of polling.
    ack_seq: watch::Sender<u64>,
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
    /// needed, recovers its position (see [`recover`]) and starts its actor on `rt`.
    pub fn open(
        name: &str,
        dir: PathBuf,
        opts: DbOptions,
        rt: &tokio::runtime::Handle,
        node: Arc<NodeCtx>,
    ) -> Result<Arc<Db>, DbError> {
        fs::create_dir_all(dir.join("ltx"))?;
        let ltx = LtxDir::new(dir.join("ltx"));
        let mut files: Files = Default::default();
        for kind in FileKind::ALL {
            let path = dir.join(kind.backing_name());
            if path.exists() {
                files[kind.index()] = Some(Arc::new(open_rw(&path, false)?));
            }
        }
        let mut log = LtxLog::new(name, ltx.clone(), opts);
        let db = Db {
            name: name.to_owned(),
            dir,
            ltx,
            files: Arc::new(RwLock::new(files)),
            node: node.clone(),
            opts,
            node_id: opts.node_id,
            inner: Mutex::new(Inner {
                page_size: 0,
                page_count: 0,
                wal: WalTracker::new(),
                rollback: RollbackTracker::new(),
                mode: JournalMode::Rollback,
                log_dirty: false,
                deleted: false,
                loose: false,
            }),
            actor: OnceLock::new(),
            shared: Arc::new(Shared::default()),
            pos_rx: log.pos_watch(),
            events: log.events(),
            last_ltx_ms: log.last_ltx_ms(),
            acks: Mutex::new(Quorum::default()),
            replicated: watch::Sender::new(Txid::ZERO),
            ack_seq: watch::Sender::new(0),
        };
        recover::recover(&db, &mut log)?;
        {
            let mut inner = db.lock();
            inner.page_count = log.state.checksums.page_count();
            inner.deleted = log.deleted;
        }
        if !db.node.writable() {
            db.fold_wal()?;
        }
        let apply = replica::ApplyCtx {
            name: name.to_owned(),
            dir: db.dir.clone(),
            files: db.files.clone(),
            node: db.node.clone(),
            lock_fds: None,
        };
        let args = actor::DbActorArgs { log, shared: db.shared.clone(), apply };
        let (actor, _) = rt
            .block_on(Actor::spawn(None, actor::DbActor, args))
            .map_err(|e| DbError::Recovery { name: name.to_owned(), reason: e.to_string() })?;
        let _ = db.actor.set(actor);
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

    /// The current position (of the last LTX file written).
    pub fn pos(&self) -> Pos {
        *self.pos_rx.borrow()
    }

    /// Subscribes to position changes (one value per committed LTX).
    pub fn subscribe(&self) -> watch::Receiver<Pos> {
        self.pos_rx.clone()
    }

    /// Subscribes to committed transactions with their LTX bytes. A receiver that falls
    /// more than [`log::FANOUT_CAPACITY`] behind gets `Lagged` and reads the LTX directory.
    pub fn events(&self) -> broadcast::Receiver<Arc<Committed>> {
        self.events.subscribe()
    }

    /// Timestamp (ms since the Unix epoch) of the last LTX file.
    pub fn last_ltx_ms(&self) -> i64 {
        self.last_ltx_ms.load(Ordering::Relaxed)
    }

    /// The database's actor.
    fn actor(&self) -> Result<&ActorRef<DbMsg>, DbError> {
        self.actor.get().ok_or(DbError::ActorGone)
    }

    /// Sends `msg` built around a reply port and waits for the answer. Called from FUSE
    /// threads, never from inside the runtime.
    fn call<T>(&self, msg: impl FnOnce(actor::Reply<T>) -> DbMsg) -> Result<T, DbError> {
        let (tx, rx) = oneshot::channel();
        self.actor()?.send_message(msg(tx.into())).map_err(|_| DbError::ActorGone)?;
        match rx.blocking_recv() {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(DbError::Log(e)),
            Err(_) => Err(DbError::ActorGone),
        }
    }

    /// Waits until every commit sent so far is written; with `durable`, fdatasynced too.
    fn barrier(&self, durable: bool) -> Result<(), DbError> {
        self.call(|reply| DbMsg::Barrier { durable, reply })
    }

    /// Queues a commit for the actor, waking it if the queue was empty.
    fn enqueue(&self, c: Commit) -> Result<(), DbError> {
        if self.shared.push(c) == 0 {
            self.actor()?.send_message(DbMsg::Wake).map_err(|_| DbError::ActorGone)?;
        }
        Ok(())
    }

    fn opts_compress(&self) -> bool {
        self.opts.compress
    }

    /// Refuses application writes on a replica.
    fn check_writable(&self) -> Result<(), DbError> {
        if self.node.writable() { Ok(()) } else { Err(DbError::ReadOnly) }
    }

    /// Replica: verifies and applies files received from the primary, in order (a run of
    /// consecutive files is applied as one; see [`replica::apply_run`]); returns the new
    /// position.
    ///
    /// `resync`: the first file is a resync snapshot (the primary found this database's
    /// history is not its own): the local LTX files are set aside first.
    pub async fn apply_ltx(&self, ltxs: Vec<bytes::Bytes>, resync: bool) -> Result<Pos, DbError> {
        let (tx, rx) = oneshot::channel();
        self.actor()?
            .send_message(DbMsg::Apply { ltxs, resync, reply: tx.into() })
            .map_err(|_| DbError::ActorGone)?;
        match rx.await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(e)) => Err(DbError::Log(e)),
            Err(_) => Err(DbError::ActorGone),
        }
    }

    /// Writes every staged transaction to the LTX directory (async callers: replication).
    pub async fn flush(&self) -> Result<(), DbError> {
        let (tx, rx) = oneshot::channel();
        self.actor()?
            .send_message(DbMsg::Barrier { durable: false, reply: tx.into() })
            .map_err(|_| DbError::ActorGone)?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(DbError::Log(e)),
            Err(_) => Err(DbError::ActorGone),
        }
    }

    /// Refuses writes while the LTX log is failing (see [`actor`]).
    fn check_health(&self) -> Result<(), DbError> {
        if let Some(why) = self.shared.damaged() {
            return Err(DbError::Damaged(why));
        }
        match self.shared.error() {
            Some(e) => Err(DbError::Log(e)),
            None => Ok(()),
        }
    }

    /// Whether this replica's history was found to differ from the primary's and set
    /// aside: its position must not be announced (the primary then sends a snapshot).
    pub fn needs_resync(&self) -> bool {
        self.shared.needs_resync()
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
        if matches!(kind, FileKind::Database | FileKind::Journal) {
            self.check_writable()?;
        }
        let _g = self.lock();
        if self.file(kind).is_none() {
            let f = open_rw(&self.dir.join(kind.backing_name()), true)?;
            self.set_file(kind, Some(Arc::new(f)));
        }
        Ok(())
    }

    /// Makes the file at `from` (a node-local `<db>-journal`, `-wal` or `-shm` made
    /// before the database existed, or a copy) this database's file of `kind`: moved, not
    /// copied, so a hot journal keeps its contents for SQLite to roll back.
    ///
    /// The database file itself is adopted only in place of an empty one (a new database:
    /// the node-local file it was created as holds no data yet, see `crate::fuse`).
    pub fn adopt(&self, kind: FileKind, from: &Path) -> Result<(), DbError> {
        self.check_writable()?;
        let _g = self.lock();
        let taken = match self.file(kind) {
            Some(f) if kind == FileKind::Database => f.metadata()?.len() > 0,
            Some(_) => true,
            None => false,
        };
        if taken {
            return Err(io::Error::from_raw_os_error(libc::EEXIST).into());
        }
        let to = self.dir.join(kind.backing_name());
        fs::rename(from, &to)?;
        let f = open_rw(&to, false)?;
        self.set_file(kind, Some(Arc::new(f)));
        tracing::info!(db = %self.name, file = kind.suffix(), "node-local file adopted by the database");
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

    /// Writes to the backing file and runs commit detection. The [`SyncPoint`] is the
    /// commit this write completed, if synchronous replication must confirm it.
    pub fn write(
        &self,
        kind: FileKind,
        data: &[u8],
        offset: u64,
    ) -> Result<(usize, SyncPoint), DbError> {
        if kind == FileKind::Shm {
            // Shared memory, no commit in it: never behind the commit lock. Hazard avoided:
            // the replica applier writes the wal-index header through the mount, and a
            // thread holding the commit lock may be waiting for that very apply (shutdown's
            // final sync does).
            let f = self.file(kind).ok_or(DbError::NotFound(kind.backing_name()))?;
            f.write_all_at(data, offset)?;
            return Ok((data.len(), SyncPoint(None)));
        }
        self.check_health()?;
        let mut inner = self.lock();
        // Under the lock: a handoff that paused writes and then took this lock
        // ([`Db::quiesce`]) has seen every write that passed this check.
        self.check_writable()?;
        let f = self.file(kind).ok_or(DbError::NotFound(kind.backing_name()))?;
        match kind {
            FileKind::Database => {
                // Inside a rollback-journal transaction anything goes: the journal restores
                // the pages if it does not commit (SQLite's crash tests tear unsynced pages,
                // the header included, before the hot journal is played back).
                let in_txn = self.journal_active()?;
                if offset < 100 {
                    // Page 1 carries the page size and journal mode: outside a transaction,
                    // whatever writes into the header (SQLite a whole page, a tool a few
                    // bytes) must leave a valid one, or no transaction of this file could be
                    // read back (the mount then turns the file into a node-local one).
                    let mut head = [0u8; 100];
                    if offset > 0 || data.len() < 100 {
                        let _ = f.pread_exact(&mut head, 0)?;
                    }
                    let at = offset as usize;
                    let n = data.len().min(100 - at);
                    head[at..at + n].copy_from_slice(&data[..n]);
                    match DbHeader::parse(&head) {
                        Ok(h) => {
                            inner.mode = h.journal_mode();
                            if inner.page_size == 0 {
                                inner.page_size = h.page_size;
                            }
                        }
                        Err(_) if in_txn && inner.page_size != 0 => {}
                        Err(_) => return Err(DbError::NotSqlite),
                    }
                } else if inner.page_size == 0 {
                    return Err(DbError::NotSqlite);
                }
                let ps = inner.page_size;
                let end = offset + data.len() as u64;
                // SQLite writes whole pages. A tool may write part of one (a byte patch,
                // `dd`): accepted inside the file, or when it ends on a page boundary, so
                // the file stays whole pages.
                // Any page size's pages (512 is the smallest): SQLite changing the page size
                // (a backup onto this database) writes pages of the new size before page 1
                // says so.
                let whole = offset.is_multiple_of(512) && data.len().is_multiple_of(512);
                let keeps_pages = end.is_multiple_of(u64::from(ps)) || end <= f.metadata()?.len();
                if data.is_empty() || !(whole || keeps_pages) {
                    return Err(DbError::UnalignedWrite { offset, len: data.len(), page_size: ps });
                }
                // Which protocol this write belongs to: a rollback-journal transaction (the
                // journal holds a header with its magic: SQLite writes it before any page of
                // the database), or a checkpoint (every page has a committed WAL frame).
                let first = offset / u64::from(ps) + 1;
                let n = (end - 1) / u64::from(ps) + 2 - first;
                let wal_frames = inner.wal.indexed_pages() > 0;
                let checkpoint = wal_frames
                    && (first..first + n).all(|p| {
                        u32::try_from(p).is_ok_and(|p| inner.wal.page_offset(PageNo(p)).is_some())
                    });
                let loose = !checkpoint && !in_txn;
                if loose {
                    if wal_frames {
                        return Err(DbError::OutsideTransaction(format!(
                            "write to pages {first}..{} of the database outside a SQLite \
                             transaction while its WAL holds newer pages: refused (write \
                             through SQLite, or checkpoint the WAL first)",
                            first + n - 1
                        )));
                    }
                    self.begin_loose(&mut inner)?;
                }
                if inner.log_dirty {
                    // A checkpoint: WAL copies of transactions may be overwritten soon.
                    self.barrier(true)?;
                    inner.log_dirty = false;
                }
                f.write_all_at(data, offset)?;
                // `in_txn` too: the write that switches a database to WAL (header bytes
                // 18/19 set to 2) is itself a rollback-journal transaction, and `mode`
                // already says WAL from its own page 1.
                if inner.mode == JournalMode::Rollback || loose || in_txn {
                    inner.rollback.on_db_write(offset, data.len() as u64, ps);
                }
            }
            FileKind::Journal => {
                // A transaction starts: pending writes outside one come first.
                let _ = self.end_loose(&mut inner)?;
                // PERSIST mode: zeroing the header is the commit. Write the LTX first, as
                // for DELETE's unlink: a crash between the two then leaves a hot journal
                // over a database that matches its newest LTX file (recovery finalises
                // it), never a committed transaction without one (found by the
                // super-journal crash test: recovery quarantined the database).
                if inner.rollback.on_journal_write(offset, data) == JournalEvent::Finalized {
                    let done = self.commit_rollback(&mut inner)?;
                    f.write_all_at(data, offset)?;
                    return Ok((data.len(), self.sync_point(done)?));
                }
                f.write_all_at(data, offset)?;
            }
            FileKind::Wal => {
                let _ = self.end_loose(&mut inner)?;
                if offset == 0 && inner.log_dirty {
                    // A new WAL header: SQLite restarts the WAL from the top.
                    self.barrier(true)?;
                    inner.log_dirty = false;
                }
                f.write_all_at(data, offset)?;
                if inner.page_size == 0
                    && let Some(db) = self.file(FileKind::Database)
                    && let Some(h) = read_header(&db)?
                {
                    inner.page_size = h.page_size;
                }
                let ps = inner.page_size;
                if inner.wal.on_write(offset, data, ps) == WalWrite::MaybeCommit {
                    let done = self.commit_wal(&mut inner, &f)?;
                    return Ok((data.len(), self.sync_point(done)?));
                }
            }
            // Answered above, without the lock.
            FileKind::Shm => f.write_all_at(data, offset)?,
        }
        Ok((data.len(), SyncPoint(None)))
    }

    /// Sets the backing file's length (a rollback-journal commit in TRUNCATE mode).
    pub fn truncate(&self, kind: FileKind, size: u64) -> Result<SyncPoint, DbError> {
        if kind == FileKind::Shm {
            // As in [`Db::write`]: never behind the commit lock.
            let f = self.file(kind).ok_or(DbError::NotFound(kind.backing_name()))?;
            f.set_len(size)?;
            return Ok(SyncPoint(None));
        }
        let mut inner = self.lock();
        self.check_writable()?;
        let f = self.file(kind).ok_or(DbError::NotFound(kind.backing_name()))?;
        if kind == FileKind::Wal && inner.log_dirty {
            self.barrier(true)?;
            inner.log_dirty = false;
        }
        if kind == FileKind::Database {
            return self.truncate_database(&mut inner, &f, size);
        }
        // TRUNCATE mode: truncating the journal to 0 is the commit; the LTX first (see the
        // PERSIST case in `write`).
        if kind == FileKind::Journal
            && inner.rollback.on_journal_truncate(size) == JournalEvent::Finalized
        {
            let done = self.commit_rollback(&mut inner)?;
            f.set_len(size)?;
            return self.sync_point(done);
        }
        f.set_len(size)?;
        match kind {
            FileKind::Wal if size < inner.wal.committed_offset() => inner.wal.reset(),
            _ => {}
        }
        Ok(SyncPoint(None))
    }

    /// fsyncs the backing file. LTX files need no sync here: see the module docs. Writes
    /// to the database outside a transaction become one first (the application asked for
    /// them to be durable).
    pub fn fsync(&self, kind: FileKind) -> Result<(), DbError> {
        if kind == FileKind::Database {
            let mut inner = self.lock();
            let _ = self.end_loose(&mut inner)?;
        }
        if let Some(f) = self.file(kind) {
            f.sync_data()?;
        }
        Ok(())
    }

    /// The last descriptor of a file was closed (FUSE release): writes outside a
    /// transaction become one.
    pub fn release(&self, kind: FileKind) -> Result<(), DbError> {
        if kind == FileKind::Database {
            let mut inner = self.lock();
            let _ = self.end_loose(&mut inner)?;
        }
        Ok(())
    }

    /// Whether a rollback-journal transaction is in progress: the journal's header carries
    /// its magic. SQLite writes it (in synchronous modes, right after syncing the journal)
    /// before writing any page of the database; between transactions the journal is gone
    /// (DELETE), empty (TRUNCATE) or has a zeroed header (PERSIST).
    fn journal_active(&self) -> io::Result<bool> {
        let Some(j) = self.file(FileKind::Journal) else { return Ok(false) };
        let mut b = [0u8; 8];
        Ok(j.pread_exact(&mut b, 0)? && b == crate::core::sqlite::JOURNAL_MAGIC)
    }

    /// Starts (once) a batch of writes outside a transaction: the marker is made durable
    /// before the first page of it can be.
    fn begin_loose(&self, inner: &mut Inner) -> Result<(), DbError> {
        if inner.loose {
            return Ok(());
        }
        let path = self.dir.join(LOOSE_FILE);
        File::create(&path)?.sync_all()?;
        File::open(&self.dir)?.sync_all()?;
        inner.loose = true;
        tracing::warn!(db = %self.name,
            "database written outside a SQLite transaction (no journal, no WAL frame): the \
             writes become one replicated transaction when the file is synced or closed");
        Ok(())
    }

    /// Records pending writes outside a transaction as one durable transaction; returns
    /// whether there were any.
    fn end_loose(&self, inner: &mut Inner) -> Result<bool, DbError> {
        if !inner.loose {
            return Ok(false);
        }
        if let Some(db) = self.file(FileKind::Database)
            && let Some(h) = read_header(&db)?
        {
            inner.mode = h.journal_mode();
            if inner.page_size == 0 {
                inner.page_size = h.page_size;
            }
        }
        self.commit_rollback(inner)?;
        match fs::remove_file(self.dir.join(LOOSE_FILE)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        inner.loose = false;
        tracing::info!(db = %self.name, pos = %self.pos(),
            "writes outside a SQLite transaction recorded as a transaction");
        Ok(true)
    }

    /// Truncation of the database file. Part of SQLite's protocol inside a rollback-journal
    /// transaction, or at the end of a checkpoint (to the last commit's size); otherwise it
    /// is a transaction of its own, recorded at once: to zero bytes a deletion (as `rm`),
    /// else the database at its new length.
    fn truncate_database(
        &self,
        inner: &mut Inner,
        f: &File,
        size: u64,
    ) -> Result<SyncPoint, DbError> {
        let ps = u64::from(inner.page_size);
        let wal_frames = inner.wal.indexed_pages() > 0;
        if self.journal_active()? || (wal_frames && size == u64::from(inner.page_count) * ps) {
            f.set_len(size)?;
            return Ok(SyncPoint(None));
        }
        if wal_frames {
            return Err(DbError::OutsideTransaction(format!(
                "truncation of the database to {size} bytes outside a SQLite transaction while \
                 its WAL holds newer pages: refused"
            )));
        }
        if size == 0 {
            let _ = self.end_loose(inner)?;
            if inner.page_size == 0 {
                f.set_len(0)?;
                return Ok(SyncPoint(None));
            }
            let page_size = inner.page_size;
            let timestamp_ms = now_ms();
            self.call(|reply| DbMsg::Delete { page_size, timestamp_ms, reply })?;
            f.set_len(0)?;
            f.sync_data()?;
            inner.page_size = 0;
            inner.page_count = 0;
            inner.rollback.take_dirty();
            tracing::warn!(db = %self.name, pos = %self.pos(),
                "database truncated to 0 bytes outside a SQLite transaction: recorded as its \
                 deletion");
            return Ok(SyncPoint(None));
        }
        if ps == 0 || !size.is_multiple_of(ps) {
            return Err(DbError::UnalignedWrite {
                offset: size,
                len: 0,
                page_size: inner.page_size,
            });
        }
        self.begin_loose(inner)?;
        f.set_len(size)?;
        let done = self.end_loose(inner)?;
        self.sync_point(done)
    }

    /// Makes every LTX file written so far durable (shutdown).
    pub fn sync_pending(&self) -> Result<(), DbError> {
        let mut inner = self.lock();
        self.barrier(true)?;
        inner.log_dirty = false;
        Ok(())
    }

    /// Unlinks the backing file of an auxiliary file (`-journal`, `-wal`, `-shm`); in
    /// DELETE mode, the journal's unlink is a commit.
    pub fn unlink(&self, kind: FileKind) -> Result<SyncPoint, DbError> {
        let mut inner = self.lock();
        self.check_writable()?;
        if self.file(kind).is_none() {
            return Err(DbError::NotFound(kind.backing_name()));
        }
        let mut done = false;
        match kind {
            // DELETE mode: the unlink is the commit. Write the LTX first, so a crash after
            // the unlink never leaves a committed transaction without one.
            FileKind::Journal => done = self.commit_rollback(&mut inner)?,
            FileKind::Wal if inner.log_dirty => {
                self.barrier(true)?;
                inner.log_dirty = false;
            }
            _ => {}
        }
        fs::remove_file(self.dir.join(kind.backing_name()))?;
        self.set_file(kind, None);
        if kind == FileKind::Wal {
            inner.wal.reset();
        }
        self.sync_point(done)
    }

    /// Deletes the database (`rm <db>`): writes a deletion LTX (Commit 0) and removes the
    /// database, journal, WAL and shm files. The LTX directory and the position remain, so a
    /// database re-created under the same name continues from the next TXID.
    pub fn delete(&self) -> Result<(), DbError> {
        self.check_writable()?;
        self.check_health()?;
        let mut inner = self.lock();
        if self.file(FileKind::Database).is_none() {
            return Err(DbError::NotFound("database"));
        }
        let page_size = inner.page_size;
        let timestamp_ms = now_ms();
        self.call(|reply| DbMsg::Delete { page_size, timestamp_ms, reply })?;
        for kind in FileKind::ALL {
            let _ = fs::remove_file(self.dir.join(kind.backing_name()));
            self.set_file(kind, None);
        }
        inner.forget_file();
        Ok(())
    }

    /// The database stops being one (a write left it without a SQLite header, see
    /// `crate::fuse`): a deletion transaction is written, as for `rm`, and its files are
    /// moved instead of removed: each kind to `to(kind)` (connections may hold them open,
    /// SQLite maps `-shm`: removing it would make their next page fault a SIGBUS). Refused
    /// (EPERM) inside a SQLite transaction or while the WAL holds pages: SQLite's own
    /// writes never break the header.
    pub fn become_file(&self, to: impl Fn(FileKind) -> PathBuf) -> Result<(), DbError> {
        self.check_writable()?;
        self.check_health()?;
        let mut inner = self.lock();
        if self.file(FileKind::Database).is_none() {
            return Err(DbError::NotFound("database"));
        }
        if self.journal_active()? || inner.wal.indexed_pages() > 0 {
            return Err(DbError::OutsideTransaction(
                "a write that breaks the database header inside a SQLite transaction or \
                 beside a WAL with pages: refused"
                    .into(),
            ));
        }
        if inner.page_size != 0 && !inner.deleted {
            let page_size = inner.page_size;
            let timestamp_ms = now_ms();
            self.call(|reply| DbMsg::Delete { page_size, timestamp_ms, reply })?;
        }
        for kind in FileKind::ALL {
            if self.file(kind).is_some() {
                fs::rename(self.dir.join(kind.backing_name()), to(kind))?;
            }
            self.set_file(kind, None);
        }
        let _ = fs::remove_file(self.dir.join(LOOSE_FILE));
        inner.loose = false;
        inner.forget_file();
        Ok(())
    }

    /// Re-creates the database file after a deletion or for a new database.
    pub fn create_database(&self) -> Result<(), DbError> {
        self.create(FileKind::Database)?;
        self.lock().deleted = false;
        Ok(())
    }

    /// Stops the actor after it wrote and synced everything queued.
    ///
    /// Writes the checksum cache (see [`cache`]) so the next start skips the full scan.
    /// Call after the mount is gone: nothing may write the database meanwhile.
    pub fn shutdown(&self) {
        if let Err(e) = self.sync_pending() {
            tracing::warn!(db = %self.name, error = %e, "final LTX sync failed");
        } else if let Err(e) = self.write_cache() {
            tracing::warn!(db = %self.name, error = %e, "checksum cache not written");
        }
        if let Some(a) = self.actor.get() {
            a.stop(None);
        }
    }

    /// Replica startup: moves every committed WAL page into the database file and empties
    /// the WAL and the wal-index, so replicated pages can be written into the file.
    ///
    /// Hazard this removes: a replica applies into the database file and keeps `mxFrame`
    /// 0 in the wal-index, but a reader that rebuilds the wal-index (after `-shm` was
    /// removed) would lay the old WAL frames over newer pages. The logical content (file
    /// plus WAL) is unchanged, so the position stays. Crash-safe in any order: the file is
    /// synced before the WAL is truncated, and until then recovery still reads file + WAL.
    fn fold_wal(&self) -> Result<(), DbError> {
        let mut inner = self.lock();
        self.fold_into_file(&mut inner)?;
        if let Some(shm) = self.file(FileKind::Shm) {
            shm.set_len(0)?;
        }
        Ok(())
    }

    /// Copies every committed WAL page into the database file (synced), then empties the
    /// WAL and forgets it. Nothing else: the wal-index is the caller's.
    fn fold_into_file(&self, inner: &mut Inner) -> Result<(), DbError> {
        let (Some(db), Some(wal)) = (self.file(FileKind::Database), self.file(FileKind::Wal))
        else {
            return Ok(());
        };
        let ps = inner.page_size;
        let n = inner.wal.indexed_pages();
        if ps > 0 && n > 0 {
            let mut buf = vec![0u8; ps as usize];
            let pages: Vec<(PageNo, u64)> = inner.wal.pages().collect();
            for (pgno, off) in pages {
                ReadAt::pread_exact(&*wal, &mut buf, off)?;
                db.write_all_at(&buf, pgno.offset(ps))?;
            }
            db.set_len(u64::from(inner.page_count) * u64::from(ps))?;
            db.sync_data()?;
            tracing::info!(db = %self.name, pages = n, "replica: WAL folded into the database file");
        }
        wal.set_len(0)?;
        inner.wal = WalTracker::new();
        Ok(())
    }

    /// Live demotion (primary → replica without a restart): once writes are refused and
    /// every accepted commit is in the LTX log, the database is brought to a replica's
    /// steady state so replicated files can be applied: in WAL mode the committed frames
    /// are folded into the file under SQLite's locks (readers wait; see
    /// `replica::demote_locked`). The logical content, and so the position, is unchanged;
    /// frames of a transaction that never committed are dropped, as SQLite would.
    ///
    /// Refused (the node must restart to follow) for a rollback-journal database with a
    /// journal present: a transaction was cut off by the demotion, and only startup
    /// recovery may roll it back. Blocking.
    pub fn demote(&self) -> Result<(), DbError> {
        self.quiesce()?;
        let mode = self.lock().mode;
        if self.file(FileKind::Database).is_none() {
            return Ok(());
        }
        if mode != JournalMode::Wal {
            if self.size(FileKind::Journal).unwrap_or(0) > 0 {
                return Err(DbError::Io(io::Error::other(
                    "a rollback journal is present: restart to recover it",
                )));
            }
            return Ok(());
        }
        let mut ctx = replica::ApplyCtx {
            name: self.name.clone(),
            dir: self.dir.clone(),
            files: self.files.clone(),
            node: self.node.clone(),
            lock_fds: None,
        };
        replica::demote_locked(&mut ctx, || {
            let mut inner = self.lock();
            self.fold_into_file(&mut inner)?;
            Ok(inner.page_count)
        })
    }

    /// Promotion (replica → primary): the FUSE side's view of the database is rebuilt from
    /// the actor's state after every replicated file applied so far (the actor handles
    /// messages in order, so this waits for an apply in flight).
    pub async fn take_over(&self) -> Result<(), DbError> {
        let (tx, rx) = oneshot::channel();
        self.actor()?
            .send_message(DbMsg::State { reply: tx.into() })
            .map_err(|_| DbError::ActorGone)?;
        let state = match rx.await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(DbError::Log(e)),
            Err(_) => return Err(DbError::ActorGone),
        };
        let header = match self.file(FileKind::Database) {
            Some(f) => read_header(&f)?,
            None => None,
        };
        let mut inner = self.lock();
        inner.page_size = header.map(|h| h.page_size).unwrap_or(state.page_size);
        inner.page_count = state.checksums.page_count();
        inner.mode = header.map(|h| h.journal_mode()).unwrap_or(JournalMode::Rollback);
        inner.wal = WalTracker::new();
        inner.rollback = RollbackTracker::new();
        inner.log_dirty = false;
        inner.deleted = !self.exists();
        Ok(())
    }

    /// Writes the checksum cache if the database file alone is the state at the position.
    fn write_cache(&self) -> Result<(), DbError> {
        use std::os::unix::fs::MetadataExt;
        let state = self.call(|reply| DbMsg::State { reply })?;
        let wal_empty = self.size(FileKind::Wal).map(|n| n <= 32).unwrap_or(true);
        let Some(db) = self.file(FileKind::Database) else { return Ok(()) };
        let Some(newest) = self.ltx.list()?.pop() else { return Ok(()) };
        let meta = db.metadata()?;
        let ps = u64::from(state.page_size.max(1));
        if !wal_empty
            || self.file(FileKind::Journal).is_some()
            || newest.1 != state.pos.txid
            || meta.len() != u64::from(state.checksums.page_count()) * ps
        {
            return Ok(());
        }
        let c = cache::Cache {
            pos: state.pos,
            page_size: state.page_size,
            db_len: meta.len(),
            db_mtime: (meta.mtime(), meta.mtime_nsec() as u32),
            db_ctime: (meta.ctime(), meta.ctime_nsec() as u32),
            db_ino: meta.ino(),
            ltx: (newest.0, newest.1, fs::metadata(&newest.2)?.len()),
            checksums: state.checksums,
        };
        let tmp = self.dir.join(format!("{}.tmp", cache::CACHE_FILE));
        fs::write(&tmp, c.encode())?;
        fs::rename(&tmp, self.dir.join(cache::CACHE_FILE))?;
        Ok(())
    }

    /// A snapshot LTX file (MinTXID 1) of the database at its current position, as SQLite
    /// sees it (database file plus committed WAL frames), for a replica that needs one.
    /// Blocking: holds the database's commit lock while it reads every page, so the image
    /// and the position agree.
    ///
    /// The file must be at a position: pending writes outside a transaction are recorded
    /// first, and a rollback-journal transaction in progress (pages written, not yet
    /// committed) is waited out (up to 10 s, then an error the caller retries). Reading the
    /// file in either state once made the snapshot check fail and marked a healthy database
    /// damaged (found by SQLite's jrnlmode3.test with a replica attached).
    pub fn snapshot(&self) -> Result<(Pos, Vec<u8>), DbError> {
        #[allow(clippy::disallowed_methods)] // the shell owns the clock
        let started = std::time::Instant::now();
        let inner = loop {
            let mut inner = self.lock();
            let _ = self.end_loose(&mut inner)?;
            if !self.journal_active()? {
                break inner;
            }
            drop(inner);
            if started.elapsed() > std::time::Duration::from_secs(10) {
                return Err(DbError::Io(io::Error::other(
                    "a rollback-journal transaction has been in progress for 10 s; the \
                     snapshot is retried",
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        self.barrier(false)?;
        let pos = self.pos();
        let ps = inner.page_size;
        let commit = inner.page_count;
        if ps == 0 || pos.txid.0 == 0 {
            return Err(DbError::NotFound("database"));
        }
        let read = |pgno, buf: &mut [u8]| recover::read_logical_page(self, &inner, pgno, buf);
        let (actual, out) =
            build_snapshot(read, ps, commit, pos.txid, self.opts_compress(), self.node_id)?;
        if actual != pos.checksum {
            return Err(DbError::Recovery {
                name: self.name.clone(),
                reason: format!("snapshot reads checksum {actual} but the position is {pos}"),
            });
        }
        Ok((pos, out))
    }

    /// Compares the database, as SQLite reads it, with its position's checksum: `Ok(None)`
    /// when they agree, else the checksum it really has. Blocking.
    ///
    /// On the primary it holds the commit lock while it reads every page (writes to this
    /// database wait, readers do not), so the content and the position agree; on a replica
    /// the actor does it between applies.
    pub fn scrub(&self) -> Result<Option<crate::core::types::Checksum>, DbError> {
        if !self.node.writable() {
            return self.call(|reply| DbMsg::Scrub { reply });
        }
        let inner = self.lock();
        // Not at a position now: writes outside a transaction pending, or a rollback-journal
        // transaction in progress (its pages are in the file before it commits).
        if inner.loose
            || inner.deleted
            || inner.page_size == 0
            || !self.exists()
            || self.journal_active()?
        {
            return Ok(None);
        }
        self.barrier(false)?;
        let pos = self.pos();
        if pos.txid.0 == 0 {
            return Ok(None);
        }
        let mut sums = crate::core::ltx::PageChecksums::new();
        let mut buf = vec![0u8; inner.page_size as usize];
        let lock = PageNo::lock_page(inner.page_size);
        for p in 1..=inner.page_count {
            let pgno = PageNo(p);
            if pgno == lock {
                continue;
            }
            recover::read_logical_page(self, &inner, pgno, &mut buf)?;
            sums.set(pgno, crate::core::ltx::page_checksum(pgno, &buf));
        }
        sums.truncate(inner.page_count);
        let actual = sums.checksum();
        Ok((actual != pos.checksum).then_some(actual))
    }

    /// Marks the database damaged on this node: a primary refuses writes to it from now on
    /// (the replicas hold the intact copy), a replica asks the primary for a snapshot.
    pub fn mark_damaged(&self, reason: String) {
        if self.node.writable() {
            self.shared.set_damaged(reason);
        } else {
            self.shared.set_resync(true);
            self.node.request_resync();
        }
    }

    // ===== Commit path ===== //

    /// A rollback-journal transaction ended: build its LTX from the dirty pages and wait
    /// until it is durable.
    fn commit_rollback(&self, inner: &mut Inner) -> Result<bool, DbError> {
        let dirty = inner.rollback.take_dirty();
        let Some(db) = self.file(FileKind::Database) else { return Ok(false) };
        if inner.page_size == 0 {
            return Ok(false); // nothing was ever written
        }
        // SQLite changes the page size only by rewriting the whole file (VACUUM after
        // `PRAGMA page_size`, a backup restored over it): every page of the new size goes
        // into this transaction.
        let mut old = inner.page_count;
        if let Some(h) = read_header(&db)?
            && h.page_size != inner.page_size
        {
            tracing::info!(db = %self.name, from = inner.page_size, to = h.page_size, "page size changed");
            inner.page_size = h.page_size;
            old = 0;
        }
        let ps = inner.page_size;
        let commit = db_page_count(&db, ps)?;
        let candidates = dirty.iter().copied().filter(|p| p.0 <= commit).chain(
            // Pages the database grew by but SQLite never wrote read as what is on disk.
            (old + 1..=commit).map(PageNo).filter(|p| dirty.binary_search(p).is_err()),
        );
        let mut list: Vec<PageNo> = candidates.collect();
        list.sort_unstable();
        let lock = PageNo::lock_page(ps);
        let mut pages = Vec::with_capacity(list.len());
        for pgno in list {
            if pgno == lock {
                continue;
            }
            let mut buf = vec![0u8; ps as usize];
            read_page(&*db, pgno, &mut buf)?;
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
        self.enqueue(c)?;
        self.barrier(true)?;
        inner.page_count = commit;
        inner.log_dirty = false;
        Ok(true)
    }

    /// Scans the WAL after a write that may have completed a transaction, and casts each
    /// committed transaction to the actor.
    fn commit_wal(&self, inner: &mut Inner, wal: &File) -> Result<bool, DbError> {
        let ps = match inner.page_size {
            0 => match self.file(FileKind::Database) {
                Some(db) => match read_header(&db)? {
                    Some(h) => h.page_size,
                    None => return Ok(false),
                },
                None => return Ok(false),
            },
            ps => ps,
        };
        inner.page_size = ps;
        let txns = inner.wal.scan(wal, ps)?;
        let committed = !txns.is_empty();
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
            let old = inner.page_count;
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
            let wal = Some(WalRange {
                offset: txn.offset,
                size: txn.size,
                salt1: txn.salt1,
                salt2: txn.salt2,
            });
            let c = Commit {
                page_size: ps,
                commit: txn.commit,
                pages,
                wal,
                durable: false,
                timestamp_ms: now_ms(),
            };
            self.enqueue(c)?;
            inner.page_count = txn.commit;
            inner.log_dirty = true;
        }
        if self.shared.queued() > MAX_INFLIGHT {
            // Backpressure: the actor is behind; let it catch up before SQLite goes on.
            self.barrier(false)?;
        }
        Ok(committed)
    }

    /// Synchronous replication: the TXID a commit just cast (`committed`) must reach
    /// before it is answered. Called with the commit lock held, so no later commit is
    /// queued: the position after the barrier is this commit's (or a later one's, never an
    /// earlier one's).
    fn sync_point(&self, committed: bool) -> Result<SyncPoint, DbError> {
        if !committed || self.node.sync_replicas() == 0 {
            return Ok(SyncPoint(None));
        }
        self.barrier(false)?;
        Ok(SyncPoint(Some(self.pos().txid)))
    }

    /// Primary: replica `node` (connection `conn`) durably holds this database up to
    /// `txid`. Only replicas that count towards `lease.sync-replicas` are reported.
    pub fn note_ack(&self, node: NodeId, conn: u64, txid: Txid, counts: bool) {
        let n = self.node.sync_replicas();
        let mut q = self.acks.lock().unwrap_or_else(|e| e.into_inner());
        q.ack(node, conn, txid.min(self.pos().txid), counts);
        let r = q.reached(n);
        self.replicated.send_if_modified(|v| std::mem::replace(v, r) != r);
        self.ack_seq.send_modify(|s| *s += 1);
    }

    /// A receiver that changes whenever an acknowledgement arrives or a replica's
    /// acknowledgements are withdrawn.
    pub fn ack_changes(&self) -> watch::Receiver<u64> {
        self.ack_seq.subscribe()
    }

    /// Primary: how many replicas that could take over (see [`Quorum::behind`]) are
    /// connected but have not acknowledged `txid`.
    pub fn replicas_behind(&self, txid: Txid) -> usize {
        self.acks.lock().unwrap_or_else(|e| e.into_inner()).behind(txid)
    }

    /// Primary: what replica `node` acknowledged of this database.
    pub fn acked_by(&self, node: NodeId) -> Option<Txid> {
        self.acks.lock().unwrap_or_else(|e| e.into_inner()).acked_by(node)
    }

    /// Handoff: waits for the write in progress (if any) and the actor, and returns the
    /// position every commit accepted so far reached. With writes paused first
    /// ([`NodeCtx::pause_writes`]), it is final: the writable check runs under the same
    /// lock. Blocking.
    pub fn quiesce(&self) -> Result<Pos, DbError> {
        let _inner = self.lock();
        self.barrier(false)?;
        Ok(self.pos())
    }

    /// Primary: the connection `conn` of replica `node` ended.
    pub fn forget_replica(&self, node: NodeId, conn: u64) {
        let n = self.node.sync_replicas();
        let mut q = self.acks.lock().unwrap_or_else(|e| e.into_inner());
        q.drop_conn(node, conn);
        let r = q.reached(n);
        self.replicated.send_if_modified(|v| std::mem::replace(v, r) != r);
        self.ack_seq.send_modify(|s| *s += 1);
    }

    /// Synchronous replication: waits until `lease.sync-replicas` replicas durably hold
    /// `txid` (at once when asynchronous). Gives up only when this node loses the primary
    /// role: a late lease renewal (the write fence) is not a reason, because failing a
    /// commit SQLite already wrote to its WAL while the node stays primary would make the
    /// LTX history and SQLite's disagree.
    pub async fn replicated(&self, txid: Txid) -> Result<(), DbError> {
        let need = self.node.sync_replicas();
        if need == 0 {
            return Ok(());
        }
        let mut rx = self.replicated.subscribe();
        let mut waited = 0u32;
        loop {
            if *rx.borrow_and_update() >= txid {
                return Ok(());
            }
            if !self.node.is_primary() {
                let have = self.acks.lock().unwrap_or_else(|e| e.into_inner()).count_at(txid);
                return Err(DbError::Unreplicated { txid, need, have });
            }
            // The role is polled: losing it sends nothing on this channel.
            let tick = tokio::time::sleep(std::time::Duration::from_millis(50));
            tokio::select! {
                _ = rx.changed() => {}
                _ = tick => {
                    waited += 1;
                    if waited.is_multiple_of(100) {
                        let have =
                            self.acks.lock().unwrap_or_else(|e| e.into_inner()).count_at(txid);
                        tracing::warn!(db = %self.name, %txid, need, have,
                            waited_ms = waited * 50,
                            "commit waiting for synchronous replicas");
                    }
                }
            }
        }
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

/// A snapshot LTX file (MinTXID 1, MaxTXID `txid`) of `commit` pages of `page_size` bytes,
/// each read by `read`; returns the checksum of what was read (the file's post-apply
/// checksum) with the file. The caller compares that checksum with the position it expects:
/// a snapshot is only ever sent or stored for a position it matches.
pub(crate) fn build_snapshot(
    mut read: impl FnMut(PageNo, &mut [u8]) -> io::Result<()>,
    page_size: u32,
    commit: u32,
    txid: Txid,
    compress: bool,
    node_id: NodeId,
) -> Result<(crate::core::types::Checksum, Vec<u8>), DbError> {
    use crate::core::ltx::{FLAG_COMPRESS_LZ4, Header, LtxWriter, PageChecksums, page_checksum};
    let header = Header {
        flags: if compress { FLAG_COMPRESS_LZ4 } else { 0 },
        page_size,
        commit,
        min_txid: Txid(1),
        max_txid: txid,
        timestamp: now_ms(),
        pre_apply_checksum: crate::core::types::Checksum(0),
        wal_offset: 0,
        wal_size: 0,
        wal_salt1: 0,
        wal_salt2: 0,
        node_id,
    };
    let ps = page_size as usize;
    // A guess (half the pages, compressed), capped: the page count comes from the file.
    let guess = (commit as usize).saturating_mul(ps + 4) / 2 + 256;
    let mut out = Vec::with_capacity(guess.min(64 << 20));
    let mut w = LtxWriter::new(&mut out, header)?;
    let mut sums = PageChecksums::new();
    let mut buf = vec![0u8; ps];
    let lock = PageNo::lock_page(page_size);
    for p in 1..=commit {
        let pgno = PageNo(p);
        if pgno == lock {
            continue;
        }
        read(pgno, &mut buf)?;
        sums.set(pgno, page_checksum(pgno, &buf));
        w.write_page(pgno, &buf)?;
    }
    sums.truncate(commit);
    let actual = sums.checksum();
    w.finish(actual)?;
    Ok((actual, out))
}

/// Pages in the database file: the header's count when valid, else the file size.
fn db_page_count(f: &File, page_size: u32) -> io::Result<u32> {
    let len = f.metadata()?.len();
    if let Some(h) = read_header(f)?
        && let Some(n) = h.valid_page_count()
    {
        // A file shorter than its header says (truncated outside SQLite, as corruption
        // tests do) is recorded as it is: SQLite reads it as corrupt, on every node alike.
        // A short last page counts (it reads as zeros past the end).
        let in_file = len.div_ceil(u64::from(page_size)).max(1) as u32;
        return Ok(n.min(in_file));
    }
    Ok((len / u64::from(page_size)) as u32)
}
