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
//!
//! The rooms of [`Db`], one job each (`impl Db` blocks live in several of them):
//! - this file: the types, opening (recovery first), deletion, shutdown;
//! - `files`: the backing files and their handles;
//! - `commit`: commit detection, the FUSE write/truncate/fsync/unlink hooks that build a
//!   [`Commit`]; `loose`: writes outside any SQLite transaction;
//! - `waltxn`: one WAL transaction as its pages, shared by the live path and recovery;
//!   `pages`: page reads, where a short read is an error;
//! - `acks`: replicas' acknowledgements (synchronous replication, handoff);
//! - `role`: demotion, promotion, quiescing, the writable check;
//! - `rpc`: calls to the database's actor (`actor`);
//! - `image`: the whole database at a position (snapshots, scrubs);
//! - `recover`: startup recovery; `replica`: applying replicated files;
//!   `log`: the LTX log; `cache`, `ltxdir`: the checksum cache and the LTX directory.

mod acks;
mod actor;
mod cache;
mod commit;
pub mod export;
mod files;
mod image;
mod log;
mod loose;
mod ltxdir;
mod pages;
mod recover;
mod replica;
mod role;
mod rpc;
pub mod verify;
mod waltxn;

pub use actor::{DbMsg, LogFailure, Shared};
pub use files::FileKind;
pub(crate) use files::Files;
pub use log::{Commit, Committed, LtxLog, WalRange};
pub use loose::LOOSE_FILE;
pub use ltxdir::LtxDir;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};

use ractor::{Actor, ActorRef};
use tokio::sync::{broadcast, watch};

use crate::core::commit::{RollbackTracker, WalTracker};
use crate::core::ltx::LtxError;
use crate::core::quorum::Quorum;
use crate::core::sqlite::JournalMode;
use crate::core::types::{NodeId, Pos, Txid};
use crate::node::NodeCtx;
use files::open_rw;

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
    /// This database's metrics (shared with its LTX log).
    metrics: Arc<crate::metrics::DbMetrics>,
}

fn now_ms() -> i64 {
    crate::clock::wall_ms()
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
        let metrics = node.metrics().db(name);
        log.set_observers(node.hub().clone(), metrics.clone());
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
            metrics,
        };
        recover::recover(&db, &mut log)?;
        if let Ok((n, bytes)) = db.ltx.usage() {
            db.metrics.ltx_dir(n, bytes);
        }
        {
            let mut inner = db.lock();
            inner.page_count = log.state.checksums.page_count();
            inner.deleted = log.deleted;
        }
        if !db.node.writable() {
            db.fold_wal()?;
        }
        let args = actor::DbActorArgs { log, shared: db.shared.clone(), apply: db.apply_ctx() };
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

    pub fn metrics(&self) -> &Arc<crate::metrics::DbMetrics> {
        &self.metrics
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

    /// The commit lock: what the FUSE side tracks of the database. Every hook of
    /// [`commit`] holds it from deciding to recording.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves state we cannot trust; poisoning propagates
        // it instead of serving from it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes every LTX file written so far durable (shutdown).
    pub fn sync_pending(&self) -> Result<(), DbError> {
        let mut inner = self.lock();
        self.barrier(true)?;
        inner.log_dirty = false;
        Ok(())
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
            let _ = fs::remove_file(self.path(kind));
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
                fs::rename(self.path(kind), to(kind))?;
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
        self.stop_actor();
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
}
