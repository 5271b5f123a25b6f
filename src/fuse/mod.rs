//! The FUSE filesystem: a flat directory of databases.
//!
//! | Name | Backing | Behaviour |
//! |---|---|---|
//! | `<db>` | `dbs/<db>/database` | read/write; writes must be whole pages (EINVAL otherwise); the first write to a new database must be a SQLite header at offset 0 |
//! | `<db>-journal`, `<db>-wal`, `<db>-shm` | `dbs/<db>/journal` … | read/write passthrough; commit detection happens here |
//! | `<db>-pos` | generated | reads `%016x/%016x\n` (TXID / post-apply checksum), as LiteFS; a write of a position (that text, or a bare `%016x` TXID) returns once this node reached that TXID (read-your-writes on a replica), ETIMEDOUT after [`WAIT_TIMEOUT`] |
//!
//! Other files: creating any other name creates a database of that name (as LiteFS does), so
//! a plain non-SQLite file cannot be stored: its first write fails with EINVAL. `mkdir`,
//! `rename`, links and symlinks are refused with EPERM. `rm <db>` deletes the database
//! (a deletion LTX file is written); the `-pos` file stays readable.
//!
//! Callbacks are thin: they parse the inode, call [`Db`], and map errors through
//! [`errno::errno`]. POSIX locks are left to the kernel (FUSE_POSIX_LOCKS is not requested):
//! every process using the database goes through this one mount on this one host, where the
//! kernel's lock table is authoritative, and no lock call costs a round trip to us.

pub mod errno;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, Notifier, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};

use crate::db::{Db, DbError, FileKind, SyncPoint};
use crate::node::KernelCache;
use crate::store::Store;

/// How long the kernel may cache entries (positive and negative) and attributes.
///
/// Every change to a file the kernel knows about goes through the kernel (SQLite's writes,
/// truncates, creates and unlinks on this mount), which keeps its cache current; changes
/// litefleet makes behind its back (deleting a database's auxiliary files, applying a
/// replicated transaction) invalidate explicitly through the [`Notifier`]. Caching saves a
/// round trip on every `stat` and hot-journal check SQLite makes per transaction.
const TTL: Duration = Duration::from_secs(10);

/// On every open: the kernel's close skips `write_inode_now`, which otherwise waits for the
/// writeback of pages other processes dirtied through shared mappings (SQLite maps `-shm`).
/// Hazard it removes: a node killed with -9 whose own descriptors on its mount (the replica
/// applier's lock descriptors) are closed at exit while such a writeback is queued to it
/// waits for itself in state D forever. Nothing is lost: FLUSH is not implemented (writes
/// are synchronous), and `-shm` contents only matter while mapped.
const NOFLUSH: FopenFlags = FopenFlags::FOPEN_NOFLUSH;
/// A write to `.promote` waits at most this long for the lease.
pub const PROMOTE_TIMEOUT: Duration = Duration::from_secs(60);

/// A write to `<db>-pos` waits at most this long for the position.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Inodes per database: database, journal, wal, shm, pos.
const SLOTS: u64 = 8;

/// A file in the mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Root,
    /// `.primary`: the primary's hostname, on a replica connected to one.
    Primary,
    /// `.lag`: milliseconds behind the primary, `%+010d\n`.
    Lag,
    /// `.promote` (not listed): a write asks the primary for the lease and returns once
    /// this node is the primary; a read says why the last request failed.
    Promote,
    File(u64, FileKind),
    Pos(u64),
}

/// Database name ↔ small id, stable for the life of the process (inode numbers derive from
/// it).
#[derive(Default)]
struct Ids {
    by_name: HashMap<String, u64>,
    names: Vec<String>,
}

/// The filesystem. See the module docs.
pub struct Fs {
    store: Arc<Store>,
    ids: Arc<Mutex<Ids>>,
    uid: u32,
    gid: u32,
    /// Set after mounting; used to drop kernel caches of deleted databases.
    notifier: Arc<OnceLock<Notifier>>,
}

