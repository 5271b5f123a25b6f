//! Node-wide state the databases and the mount share: the role (primary or replica), the
//! kernel-cache handle of the mount, and what a replica knows of its primary.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use tokio::sync::watch;

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
///
/// Each field names who stores to it. A field with several writers says why and what orders
/// them; stores are by the setters below, from the modules named.
pub struct NodeCtx {
    /// This node holds the primary role. Writers: startup (`cli::mount`, `cli::replication`,
    /// before any actor runs); the replication supervisor (`repl::supervisor`, the role
    /// machine's `Writable`, and `false` when it stops); the lease actor, through the
    /// supervisor's `on_change` callback (`false` the instant the lease view stops being
    /// primary, not when the supervisor gets to the message); the split-brain probe
    /// (`repl::probe`, `false` on a conflict). Only startup and the supervisor store `true`;
    /// every other writer stores `false`, the safe direction.
    ///
    /// Ordering hazard: the supervisor may store `true` after the lease actor stored `false`
    /// (a take-over finishing while a newer lease view is queued). That is harmless because
    /// [`NodeCtx::writable`] also needs the write fence, which the lease actor sets to 0 for
    /// any view that is not primary before it publishes the view.
    writable: AtomicBool,
    /// Writes are refused from this [`crate::clock::mono`] reading on (the lease's write fence;
    /// `u64::MAX`: no fence). Checked on every write, so a process that was paused past its
    /// fence refuses writes before any timer of the lease actor runs. Writer: the lease actor
    /// alone (its `on_fence` callback, after every event).
    write_until_ms: AtomicU64,
    /// When something was last heard from the primary ([`crate::clock::mono`]; replica).
    /// Writers: the replica's session (`repl::replica`: frames, applied files, a local
    /// failure) and the supervisor (`HeardPrimary`, when a new primary is learned, so its
    /// silence is counted from then). Both store "now"; a store of a slightly older reading
    /// after a newer one moves it back by less than a step of either, which the 1 s
    /// suspicion timeout does not notice.
    primary_heard_ms: AtomicU64,
    /// The highest lease epoch this node has seen (its own grants, primaries' HELLO,
    /// LTX_BEGIN and HEARTBEAT): frames from an older epoch are refused (`protocol.md` §2
    /// rule 4). Writers: the supervisor (`NoteEpoch`: its own grants) and the replica's
    /// session (`repl::replica`); both by `fetch_max`, so the order of their stores does not
    /// matter.
    max_epoch: AtomicU64,
    /// Writer: the mount (`mount`), once.
    kernel: OnceLock<Arc<dyn KernelCache>>,
    /// The primary's hostname while a replica follows it. Writers: the replica's session
    /// (`repl::replica`, on HELLO) and the supervisor (`None` once the follower stopped or
    /// ended: it waits for the session's end first, so no store of the session follows).
    primary: Mutex<Option<String>>,
    /// Timestamp (ms) of the newest primary clock reading, 0 before the first. Writer: the
    /// replica's session (`repl::replica`, by `fetch_max`).
    primary_time_ms: AtomicI64,
    /// `lease.sync-replicas`: commits wait for this many replicas (0: asynchronous).
    /// Writer: startup (`cli::mount`).
    sync_replicas: AtomicU32,
    /// Whether replicas that are not candidates count towards `sync_replicas` (a static
    /// lease: no automatic failover, so any replica's copy protects a commit). Writer:
    /// startup (`cli::mount`).
    sync_any_replica: AtomicBool,
    /// A handoff paused writes (the role is kept until the lease moves). Writers: the
    /// handoff and drain (`repl::primary`: `true` when they stop writes, `false` when a
    /// handoff that stopped them fails) and the supervisor (`ResumeWrites`, at a new term
    /// or once demoted, for a pause a handoff left: writes are refused by role and fence
    /// by then). At most one handoff runs at a time (`handing_over`), so no handoff resumes
    /// writes another one stopped.
    ///
    /// Hazard: a handoff that fails while a drain (shutdown) runs resumes writes the drain
    /// stopped; the drain does not claim `handing_over`.
    paused: AtomicBool,
    /// A graceful handoff runs on this node. Writer: `repl::primary`'s handoff (claimed when
    /// it starts, released when it ends).
    handing_over: AtomicBool,
    /// Replica: the last session with the primary ended because of a local failure
    /// (applying, storing), not the network. Cleared when the next session is attempted.
    /// Writer: the replica's session (`repl::replica`).
    local_fault: AtomicBool,
    /// `litefleet promote` / `lease.promote`: asks the replication session with the
    /// primary to request a handoff (registered while a session runs). Writer: the replica's
    /// session (`repl::replica`: set on HELLO, cleared when it ends).
    promoter: Mutex<Option<tokio::sync::mpsc::UnboundedSender<()>>>,
    /// Why the last promotion request failed (read back through `.promote`). Writers: the
    /// `.promote` file (`fuse`: cleared before a request, "not following a primary" when no
    /// session takes it) and the replica's session (`repl::replica`: the primary's refusal,
    /// which comes after the request that cleared it; a late refusal of an earlier request
    /// can only show an older reason).
    promote_error: Mutex<Option<String>>,
    /// Replica: a database found damaged wants a snapshot; the session reconnects so the
    /// primary plans again from the announced positions (the damaged one is left out).
    /// A signal, not state: notified by the database (`db::image`) and the replica's
    /// session (`repl::replica`, a local apply failure), awaited by the session.
    resync_wanted: tokio::sync::Notify,
    /// What the HTTP API shows: events, the lease as last seen, connected replicas. Its
    /// writers are named in [`crate::observe`].
    hub: Arc<crate::observe::Hub>,
    /// `/metrics`: counters and histograms updated where things happen, gauges set before
    /// each render (see [`crate::metrics`]).
    metrics: Arc<crate::metrics::Metrics>,
    /// Replica: the QUIC connection of the replication session with the primary, while it
    /// follows one (the proxy forwards writes on it, `protocol.md` §16). Writer: the
    /// replica's session (`repl::replica`: set on HELLO, cleared when it ends, however it
    /// ends).
    primary_link: watch::Sender<Option<quinn::Connection>>,
    /// The proxy (`proxy:`), which serves requests forwarded to this node as primary.
    /// Writer: startup (`cli::mount`), once.
    proxy: OnceLock<Arc<crate::proxy::Proxy>>,
}

