//! Node-local files: everything in the mount that is not a database's file.
//!
//! Helper scripts, copies, lock and temp files, SQLite's super-journals (`<db>-mj…`),
//! editors' swap files and whole directory trees live in `<data.dir>/local/`, mirrored one to
//! one, and are never replicated: each node has its own. They pass straight through (any
//! size, any offset); what makes a file a database instead is decided in the FUSE layer (a
//! SQLite header as the first write into an empty root-level file, see [`super`]).
//!
//! Handles: every open of a local file opens its backing file once and keeps it under a
//! handle number, so reads and writes through an unlinked or renamed file still reach it.

use std::collections::HashMap;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo, TimeOrNow};

/// The local tree's backing directory and its open handles.
pub struct Local {
    root: PathBuf,
    handles: Mutex<HashMap<u64, Arc<File>>>,
    next: AtomicU64,
}

/// The mount's file type for a backing file's (anything else shows as a regular file).
fn kind_of(ft: fs::FileType) -> FileType {
    if ft.is_dir() {
        FileType::Directory
    } else if ft.is_symlink() {
        FileType::Symlink
    } else {
        FileType::RegularFile
    }
}

/// File type and attributes of a backing file, as the mount shows them.
pub fn attr(ino: u64, md: &Metadata) -> FileAttr {
    let t = |s: i64, ns: i64| {
        if s >= 0 { UNIX_EPOCH + Duration::new(s as u64, ns as u32) } else { UNIX_EPOCH }
    };
    let kind = kind_of(md.file_type());
    FileAttr {
        ino: INodeNo(ino),
        size: md.len(),
        blocks: md.blocks(),
        atime: t(md.atime(), md.atime_nsec()),
        mtime: t(md.mtime(), md.mtime_nsec()),
        ctime: t(md.ctime(), md.ctime_nsec()),
        crtime: t(md.mtime(), md.mtime_nsec()),
        kind,
        perm: (md.mode() & 0o7777) as u16,
        nlink: md.nlink() as u32,
        uid: md.uid(),
        gid: md.gid(),
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn c_path(p: &Path) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn timespec(t: Option<TimeOrNow>) -> libc::timespec {
    match t {
        None => libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT },
        Some(TimeOrNow::Now) => libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_NOW },
        Some(TimeOrNow::SpecificTime(t)) => {
            let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
            libc::timespec { tv_sec: d.as_secs() as libc::time_t, tv_nsec: d.subsec_nanos() as _ }
        }
    }
}

impl Local {
    /// The tree at `root` (created if missing).
    pub fn open(root: PathBuf) -> io::Result<Local> {
        fs::create_dir_all(&root)?;
        Ok(Local { root, handles: Mutex::new(HashMap::new()), next: AtomicU64::new(1) })
    }

    /// The backing path of `rel` (a path relative to the tree's root).
    pub fn path(&self, rel: &Path) -> PathBuf {
        self.root.join(rel)
    }

