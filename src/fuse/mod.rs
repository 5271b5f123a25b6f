//! The FUSE filesystem: databases in the root directory, and node-local files anywhere.
//!
//! | Name | Backing | Behaviour |
//! |---|---|---|
//! | `<db>` | `dbs/<db>/database` | read/write; SQLite writes whole pages; a tool may patch bytes inside the file (a write into the header must leave a valid one, EINVAL otherwise) |
//! | `<db>-journal`, `<db>-wal`, `<db>-shm` | `dbs/<db>/journal` … | read/write passthrough; commit detection happens here |
//! | `<db>-pos` | generated | reads `%016x/%016x\n` (TXID / post-apply checksum), as LiteFS; a write of a position (that text, or a bare `%016x` TXID) returns once this node reached that TXID (read-your-writes on a replica), ETIMEDOUT after [`WAIT_TIMEOUT`]; not listed (so globs over `<db>*` see only SQLite's files), opened by name; `unlink` succeeds and changes nothing |
//! | anything else, and every directory | `local/<path>` | node-local ([`local`]): plain passthrough, never replicated |
//!
//! **What is a database.** A new file in the root starts node-local. It becomes a database
//! when its first write, into the still empty file, is a SQLite header at offset 0 (SQLite
//! creating a database, `cp`, `.backup`, `VACUUM INTO`): the database is created, the file
//! keeps its inode, and node-local `<name>-journal`/`-wal`/`-shm` files made before (SQLite
//! creates a new database's journal before its first page) are adopted by it. A file whose
//! first write is anything else (a script, a super-journal `<db>-mj…`, a lock file) stays
//! node-local. Inside a database's names, the database wins: `<db>-journal` of an existing
//! database is its journal. On a replica the root belongs to the primary's databases: a new
//! file there is refused with EROFS (SQLite then opens read-only and says "attempt to write a
//! readonly database"); directories, and everything in them, are node-local and writable on
//! every node.
//!
//! **Renames** between node-local names pass through. A rename of a database's file, onto
//! one, or of a node-local SQLite database into the root fails with EXDEV: `mv` and Tcl's
//! `file rename` then copy and delete, so the copy becomes a replicated database (one
//! transaction) and the source goes with its own deletion. Hard links fail with EPERM.
//!
//! Callbacks are thin: they parse the inode, call [`Db`] or [`Local`], and map errors
//! through [`errno::errno`]. POSIX locks are left to the kernel (FUSE_POSIX_LOCKS is not
//! requested): every process using the database goes through this one mount on this one
//! host, where the kernel's lock table is authoritative, and no lock call costs a round trip
//! to us.

pub mod errno;
mod inodes;
pub mod local;

use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, Notifier, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};

use crate::db::{Db, DbError, FileKind, SyncPoint};
use crate::metrics::FuseOp;
use crate::node::KernelCache;
use crate::store::Store;
use inodes::{Inodes, LAG_INO, Node, PRIMARY_INO, ROOT};
use local::Local;

/// How long the kernel may cache entries (positive and negative) and attributes.
///
/// Every change to a file the kernel knows about goes through the kernel (SQLite's writes,
/// truncates, creates and unlinks on this mount), which keeps its cache current; changes
/// litefleet makes behind its back (deleting a database's auxiliary files, applying a
/// replicated transaction) invalidate explicitly through the [`Notifier`]. Caching saves a
/// round trip on every `stat` and hot-journal check SQLite makes per transaction.
const TTL: Duration = Duration::from_secs(10);

/// How long the kernel may cache the entry `name` in `parent`, which is `node`. A
/// database's `-journal`, `-wal` and `-shm` are removed behind the kernel's back when the
/// database is deleted (by `rm` on a primary, by a replicated deletion on a replica), and the
/// invalidation cannot run inside the unlink that causes it: a cached entry would then send
/// the next O_CREAT open of that name to the removed file (SQLite reported "unable to open
/// database file"). Their entries are not cached; each open of one costs a lookup (SQLite
/// opens them once per connection).
///
/// The same holds for a node-local root file with such a name: SQLite creates a new
/// database's journal before its first page, so the journal starts node-local and is adopted
/// by the database (keeping its inode) when page 1 arrives. Cached with a node-local file's
/// lifetime, its entry outlived the database's deletion ("unable to open" on the next
/// database of that name, in `jrnlmode3.test` after a TRUNCATE-mode connection left its
/// empty journal behind).
fn entry_ttl(node: Node, parent: INodeNo, name: &OsStr) -> Duration {
    match node {
        Node::File(_, kind) if kind != FileKind::Database => Duration::ZERO,
        Node::Local(_) if parent.0 == ROOT && auxiliary_name(name) => Duration::ZERO,
        _ => TTL,
    }
}