fn slot(kind: FileKind) -> u64 {
    match kind {
        FileKind::Database => 0,
        FileKind::Journal => 1,
        FileKind::Wal => 2,
        FileKind::Shm => 3,
    }
}

const POS_SLOT: u64 = 4;

impl Fs {
    pub fn new(store: Arc<Store>, notifier: Arc<OnceLock<Notifier>>) -> Fs {
        // SAFETY: getuid/getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let ids = Arc::new(Mutex::new(Ids::default()));
        Fs { store, ids, uid, gid, notifier }
    }

    /// The handle databases use to invalidate the kernel's caches (see [`KernelCache`]).
    pub fn kernel(&self, mount: &std::path::Path) -> Arc<dyn KernelCache> {
        Arc::new(Kernel {
            mount: mount.to_owned(),
            ids: self.ids.clone(),
            notifier: self.notifier.clone(),
        })
    }

    fn id(&self, name: &str) -> u64 {
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = ids.by_name.get(name) {
            return *id;
        }
        let id = ids.names.len() as u64;
        ids.names.push(name.to_owned());
        ids.by_name.insert(name.to_owned(), id);
        id
    }

    fn name_of(&self, id: u64) -> Option<String> {
        let ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        ids.names.get(id as usize).cloned()
    }

    fn ino(&self, node: Node) -> INodeNo {
        ino_of(node)
    }

    fn node(&self, ino: INodeNo) -> Option<Node> {
        if ino.0 == PRIMARY_INO {
            return Some(Node::Primary);
        }
        if ino.0 == PROMOTE_INO {
            return Some(Node::Promote);
        }
        if ino.0 == LAG_INO {
            return Some(Node::Lag);
        }
        node_of(ino)
    }
}

const PRIMARY_INO: u64 = 1 << 62;
const LAG_INO: u64 = (1 << 62) + 1;
const PROMOTE_INO: u64 = (1 << 62) + 2;

fn ino_of(node: Node) -> INodeNo {
    INodeNo(match node {
        Node::Root => 1,
        Node::Primary => PRIMARY_INO,
        Node::Lag => LAG_INO,
        Node::Promote => PROMOTE_INO,
        Node::File(id, kind) => 2 + id * SLOTS + slot(kind),
        Node::Pos(id) => 2 + id * SLOTS + POS_SLOT,
    })
}

fn node_of(ino: INodeNo) -> Option<Node> {
    if ino.0 == 1 {
        return Some(Node::Root);
    }
    let n = ino.0.checked_sub(2)?;
    let (id, s) = (n / SLOTS, n % SLOTS);
    Some(match s {
        0 => Node::File(id, FileKind::Database),
        1 => Node::File(id, FileKind::Journal),
        2 => Node::File(id, FileKind::Wal),
        3 => Node::File(id, FileKind::Shm),
        4 => Node::Pos(id),
        _ => return None,
    })
}

/// Whether the request comes from a thread of this process (FUSE reports the calling
/// thread's id, not the process id).
fn own_thread(tid: u32) -> bool {
    std::path::Path::new(&format!("/proc/self/task/{tid}")).exists()
}

/// [`KernelCache`] for this mount.
struct Kernel {
    mount: std::path::PathBuf,
    ids: Arc<Mutex<Ids>>,
    notifier: Arc<OnceLock<Notifier>>,
}

impl KernelCache for Kernel {
    fn mount_dir(&self) -> &std::path::Path {
        &self.mount
    }

    fn db_changed(&self, name: &str, pages: Option<&[(u64, u64)]>) {
        let Some(n) = self.notifier.get() else { return };
        let id = self.ids.lock().unwrap_or_else(|e| e.into_inner()).by_name.get(name).copied();
        if let Some(id) = id {
            // Whole page cache and attributes (size) of the database file; attributes of
            // the -pos file.
            let ino = ino_of(Node::File(id, FileKind::Database));
            match pages {
                // Only what changed: readers keep the rest of their cache.
                Some(ranges) => {
                    for &(off, len) in ranges {
                        let _ = n.inval_inode(ino, off as i64, len as i64);
                    }
                    let _ = n.inval_inode(ino, -1, 0); // attributes (size)
                }
                None => {
                    let _ = n.inval_inode(ino, 0, 0);
                }
            }
            let _ = n.inval_inode(ino_of(Node::Pos(id)), -1, 0);
        }
        // A negative entry cached before the database existed here would hide it (a new
        // database always starts with a snapshot or deletion: `pages` is None then).
        if pages.is_none() {
            for name in [name.to_owned(), format!("{name}-pos")] {
                let _ = n.inval_entry(INodeNo(1), OsStr::new(&name));
            }
        }
    }
}

