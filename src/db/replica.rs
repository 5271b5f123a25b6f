//! Applying a replicated LTX file on a replica, so that readers see whole transactions only.
//!
//! Order (crash safety): the file is verified against the local state first
//! ([`Incoming::check`]: nothing is written for a bad file), then stored in the LTX directory
//! and fdatasynced, then its pages are written into the database file under SQLite's own
//! locks, then the kernel's cached pages are dropped. A crash after the LTX file and before
//! the pages leaves a database that lags its newest LTX file, which startup recovery
//! re-applies.
//!
//! Locks are taken through the mount, as a SQLite writer would, so they conflict with the
//! readers' locks (the kernel arbitrates POSIX locks on the mount):
//! - rollback journal: PENDING (new readers stop at it), then the SHARED range exclusive
//!   (waits for open read transactions to end);
//! - WAL: the WRITE, CKPT and RECOVER locks of `-shm`, then the wal-index header is marked
//!   invalid, so new read transactions wait (they would need the WRITE lock to rebuild it),
//!   then READ0..READ4 exclusive (waits for open read transactions). After the pages are
//!   written the header is rewritten valid with its change counter bumped, so every reader
//!   drops its page cache; replicas never have WAL frames (`mxFrame` 0).
//!
//! If an apply fails after the header was invalidated, the next reader rebuilds the
//! wal-index itself (SQLite's WAL recovery), from an empty WAL: nothing is lost.
//!
//! Both ways, readers arriving while a file is applied wait (SQLITE_BUSY through their busy
//! handler) instead of starving the applier, and a long read transaction delays applying
//! until it ends, for at most [`LOCK_TIMEOUT`], after which the attempt fails and the
//! transfer is retried.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::log::LtxLog;
use super::{DbError, FileKind, Files, open_rw};
use crate::core::ltx::{HEADER_SIZE, Header, TRAILER_SIZE, Trailer};
use crate::core::repl::Incoming;
use crate::core::sqlite::{DbHeader, JournalMode, WalChecksum};
use crate::core::types::Pos;
use crate::node::NodeCtx;

/// How long the applier waits for readers before giving up one attempt.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

const PENDING_BYTE: i64 = 0x4000_0000;
const SHARED_FIRST: i64 = PENDING_BYTE + 2;
const SHARED_SIZE: i64 = 510;
const SHM_WRITE: i64 = 120;
const SHM_READ0: i64 = 123;
const SHM_READ_N: i64 = 5;

/// What the actor needs to apply files.
pub struct ApplyCtx {
    pub name: String,
    pub dir: PathBuf,
    pub files: Arc<RwLock<Files>>,
    pub node: Arc<NodeCtx>,
    /// The database and `-shm` opened through the mount for locking, kept between applies
    /// (opening costs FUSE round trips). OFD locks belong to these descriptions.
    pub lock_fds: Option<(File, Option<File>)>,
}

impl ApplyCtx {
    fn set_file(&self, kind: FileKind, f: Option<Arc<File>>) {
        self.files.write().unwrap_or_else(|e| e.into_inner())[kind.index()] = f;
    }

    pub(super) fn file(&self, kind: FileKind) -> Option<Arc<File>> {
        self.files.read().unwrap_or_else(|e| e.into_inner())[kind.index()].clone()
    }

    /// Opens the lock descriptors through the mount if they are not open yet.
    fn open_lock_fds(&mut self, mount: &Path, mode: JournalMode) -> Result<(), DbError> {
        // Hazard: SQLite unlinks `-shm` when its last connection closes, and a reader may
        // create a new one later; locks on the unlinked file would not conflict with it. The
        // kernel drops a FUSE inode's link count at unlink, so `nlink == 0` tells.
        let gone = |f: &File| f.metadata().map(|m| m.nlink() == 0).unwrap_or(true);
        if let Some((db, _)) = &self.lock_fds
            && gone(db)
        {
            self.lock_fds = None;
        }
        let shm_stale = match &self.lock_fds {
            Some((_, None)) => true,
            Some((_, Some(shm))) => gone(shm),
            None => false,
        };
        if self.lock_fds.is_none() || shm_stale {
            let db_path = mount.join(&self.name);
            let db = match self.lock_fds.take() {
                Some((db, _)) => db,
                None => OpenOptions::new().read(true).write(true).open(&db_path)?,
            };
            let shm_path = PathBuf::from(format!("{}-shm", db_path.display()));
            // WAL: created if missing, so there is always a file to lock. A reader arriving
            // during the apply opens this one, finds no valid wal-index header, and waits for
            // the WRITE lock to rebuild it (SQLite treats an empty `-shm` as after a crash).
            let create = mode == JournalMode::Wal;
            let shm = match OpenOptions::new().read(true).write(true).create(create).open(&shm_path)
            {
                Ok(f) => Some(f),
                // No reader opened the database in WAL mode yet: no wal-index to respect.
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(e.into()),
            };
            self.lock_fds = Some((db, shm));
        }
        Ok(())
    }
}