/// Whether `name` (in the root) is the name of a database's `-journal`, `-wal` or `-shm`.
fn auxiliary_name(name: &OsStr) -> bool {
    name.to_str().is_some_and(|n| {
        let (base, kind, pos) = Fs::parse_name(n);
        !pos && !base.is_empty() && kind.is_some_and(|k| k != FileKind::Database)
    })
}

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

/// The filesystem. See the module docs.
pub struct Fs {
    store: Arc<Store>,
    inodes: Arc<Mutex<Inodes>>,
    local: Local,
    /// Serialises turning local files into databases ([`Fs::promote`]).
    promoting: Mutex<()>,
    uid: u32,
    gid: u32,
    /// Set after mounting; used to drop kernel caches of deleted databases.
    notifier: Arc<OnceLock<Notifier>>,
}

impl Fs {
    /// The filesystem over `store`; node-local files live in `<data.dir>/local/`.
    pub fn new(store: Arc<Store>, notifier: Arc<OnceLock<Notifier>>) -> std::io::Result<Fs> {
        // SAFETY: getuid/getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let local = Local::open(store.root().join(LOCAL_DIR))?;
        let inodes = Arc::new(Mutex::new(Inodes::default()));
        Ok(Fs { store, inodes, local, promoting: Mutex::new(()), uid, gid, notifier })
    }

    /// The handle databases use to invalidate the kernel's caches (see [`KernelCache`]).
    pub fn kernel(&self, mount: &std::path::Path) -> Arc<dyn KernelCache> {
        Arc::new(Kernel {
            mount: mount.to_owned(),
            inodes: self.inodes.clone(),
            notifier: self.notifier.clone(),
        })
    }

    fn table(&self) -> MutexGuard<'_, Inodes> {
        self.inodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn id(&self, name: &str) -> u64 {
        self.table().id(name)
    }

    fn name_of(&self, id: u64) -> Option<String> {
        self.table().name_of(id).map(str::to_owned)
    }

    fn ino(&self, node: Node) -> INodeNo {
        INodeNo(self.table().ino(node))
    }

    fn node(&self, ino: INodeNo) -> Option<Node> {
        self.table().node(ino.0)
    }

    /// The backing path (relative to the local tree) of a local inode, ENOENT if unlinked.
    fn local_path(&self, ino: u64) -> Result<PathBuf, Errno> {
        self.table().path(ino).ok_or(Errno::ENOENT)
    }

    /// The backing path of `name` in the local directory `parent`.
    fn child_path(&self, parent: INodeNo, name: &OsStr) -> Result<PathBuf, Errno> {
        if parent.0 == ROOT {
            return Ok(PathBuf::from(name));
        }
        match self.node(parent) {
            Some(Node::Local(p)) => Ok(self.local_path(p)?.join(name)),
            Some(Node::Root) => Ok(PathBuf::from(name)),
            Some(_) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }
}

pub use crate::store::LOCAL_DIR;

/// Whether the request comes from a thread of this process (FUSE reports the calling
/// thread's id, not the process id).
fn own_thread(tid: u32) -> bool {
    std::path::Path::new(&format!("/proc/self/task/{tid}")).exists()
}

fn io_errno(e: std::io::Error) -> Errno {
    e.raw_os_error().map(Errno::from_i32).unwrap_or(Errno::EIO)
}

/// [`KernelCache`] for this mount.
struct Kernel {
    mount: std::path::PathBuf,
    inodes: Arc<Mutex<Inodes>>,
    notifier: Arc<OnceLock<Notifier>>,
}

impl KernelCache for Kernel {
    fn mount_dir(&self) -> &std::path::Path {
        &self.mount
    }