impl Fs {
    fn db(&self, id: u64) -> Result<Arc<Db>, Errno> {
        let name = self.name_of(id).ok_or(Errno::ENOENT)?;
        self.store.get(&name).ok_or(Errno::ENOENT)
    }

    /// Splits a mount file name into database name and file.
    fn parse_name(name: &str) -> (&str, Option<FileKind>, bool) {
        for kind in [FileKind::Journal, FileKind::Wal, FileKind::Shm] {
            if let Some(base) = name.strip_suffix(kind.suffix()) {
                return (base, Some(kind), false);
            }
        }
        if let Some(base) = name.strip_suffix("-pos") {
            return (base, None, true);
        }
        (name, Some(FileKind::Database), false)
    }

    fn attr(&self, node: Node) -> Result<FileAttr, Errno> {
        #[allow(clippy::disallowed_methods)]
        let now = SystemTime::now();
        let base = |kind, size, perm, mtime| FileAttr {
            ino: self.ino(node),
            size,
            blocks: size.div_ceil(512),
            atime: now,
            mtime,
            ctime: mtime,
            crtime: mtime,
            kind,
            perm,
            nlink: if kind == FileType::Directory { 2 } else { 1 },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        };
        Ok(match node {
            Node::Root => base(FileType::Directory, 0, 0o755, now),
            Node::Primary => {
                let host = self.store.node().primary().ok_or(Errno::ENOENT)?;
                base(FileType::RegularFile, host.len() as u64 + 1, 0o444, now)
            }
            Node::Promote => {
                let len = self.store.node().promote_error().map_or(0, |e| e.len() + 1);
                base(FileType::RegularFile, len as u64, 0o600, now)
            }
            Node::Lag => {
                let t = self.store.node().primary_time_ms().max(0) as u64;
                base(FileType::RegularFile, 11, 0o444, UNIX_EPOCH + Duration::from_millis(t))
            }
            Node::File(id, kind) => {
                let db = self.db(id)?;
                let f = db.file(kind).ok_or(Errno::ENOENT)?;
                let md = f.metadata().map_err(Errno::from)?;
                base(FileType::RegularFile, md.len(), 0o644, md.modified().unwrap_or(now))
            }
            Node::Pos(id) => {
                let db = self.db(id)?;
                let ms = db.last_ltx_ms().max(0) as u64;
                base(FileType::RegularFile, 34, 0o644, UNIX_EPOCH + Duration::from_millis(ms))
            }
        })
    }

    fn lookup_name(&self, name: &OsStr) -> Result<Node, Errno> {
        let name = name.to_str().ok_or(Errno::ENOENT)?;
        match name {
            ".primary" if self.store.node().primary().is_some() => return Ok(Node::Primary),
            ".primary" => return Err(Errno::ENOENT),
            ".lag" => return Ok(Node::Lag),
            ".promote" => return Ok(Node::Promote),
            _ => {}
        }
        let (base, kind, pos) = Self::parse_name(name);
        let db = self.store.get(base).ok_or(Errno::ENOENT)?;
        let id = self.id(base);
        if pos {
            return Ok(Node::Pos(id));
        }
        let kind = kind.ok_or(Errno::ENOENT)?;
        if db.file(kind).is_none() {
            return Err(Errno::ENOENT);
        }
        Ok(Node::File(id, kind))
    }