/// Whether the locked `-shm` descriptor is still the file at its path (`None`: there is
/// still none). Checked after the locks are taken: a reader's last connection may unlink
/// `-shm` between [`ApplyCtx::open_lock_fds`] and the locks, and a new reader then creates
/// another one our locks would not cover. Once the CKPT lock is held no connection can
/// unlink it (SQLite deletes `-shm` only after a successful checkpoint).
fn shm_current(mount: &Path, name: &str, shm: Option<&File>) -> bool {
    let path = mount.join(format!("{name}-shm"));
    match shm {
        Some(f) => match (f.metadata(), fs::metadata(&path)) {
            (Ok(a), Ok(b)) => {
                let same = a.nlink() > 0 && a.ino() == b.ino() && a.dev() == b.dev();
                if !same {
                    tracing::debug!(
                        db = name,
                        open_ino = a.ino(),
                        open_nlink = a.nlink(),
                        path_ino = b.ino(),
                        "-shm: the open descriptor is not the file"
                    );
                }
                same
            }
            (a, b) => {
                tracing::debug!(db = name, open = ?a.err(), path = ?b.err(), "-shm not found");
                false
            }
        },
        None => !path.exists(),
    }
}

/// Sets every local LTX file aside under `<data.dir>/diverged/<db>/<unix ms>-<txid>/` and
/// logs their names: the database's history is not the primary's (a deposed primary's
/// unreplicated tail, or a changed file), and a snapshot will replace it. Nothing is deleted;
/// `litefleet ltx` reads the files there.
pub fn set_aside(log: &mut LtxLog, ctx: &ApplyCtx, why: &str) -> Result<(), DbError> {
    let root = ctx.dir.parent().and_then(Path::parent).unwrap_or(&ctx.dir);
    let pos = log.state.pos;
    let stamp = super::now_ms();
    let dest = root.join("diverged").join(&ctx.name).join(format!("{stamp}-{}", pos.txid));
    let names = log.set_aside(&dest)?;
    tracing::error!(db = %ctx.name, %pos, dir = %dest.display(), files = ?names, why,
        "this database's history is not the primary's: its LTX files were moved aside (they \
         hold any transactions no other node has); resyncing from the primary");
    Ok(())
}

/// Verifies and applies a run of LTX files received in order; returns the new position.
///
/// Several files are first compacted into one ranged file (each input's file checksum and
/// the chain of pre/post-apply checksums are verified by the compaction, the end state by
/// [`Incoming::check`]), so a replica that fell behind applies the run under one lock
/// acquisition and one cache invalidation, and readers jump over it at once (still whole
/// transactions). Deletions, snapshots and runs that do not chain are applied one by one.
pub fn apply_run(
    log: &mut LtxLog,
    ctx: &mut ApplyCtx,
    ltxs: &[bytes::Bytes],
) -> Result<Pos, DbError> {
    if let [one] = ltxs {
        return apply(log, ctx, one);
    }
    let plain =
        ltxs.iter().all(|l| ends(l).is_some_and(|(h, _)| h.commit != 0 && !h.is_snapshot()));
    if plain && !ltxs.is_empty() {
        let readers: Result<Vec<_>, _> = ltxs
            .iter()
            .map(|l| crate::core::ltx::LtxReader::new(std::io::Cursor::new(&l[..]), l.len() as u64))
            .collect();
        let merged = readers.and_then(|r| crate::core::ltx::compact(r, 0, Vec::new()));
        match merged {
            Ok((bytes, _)) => return apply(log, ctx, &bytes),
            Err(e) => tracing::debug!(error = %e, "run not compacted; applying file by file"),
        }
    }
    let mut pos = log.state.pos;
    for l in ltxs {
        pos = apply(log, ctx, l)?;
    }
    Ok(pos)
}