    fn db_changed(&self, name: &str, pages: Option<&[(u64, u64)]>) {
        let Some(n) = self.notifier.get() else { return };
        let inos = {
            let t = self.inodes.lock().unwrap_or_else(|e| e.into_inner());
            t.known_id(name)
                .map(|id| (t.ino(Node::File(id, FileKind::Database)), t.ino(Node::Pos(id))))
        };
        if let Some((ino, pos)) = inos {
            // Whole page cache and attributes (size) of the database file; attributes of
            // the -pos file.
            let ino = INodeNo(ino);
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
            let _ = n.inval_inode(INodeNo(pos), -1, 0);
        }
        // A negative entry cached before the database existed here would hide it (a new
        // database always starts with a snapshot or deletion: `pages` is None then).
        // A whole-database change (a snapshot or a deletion, applied behind the kernel's
        // back) may also have removed its auxiliary files: a cached entry for a removed
        // `-shm` made the replica applier's own O_CREAT open reach the stale inode (ENOENT)
        // after every re-creation.
        if pages.is_none() {
            let names = [
                name.to_owned(),
                format!("{name}-pos"),
                format!("{name}-journal"),
                format!("{name}-wal"),
                format!("{name}-shm"),
            ];
            for name in names {
                let _ = n.inval_entry(INodeNo(ROOT), OsStr::new(&name));
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

    /// Whether a root-level name may not be used by a node-local entry: the generated
    /// files, and every `-pos` name (a database of that base name would hide it).
    fn reserved(name: &OsStr) -> bool {
        match name.to_str() {
            Some(n) => matches!(n, ".primary" | ".lag" | ".promote") || n.ends_with("-pos"),
            None => false,
        }
    }

    fn attr(&self, node: Node, fh: Option<FileHandle>) -> Result<FileAttr, Errno> {
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
                // The backing file's permissions: SQLite gives a new journal or WAL the
                // database's (and tests check it).
                let perm = (std::os::unix::fs::MetadataExt::mode(&md) & 0o7777) as u16;
                base(FileType::RegularFile, md.len(), perm, md.modified().unwrap_or(now))
            }
            Node::Pos(id) => {
                let db = self.db(id)?;
                let ms = db.last_ltx_ms().max(0) as u64;
                base(FileType::RegularFile, 34, 0o644, UNIX_EPOCH + Duration::from_millis(ms))
            }
            Node::Local(ino) => {
                // Through an open handle when there is one: the file may be unlinked.
                let md = match fh.and_then(|fh| self.local.handle(fh.0)) {
                    Some(f) => f.metadata(),
                    None => self.local.lstat(&self.local_path(ino)?),
                };
                local::attr(ino, &md.map_err(io_errno)?)
            }
        })
    }

    /// What `name` in `parent` is. In the root a database's names win over node-local
    /// files (see the module docs).
    fn lookup_name(&self, parent: INodeNo, name: &OsStr) -> Result<Node, Errno> {
        if parent.0 != ROOT {
            let rel = self.child_path(parent, name)?;
            self.local.lstat(&rel).map_err(io_errno)?;
            return Ok(Node::Local(self.table().local(parent.0, name)));
        }
        if let Some(text) = name.to_str() {
            match text {
                ".primary" if self.store.node().primary().is_some() => return Ok(Node::Primary),
                ".primary" => return Err(Errno::ENOENT),
                ".lag" => return Ok(Node::Lag),
                ".promote" => return Ok(Node::Promote),
                _ => {}
            }
            let (base, kind, pos) = Self::parse_name(text);
            if let Some(db) = self.store.get(base) {
                let id = self.id(base);
                if pos {
                    return Ok(Node::Pos(id));
                }
                if db.exists() {
                    let kind = kind.ok_or(Errno::ENOENT)?;
                    if db.file(kind).is_some() {
                        return Ok(Node::File(id, kind));
                    }
                    // A node-local file of this name (made before the database existed, or
                    // by a copy): the database's file now. On a replica it stays hidden.
                    if self.store.node().writable() && self.adopt_local(&db, id, kind)? {
                        return Ok(Node::File(id, kind));
                    }
                    return Err(Errno::ENOENT);
                }
            } else if pos {
                return Err(Errno::ENOENT);
            }
        }
        self.local.lstat(&PathBuf::from(name)).map_err(io_errno)?;
        Ok(Node::Local(self.table().local(ROOT, name)))
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
            // Callers handle local files before.
            Some(Node::Local(_)) => Err(Errno::EIO),
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
        let t0 = crate::clock::now();
        self.store.rt().spawn(async move {
            let r = db.replicated(txid).await;
            db.metrics().sync_wait(t0.elapsed());
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
        self.store.rt().spawn(async move {
            match crate::promote::promote(&node, PROMOTE_TIMEOUT).await {
                Ok(()) => reply.written(n),
                Err(crate::promote::PromoteError::Timeout(_)) => reply.error(Errno::ETIMEDOUT),
                Err(_) => reply.error(Errno::EIO),
            }
        });
    }

    /// A new root-level file: a database's auxiliary file if its database exists, else a
    /// node-local file (which may become a database at its first write). Returns the node
    /// and the handle to open it with.
    fn create_root(&self, name: &OsStr, mode: u32) -> Result<(Node, u64), Errno> {
        if Self::reserved(name) {
            return Err(Errno::EACCES);
        }
        if let Some(text) = name.to_str()
            && let (base, Some(kind), false) = Self::parse_name(text)
            && kind != FileKind::Database
            && let Some(db) = self.store.get(base)
            && db.exists()
        {
            db.create(kind).map_err(|e| errno::errno(&e))?;
            if let Some(f) = db.file(kind) {
                use std::os::unix::fs::PermissionsExt;
                let _ = f.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777));
            }
            return Ok((Node::File(self.id(db.name()), kind), 0));
        }
        // A replica's root holds the primary's databases: a new file there could only be a
        // database this node cannot write (SQLite, refused here, opens read-only and says
        // so). Its node-local files go in directories.
        if !self.store.node().writable() {
            return Err(Errno::EROFS);
        }
        let (fh, _) = self.local.create_file(&PathBuf::from(name), mode).map_err(io_errno)?;
        Ok((Node::Local(self.table().local(ROOT, name)), fh))
    }