    fn file_op<T>(
        &self,
        ino: INodeNo,
        f: impl FnOnce(&Arc<Db>, FileKind) -> Result<T, DbError>,
    ) -> Result<T, Errno> {
        match self.node(ino) {
            Some(Node::File(id, kind)) => {
                let db = self.db(id)?;
                f(&db, kind).map_err(|e| {
                    if matches!(e, DbError::OutsideTransaction(_)) {
                        tracing::warn!(db = db.name(), error = %e, "write refused");
                    } else {
                        tracing::debug!(db = db.name(), error = %e, "file operation failed");
                    }
                    errno::errno(&e)
                })
            }
            Some(Node::Root) => Err(Errno::EISDIR),
            Some(Node::Pos(_) | Node::Primary | Node::Lag | Node::Promote) => Err(Errno::EACCES),
            None => Err(Errno::ENOENT),
        }
    }

    /// Answers an operation that completed a commit once synchronous replication confirmed
    /// it (`lease.sync-replicas`; at once when there is nothing to wait for). The wait runs
    /// on the runtime, so it holds no dispatch thread: SQLite's writer is blocked in its
    /// write meanwhile, readers are not.
    fn answer_after(
        &self,
        db: &Arc<Db>,
        point: SyncPoint,
        done: impl FnOnce(Result<(), Errno>) + Send + 'static,
    ) {
        let Some(txid) = point.0 else { return done(Ok(())) };
        let db = db.clone();
        self.store.rt().spawn(async move {
            let r = db.replicated(txid).await;
            if let Err(e) = &r {
                tracing::error!(db = db.name(), error = %e, "commit not confirmed");
            }
            done(r.map_err(|e| errno::errno(&e)));
        });
    }