/// The header and trailer of an LTX file, unverified (`None`: too short, or a header that
/// does not decode). Enough to tell a run's files apart; [`Incoming::check`] verifies.
fn ends(ltx: &[u8]) -> Option<(Header, Trailer)> {
    if ltx.len() < HEADER_SIZE + TRAILER_SIZE {
        return None;
    }
    let h = Header::decode(ltx[..HEADER_SIZE].try_into().ok()?).ok()?;
    let t = Trailer::decode(ltx[ltx.len() - TRAILER_SIZE..].try_into().ok()?);
    Some((h, t))
}

/// Verifies and applies one LTX file; returns the new position.
pub fn apply(log: &mut LtxLog, ctx: &mut ApplyCtx, ltx: &[u8]) -> Result<Pos, DbError> {
    let inc = Incoming::check(ltx, ltx.len() as u64, &log.state, log.own_since).map_err(|e| {
        if e.is_divergence() {
            DbError::Diverged(e.to_string())
        } else {
            DbError::Rejected(e.to_string())
        }
    })?;
    // Stored first: recovery can finish what a crash interrupted.
    log.store_received(inc.min_txid, inc.pos.txid, ltx)?;
    let db_path = ctx.dir.join(FileKind::Database.backing_name());
    let mode = current_mode(ctx);
    let mount = ctx.node.mount_dir();
    // Taken out of the context while borrowed by the guard; put back after a success.
    let mut fds = None;
    let result = (|| -> Result<(), DbError> {
        let mut guard = None;
        if let (Some(m), Some(mode)) = (&mount, mode) {
            (guard, fds) = lock_readers_out(ctx, m, mode)?;
        }
        if inc.commit == 0 {
            for kind in FileKind::ALL {
                let _ = fs::remove_file(ctx.dir.join(kind.backing_name()));
                ctx.set_file(kind, None);
            }
            invalidate_kernel(ctx, &inc, false);
            return Ok(());
        }
        let mut created = false;
        let f = match ctx.file(FileKind::Database) {
            Some(f) => f,
            None => {
                let f = Arc::new(open_rw(&db_path, true)?);
                ctx.set_file(FileKind::Database, Some(f.clone()));
                created = true;
                f
            }
        };
        if inc.snapshot {
            f.set_len(0)?;
        }
        for (p, data, _) in &inc.pages {
            f.write_all_at(data, p.offset(inc.page_size))?;
        }
        f.set_len(u64::from(inc.commit) * u64::from(inc.page_size))?;
        // Hazard: the kernel's page cache must be dropped while the locks are still held.
        // Once they are released (or the wal-index header is valid again) a reader reads
        // through the mount, and a stale cached page would mix two transactions.
        invalidate_kernel(ctx, &inc, created);
        if let Some(g) = &guard {
            g.finish(inc.commit)?;
        }
        Ok(())
    })();
    if inc.commit != 0 && result.is_ok() {
        // Deleted (the descriptors point at removed files) or failed: reopened next time.
        ctx.lock_fds = fds;
    }
    result?;
    log.adopt(&inc);
    Ok(inc.pos)
}
/// The lock descriptors of [`ApplyCtx::lock_fds`], taken out while their locks are held.
type LockFds = Option<(File, Option<File>)>;

/// Takes SQLite's locks through the mount as described in the module docs (readers wait);
/// the descriptors are returned with the guard and go back into `ctx` after a success. A
/// `-shm` replaced between opening and locking is retried (see `shm_current`).
fn lock_readers_out(
    ctx: &mut ApplyCtx,
    mount: &Path,
    mode: JournalMode,
) -> Result<(Option<Guard>, LockFds), DbError> {
    for attempt in 0.. {
        ctx.open_lock_fds(mount, mode)?;
        let fds = ctx.lock_fds.take();
        let Some((db, shm)) = &fds else { return Ok((None, None)) };
        let g = Guard::take(db, shm.as_ref(), mode)?;
        if mode == JournalMode::Rollback || shm_current(mount, &ctx.name, shm.as_ref()) {
            return Ok((Some(g), fds));
        }
        drop(g);
        if attempt >= 3 {
            break;
        }
        tracing::debug!(db = %ctx.name, "-shm replaced while locking; again");
    }
    Err(DbError::Io(io::Error::other("-shm keeps being replaced")))
}