    /// A new regular file `name` in `parent` (see [`Fs::create_root`] for the root);
    /// returns its node and the handle it is open under.
    fn create_file(&self, parent: INodeNo, name: &OsStr, mode: u32) -> Result<(Node, u64), Errno> {
        if parent.0 == ROOT {
            return self.create_root(name, mode);
        }
        let rel = self.child_path(parent, name)?;
        let (fh, _) = self.local.create_file(&rel, mode).map_err(io_errno)?;
        Ok((Node::Local(self.table().local(parent.0, name)), fh))
    }

    /// Whether a write of `data` at `offset` to the local file `ino` creates a database:
    /// the file is in the root, empty, has a name a database can take, and the write is a
    /// SQLite header at offset 0.
    fn creates_database(&self, ino: u64, fh: u64, data: &[u8], offset: u64) -> Option<String> {
        if offset != 0 || data.len() < 100 || &data[..16] != crate::core::sqlite::HEADER_MAGIC {
            return None;
        }
        let (parent, name) = self.table().place(ino)?;
        let name = name.to_str()?.to_owned();
        if parent != ROOT
            || Self::parse_name(&name) != (name.as_str(), Some(FileKind::Database), false)
            || crate::core::wire::valid_db_name(&name).is_err()
        {
            return None;
        }
        // Empty, or only a hole: SQLite with mmap on grows a new database to its final size
        // (ftruncate, SQLITE_FCNTL_SIZE_HINT) before writing page 1. Or no header yet: a
        // first transaction larger than SQLite's page cache spills pages 2.. to the new file
        // before page 1 (page 1 is written last); such a file was left node-local, and so
        // never replicated, until this case was added. Its pages become the database's: the
        // commit records every page of a database that grew (see `commit_rollback`).
        let rel = PathBuf::from(&name);
        let new = self.local.holds_no_data(fh, &rel) || self.local.header_is_zero(fh, &rel);
        new.then_some(name)
    }

    /// Makes the node-local root file `<db><suffix>`, if there is one, the database's file of
    /// `kind` (an auxiliary kind), keeping the inode the kernel may know it by. Returns
    /// whether there was one.
    fn adopt_local(&self, db: &Db, id: u64, kind: FileKind) -> Result<bool, Errno> {
        let name = format!("{}{}", db.name(), kind.suffix());
        let rel = PathBuf::from(&name);
        if !self.local.lstat(&rel).is_ok_and(|m| m.is_file()) {
            return Ok(false);
        }
        db.adopt(kind, &self.local.path(&rel)).map_err(|e| errno::errno(&e))?;
        let mut t = self.table();
        if let Some(l) = t.local_known(ROOT, OsStr::new(&name)) {
            t.make_db(l, id, kind);
        }
        Ok(true)
    }

    /// Turns the empty local file `ino` (named `name`, in the root) into the database
    /// `name`, keeping its inode, and adopts its node-local auxiliary files.
    ///
    /// Crash safety: each step leaves a state the next start reads correctly (an empty
    /// database beside an empty local file: the database wins; a local journal beside the
    /// database: adopted at its first lookup).
    fn promote_db(&self, ino: u64, name: &str) -> Result<(), Errno> {
        let _g = self.promoting.lock().unwrap_or_else(|e| e.into_inner());
        if !matches!(self.node(INodeNo(ino)), Some(Node::Local(_))) {
            return Ok(()); // another writer did it
        }
        if !self.store.node().writable() {
            return Err(Errno::EROFS);
        }
        let db = self.store.create(name).map_err(|e| {
            tracing::warn!(db = name, error = %e, "cannot create database");
            match e {
                crate::store::StoreError::Quarantined { .. } => Errno::EIO,
                _ => Errno::EINVAL,
            }
        })?;
        if !db.exists() {
            db.create_database().map_err(|e| errno::errno(&e))?;
        }
        let id = self.id(name);
        for kind in [FileKind::Journal, FileKind::Wal, FileKind::Shm] {
            if db.file(kind).is_none() {
                self.adopt_local(&db, id, kind)?;
            }
        }
        // The file itself becomes the database file (its length is the one SQLite set).
        let own = self.local.path(&PathBuf::from(name));
        if own.exists() {
            db.adopt(FileKind::Database, &own).map_err(|e| errno::errno(&e))?;
        }
        self.table().make_db(ino, id, FileKind::Database);
        tracing::info!(db = name, "database created");
        Ok(())
    }