    /// Read-your-writes: a position written to `<db>-pos` is answered once this node's
    /// copy of the database reached its TXID, or with ETIMEDOUT after [`WAIT_TIMEOUT`].
    fn wait_pos(&self, id: u64, data: &[u8], reply: ReplyWrite) {
        let db = match self.db(id) {
            Ok(db) => db,
            Err(e) => return reply.error(e),
        };
        let text = std::str::from_utf8(data).unwrap_or("");
        let txid = match crate::core::types::parse_wait(text) {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(db = db.name(), error = %e, "bad position written to -pos");
                return reply.error(Errno::EINVAL);
            }
        };
        let n = data.len() as u32;
        let mut rx = db.subscribe();
        if rx.borrow().txid >= txid {
            return reply.written(n);
        }
        self.store.rt().spawn(async move {
            let reached = rx.wait_for(|p| p.txid >= txid);
            match tokio::time::timeout(WAIT_TIMEOUT, reached).await {
                Ok(Ok(_)) => reply.written(n),
                Ok(Err(_)) => reply.error(Errno::EIO), // the database actor stopped
                Err(_) => reply.error(Errno::ETIMEDOUT),
            }
        });
    }

    /// `litefleet promote`: asks the primary to hand the lease over (`protocol.md` §12)
    /// and answers once this node is the primary (at once if it is), EIO if the primary
    /// refused (the reason is then read from `.promote`), ETIMEDOUT after
    /// [`PROMOTE_TIMEOUT`].
    fn promote(&self, n: u32, reply: ReplyWrite) {
        let node = self.store.node().clone();
        if node.is_primary() {
            return reply.written(n);
        }
        node.set_promote_error(None);
        self.store.rt().spawn(async move {
            // A node that just started, or whose primary just changed, may be between
            // sessions: give it a moment to follow one.
            let connect_by = tokio::time::Instant::now() + Duration::from_secs(10);
            while !node.request_promotion() {
                if tokio::time::Instant::now() >= connect_by {
                    node.set_promote_error(Some("not following a primary".into()));
                    return reply.error(Errno::EIO);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let deadline = tokio::time::Instant::now() + PROMOTE_TIMEOUT;
            loop {
                if node.writable() {
                    return reply.written(n);
                }
                if node.promote_error().is_some() {
                    return reply.error(Errno::EIO);
                }
                if tokio::time::Instant::now() >= deadline {
                    return reply.error(Errno::ETIMEDOUT);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
    }

    fn create_node(&self, name: &OsStr) -> Result<Node, Errno> {
        let name = name.to_str().ok_or(Errno::EINVAL)?;
        let (base, kind, pos) = Self::parse_name(name);
        if pos {
            return Err(Errno::EACCES);
        }
        let kind = kind.ok_or(Errno::EINVAL)?;
        let db = match kind {
            FileKind::Database => {
                let db = self.store.create(base).map_err(|e| {
                    tracing::warn!(db = base, error = %e, "cannot create database");
                    match e {
                        crate::store::StoreError::Quarantined { .. } => Errno::EIO,
                        _ => Errno::EINVAL,
                    }
                })?;
                db.create_database().map_err(|e| errno::errno(&e))?;
                db
            }
            _ => {
                let db = self.store.get(base).ok_or(Errno::ENOENT)?;
                if !db.exists() {
                    return Err(Errno::ENOENT);
                }
                db.create(kind).map_err(|e| errno::errno(&e))?;
                db
            }
        };
        Ok(Node::File(self.id(db.name()), kind))
    }

    /// Milliseconds behind the primary: 0 on the primary, `i32::MAX` before a replica's
    /// first contact (as LiteFS).
    fn lag_ms(&self) -> i64 {
        let node = self.store.node();
        if node.writable() {
            return 0;
        }
        let t = node.primary_time_ms();
        if t == 0 {
            return i64::from(i32::MAX);
        }
        #[allow(clippy::disallowed_methods)]
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64);
        (now.unwrap_or(t) - t).clamp(0, i64::from(i32::MAX))
    }

    fn invalidate(&self, node: Node) {
        if let Some(n) = self.notifier.get() {
            let _ = n.inval_inode(self.ino(node), 0, 0);
        }
    }
}

impl Filesystem for Fs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(1 << 20);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent.0 != 1 {
            return reply.error(Errno::ENOENT);
        }
        match self.lookup_name(name).and_then(|n| self.attr(n)) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(Errno::ENOENT) => {
                // A negative entry (node id 0) the kernel caches: SQLite looks for a hot
                // journal before every read transaction.
                let mut attr = match self.attr(Node::Root) {
                    Ok(a) => a,
                    Err(e) => return reply.error(e),
                };
                attr.ino = INodeNo(0);
                reply.entry(&TTL, &attr, Generation(0))
            }
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.node(ino).ok_or(Errno::ENOENT).and_then(|n| self.attr(n)) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // Mode, owner and times are cosmetic (all files belong to the litefleet process);
        // only size changes reach the database.
        let node = self.node(ino);
        let res = match (size, node) {
            // `echo … > <db>-pos` truncates first: the file is generated, nothing to do.
            (Some(_), Some(Node::Pos(_) | Node::Promote)) => Ok(None),
            (Some(size), _) => self
                .file_op(ino, |db, kind| Ok(db.truncate(kind, size)?.0.map(|t| (db.clone(), t)))),
            (None, _) => Ok(None),
        };
        let attr = |r: Result<(), Errno>| {
            r.and_then(|_| node.ok_or(Errno::ENOENT)).and_then(|n| self.attr(n))
        };
        match res {
            Ok(Some((db, txid))) => {
                // A rollback-journal commit (TRUNCATE mode): the attributes are taken now,
                // the answer waits for the replicas.
                let a = attr(Ok(()));
                self.answer_after(&db, SyncPoint(Some(txid)), move |r| match r.and(a) {
                    Ok(a) => reply.attr(&TTL, &a),
                    Err(e) => reply.error(e),
                });
            }
            Ok(None) => match attr(Ok(())) {
                Ok(a) => reply.attr(&TTL, &a),
                Err(e) => reply.error(e),
            },
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let writing = flags.acc_mode() != fuser::OpenAccMode::O_RDONLY;
        match self.node(ino) {
            // `-pos` takes writes: positions to wait for.
            Some(Node::Pos(_) | Node::Promote) => {
                reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO | NOFLUSH)
            }
            Some(Node::Primary | Node::Lag) => {
                if flags.acc_mode() != fuser::OpenAccMode::O_RDONLY {
                    return reply.error(Errno::EACCES);
                }
                reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO | NOFLUSH)
            }
            // A replica: SQLite, refused write access to the database or WAL, opens it
            // read-only and reports writes as "attempt to write a readonly database". The
            // node's own applier opens the database read-write to take SQLite's locks.
            Some(Node::File(_, kind))
                if writing
                    && kind != FileKind::Shm
                    && !self.store.node().writable()
                    && !own_thread(req.pid()) =>
            {
                reply.error(Errno::EROFS)
            }
            Some(Node::File(id, kind)) => match self.db(id) {
                Ok(db) if db.file(kind).is_some() => {
                    reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE | NOFLUSH)
                }
                _ => reply.error(Errno::ENOENT),
            },
            Some(Node::Root) => reply.error(Errno::EISDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let text = match self.node(ino) {
            Some(Node::Primary) => self.store.node().primary().map(|h| format!("{h}\n")),
            Some(Node::Lag) => Some(format!("{:+010}\n", self.lag_ms())),
            Some(Node::Promote) => {
                Some(self.store.node().promote_error().map(|e| e + "\n").unwrap_or_default())
            }
            _ => None,
        };
        if let Some(text) = text {
            let b = text.as_bytes();
            let start = (offset as usize).min(b.len());
            let end = (start + size as usize).min(b.len());
            return reply.data(&b[start..end]);
        }
        if let Some(Node::Pos(id)) = self.node(ino) {
            return match self.db(id) {
                Ok(db) => {
                    let text = format!("{}\n", db.pos());
                    let b = text.as_bytes();
                    let start = (offset as usize).min(b.len());
                    let end = (start + size as usize).min(b.len());
                    reply.data(&b[start..end])
                }
                Err(e) => reply.error(e),
            };
        }
        let mut buf = vec![0u8; size as usize];
        match self.file_op(ino, |db, kind| db.read(kind, &mut buf, offset)) {
            Ok(n) => reply.data(&buf[..n]),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.node(ino) {
            Some(Node::Pos(id)) => return self.wait_pos(id, data, reply),
            Some(Node::Promote) => return self.promote(data.len() as u32, reply),
            _ => {}
        }
        match self.file_op(ino, |db, kind| Ok((db.clone(), db.write(kind, data, offset)?))) {
            Ok((db, (n, point))) => self.answer_after(&db, point, move |r| match r {
                Ok(()) => reply.written(n as u32),
                Err(e) => reply.error(e),
            }),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lo: LockOwner,
        reply: ReplyEmpty,
    ) {
        // ENOSYS makes the kernel stop sending FLUSH on every close (`no_flush`): nothing
        // needs it (writes are synchronous, there is no writeback cache), it saves a round
        // trip per close, and — the reason it matters — a node killed with -9 while it
        // holds descriptors on its own mount (the replica applier's lock descriptors) would
        // otherwise hang forever in exit: the kernel closes those descriptors with a
        // non-interruptible FLUSH that only the dying process could answer. `NOFLUSH` on
        // every open covers the rest of that hazard (see there).
        reply.error(Errno::ENOSYS);
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        // The close already returned to the application; a failure here can only be logged.
        // Writes outside a transaction stay pending then, and the next commit point (or
        // startup recovery, which finds their marker) records them.
        if let Some(Node::File(..)) = self.node(ino)
            && let Err(e) = self.file_op(ino, |db, kind| db.release(kind))
        {
            tracing::warn!(error = ?e, "recording writes outside a transaction at close failed");
        }
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.node(ino) {
            Some(Node::Pos(_)) => reply.ok(),
            _ => match self.file_op(ino, |db, kind| db.fsync(kind)) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            },
        }
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _ds: bool,
        reply: ReplyEmpty,
    ) {
        // SQLite fsyncs the directory to make a new journal's entry durable. The fsync of the
        // journal's backing file already did that (ext4 commits or syncs the parent of a
        // new inode), and LTX durability never depends on it (see `crate::db`).
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino.0 != 1 {
            return reply.error(Errno::ENOTDIR);
        }
        let mut entries = vec![
            (INodeNo(1), FileType::Directory, ".".to_owned()),
            (INodeNo(1), FileType::Directory, "..".to_owned()),
            (INodeNo(LAG_INO), FileType::RegularFile, ".lag".to_owned()),
        ];
        if self.store.node().primary().is_some() {
            entries.push((INodeNo(PRIMARY_INO), FileType::RegularFile, ".primary".to_owned()));
        }
        for db in self.store.list() {
            if !db.exists() {
                continue;
            }
            let id = self.id(db.name());
            entries.push((
                self.ino(Node::File(id, FileKind::Database)),
                FileType::RegularFile,
                db.name().to_owned(),
            ));
            entries.push((
                self.ino(Node::Pos(id)),
                FileType::RegularFile,
                format!("{}-pos", db.name()),
            ));
            for kind in [FileKind::Journal, FileKind::Wal, FileKind::Shm] {
                if db.file(kind).is_some() {
                    entries.push((
                        self.ino(Node::File(id, kind)),
                        FileType::RegularFile,
                        format!("{}{}", db.name(), kind.suffix()),
                    ));
                }
            }
        }
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(ino, (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let path = std::ffi::CString::new(self.store.root().as_os_str().as_encoded_bytes())
            .unwrap_or_default();
        // SAFETY: `path` is a valid NUL-terminated string and `st` a properly sized out
        // parameter that statvfs fully initialises on success.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
        if rc != 0 {
            return reply.error(Errno::EIO);
        }
        reply.statfs(
            st.f_blocks,
            st.f_bfree,
            st.f_bavail,
            st.f_files,
            st.f_ffree,
            st.f_bsize as u32,
            255,
            st.f_frsize as u32,
        );
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        if parent.0 != 1 {
            return reply.error(Errno::ENOENT);
        }
        match self.create_node(name).and_then(|n| self.attr(n)) {
            Ok(attr) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(0),
                FopenFlags::FOPEN_KEEP_CACHE | NOFLUSH,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if parent.0 != 1 || mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::EPERM);
        }
        match self.create_node(name).and_then(|n| self.attr(n)) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        if parent.0 != 1 {
            return reply.error(Errno::ENOENT);
        }
        let node = match self.lookup_name(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let res = match node {
            Node::File(id, FileKind::Database) => {
                let r = self.db(id).and_then(|db| db.delete().map_err(|e| errno::errno(&e)));
                if r.is_ok() {
                    // The auxiliary files went with it, behind the kernel's back.
                    for kind in FileKind::ALL {
                        self.invalidate(Node::File(id, kind));
                    }
                    if let (Some(n), Some(base)) = (self.notifier.get().cloned(), self.name_of(id))
                    {
                        // Hazard: the kernel holds the directory lock during this unlink and
                        // entry invalidation takes it too: invalidate from another thread.
                        std::thread::spawn(move || {
                            for kind in [FileKind::Journal, FileKind::Wal, FileKind::Shm] {
                                let name = format!("{base}{}", kind.suffix());
                                let _ = n.inval_entry(INodeNo(1), OsStr::new(&name));
                            }
                        });
                    }
                }
                r
            }
            Node::File(id, kind) => {
                let r = self.db(id).and_then(|db| {
                    let point = db.unlink(kind).map_err(|e| errno::errno(&e))?;
                    Ok((db, point))
                });
                // DELETE mode: the journal's unlink is a commit; answered once confirmed.
                return match r {
                    Ok((db, point)) => self.answer_after(&db, point, move |r| match r {
                        Ok(()) => reply.ok(),
                        Err(e) => reply.error(e),
                    }),
                    Err(e) => reply.error(e),
                };
            }
            Node::Pos(_) | Node::Primary | Node::Lag | Node::Promote => Err(Errno::EACCES),
            Node::Root => Err(Errno::EISDIR),
        };
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(&self, _req: &Request, _p: INodeNo, _n: &OsStr, _m: u32, _u: u32, reply: ReplyEntry) {
        reply.error(Errno::EPERM);
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EPERM);
    }
}
