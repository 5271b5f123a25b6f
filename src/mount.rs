//! Mounting and unmounting the FUSE filesystem, and who owns a node's directories.
//!
//! [`Mounted::mount`] refuses a live mount at the mount point, clears a stale one left by a
//! crashed process (see [`mount_state`]), creates the mount point, and starts the session on
//! `threads` dispatch threads. Dropping or [`Mounted::unmount`] unmounts. `AutoUnmount` is
//! not used: it hangs on this platform; we unmount ourselves, also on SIGINT/SIGTERM (see
//! [`wait_for_shutdown_signal`]).
//!
//! Ownership: a node holds its data directory with [`DataDirLock`] (a record lock on
//! `data.dir/litefleet.lock`) for its whole life, and its mount carries its pid in the mount
//! source (`litefleet:pid=N`), so a second node names the holder of either without asking it.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use fuser::{BackgroundSession, Config, MountOption, Session, SessionACL};

use crate::fuse::Fs;
use crate::store::Store;

/// Errors mounting.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mount point {path}: {source}")]
    MountPoint { path: PathBuf, source: io::Error },
    #[error("node-local files directory {path}: {source}")]
    LocalDir { path: PathBuf, source: io::Error },
    #[error("mounting FUSE at {path}: {source}")]
    Fuse { path: PathBuf, source: io::Error },
    /// Something live is mounted there: it is never taken over.
    #[error(
        "fuse.dir {path} is a live {owner}{wedged}; refusing to take it over (stop that node, \
         or use another fuse.dir)",
        wedged = wedged_note(.wedged)
    )]
    Live { path: PathBuf, owner: MountOwner, wedged: bool },
    #[error("fuse.dir {path} is not a directory")]
    NotADirectory { path: PathBuf },
}

fn wedged_note(wedged: &bool) -> &'static str {
    if *wedged { " (it did not answer within 2 s: wedged, but not dead)" } else { "" }
}

/// How long [`mount_state`] waits for a mount to answer before calling it wedged (live).
pub const LIVENESS_TIMEOUT: Duration = Duration::from_secs(2);

/// A live mount.
pub struct Mounted {
    session: Option<BackgroundSession>,
    path: PathBuf,
}

/// Whether `path` is currently a mount point (per `/proc/self/mountinfo`).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else { return false };
    let Some(want) = path.to_str() else { return false };
    // Field 5 is the mount point, with spaces etc. octal-escaped.
    info.lines().any(|l| l.split(' ').nth(4).is_some_and(|m| unescape(m) == want))
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v as char);
            i += 4;
            continue;
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

/// The FUSE connection number (the device minor in `/sys/fs/fuse/connections/`) of the
/// FUSE mount at `path`, read from `/proc/self/mountinfo`: nothing is asked of the mount
/// itself, which may be wedged.
fn fuse_connection(path: &Path) -> Option<u32> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = path.to_str()?;
    info.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let fstype = f.iter().skip_while(|x| **x != "-").nth(1)?;
        if f.get(4).map(|m| unescape(m)) != Some(want.to_owned()) || !fstype.starts_with("fuse") {
            return None;
        }
        f.get(2)?.split_once(':')?.1.parse().ok()
    })
}