/// Live demotion of a WAL database (see `Db::demote`): with SQLite's locks held as for an
/// apply (no read transaction open, none starting), runs `fold`, which moves the committed
/// WAL frames into the database file, empties the WAL and returns the page count; then
/// restarts the wal-index as SQLite's own checkpoint restart does (no frames, nothing
/// backfilled, read marks reset) and rewrites its header valid with the change counter
/// bumped, so every reader drops its cache and reads the file. From then on the database
/// is in a replica's steady state (`mxFrame` 0) and replicated files can be applied.
///
/// Hazard: `fold` must not call into the mount (the locks are held through it, and the
/// FUSE side may need what `fold` holds).
pub fn demote_locked(
    ctx: &mut ApplyCtx,
    fold: impl FnOnce() -> Result<u32, DbError>,
) -> Result<(), DbError> {
    let mount = ctx.node.mount_dir();
    let (guard, fds) = match &mount {
        Some(m) => lock_readers_out(ctx, m, JournalMode::Wal)?,
        None => (None, None),
    };
    let commit = fold()?;
    if let Some(g) = &guard {
        g.restart_wal_index()?;
        g.finish(commit)?;
    }
    if let Some(k) = ctx.node.kernel() {
        k.db_changed(&ctx.name, None);
    }
    drop(guard);
    ctx.lock_fds = fds;
    Ok(())
}

/// Drops what the kernel cached of the pages `inc` changed (everything for a snapshot or
/// a deletion), and the file's attributes.
/// `created`: the database file did not exist before this file (re-created after a
/// deletion): the kernel's negative directory entry for it must go too.
fn invalidate_kernel(ctx: &ApplyCtx, inc: &Incoming, created: bool) {
    let Some(k) = ctx.node.kernel() else { return };
    if inc.snapshot || inc.commit == 0 || created {
        k.db_changed(&ctx.name, None);
        return;
    }
    let ps = u64::from(inc.page_size);
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for (p, _, _) in &inc.pages {
        let off = p.offset(inc.page_size);
        match ranges.last_mut() {
            Some((o, l)) if *o + *l == off => *l += ps,
            _ => ranges.push((off, ps)),
        }
    }
    k.db_changed(&ctx.name, Some(&ranges));
}

/// The journal mode readers of the current database file use, if it exists.
fn current_mode(ctx: &ApplyCtx) -> Option<JournalMode> {
    let f = ctx.file(FileKind::Database)?;
    let mut b = [0u8; 100];
    f.read_exact_at(&mut b, 0).ok()?;
    DbHeader::parse(&b).ok().map(|h| h.journal_mode())
}

fn lock(fd: &File, kind: i32, start: i64, len: i64) -> io::Result<bool> {
    // SAFETY: a zeroed flock is a valid argument; fcntl reads it and the fd is open.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as i16;
    fl.l_whence = libc::SEEK_SET as i16;
    fl.l_start = start;
    fl.l_len = len;
    // Open-file-description locks: owned by this descriptor, so no other thread's close
    // can drop them, and they conflict with SQLite's POSIX locks.
    // SAFETY: valid fd and pointer to an initialised flock.
    let rc = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        _ => Err(e),
    }
}

/// Retries a lock until it is granted or [`LOCK_TIMEOUT`] passes.
fn lock_wait(fd: &File, start: i64, len: i64, what: &str) -> io::Result<()> {
    let mut waited = Duration::ZERO;
    let mut step = Duration::from_micros(200);
    loop {
        if lock(fd, libc::F_WRLCK, start, len)? {
            return Ok(());
        }
        if waited >= LOCK_TIMEOUT {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("readers held the {what} lock for {LOCK_TIMEOUT:?}"),
            ));
        }
        std::thread::sleep(step);
        waited += step;
        step = (step * 2).min(Duration::from_millis(5));
    }
}