    /// The database `id` (its file known to the kernel as `ino`) stops being one: a write
    /// makes its header invalid (a corruption test, a tool overwriting it). It is deleted on
    /// every node (a deletion transaction), and its file goes on, keeping its inode, as the
    /// node-local file of the same name. Returns that file's path in the local tree.
    fn demote_db(&self, ino: u64, id: u64) -> Result<PathBuf, Errno> {
        let _g = self.promoting.lock().unwrap_or_else(|e| e.into_inner());
        let name = self.name_of(id).ok_or(Errno::ENOENT)?;
        let db = self.db(id)?;
        let rel = PathBuf::from(&name);
        // Which of its files exist, under which numbers the kernel knows them.
        let aux: Vec<(FileKind, u64)> = [FileKind::Journal, FileKind::Wal, FileKind::Shm]
            .into_iter()
            .filter(|&k| db.file(k).is_some())
            .map(|k| (k, self.ino(Node::File(id, k)).0))
            .collect();
        db.become_file(|kind| self.local.path(&PathBuf::from(format!("{name}{}", kind.suffix()))))
            .map_err(|e| {
                tracing::warn!(db = %name, error = %e, "cannot turn the database into a plain file");
                errno::errno(&e)
            })?;
        let mut t = self.table();
        t.make_local(ino, ROOT, OsStr::new(&name), id, FileKind::Database);
        for (kind, aux_ino) in aux {
            let aux_name = format!("{name}{}", kind.suffix());
            t.make_local(aux_ino, ROOT, OsStr::new(&aux_name), id, kind);
        }
        drop(t);
        // Hazard: this runs inside the kernel's write on that very inode, and invalidating
        // its pages waits for that write: invalidate from another thread.
        if let Some(n) = self.notifier.get().cloned() {
            let inos: Vec<INodeNo> = FileKind::ALL
                .iter()
                .map(|&k| self.ino(Node::File(id, k)))
                .chain([INodeNo(ino)])
                .collect();
            std::thread::spawn(move || {
                for i in inos {
                    let _ = n.inval_inode(i, 0, 0);
                }
            });
        }
        tracing::warn!(db = %name,
            "a write left the database without a SQLite header: it is deleted on every node \
             and goes on as a node-local file");
        Ok(rel)
    }