/// Aborts the FUSE connection of a *stale* mount at `path` (its daemon is dead or dying).
///
/// Hazard this exists for: a daemon killed with SIGKILL while it held a file of its own mount
/// with dirty pages (the replica applier's SQLite maps `-shm` through the mount) flushes them
/// on exit, to itself, and waits forever in state D; it never finishes exiting until the
/// connection is aborted. Returns whether a connection was aborted. Needs the `fusectl`
/// filesystem, mounted here when it is not.
pub fn abort_connection(path: &Path) -> io::Result<bool> {
    let Some(n) = fuse_connection(path) else { return Ok(false) };
    let dir = Path::new("/sys/fs/fuse/connections");
    if !dir.join(n.to_string()).exists() {
        let (src, target, kind) = (c"fusectl", c"/sys/fs/fuse/connections", c"fusectl");
        // SAFETY: NUL-terminated constant strings; no data argument.
        let rc = unsafe {
            libc::mount(src.as_ptr(), target.as_ptr(), kind.as_ptr(), 0, std::ptr::null())
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    fs::write(dir.join(n.to_string()).join("abort"), "1")?;
    Ok(true)
}

/// Clears a mount left by a dead daemon: aborts its FUSE connection (failing every request
/// still waiting on it, which frees a daemon stuck exiting), then detaches it.
pub fn clear_stale(path: &Path) -> io::Result<()> {
    if let Err(e) = abort_connection(path) {
        tracing::warn!(path = %path.display(), error = %e, "cannot abort the stale FUSE connection");
    }
    force_unmount(path)
}

/// Detaches whatever is mounted at `path` (lazy unmount).
pub fn force_unmount(path: &Path) -> io::Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: `c` is a valid NUL-terminated path.
    let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

// ===== Who owns a mount point ===== //

/// The mount source (`fsname`) of a litefleet mount: `litefleet:pid=<pid>:pidns=<inode>`,
/// so another process can name the holder from `/proc/self/mountinfo` without asking the
/// mount (which may be wedged). The pid is the daemon's in its own pid namespace, which the
/// `pidns` inode identifies: a pid from another namespace proves nothing here. Colons, not
/// commas: `fusermount` splits its options at commas.
const FSNAME_PREFIX: &str = "litefleet:pid=";

/// The mount source this process's mounts carry.
fn own_fsname() -> String {
    match own_pidns() {
        Some(ns) => format!("{FSNAME_PREFIX}{}:pidns={ns}", std::process::id()),
        None => format!("{FSNAME_PREFIX}{}", std::process::id()),
    }
}

/// This process's pid namespace (the inode in `/proc/self/ns/pid`, `pid:[4026531836]`).
fn own_pidns() -> Option<u64> {
    let link = fs::read_link("/proc/self/ns/pid").ok()?;
    let s = link.to_str()?;
    s.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

/// What is mounted at a path, per `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOwner {
    /// Filesystem type, e.g. `fuse.litefleet`.
    pub fstype: String,
    /// Mount source (a FUSE mount's `fsname`).
    pub source: String,
    /// The daemon's pid, for a litefleet mount that carries it.
    pub pid: Option<u32>,
    /// The pid namespace `pid` belongs to.
    pub pidns: Option<u64>,
}

impl MountOwner {
    fn parse(fstype: String, source: String) -> MountOwner {
        let mut fields = source.strip_prefix(FSNAME_PREFIX).unwrap_or("").split(':');
        let pid = fields.next().and_then(|p| p.parse().ok());
        let pidns = fields.find_map(|f| f.strip_prefix("pidns=")?.parse().ok());
        MountOwner { fstype, source, pid, pidns }
    }

    fn is_litefleet(&self) -> bool {
        self.source == "litefleet" || self.source.starts_with(FSNAME_PREFIX)
    }

    /// A litefleet mount whose daemon provably is gone: its pid, in this process's pid
    /// namespace, is not running or is exiting. `false` whenever that cannot be told.
    fn known_dead(&self) -> bool {
        match (self.is_litefleet(), self.pid, self.pidns) {
            (true, Some(pid), Some(ns)) => own_pidns() == Some(ns) && !process_alive(pid),
            _ => false,
        }
    }
}

impl fmt::Display for MountOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.is_litefleet(), self.pid) {
            (true, Some(pid)) => write!(f, "litefleet mount held by pid {pid}"),
            (true, None) => write!(f, "litefleet mount (its pid is not recorded)"),
            (false, _) => write!(f, "{} mount (source {:?})", self.fstype, self.source),
        }
    }
}

/// What [`mount_state`] found at a mount point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountState {
    /// Nothing is mounted there.
    Unmounted,
    /// A mount whose daemon is gone: its process is dead or exiting, or the mount answers
    /// ENOTCONN. Safe to clear ([`clear_stale`]).
    Dead(MountOwner),
    /// A mount that answers, or does not answer in time (`wedged`: a live daemon can be
    /// slow; only ENOTCONN proves a FUSE daemon gone). Never to be taken over.
    Live { owner: MountOwner, wedged: bool },
}