impl Default for NodeCtx {
    fn default() -> NodeCtx {
        NodeCtx {
            writable: AtomicBool::new(true),
            write_until_ms: AtomicU64::new(u64::MAX),
            primary_heard_ms: AtomicU64::new(0),
            max_epoch: AtomicU64::new(0),
            kernel: OnceLock::new(),
            primary: Mutex::new(None),
            primary_time_ms: AtomicI64::new(0),
            sync_replicas: AtomicU32::new(0),
            sync_any_replica: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            handing_over: AtomicBool::new(false),
            local_fault: AtomicBool::new(false),
            promoter: Mutex::new(None),
            promote_error: Mutex::new(None),
            resync_wanted: tokio::sync::Notify::new(),
            hub: Arc::default(),
            metrics: Arc::default(),
            primary_link: watch::Sender::new(None),
            proxy: OnceLock::new(),
        }
    }
}

impl NodeCtx {
    /// Whether applications may write (this node is the primary).
    pub fn writable(&self) -> bool {
        if !self.writable.load(Ordering::Acquire) || self.paused.load(Ordering::Acquire) {
            return false;
        }
        // Every FUSE write asks: read the clock only when a fence is set.
        let until = self.write_until_ms.load(Ordering::Acquire);
        until == u64::MAX || self.now_ms() < until
    }

    /// For how long the write fence has been expired (ms; 0 while it holds or when there is
    /// none): the primary cannot renew its lease.
    pub fn fenced_for_ms(&self) -> u64 {
        let until = self.write_until_ms.load(Ordering::Acquire);
        if until == u64::MAX { 0 } else { self.now_ms().saturating_sub(until) }
    }

    /// Handoff: stops (or resumes) application writes while the role is kept.
    pub fn pause_writes(&self, on: bool) {
        self.paused.store(on, Ordering::Release);
    }

    /// Claims the node's one handoff slot: false if a handoff already runs. Release it with
    /// [`NodeCtx::release_handoff`].
    pub fn claim_handoff(&self) -> bool {
        !self.handing_over.swap(true, Ordering::AcqRel)
    }

    /// The handoff that claimed the slot ended.
    pub fn release_handoff(&self) {
        self.handing_over.store(false, Ordering::Release);
    }

    /// The channel of the running replication session that requests handoffs.
    pub fn set_promoter(&self, tx: Option<tokio::sync::mpsc::UnboundedSender<()>>) {
        *self.promoter.lock().unwrap_or_else(|e| e.into_inner()) = tx;
    }

    /// Asks the primary for the lease (`litefleet promote`); false when no session with a
    /// primary runs.
    pub fn request_promotion(&self) -> bool {
        let p = self.promoter.lock().unwrap_or_else(|e| e.into_inner());
        p.as_ref().is_some_and(|tx| tx.send(()).is_ok())
    }