    /// The rename rules of the module docs: EXDEV where databases are involved.
    fn rename_allowed(&self, src: Node, newparent: INodeNo, newname: &OsStr) -> Result<(), Errno> {
        match src {
            Node::Local(_) => {}
            Node::File(..) => return Err(Errno::EXDEV),
            Node::Root => return Err(Errno::EBUSY),
            _ => return Err(Errno::EACCES),
        }
        match self.lookup_name(newparent, newname) {
            Ok(Node::Local(_)) | Err(Errno::ENOENT) => {}
            Ok(Node::File(..)) => return Err(Errno::EXDEV),
            Ok(_) => return Err(Errno::EACCES),
            Err(e) => return Err(e),
        }
        if newparent.0 == ROOT {
            if Self::reserved(newname) {
                return Err(Errno::EACCES);
            }
            if let Some(text) = newname.to_str() {
                let (base, kind, _) = Self::parse_name(text);
                // Onto an existing database's auxiliary name: it would become its file.
                if kind != Some(FileKind::Database)
                    && self.store.get(base).is_some_and(|db| db.exists())
                {
                    return Err(Errno::EXDEV);
                }
                // A SQLite database moved into the root: a copy makes it a database.
                if let Node::Local(ino) = src
                    && kind == Some(FileKind::Database)
                    && let Some(rel) = self.table().path(ino)
                    && self.local.is_sqlite(&rel)
                {
                    return Err(Errno::EXDEV);
                }
            }
        }
        Ok(())
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
        self.store.node().metrics().fuse_op(FuseOp::Lookup);
        match self.lookup_name(parent, name).and_then(|n| Ok((n, self.attr(n, None)?))) {
            Ok((n, attr)) => reply.entry(&entry_ttl(n, parent, name), &attr, Generation(0)),
            Err(Errno::ENOENT) => {
                // A negative entry (node id 0) the kernel caches: SQLite looks for a hot
                // journal before every read transaction.
                let mut attr = match self.attr(Node::Root, None) {
                    Ok(a) => a,
                    Err(e) => return reply.error(e),
                };
                attr.ino = INodeNo(0);
                reply.entry(&TTL, &attr, Generation(0))
            }
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        self.store.node().metrics().fuse_op(FuseOp::Getattr);
        match self.node(ino).ok_or(Errno::ENOENT).and_then(|n| self.attr(n, fh)) {
            Ok(mut attr) => {
                // The number asked about, even if the file is now known by another.
                attr.ino = ino;
                reply.attr(&TTL, &attr)
            }
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        self.store.node().metrics().fuse_op(FuseOp::Setattr);
        let node = self.node(ino);
        if let Some(Node::Local(l)) = node {
            let rel = self.table().path(l);
            let fh = fh.map(|f| f.0).filter(|&f| self.local.handle(f).is_some());
            return match self.local.setattr(rel.as_deref(), fh, mode, size, atime, mtime) {
                Ok(md) => reply.attr(&TTL, &local::attr(l, &md)),
                Err(e) => reply.error(io_errno(e)),
            };
        }
        // Owner and times of a database's files are cosmetic (all belong to the litefleet
        // process); the mode is kept on the backing file (node-local, not replicated); size
        // changes reach the database.
        if let (Some(mode), Some(Node::File(id, kind))) = (mode, node) {
            let set = self.db(id).and_then(|db| db.file(kind).ok_or(Errno::ENOENT)).and_then(|f| {
                use std::os::unix::fs::PermissionsExt;
                f.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777)).map_err(io_errno)
            });
            if let Err(e) = set {
                return reply.error(e);
            }
        }
        let res = match (size, node) {
            // `echo … > <db>-pos` truncates first: the file is generated, nothing to do.
            (Some(_), Some(Node::Pos(_) | Node::Promote)) => Ok(None),
            (Some(size), _) => self
                .file_op(ino, |db, kind| Ok(db.truncate(kind, size)?.0.map(|t| (db.clone(), t)))),
            (None, _) => Ok(None),
        };
        let attr = |r: Result<(), Errno>| {
            r.and_then(|_| node.ok_or(Errno::ENOENT)).and_then(|n| self.attr(n, None))
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

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.store.node().metrics().fuse_op(FuseOp::Other);
        match self.node(ino) {
            Some(Node::Local(l)) => {
                match self.local_path(l).and_then(|rel| self.local.readlink(&rel).map_err(io_errno))
                {
                    Ok(target) => reply.data(target.as_os_str().as_encoded_bytes()),
                    Err(e) => reply.error(e),
                }
            }
            _ => reply.error(Errno::EINVAL),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.store.node().metrics().fuse_op(FuseOp::Open);
        let writing = flags.acc_mode() != fuser::OpenAccMode::O_RDONLY;
        match self.node(ino) {
            Some(Node::Local(l)) => {
                match self
                    .local_path(l)
                    .and_then(|rel| self.local.open_file(&rel).map_err(io_errno))
                {
                    Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE | NOFLUSH),
                    Err(e) => reply.error(e),
                }
            }
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
                // An auxiliary file removed behind an entry the kernel still caches (a
                // database's deletion removes them; the entries are invalidated from another
                // thread, see `unlink`): the kernel sends OPEN, not CREATE, and drops O_CREAT.
                // SQLite opens its journal, WAL and `-shm` with O_CREAT, and an empty one
                // is what a new one is (an empty journal is not hot, an empty WAL has no
                // frames, an empty wal-index is rebuilt). Where it cannot be created (a
                // replica's journal), ENOENT as before.
                Ok(db) if kind != FileKind::Database && db.exists() => match db.create(kind) {
                    Ok(()) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE | NOFLUSH),
                    Err(_) => reply.error(Errno::ENOENT),
                },
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
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.store.node().metrics().fuse_op(FuseOp::Read);
        if let Some(Node::Local(_)) = self.node(ino) {
            let rel = self.node(ino).and_then(|n| match n {
                Node::Local(l) => self.table().path(l),
                _ => None,
            });
            return match self.local.read(fh.0, rel.as_deref(), offset, size) {
                Ok(b) => reply.data(&b),
                Err(e) => reply.error(io_errno(e)),
            };
        }
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
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.store.node().metrics().fuse_op(FuseOp::Write);
        match self.node(ino) {
            Some(Node::Pos(id)) => return self.wait_pos(id, data, reply),
            Some(Node::Promote) => return self.promote(data.len() as u32, reply),
            Some(Node::Local(l)) => match self.creates_database(l, fh.0, data, offset) {
                // Falls through to the database's write below.
                Some(name) => {
                    if let Err(e) = self.promote_db(l, &name) {
                        return reply.error(e);
                    }
                }
                None => {
                    let rel = self.table().path(l);
                    return match self.local.write(fh.0, rel.as_deref(), data, offset) {
                        Ok(()) => reply.written(data.len() as u32),
                        Err(e) => reply.error(io_errno(e)),
                    };
                }
            },
            _ => {}
        }
        // `NotSqlite` from a database's write: it would leave the file without a SQLite
        // header outside a SQLite transaction (nothing was written; see `Db::write`).
        let written = self.file_op(ino, |db, kind| match db.write(kind, data, offset) {
            Err(DbError::NotSqlite) if kind == FileKind::Database => Ok(None),
            r => r.map(|w| Some((db.clone(), w))),
        });
        match written {
            Ok(Some((db, (n, point)))) => self.answer_after(&db, point, move |r| match r {
                Ok(()) => reply.written(n as u32),
                Err(e) => reply.error(e),
            }),
            // No longer a database: it goes on as a node-local file.
            Ok(None) => {
                let Some(Node::File(id, _)) = self.node(ino) else {
                    return reply.error(Errno::ENOENT);
                };
                let rel = match self.demote_db(ino.0, id) {
                    Ok(rel) => rel,
                    Err(e) => return reply.error(e),
                };
                match self.local.write(0, Some(&rel), data, offset) {
                    Ok(()) => reply.written(data.len() as u32),
                    Err(e) => reply.error(io_errno(e)),
                }
            }
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
        self.store.node().metrics().fuse_op(FuseOp::Other);
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
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.store.node().metrics().fuse_op(FuseOp::Release);
        // A local file's handle (also one opened before the file became a database).
        if fh.0 != 0 {
            self.local.release(fh.0);
        }
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
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.store.node().metrics().fuse_op(FuseOp::Fsync);
        match self.node(ino) {
            Some(Node::Pos(_)) => reply.ok(),
            Some(Node::Local(l)) => {
                match self.local.fsync(fh.0, self.table().path(l).as_deref(), datasync) {
                    Ok(()) => reply.ok(),
                    Err(e) => reply.error(io_errno(e)),
                }
            }
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
        self.store.node().metrics().fuse_op(FuseOp::Other);
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
        reply: ReplyDirectory,
    ) {
        self.store.node().metrics().fuse_op(FuseOp::Readdir);
        let mut entries: Vec<(INodeNo, FileType, std::ffi::OsString)> = vec![
            (ino, FileType::Directory, ".".into()),
            (INodeNo(ROOT), FileType::Directory, "..".into()),
        ];
        match self.node(ino) {
            Some(Node::Root) => {}
            Some(Node::Local(l)) => {
                let listed =
                    self.local_path(l).and_then(|rel| self.local.list(&rel).map_err(io_errno));
                match listed {
                    Ok(list) => {
                        let mut t = self.table();
                        if let Some((p, _)) = t.place(l) {
                            entries[1].0 = INodeNo(p);
                        }
                        for (name, kind) in list {
                            entries.push((INodeNo(t.local(l, &name)), kind, name));
                        }
                    }
                    Err(e) => return reply.error(e),
                }
                return Self::add_entries(entries, offset, reply);
            }
            Some(_) => return reply.error(Errno::ENOTDIR),
            None => return reply.error(Errno::ENOENT),
        }
        entries.push((INodeNo(LAG_INO), FileType::RegularFile, ".lag".into()));
        if self.store.node().primary().is_some() {
            entries.push((INodeNo(PRIMARY_INO), FileType::RegularFile, ".primary".into()));
        }
        let dbs: Vec<Arc<Db>> = self.store.list().into_iter().filter(|d| d.exists()).collect();
        for db in &dbs {
            let id = self.id(db.name());
            entries.push((
                self.ino(Node::File(id, FileKind::Database)),
                FileType::RegularFile,
                db.name().into(),
            ));
            // `<db>-pos` is not listed: globs over `<db>*` (SQLite's own test harness,
            // `rm <db>*`, backup scripts) see only SQLite's files. It opens by name.
            for kind in [FileKind::Journal, FileKind::Wal, FileKind::Shm] {
                if db.file(kind).is_some() {
                    entries.push((
                        self.ino(Node::File(id, kind)),
                        FileType::RegularFile,
                        format!("{}{}", db.name(), kind.suffix()).into(),
                    ));
                }
            }
        }
        // Node-local entries, except names an existing database takes.
        match self.local.list(std::path::Path::new("")) {
            Ok(list) => {
                for (name, kind) in list {
                    let shadowed = name.to_str().is_some_and(|n| {
                        let (base, _, _) = Self::parse_name(n);
                        self.store.get(base).is_some_and(|d| d.exists())
                    });
                    if !shadowed {
                        let l = self.table().local(ROOT, &name);
                        entries.push((INodeNo(l), kind, name));
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "node-local files not listed"),
        }
        Self::add_entries(entries, offset, reply)
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.store.node().metrics().fuse_op(FuseOp::Other);
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
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        self.store.node().metrics().fuse_op(FuseOp::Create);
        let made = self.create_file(parent, name, mode & !umask);
        match made.and_then(|(n, fh)| Ok((n, self.attr(n, Some(FileHandle(fh)))?, fh))) {
            Ok((n, attr, fh)) => reply.created(
                &entry_ttl(n, parent, name),
                &attr,
                Generation(0),
                FileHandle(fh),
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
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        self.store.node().metrics().fuse_op(FuseOp::Other);
        // Regular files only: no devices, FIFOs or sockets on the mount.
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::EPERM);
        }
        let made = self.create_file(parent, name, mode & !umask);
        match made.and_then(|(n, fh)| {
            let a = self.attr(n, Some(FileHandle(fh)));
            if fh != 0 {
                self.local.release(fh);
            }
            Ok((n, a?))
        }) {
            Ok((n, attr)) => reply.entry(&entry_ttl(n, parent, name), &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.store.node().metrics().fuse_op(FuseOp::Unlink);
        let node = match self.lookup_name(parent, name) {
            Ok(n) => n,
            // An auxiliary file that went with its database's deletion: the kernel may
            // still hold its entry (the invalidation runs on another thread, see below),
            // and a tool deleting `<db>*` must not fail on it.
            Err(Errno::ENOENT)
                if parent.0 == ROOT
                    && name.to_str().is_some_and(|n| {
                        let (base, kind, _) = Self::parse_name(n);
                        kind.is_some_and(|k| k != FileKind::Database)
                            && self.store.get(base).is_some_and(|d| !d.exists())
                    }) =>
            {
                return reply.ok();
            }
            Err(e) => return reply.error(e),
        };
        let res = match node {
            Node::Local(l) => {
                let r =
                    self.local_path(l).and_then(|rel| self.local.unlink(&rel).map_err(io_errno));
                if r.is_ok() {
                    self.table().forget_entry(parent.0, name);
                }
                r
            }
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
                                let _ = n.inval_entry(INodeNo(ROOT), OsStr::new(&name));
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
            // Generated: unlinking it changes nothing (`rm <db>*` must not fail on it).
            Node::Pos(_) => Ok(()),
            Node::Primary | Node::Lag | Node::Promote => Err(Errno::EACCES),
            Node::Root => Err(Errno::EISDIR),
        };
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        self.store.node().metrics().fuse_op(FuseOp::Other);
        if parent.0 == ROOT && Self::reserved(name) {
            return reply.error(Errno::EACCES);
        }
        let made = self.child_path(parent, name).and_then(|rel| {
            let md = self.local.mkdir(&rel, mode & !umask).map_err(io_errno)?;
            Ok(local::attr(self.table().local(parent.0, name), &md))
        });
        match made {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.store.node().metrics().fuse_op(FuseOp::Other);
        let res = match self.lookup_name(parent, name) {
            Ok(Node::Local(l)) => self.local_path(l).and_then(|rel| {
                self.local.rmdir(&rel).map_err(io_errno)?;
                self.table().forget_entry(parent.0, name);
                Ok(())
            }),
            Ok(_) => Err(Errno::ENOTDIR),
            Err(e) => Err(e),
        };
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        self.store.node().metrics().fuse_op(FuseOp::Other);
        if parent.0 == ROOT && Self::reserved(link_name) {
            return reply.error(Errno::EACCES);
        }
        let made = self.child_path(parent, link_name).and_then(|rel| {
            let md = self.local.symlink(&rel, target).map_err(io_errno)?;
            Ok(local::attr(self.table().local(parent.0, link_name), &md))
        });
        match made {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        self.store.node().metrics().fuse_op(FuseOp::Rename);
        let res = (|| {
            let src = self.lookup_name(parent, name)?;
            self.rename_allowed(src, newparent, newname)?;
            if let Node::Local(s) = src
                && self.table().is_within(newparent.0, s)
            {
                return Err(Errno::EINVAL); // a directory into itself
            }
            let from = self.child_path(parent, name)?;
            let to = self.child_path(newparent, newname)?;
            let flags = flags.bits();
            self.local.rename(&from, &to, flags).map_err(io_errno)?;
            let mut t = self.table();
            if flags & libc::RENAME_EXCHANGE != 0 {
                t.exchanged((parent.0, name), (newparent.0, newname));
            } else {
                t.moved((parent.0, name), (newparent.0, newname));
            }
            Ok(())
        })();
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.store.node().metrics().fuse_op(FuseOp::Other);
        // Local files only: a database grows by SQLite's page writes (EOPNOTSUPP makes
        // SQLite and glibc fall back to writes).
        let Some(Node::Local(_)) = self.node(ino) else {
            return reply.error(Errno::EOPNOTSUPP);
        };
        let Some(f) = self.local.handle(fh.0) else { return reply.error(Errno::EBADF) };
        use std::os::fd::AsRawFd;
        // SAFETY: a valid descriptor; the kernel checks the arguments.
        let rc = unsafe { libc::fallocate(f.as_raw_fd(), mode, offset as i64, length as i64) };
        if rc == 0 { reply.ok() } else { reply.error(io_errno(std::io::Error::last_os_error())) }
    }
}

impl Fs {
    fn add_entries(
        entries: Vec<(INodeNo, FileType, std::ffi::OsString)>,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(ino, (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }
}