/// The form of `path` that `/proc/self/mountinfo` shows: the parent canonicalized (it is
/// not the mount, so resolving it asks no FUSE daemon), the last component as given.
fn mount_point_key(path: &Path) -> PathBuf {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) if !parent.as_os_str().is_empty() => {
            parent.canonicalize().map(|p| p.join(name)).unwrap_or_else(|_| path.to_owned())
        }
        _ => path.to_owned(),
    }
}

/// Every mount at `path`, bottom first (`/proc/self/mountinfo` lists mounts in the order
/// they were made, and a later mount at the same point covers the earlier one).
fn mounts_at(path: &Path) -> Vec<MountOwner> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else { return Vec::new() };
    let key = mount_point_key(path);
    let Some(want) = key.to_str() else { return Vec::new() };
    info.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            if f.get(4).map(|m| unescape(m)).as_deref() != Some(want) {
                return None;
            }
            // After the optional fields and "-": type, source, super options.
            let mut tail = f.iter().skip_while(|x| **x != "-").skip(1);
            let fstype = unescape(tail.next()?);
            let source = unescape(tail.next()?);
            Some(MountOwner::parse(fstype, source))
        })
        .collect()
}

/// Whether process `pid` is running and not on its way out. A daemon killed while it held
/// files of its own mount can sit exiting (state D) for good, its connection never closed
/// (see [`abort_connection`]): its pid exists, but it serves nothing.
fn process_alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // Fields after the parenthesised command name: state (3rd field) … flags (9th).
    let Some((_, rest)) = stat.rsplit_once(") ") else { return false };
    let f: Vec<&str> = rest.split(' ').collect();
    let state = f.first().copied().unwrap_or("X");
    let flags: u32 = f.get(6).and_then(|x| x.parse().ok()).unwrap_or(0);
    !matches!(state, "Z" | "X" | "x") && flags & libc::PF_EXITING as u32 == 0
}

/// Whether `path` answers a forced `statx` within `timeout`: `Some(Ok)` it answered,
/// `Some(Err)` with its error, `None` no answer in time. A thread does the asking: a wedged
/// daemon would block it, possibly for good (it is left behind; it ends with the process).
/// `AT_STATX_FORCE_SYNC` makes the kernel ask the daemon instead of answering from its
/// attribute cache, which outlives a dead daemon.
fn answers(path: &Path, timeout: Duration) -> Option<io::Result<()>> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new().name("mount-liveness".into()).spawn(move || {
        // SAFETY: `c` is NUL-terminated; `buf` is a valid out-parameter for statx.
        let rc = unsafe {
            let mut buf: libc::statx = std::mem::zeroed();
            libc::statx(
                libc::AT_FDCWD,
                c.as_ptr(),
                libc::AT_STATX_FORCE_SYNC,
                libc::STATX_BASIC_STATS,
                &mut buf,
            )
        };
        let r = if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) };
        let _ = tx.send(r);
    });
    match spawned {
        Ok(_) => rx.recv_timeout(timeout).ok(),
        Err(e) => Some(Err(e)),
    }
}

/// What is mounted at `path` and whether it is alive. Decided, in order, by: nothing in
/// `/proc/self/mountinfo` (unmounted); a litefleet mount whose recorded pid is gone or
/// exiting in this pid namespace (dead, without asking it); a forced `statx` answering ENOTCONN (dead), answering
/// at all or failing otherwise (live: EACCES, say, is the kernel answering for a live
/// daemon), or not answering within `timeout` (live but wedged).
pub fn mount_state(path: &Path, timeout: Duration) -> MountState {
    let Some(owner) = mounts_at(path).pop() else { return MountState::Unmounted };
    if owner.known_dead() {
        return MountState::Dead(owner);
    }
    match answers(&mount_point_key(path), timeout) {
        Some(Err(e)) if e.raw_os_error() == Some(libc::ENOTCONN) => MountState::Dead(owner),
        Some(_) => MountState::Live { owner, wedged: false },
        None => MountState::Live { owner, wedged: true },
    }
}

