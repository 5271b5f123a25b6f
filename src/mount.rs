//! Mounting and unmounting the FUSE filesystem.
//!
//! [`Mounted::mount`] clears a stale mount left by a crashed process (a FUSE mount whose
//! daemon died answers every access with ENOTCONN), creates the mount point, and starts the
//! session on `threads` dispatch threads. Dropping or [`Mounted::unmount`] unmounts.
//! `AutoUnmount` is not used: it hangs on this platform; we unmount ourselves, also on
//! SIGINT/SIGTERM (see [`wait_for_shutdown_signal`]).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use fuser::{BackgroundSession, Config, MountOption, Session, SessionACL};

use crate::fuse::Fs;
use crate::store::Store;

/// Errors mounting.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mount point {path}: {source}")]
    MountPoint { path: PathBuf, source: io::Error },
    #[error("mounting FUSE at {path}: {source}")]
    Fuse { path: PathBuf, source: io::Error },
}

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

impl Mounted {
    /// Mounts `store` at `path`.
    pub fn mount(
        store: Arc<Store>,
        path: &Path,
        allow_other: bool,
        threads: usize,
    ) -> Result<Mounted, MountError> {
        let mp = |source| MountError::MountPoint { path: path.to_owned(), source };
        if is_mounted(path) {
            tracing::warn!(path = %path.display(), "clearing a stale mount");
            clear_stale(path).map_err(mp)?;
        }
        fs::create_dir_all(path).map_err(mp)?;
        let notifier = Arc::new(OnceLock::new());
        let fs = Fs::new(store.clone(), notifier.clone());
        store.node().set_kernel(fs.kernel(path));
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("litefleet".into()),
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
        tracing::info!(path = %path.display(), "mounted");
        Ok(Mounted { session: Some(session), path: path.to_owned() })
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