    fn keep(&self, f: File) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        self.handles.lock().unwrap_or_else(|e| e.into_inner()).insert(fh, Arc::new(f));
        fh
    }

    /// The file behind handle `fh`.
    pub fn handle(&self, fh: u64) -> Option<Arc<File>> {
        self.handles.lock().unwrap_or_else(|e| e.into_inner()).get(&fh).cloned()
    }

    pub fn release(&self, fh: u64) {
        self.handles.lock().unwrap_or_else(|e| e.into_inner()).remove(&fh);
    }

    pub fn lstat(&self, rel: &Path) -> io::Result<Metadata> {
        fs::symlink_metadata(self.path(rel))
    }

    /// Opens the backing file read-write whatever the caller asked (the kernel enforces
    /// the descriptor's own mode; opening read-write lets one handle serve any of them).
    /// `O_TRUNC` reaches us as a separate size change.
    pub fn open_file(&self, rel: &Path) -> io::Result<u64> {
        let p = self.path(rel);
        let f = match OpenOptions::new().read(true).write(true).open(&p) {
            Ok(f) => f,
            // A file without write permission for its owner (we run as it): read-only.
            Err(e) if e.raw_os_error() == Some(libc::EACCES) => File::open(&p)?,
            Err(e) => return Err(e),
        };
        if f.metadata()?.is_dir() {
            return Err(io::Error::from_raw_os_error(libc::EISDIR));
        }
        Ok(self.keep(f))
    }

    /// Creates (exclusively) a regular file and opens it.
    pub fn create_file(&self, rel: &Path, mode: u32) -> io::Result<(u64, Metadata)> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(mode & 0o7777)
            .open(self.path(rel))?;
        let md = f.metadata()?;
        Ok((self.keep(f), md))
    }

    /// The file behind `fh`, or (a handle opened while the file was a database's, see
    /// [`super`]) the file at `rel`, opened for this call.
    fn file(&self, fh: u64, rel: Option<&Path>) -> io::Result<Arc<File>> {
        if let Some(f) = self.handle(fh) {
            return Ok(f);
        }
        let rel = rel.ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?;
        Ok(Arc::new(OpenOptions::new().read(true).write(true).open(self.path(rel))?))
    }

    pub fn read(&self, fh: u64, rel: Option<&Path>, offset: u64, size: u32) -> io::Result<Vec<u8>> {
        let f = self.file(fh, rel)?;
        let mut buf = vec![0u8; size as usize];
        let mut done = 0;
        while done < buf.len() {
            match f.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(done);
        Ok(buf)
    }

    pub fn write(&self, fh: u64, rel: Option<&Path>, data: &[u8], offset: u64) -> io::Result<()> {
        self.file(fh, rel)?.write_all_at(data, offset)
    }

    pub fn fsync(&self, fh: u64, rel: Option<&Path>, datasync: bool) -> io::Result<()> {
        let f = self.file(fh, rel)?;
        if datasync { f.sync_data() } else { f.sync_all() }
    }

    /// Size, mode and times; through the handle when there is one (the file may be
    /// unlinked), else by path. Owners are left as they are.
    pub fn setattr(
        &self,
        rel: Option<&Path>,
        fh: Option<u64>,
        mode: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
    ) -> io::Result<Metadata> {
        let file = fh.and_then(|fh| self.handle(fh));
        let path = rel.map(|r| self.path(r));
        let ebadf = || io::Error::from_raw_os_error(libc::ENOENT);
        if let Some(size) = size {
            match (&file, &path) {
                (Some(f), _) => f.set_len(size)?,
                (None, Some(p)) => OpenOptions::new().write(true).open(p)?.set_len(size)?,
                (None, None) => return Err(ebadf()),
            }
        }
        if let Some(mode) = mode {
            let perm = fs::Permissions::from_mode(mode & 0o7777);
            match (&file, &path) {
                (Some(f), _) => f.set_permissions(perm)?,
                (None, Some(p)) => fs::set_permissions(p, perm)?,
                (None, None) => return Err(ebadf()),
            }
        }
        if atime.is_some() || mtime.is_some() {
            let ts = [timespec(atime), timespec(mtime)];
            let rc = match (&file, &path) {
                (Some(f), _) => {
                    use std::os::fd::AsRawFd;
                    // SAFETY: a valid descriptor and a two-element timespec array.
                    unsafe { libc::futimens(f.as_raw_fd(), ts.as_ptr()) }
                }
                (None, Some(p)) => {
                    let c = c_path(p)?;
                    // SAFETY: a NUL-terminated path and a two-element timespec array.
                    unsafe {
                        libc::utimensat(
                            libc::AT_FDCWD,
                            c.as_ptr(),
                            ts.as_ptr(),
                            libc::AT_SYMLINK_NOFOLLOW,
                        )
                    }
                }
                (None, None) => return Err(ebadf()),
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        match (&file, &path) {
            (Some(f), _) => f.metadata(),
            (None, Some(p)) => fs::symlink_metadata(p),
            (None, None) => Err(ebadf()),
        }
    }

    pub fn mkdir(&self, rel: &Path, mode: u32) -> io::Result<Metadata> {
        let p = self.path(rel);
        fs::create_dir(&p)?;
        fs::set_permissions(&p, fs::Permissions::from_mode(mode & 0o7777))?;
        fs::symlink_metadata(&p)
    }

    pub fn symlink(&self, rel: &Path, target: &Path) -> io::Result<Metadata> {
        let p = self.path(rel);
        std::os::unix::fs::symlink(target, &p)?;
        fs::symlink_metadata(&p)
    }

    pub fn readlink(&self, rel: &Path) -> io::Result<PathBuf> {
        fs::read_link(self.path(rel))
    }

    pub fn unlink(&self, rel: &Path) -> io::Result<()> {
        let p = self.path(rel);
        if fs::symlink_metadata(&p)?.is_dir() {
            return Err(io::Error::from_raw_os_error(libc::EISDIR));
        }
        fs::remove_file(p)
    }

    pub fn rmdir(&self, rel: &Path) -> io::Result<()> {
        fs::remove_dir(self.path(rel))
    }

    /// `rename(2)`/`renameat2(2)` between two local paths, with its flags
    /// (`RENAME_NOREPLACE`, `RENAME_EXCHANGE`).
    pub fn rename(&self, from: &Path, to: &Path, flags: u32) -> io::Result<()> {
        let (a, b) = (c_path(&self.path(from))?, c_path(&self.path(to))?);
        // SAFETY: two NUL-terminated paths.
        let rc = unsafe {
            libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), flags)
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The entries of a local directory (not `.` and `..`), by name.
    pub fn list(&self, rel: &Path) -> io::Result<Vec<(std::ffi::OsString, FileType)>> {
        let mut out = Vec::new();
        for e in fs::read_dir(self.path(rel))? {
            let e = e?;
            out.push((e.file_name(), kind_of(e.file_type()?)));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Whether the file (behind `fh`, else at `rel`) holds no data: it is empty, or one
    /// hole (`SEEK_DATA` finds nothing). A file system without `SEEK_DATA` reports data.
    pub fn holds_no_data(&self, fh: u64, rel: &Path) -> bool {
        use std::os::fd::AsRawFd;
        let Ok(f) = self.file(fh, Some(rel)) else { return false };
        let Ok(md) = f.metadata() else { return false };
        if md.len() == 0 {
            return true;
        }
        // SAFETY: a valid descriptor; SEEK_DATA does not move anything we rely on (every
        // read and write here is positional).
        let at = unsafe { libc::lseek(f.as_raw_fd(), 0, libc::SEEK_DATA) };
        at < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO)
    }

    /// Whether the first 100 bytes of the file (a SQLite header's place) are zeros or
    /// missing: nothing has written a header there.
    pub fn header_is_zero(&self, fh: u64, rel: &Path) -> bool {
        let Ok(f) = self.file(fh, Some(rel)) else { return false };
        let mut b = [0u8; 100];
        let mut got = 0;
        while got < b.len() {
            match f.read_at(&mut b[got..], got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        b[..got].iter().all(|&x| x == 0)
    }

    /// Whether the regular file at `rel` starts with the SQLite header string.
    pub fn is_sqlite(&self, rel: &Path) -> bool {
        let Ok(f) = File::open(self.path(rel)) else { return false };
        let mut b = [0u8; 16];
        matches!(f.read_at(&mut b, 0), Ok(16)) && &b == crate::core::sqlite::HEADER_MAGIC
    }
}