/// Makes `path` ready to be mounted on: refuses a live mount there and a path that is not a
/// directory; clears a dead mount when `clear` (else leaves it, and the new mount goes over
/// it). Creates the directory if it is missing.
pub fn prepare_mount_point(path: &Path, clear: bool) -> Result<(), MountError> {
    let mp = |source| MountError::MountPoint { path: path.to_owned(), source };
    match mount_state(path, LIVENESS_TIMEOUT) {
        MountState::Unmounted => {}
        MountState::Live { owner, wedged } => {
            return Err(MountError::Live { path: path.to_owned(), owner, wedged });
        }
        MountState::Dead(owner) if clear => {
            tracing::warn!(path = %path.display(), %owner, "clearing a stale mount (its daemon is gone)");
            clear_stale(path).map_err(mp)?;
            // A stale mount can hide another under it (stacked): decide again.
            return prepare_mount_point(path, clear);
        }
        MountState::Dead(owner) => {
            tracing::warn!(path = %path.display(), %owner, "leaving a stale mount in place (--skip-unmount)");
            return Ok(());
        }
    }
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(MountError::NotADirectory { path: path.to_owned() }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir_all(path).map_err(mp),
        Err(e) => Err(mp(e)),
    }
}

/// A live litefleet mount at `path` made before this process's own (`mine`, the last one
/// there): two nodes that checked the mount point at the same instant both mounted, and
/// the later one must step back.
fn live_mount_below(path: &Path, mine: &str) -> Option<MountOwner> {
    let mut mounts = mounts_at(path);
    let top = mounts.pop()?;
    if top.source != mine {
        return None;
    }
    // One whose daemon cannot be proven gone counts as live.
    mounts.into_iter().rev().find(|m| m.is_litefleet() && m.source != mine && !m.known_dead())
}

// ===== Who owns a data directory ===== //

/// Errors taking a data directory.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("data.dir {path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error(
        "data.dir {dir} is in use by {holder} (lock {lock}); stop that node, or use another \
         data.dir",
        holder = holder_text(.pid)
    )]
    Held { dir: PathBuf, lock: PathBuf, pid: Option<u32> },
    #[error("data.dir {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn holder_text(pid: &Option<u32>) -> String {
    match pid {
        Some(p) => format!("pid {p}"),
        None => "another process".into(),
    }
}

/// This process's exclusive hold on a data directory: a POSIX record lock (`fcntl`
/// `F_SETLK`) on `<data.dir>/litefleet.lock`, which also holds the pid as text for people.
/// Held until dropped or the process ends.
///
/// Why a record lock and not `flock`: the kernel drops a record lock when the process
/// *closes* the file, while a `flock` lives until the file's last reference goes. A daemon
/// killed while it held files of its own mount can hang forever closing them (see
/// [`abort_connection`]); it closes its descriptors in ascending order, and this file,
/// opened first, is released before it reaches those. `F_GETLK` also names the holder.
///
/// Hazard: a record lock is released when this process closes *any* descriptor of the
/// file. Nothing else in the process may open `litefleet.lock`.
pub struct DataDirLock {
    _file: fs::File,
    path: PathBuf,
}

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "litefleet.lock";