    /// Records why a promotion request failed (`None`: clears it).
    /// Replica: asks the replication session to reconnect (a database needs a snapshot).
    pub fn request_resync(&self) {
        self.resync_wanted.notify_one();
    }

    /// Completes when [`NodeCtx::request_resync`] was called (a stored permit counts).
    pub async fn resync_wanted(&self) {
        self.resync_wanted.notified().await
    }

    pub fn set_promote_error(&self, e: Option<String>) {
        *self.promote_error.lock().unwrap_or_else(|e| e.into_inner()) = e;
    }

    pub fn promote_error(&self) -> Option<String> {
        self.promote_error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether this node holds the primary role, fenced or not. Unlike [`NodeCtx::writable`]
    /// this does not turn false while a lease renewal is late: it turns false when the role
    /// is lost (the node then demotes itself: `Db::demote`).
    pub fn is_primary(&self) -> bool {
        self.writable.load(Ordering::Acquire)
    }

    /// How many replicas must durably hold a commit before it returns (0: asynchronous).
    pub fn sync_replicas(&self) -> usize {
        self.sync_replicas.load(Ordering::Relaxed) as usize
    }

    /// Synchronous replication: commits wait for `n` replicas; `any_replica`: every
    /// replica counts, not only candidates (those that could become primary).
    pub fn set_sync_replicas(&self, n: u32, any_replica: bool) {
        self.sync_replicas.store(n, Ordering::Relaxed);
        self.sync_any_replica.store(any_replica, Ordering::Relaxed);
    }

    /// Whether a replica's acknowledgements count towards `lease.sync-replicas`.
    pub fn sync_counts(&self, candidate: bool) -> bool {
        candidate || self.sync_any_replica.load(Ordering::Relaxed)
    }

    /// Milliseconds on the shell's monotonic clock ([`crate::clock::mono`]).
    pub fn now_ms(&self) -> u64 {
        crate::clock::mono().0
    }

    /// The write fence: writes are refused from `at` on (`None`: no fence).
    pub fn set_write_until(&self, at: Option<Instant>) {
        let ms = match at {
            Some(t) => crate::clock::millis(t).0,
            None => u64::MAX,
        };
        self.write_until_ms.store(ms, Ordering::Release);
    }

    /// The highest lease epoch seen.
    pub fn max_epoch(&self) -> crate::core::types::Epoch {
        crate::core::types::Epoch(self.max_epoch.load(Ordering::Acquire))
    }

    /// Records an epoch seen; returns false if it is older than one seen before (the
    /// sender is stale).
    pub fn note_epoch(&self, e: crate::core::types::Epoch) -> bool {
        self.max_epoch.fetch_max(e.0, Ordering::AcqRel) <= e.0
    }

    /// A replica heard from its primary now (any frame).
    pub fn heard_primary(&self) {
        self.primary_heard_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Replica: the session with the primary ended (`true`, the primary was reachable: this
    /// node failed) or a new one is attempted (`false`). See [`NodeCtx::local_fault`].
    pub fn set_local_fault(&self, on: bool) {
        self.local_fault.store(on, Ordering::Relaxed);
    }

    /// Whether the last session with the primary ended by a local failure and none was
    /// attempted since: the primary's silence during the retry backoff means nothing (a
    /// replica that cannot apply must not depose a healthy primary).
    pub fn local_fault(&self) -> bool {
        self.local_fault.load(Ordering::Relaxed)
    }

    /// How long ago the primary was last heard from, in ms.
    pub fn primary_silent_ms(&self) -> u64 {
        self.now_ms().saturating_sub(self.primary_heard_ms.load(Ordering::Relaxed))
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

    /// Replica: the connection to the primary it follows (see the field).
    pub fn primary_link(&self) -> watch::Receiver<Option<quinn::Connection>> {
        self.primary_link.subscribe()
    }

    pub fn set_primary_link(&self, conn: Option<quinn::Connection>) {
        self.primary_link.send_replace(conn);
    }

    /// The proxy, when `proxy:` is configured and it runs.
    pub fn proxy(&self) -> Option<&Arc<crate::proxy::Proxy>> {
        self.proxy.get()
    }

    pub fn set_proxy(&self, p: Arc<crate::proxy::Proxy>) {
        let _ = self.proxy.set(p);
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

    /// The node's event fan-out and observable state (see [`crate::observe`]).
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    pub fn hub(&self) -> &Arc<crate::observe::Hub> {
        &self.hub
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_handoff_at_a_time() {
        let node = NodeCtx::default();
        assert!(node.claim_handoff());
        assert!(!node.claim_handoff(), "a second handoff is refused while the first runs");
        node.release_handoff();
        assert!(node.claim_handoff(), "free again once the first ended");
    }
}
