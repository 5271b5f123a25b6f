//! Node-wide state the databases and the mount share: the role (primary or replica), the
//! kernel-cache handle of the mount, and what a replica knows of its primary.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Invalidation of the kernel's caches for files litefleet changes behind its back (a
/// replicated transaction applied to a database file), and the mount's path (the replica
/// applier takes SQLite's locks through it).
pub trait KernelCache: Send + Sync {
    fn mount_dir(&self) -> &Path;
    /// The database `name` changed: drop its cached pages (`pages` as byte ranges, `None`
    /// for all), attributes and directory entries.
    fn db_changed(&self, name: &str, pages: Option<&[(u64, u64)]>);
}

/// See the module docs.
pub struct NodeCtx {
    writable: AtomicBool,
    kernel: OnceLock<Arc<dyn KernelCache>>,
    primary: Mutex<Option<String>>,
    /// Timestamp (ms) of the newest primary clock reading, 0 before the first.
    primary_time_ms: AtomicI64,
}

impl Default for NodeCtx {
    fn default() -> NodeCtx {
        NodeCtx {
            writable: AtomicBool::new(true),
            kernel: OnceLock::new(),
            primary: Mutex::new(None),
            primary_time_ms: AtomicI64::new(0),
        }
    }
}

impl NodeCtx {
    /// Whether applications may write (this node is the primary).
    pub fn writable(&self) -> bool {
        self.writable.load(Ordering::Acquire)
    }

    pub fn set_writable(&self, w: bool) {
        self.writable.store(w, Ordering::Release);
    }

    pub fn set_kernel(&self, k: Arc<dyn KernelCache>) {
        let _ = self.kernel.set(k);
    }

    pub fn kernel(&self) -> Option<&Arc<dyn KernelCache>> {
        self.kernel.get()
    }

    pub fn mount_dir(&self) -> Option<PathBuf> {
        self.kernel.get().map(|k| k.mount_dir().to_owned())
    }

    /// The primary's hostname while a replica is connected to it.
    pub fn primary(&self) -> Option<String> {
        self.primary.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_primary(&self, p: Option<String>) {
        *self.primary.lock().unwrap_or_else(|e| e.into_inner()) = p;
    }

    pub fn primary_time_ms(&self) -> i64 {
        self.primary_time_ms.load(Ordering::Relaxed)
    }

    pub fn note_primary_time(&self, ms: i64) {
        self.primary_time_ms.fetch_max(ms, Ordering::Relaxed);
    }
}