impl DataDirLock {
    /// Creates `dir` if needed and takes it; refuses a directory another process holds,
    /// naming its pid.
    pub fn acquire(dir: &Path) -> Result<DataDirLock, LockError> {
        let io = |source| LockError::Io { path: dir.to_owned(), source };
        match fs::metadata(dir) {
            Ok(m) if !m.is_dir() => return Err(LockError::NotADirectory { path: dir.to_owned() }),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir_all(dir).map_err(io)?,
            Err(e) => return Err(io(e)),
        }
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io { path: path.clone(), source };
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let mut fl = whole_file_lock(libc::F_WRLCK);
        // SAFETY: a valid descriptor and a `flock` struct that outlives the call.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &fl) } != 0 {
            let e = io::Error::last_os_error();
            if !matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) {
                return Err(io(e));
            }
            // SAFETY: as above; F_GETLK fills `fl` with the conflicting lock.
            let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut fl) };
            // l_pid is 0 for a holder in another pid namespace: fall back to the file.
            let pid = if rc == 0 && fl.l_type != libc::F_UNLCK as i16 && fl.l_pid > 0 {
                Some(fl.l_pid as u32)
            } else {
                let mut text = String::new();
                let _ = io::Read::read_to_string(&mut file, &mut text);
                text.trim().parse().ok()
            };
            return Err(LockError::Held { dir: dir.to_owned(), lock: path.clone(), pid });
        }
        file.set_len(0).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(DataDirLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn whole_file_lock(kind: i32) -> libc::flock {
    // SAFETY: `flock` is plain data; all-zero is a valid value (start 0, length 0 = all).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as i16;
    fl.l_whence = libc::SEEK_SET as i16;
    fl
}

/// How [`Mounted::mount_with`] mounts.
#[derive(Debug, Clone, Copy)]
pub struct MountOpts {
    /// FUSE `allow_other`: users other than the mounting one may use the mount.
    pub allow_other: bool,
    /// FUSE dispatch threads.
    pub threads: usize,
    /// Clear a dead mount at the mount point first (`false`: `--skip-unmount`).
    pub clear_stale: bool,
}

impl Mounted {
    /// Mounts `store` at `path`, clearing a dead mount there first.
    pub fn mount(
        store: Arc<Store>,
        path: &Path,
        allow_other: bool,
        threads: usize,
    ) -> Result<Mounted, MountError> {
        Mounted::mount_with(store, path, MountOpts { allow_other, threads, clear_stale: true })
    }

    /// Mounts `store` at `path`. A live mount there is refused ([`MountError::Live`]), and so
    /// is a path that is not a directory; see [`prepare_mount_point`].
    pub fn mount_with(
        store: Arc<Store>,
        path: &Path,
        opts: MountOpts,
    ) -> Result<Mounted, MountError> {
        let MountOpts { allow_other, threads, clear_stale } = opts;
        prepare_mount_point(path, clear_stale)?;
        let notifier = Arc::new(OnceLock::new());
        let fs = Fs::new(store.clone(), notifier.clone()).map_err(|source| {
            MountError::LocalDir { path: store.root().join(crate::fuse::LOCAL_DIR), source }
        })?;
        store.node().set_kernel(fs.kernel(path));
        let mut config = Config::default();
        let fsname = own_fsname();
        config.mount_options = vec![
            MountOption::FSName(fsname.clone()),
            MountOption::Subtype("litefleet".into()),
            MountOption::NoDev,
            MountOption::NoSuid,
        ];
        if allow_other {
            config.acl = SessionACL::All;
        }
        config.n_threads = Some(threads.max(1));
        config.clone_fd = threads > 1;
        let fuse = |source| MountError::Fuse { path: path.to_owned(), source };
        let session = Session::new(fs, path, &config).map_err(fuse)?;
        let _ = notifier.set(session.notifier());
        let session = session.spawn().map_err(fuse)?;
        let mounted = Mounted { session: Some(session), path: path.to_owned() };
        // Two nodes that prepared the same mount point at once both mounted; the later mount
        // covers the earlier, and its node steps back (dropping `mounted` unmounts it).
        if let Some(owner) = live_mount_below(path, &fsname) {
            return Err(MountError::Live { path: path.to_owned(), owner, wedged: false });
        }
        tracing::info!(path = %path.display(), source = %fsname, "mounted");
        Ok(mounted)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Unmounts and waits for the dispatch threads.
    pub fn unmount(mut self) -> io::Result<()> {
        self.unmount_inner()
    }

    fn unmount_inner(&mut self) -> io::Result<()> {
        if let Some(s) = self.session.take() {
            if let Err(e) = s.umount_and_join() {
                tracing::warn!(path = %self.path.display(), error = %e, "unmount failed; detaching");
                force_unmount(&self.path)?;
            }
            tracing::info!(path = %self.path.display(), "unmounted");
        }
        Ok(())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = self.unmount_inner();
    }
}

/// Blocks SIGINT and SIGTERM in the calling thread (and every thread it starts afterwards).
/// Call first in `main`, then wait with [`wait_for_shutdown_signal`].
pub fn block_shutdown_signals() {
    // SAFETY: plain libc signal-mask calls on a stack-allocated sigset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Waits for SIGINT or SIGTERM (blocked beforehand by [`block_shutdown_signals`]) and
/// returns the signal number.
pub fn wait_for_shutdown_signal() -> i32 {
    // SAFETY: as above; sigwait writes the received signal into `sig`.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let mut sig = 0;
        libc::sigwait(&set, &mut sig);
        sig
    }
}