/// SQLite's locks held for one apply; released on drop.
struct Guard {
    /// Duplicates of the lock descriptors: the same open file descriptions, so the same
    /// OFD locks, without borrowing the cached ones.
    db: File,
    shm: Option<File>,
    mode: JournalMode,
    /// The wal-index header as it was, to rewrite valid after the apply.
    hdr: Option<[u8; 48]>,
}

impl Guard {
    fn take(db: &File, shm: Option<&File>, mode: JournalMode) -> Result<Guard, DbError> {
        let mut g = Guard { db: db.try_clone()?, shm: None, mode, hdr: None };
        if mode == JournalMode::Rollback {
            lock_wait(db, PENDING_BYTE, 1, "PENDING")?;
            lock_wait(db, SHARED_FIRST, SHARED_SIZE, "SHARED")?;
            return Ok(g);
        }
        let Some(shm) = shm else { return Ok(g) };
        g.shm = Some(shm.try_clone()?);
        lock_wait(shm, SHM_WRITE, 3, "WAL WRITE")?;
        let mut hdr = [0u8; 48];
        let valid = shm.read_exact_at(&mut hdr, 0).is_ok() && hdr[12] == 1;
        if valid {
            // New read transactions now find an invalid header and wait for the WRITE lock.
            let mut bad = hdr;
            bad[12] = 0;
            shm.write_all_at(&bad, 0)?;
            shm.write_all_at(&bad, 48)?;
            g.hdr = Some(hdr);
        }
        lock_wait(shm, SHM_READ0, SHM_READ_N, "WAL READ")?;
        Ok(g)
    }
    /// The wal-index's checkpoint information as SQLite's `walRestartHdr` leaves it: nothing
    /// backfilled, read mark 0 and 1 at frame 0, the others unused (native byte order,
    /// little-endian here). Only with every lock held (see [`Guard::take`]).
    fn restart_wal_index(&self) -> io::Result<()> {
        let Some(shm) = &self.shm else { return Ok(()) };
        let mut info = [0u8; 40];
        // nBackfill (96), aReadMark[0..5] (100..120), aLock (120..128), nBackfillAttempted
        // (128), notUsed0 (132).
        for i in 2..5 {
            info[4 + 4 * i..8 + 4 * i].copy_from_slice(&0xffff_ffffu32.to_le_bytes());
        }
        shm.write_all_at(&info[..24], 96)?;
        shm.write_all_at(&info[32..40], 128)
    }

    /// Rewrites the wal-index header valid: change counter + 1, no WAL frames, `commit`
    /// pages. The header is in the host's byte order (little-endian here) and so is its
    /// checksum, whatever the WAL's own checksum order.
    fn finish(&self, commit: u32) -> io::Result<()> {
        let (Some(shm), Some(mut h)) = (&self.shm, self.hdr) else { return Ok(()) };
        let rd = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let change = rd(&h[8..12]).wrapping_add(1);
        h[8..12].copy_from_slice(&change.to_le_bytes());
        h[12] = 1;
        h[16..20].copy_from_slice(&0u32.to_le_bytes()); // mxFrame
        h[20..24].copy_from_slice(&commit.to_le_bytes()); // nPage
        let mut sum = WalChecksum { s1: 0, s2: 0, big_endian: false };
        sum.update(&h[..40]);
        h[40..44].copy_from_slice(&sum.s1.to_le_bytes());
        h[44..48].copy_from_slice(&sum.s2.to_le_bytes());
        shm.write_all_at(&h, 0)?;
        shm.write_all_at(&h, 48)?;
        Ok(())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Unlock explicitly: the descriptors stay open for the next apply. Failures leave
        // nothing to undo (an unlock of a range not held is a no-op).
        if self.mode == JournalMode::Rollback {
            let _ = lock(&self.db, libc::F_UNLCK, PENDING_BYTE, SHARED_SIZE + 2);
        } else if let Some(shm) = &self.shm {
            let _ = lock(shm, libc::F_UNLCK, SHM_WRITE, 3 + SHM_READ_N);
        }
    }
}
