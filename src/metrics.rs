//! The node's Prometheus metrics (`GET /metrics`): LiteFS's names and meanings, so existing
//! dashboards keep working, and litefleet's own under `litefleet_`.
//!
//! One [`Metrics`] per node, owned by its [`crate::node::NodeCtx`]; one [`DbMetrics`] per
//! database, taken when the database opens. Handles are registered once, with the
//! recorder of this node (not a process-wide one: several nodes may share a process in
//! tests), so the hot paths (a commit, a FUSE operation, a frame sent) only touch atomics;
//! histogram samples go to a lock-free queue that rendering (or [`Metrics::upkeep`])
//! drains.
//!
//! Two kinds of values:
//! - event-driven counters and histograms, updated where the event happens (commit path,
//!   FUSE handler, replication streams, role changes);
//! - gauges of state (positions, role, epoch, replicas, lag, LTX files on disk), set from
//!   the node's state by [`crate::http`] just before each render, so they are never stale
//!   and cost nothing between scrapes.
//!
//! LiteFS's names break two of Prometheus's conventions (`litefs_db_commit_count` is a
//! counter without `_total`; several end in `_count`); they are kept for compatibility.
//! `?compat=0` renders litefleet's names only, which `promtool check metrics` passes.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::core::types::{NodeId, Txid};
use crate::db::FileKind;

/// Buckets of every `_seconds` histogram: 100 µs to 10 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Commits remembered per database to time replicas' acknowledgements (older ones are
/// not timed).
const RECENT_COMMITS: usize = 4096;

/// FUSE operations counted by `litefleet_fuse_ops_total{op}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FuseOp {
    Lookup,
    Getattr,
    Setattr,
    Open,
    Create,
    Read,
    Write,
    Fsync,
    Release,
    Unlink,
    Rename,
    Readdir,
    Other,
}

impl FuseOp {
    const ALL: [FuseOp; 13] = [
        FuseOp::Lookup,
        FuseOp::Getattr,
        FuseOp::Setattr,
        FuseOp::Open,
        FuseOp::Create,
        FuseOp::Read,
        FuseOp::Write,
        FuseOp::Fsync,
        FuseOp::Release,
        FuseOp::Unlink,
        FuseOp::Rename,
        FuseOp::Readdir,
        FuseOp::Other,
    ];

    fn label(self) -> &'static str {
        match self {
            FuseOp::Lookup => "lookup",
            FuseOp::Getattr => "getattr",
            FuseOp::Setattr => "setattr",
            FuseOp::Open => "open",
            FuseOp::Create => "create",
            FuseOp::Read => "read",
            FuseOp::Write => "write",
            FuseOp::Fsync => "fsync",
            FuseOp::Release => "release",
            FuseOp::Unlink => "unlink",
            FuseOp::Rename => "rename",
            FuseOp::Readdir => "readdir",
            FuseOp::Other => "other",
        }
    }
}

/// Node-wide state the gauges are set from before a render.
#[derive(Debug, Clone, Default)]
pub struct NodeGauges {
    pub is_primary: bool,
    pub epoch: u64,
    /// Replicas connected to this node (the primary).
    pub subscribers: usize,
    /// Seconds since a frame last came from the primary (0 on the primary).
    pub lag_seconds: f64,
    /// Connected replicas' round-trip times, by hostname (node ID when it has none).
    pub replica_rtt: Vec<(String, Duration)>,
}

/// A database's state the gauges are set from before a render.
#[derive(Debug, Clone, Default)]
pub struct DbGauges {
    pub txid: Txid,
    /// TXIDs each connected replica is behind, by replica label (primary only).
    pub replica_lag_txns: Vec<(String, u64)>,
}

/// See the module docs.
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    fuse_ops: Vec<Counter>,
    elections: Counter,
    demotions: Counter,
    suspicions: Counter,
    proxy_forward: Histogram,
    proxy_wait: Histogram,
    proxy_resends: Counter,
    db_count: Gauge,
    is_primary: Gauge,
    subscribers: Gauge,
    lag_seconds: Gauge,
    epoch: Gauge,
    dbs: Mutex<BTreeMap<String, Arc<DbMetrics>>>,
    /// Per-replica gauges ever set (`(db, replica)`; db empty for the RTT): those of
    /// replicas no longer connected are set to NaN (the exporter cannot unregister one
    /// whose handle lives on).
    replica_gauges: Mutex<std::collections::BTreeSet<(String, String)>>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

fn meta() -> Metadata<'static> {
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()))
}

impl Metrics {
    pub fn new() -> Metrics {
        // invariant: the bucket list is not empty, the only way `set_buckets` fails.
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .expect("buckets are not empty")
            .build_recorder();
        let recorder = Arc::new(recorder);
        let handle = recorder.handle();
        describe(&recorder);
        let r = &recorder;
        let fuse_ops = FuseOp::ALL
            .iter()
            .map(|op| {
                r.register_counter(
                    &Key::from_parts(
                        "litefleet_fuse_ops_total",
                        vec![Label::new("op", op.label())],
                    ),
                    &meta(),
                )
            })
            .collect();
        Metrics {
            fuse_ops,
            elections: counter(r, "litefleet_elections_total", vec![]),
            demotions: counter(r, "litefleet_demotions_total", vec![]),
            suspicions: counter(r, "litefleet_primary_suspected_total", vec![]),
            proxy_forward: histogram(r, "litefleet_proxy_forward_seconds", vec![]),
            proxy_wait: histogram(r, "litefleet_proxy_catch_up_seconds", vec![]),
            proxy_resends: counter(r, "litefleet_proxy_resent_total", vec![]),
            db_count: gauge(r, "litefs_db_count", vec![]),
            is_primary: gauge(r, "litefs_is_primary", vec![]),
            subscribers: gauge(r, "litefs_subscriber_count", vec![]),
            lag_seconds: gauge(r, "litefs_lag_seconds", vec![]),
            epoch: gauge(r, "litefleet_lease_epoch", vec![]),
            dbs: Mutex::new(BTreeMap::new()),
            replica_gauges: Mutex::new(std::collections::BTreeSet::new()),
            handle,
            recorder,
        }
    }

    /// The metrics of database `name` (registered on first use, shared after).
    pub fn db(&self, name: &str) -> Arc<DbMetrics> {
        let mut dbs = self.dbs.lock().unwrap_or_else(|e| e.into_inner());
        dbs.entry(name.to_owned())
            .or_insert_with(|| Arc::new(DbMetrics::new(self.recorder.clone(), name)))
            .clone()
    }

    pub fn fuse_op(&self, op: FuseOp) {
        // invariant: `FuseOp::ALL` lists the variants in declaration order, and `fuse_ops`
        // holds one counter per entry of it, in its order.
        self.fuse_ops[op as usize].increment(1);
    }

    /// This node won the lease and took the databases over.
    pub fn elected(&self) {
        self.elections.increment(1);
    }

    /// This node stopped being the primary and now follows.
    pub fn demoted(&self) {
        self.demotions.increment(1);
    }

    /// Nothing was heard from the primary for too long.
    pub fn suspected_primary(&self) {
        self.suspicions.increment(1);
    }

    /// The proxy answered a request that took `route` with `status`.
    pub fn proxy_request(&self, route: &'static str, status: u16) {
        let labels = vec![Label::new("route", route), Label::new("status", status.to_string())];
        counter(&self.recorder, "litefleet_proxy_requests_total", labels).increment(1);
    }

    /// A forwarded request's response head came back after `d`.
    pub fn proxy_forwarded(&self, d: Duration) {
        self.proxy_forward.record(d.as_secs_f64());
    }

    /// A read waited `d` for this node to reach its cookie's position.
    pub fn proxy_caught_up(&self, d: Duration) {
        self.proxy_wait.record(d.as_secs_f64());
    }

    /// A forwarded request was sent again (it provably had not reached the primary's app).
    pub fn proxy_resent(&self) {
        self.proxy_resends.increment(1);
    }

    /// Sets the state gauges; `dbs` are every open database's.
    pub fn set_gauges(&self, node: &NodeGauges, dbs: &[(String, DbGauges)]) {
        self.is_primary.set(if node.is_primary { 1.0 } else { 0.0 });
        self.epoch.set(node.epoch as f64);
        self.subscribers.set(node.subscribers as f64);
        self.lag_seconds.set(node.lag_seconds);
        self.db_count.set(dbs.len() as f64);
        let mut now_set = std::collections::BTreeSet::new();
        for (host, rtt) in &node.replica_rtt {
            gauge(
                &self.recorder,
                "litefleet_replica_rtt_seconds",
                vec![Label::new("replica", host.clone())],
            )
            .set(rtt.as_secs_f64());
            now_set.insert((String::new(), host.clone()));
        }
        for (name, g) in dbs {
            let m = self.db(name);
            m.txid.set(g.txid.0 as f64);
            m.ltx_files.set(m.files.load(Ordering::Relaxed) as f64);
            m.ltx_bytes.set(m.bytes.load(Ordering::Relaxed) as f64);
            m.lag.set(m.lag_ms.load(Ordering::Relaxed) as f64 / 1000.0);
            for (replica, n) in &g.replica_lag_txns {
                gauge(
                    &self.recorder,
                    "litefleet_replica_lag_txns",
                    vec![Label::new("db", name.clone()), Label::new("replica", replica.clone())],
                )
                .set(*n as f64);
                now_set.insert((name.clone(), replica.clone()));
            }
        }
        self.retire_replica_gauges(now_set);
    }

    /// Marks the per-replica gauges not set this time (`now_set`) as NaN: no longer
    /// connected.
    fn retire_replica_gauges(&self, now_set: std::collections::BTreeSet<(String, String)>) {
        let mut seen = self.replica_gauges.lock().unwrap_or_else(|e| e.into_inner());
        for (db, replica) in seen.difference(&now_set) {
            let r = Label::new("replica", replica.clone());
            if db.is_empty() {
                gauge(&self.recorder, "litefleet_replica_rtt_seconds", vec![r]).set(f64::NAN);
            } else {
                let labels = vec![Label::new("db", db.clone()), r];
                gauge(&self.recorder, "litefleet_replica_lag_txns", labels).set(f64::NAN);
            }
        }
        seen.extend(now_set);
    }

    /// The Prometheus text page; with `compat` false, without LiteFS's names.
    pub fn render(&self, compat: bool) -> String {
        let page = self.handle.render();
        if compat {
            return page;
        }
        let mut out = String::with_capacity(page.len());
        for line in page.lines() {
            let name = line.strip_prefix("# HELP ").or_else(|| line.strip_prefix("# TYPE "));
            let name = name.unwrap_or(line);
            if !name.starts_with("litefs_") {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// Drains histogram samples nobody scraped (call every few seconds: without scrapes
    /// they would accumulate).
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}

/// See the module docs.
pub struct DbMetrics {
    txid: Gauge,
    commits: Counter,
    /// By [`FileKind::index`]: `litefs_db_<backing name>_write_count`.
    writes: [Counter; 4],
    ltx_files: Gauge,
    ltx_bytes: Gauge,
    reaped: Counter,
    lag: Gauge,
    commit_seconds: Histogram,
    sync_wait_seconds: Histogram,
    apply_lag_seconds: Histogram,
    ltx_written_bytes: Counter,
    ltx_sent_bytes: Counter,
    snapshots_sent: Counter,
    snapshots_applied: Counter,
    set_aside: Counter,
    /// LTX files and bytes in `ltx/` (kept by the LTX log and retention).
    files: AtomicI64,
    bytes: AtomicI64,
    /// `litefs_db_lag_seconds` in ms: now − the LTX timestamp at the last apply.
    lag_ms: AtomicI64,
    /// When recent commits were made (primary), to time acknowledgements.
    recent: Mutex<VecDeque<(Txid, Instant)>>,
    /// Per replica: its acknowledgement lag histogram and the last TXID it acknowledged.
    replicas: Mutex<BTreeMap<NodeId, (Histogram, Txid)>>,
    name: String,
    recorder: Arc<PrometheusRecorder>,
}

impl DbMetrics {
    fn new(recorder: Arc<PrometheusRecorder>, name: &str) -> DbMetrics {
        let r = &*recorder;
        let db = || vec![Label::new("db", name.to_owned())];
        DbMetrics {
            txid: gauge(r, "litefs_db_txid", db()),
            commits: counter(r, "litefs_db_commit_count", db()),
            writes: FileKind::ALL.map(|k| {
                let name = format!("litefs_db_{}_write_count", k.backing_name());
                r.register_counter(&Key::from_parts(name, db()), &meta())
            }),
            ltx_files: gauge(r, "litefs_db_ltx_count", db()),
            ltx_bytes: gauge(r, "litefs_db_ltx_bytes", db()),
            reaped: counter(r, "litefs_db_ltx_reap_count", db()),
            lag: gauge(r, "litefs_db_lag_seconds", db()),
            commit_seconds: histogram(r, "litefleet_commit_seconds", db()),
            sync_wait_seconds: histogram(r, "litefleet_sync_wait_seconds", db()),
            apply_lag_seconds: histogram(r, "litefleet_apply_lag_seconds", db()),
            ltx_written_bytes: counter(r, "litefleet_ltx_written_bytes_total", db()),
            ltx_sent_bytes: counter(r, "litefleet_ltx_sent_bytes_total", db()),
            snapshots_sent: counter(r, "litefleet_snapshots_sent_total", db()),
            snapshots_applied: counter(r, "litefleet_snapshots_applied_total", db()),
            set_aside: counter(r, "litefleet_set_aside_files_total", db()),
            files: AtomicI64::new(0),
            bytes: AtomicI64::new(0),
            lag_ms: AtomicI64::new(0),
            recent: Mutex::new(VecDeque::new()),
            replicas: Mutex::new(BTreeMap::new()),
            name: name.to_owned(),
            recorder,
        }
    }

    /// Transactions `min..=max` were committed here (primary, at `now`) or applied here
    /// (replica: `now` is `None`).
    pub fn txns(&self, min: Txid, max: Txid, now: Option<Instant>) {
        self.commits.increment(max.0.saturating_sub(min.0) + 1);
        if let Some(now) = now {
            self.lag_ms.store(0, Ordering::Relaxed);
            let mut r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            if r.len() == RECENT_COMMITS {
                r.pop_front();
            }
            r.push_back((max, now));
        }
    }

    /// A write that completed a commit took `d` in litefleet (commit detection, LTX, the
    /// database actor; not a synchronous replication wait).
    pub fn commit_latency(&self, d: Duration) {
        self.commit_seconds.record(d.as_secs_f64());
    }

    /// A commit waited `d` for synchronous replication before it was answered.
    pub fn sync_wait(&self, d: Duration) {
        self.sync_wait_seconds.record(d.as_secs_f64());
    }

    /// A write to one of the database's files through the mount.
    pub fn write(&self, kind: FileKind) {
        self.writes[kind.index()].increment(1);
    }

    /// An LTX file of `bytes` was written to `ltx/`.
    pub fn ltx_written(&self, bytes: usize) {
        self.files.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as i64, Ordering::Relaxed);
        self.ltx_written_bytes.increment(bytes as u64);
    }

    /// `ltx/` holds exactly `files` files of `bytes` in all (a listing: startup, retention).
    pub fn ltx_dir(&self, files: usize, bytes: u64) {
        self.files.store(files as i64, Ordering::Relaxed);
        self.bytes.store(bytes as i64, Ordering::Relaxed);
    }

    /// Retention removed `n` LTX files.
    pub fn reaped(&self, n: usize) {
        self.reaped.increment(n as u64);
    }

    /// `n` LTX files were set aside (a history that is not the primary's).
    pub fn set_aside(&self, n: usize) {
        self.set_aside.increment(n as u64);
    }

    /// A replica applied a file with LTX timestamp `ts_ms` at wall-clock `now_ms`.
    pub fn applied(&self, ts_ms: i64, now_ms: i64, snapshot: bool) {
        let lag = (now_ms - ts_ms).max(0);
        self.lag_ms.store(lag, Ordering::Relaxed);
        self.apply_lag_seconds.record(lag as f64 / 1000.0);
        if snapshot {
            self.snapshots_applied.increment(1);
        }
    }

    /// The primary sent an LTX file of `bytes` to a replica.
    pub fn sent(&self, bytes: usize, snapshot: bool) {
        self.ltx_sent_bytes.increment(bytes as u64);
        if snapshot {
            self.snapshots_sent.increment(1);
        }
    }

    /// Replica `node` (`label`: its hostname) acknowledged `txid` at `now`: the time since
    /// that commit goes to `litefleet_replication_lag_seconds{db,replica}`, once per
    /// acknowledgement that moves it on (commits older than the last
    /// [`RECENT_COMMITS`] are not timed).
    pub fn acked(&self, node: NodeId, label: &str, txid: Txid, now: Instant) {
        let mut reps = self.replicas.lock().unwrap_or_else(|e| e.into_inner());
        let (h, last) = reps.entry(node).or_insert_with(|| {
            let label = if label.is_empty() { node.to_string() } else { label.to_owned() };
            let labels = vec![Label::new("db", self.name.clone()), Label::new("replica", label)];
            (histogram(&self.recorder, "litefleet_replication_lag_seconds", labels), Txid::ZERO)
        });
        if txid <= *last {
            return;
        }
        *last = txid;
        let r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        // `recent` is in TXID order: the commit that made `txid` is the first at or after it.
        let i = r.partition_point(|(t, _)| *t < txid);
        if let Some((_, at)) = r.get(i) {
            h.record(now.saturating_duration_since(*at).as_secs_f64());
        }
    }
}

fn counter(r: &PrometheusRecorder, name: &'static str, labels: Vec<Label>) -> Counter {
    r.register_counter(&Key::from_parts(name, labels), &meta())
}

fn gauge(r: &PrometheusRecorder, name: &'static str, labels: Vec<Label>) -> Gauge {
    r.register_gauge(&Key::from_parts(name, labels), &meta())
}

fn histogram(r: &PrometheusRecorder, name: &'static str, labels: Vec<Label>) -> Histogram {
    r.register_histogram(&Key::from_parts(name, labels), &meta())
}

/// Help texts and units (LiteFS's for its names).
fn describe(r: &PrometheusRecorder) {
    let c = |n: &'static str, u: Option<Unit>, h: &'static str| {
        r.describe_counter(KeyName::from_const_str(n), u, h.into())
    };
    let g = |n: &'static str, u: Option<Unit>, h: &'static str| {
        r.describe_gauge(KeyName::from_const_str(n), u, h.into())
    };
    let hi = |n: &'static str, h: &'static str| {
        r.describe_histogram(KeyName::from_const_str(n), Some(Unit::Seconds), h.into())
    };
    g("litefs_db_count", None, "Number of managed databases.");
    g("litefs_is_primary", None, "Primary status of the node.");
    g("litefs_subscriber_count", None, "Number of connected subscribers.");
    g("litefs_lag_seconds", Some(Unit::Seconds), "Lag behind the primary node, in seconds.");
    g("litefs_db_txid", None, "Current transaction ID.");
    c("litefs_db_database_write_count", None, "Number of writes to the database file.");
    c("litefs_db_journal_write_count", None, "Number of writes to the journal file.");
    c("litefs_db_wal_write_count", None, "Number of writes to the WAL file.");
    c("litefs_db_shm_write_count", None, "Number of writes to the shared memory file.");
    c("litefs_db_commit_count", None, "Number of database commits.");
    g("litefs_db_ltx_count", None, "Number of LTX files on disk.");
    g("litefs_db_ltx_bytes", Some(Unit::Bytes), "Number of bytes used by LTX files on disk.");
    c("litefs_db_ltx_reap_count", None, "Number of LTX files removed by retention.");
    g("litefs_db_lag_seconds", Some(Unit::Seconds), "Lag behind the primary node, in seconds.");
    c("litefleet_fuse_ops_total", None, "FUSE operations served, by operation.");
    c("litefleet_elections_total", None, "Times this node won the lease and became the primary.");
    c("litefleet_demotions_total", None, "Times this node stopped being the primary.");
    c("litefleet_primary_suspected_total", None, "Times the primary was silent for too long.");
    g("litefleet_lease_epoch", None, "The lease epoch this node holds or last saw.");
    g(
        "litefleet_replica_rtt_seconds",
        Some(Unit::Seconds),
        "QUIC round-trip time to each connected replica.",
    );
    g(
        "litefleet_replica_lag_txns",
        None,
        "Transactions each connected replica has not acknowledged.",
    );
    hi("litefleet_commit_seconds", "Time litefleet adds to a commit (detection, LTX, actor).");
    hi("litefleet_sync_wait_seconds", "Time a commit waited for synchronous replication.");
    hi(
        "litefleet_apply_lag_seconds",
        "Replica: time from a commit on the primary to its apply here.",
    );
    hi(
        "litefleet_replication_lag_seconds",
        "Primary: time from a commit to each replica's acknowledgement.",
    );
    c("litefleet_ltx_written_bytes_total", Some(Unit::Bytes), "Bytes of LTX files written.");
    c("litefleet_ltx_sent_bytes_total", Some(Unit::Bytes), "Bytes of LTX files sent to replicas.");
    c(
        "litefleet_proxy_requests_total",
        None,
        "Requests the proxy answered, by route (local, forwarded, caught-up, health, \
         from-replica) and status.",
    );
    hi("litefleet_proxy_forward_seconds", "Replica: a forwarded request until its response head.");
    hi("litefleet_proxy_catch_up_seconds", "Time a read waited for its __txid position.");
    c("litefleet_proxy_resent_total", None, "Forwarded requests sent again (provably unrun).");
    c("litefleet_snapshots_sent_total", None, "Snapshots sent to replicas.");
    c("litefleet_snapshots_applied_total", None, "Snapshots applied from the primary.");
    c(
        "litefleet_set_aside_files_total",
        None,
        "LTX files set aside (a history that was not the primary's).",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(page: &str, series: &str) -> Option<f64> {
        page.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    #[test]
    fn litefs_names_and_litefleet_names_render_and_compat_0_drops_litefs_names() {
        let m = Metrics::new();
        let db = m.db("a.db");
        db.txns(Txid(1), Txid(1), Some(crate::clock::now()));
        db.txns(Txid(2), Txid(2), Some(crate::clock::now()));
        db.write(FileKind::Wal);
        db.ltx_written(100);
        db.commit_latency(Duration::from_micros(300));
        db.acked(NodeId(9), "n2", Txid(2), crate::clock::now());
        // An older acknowledgement is not timed again.
        db.acked(NodeId(9), "n2", Txid(1), crate::clock::now());
        m.fuse_op(FuseOp::Write);
        let node = NodeGauges { is_primary: true, epoch: 3, subscribers: 1, ..Default::default() };
        let g = DbGauges { txid: Txid(2), replica_lag_txns: vec![("n2".into(), 0)] };
        m.set_gauges(&node, &[("a.db".into(), g)]);
        let page = m.render(true);
        assert_eq!(value(&page, "litefs_db_txid{db=\"a.db\"}"), Some(2.0), "{page}");
        assert_eq!(value(&page, "litefs_db_commit_count{db=\"a.db\"}"), Some(2.0));
        assert_eq!(value(&page, "litefs_db_wal_write_count{db=\"a.db\"}"), Some(1.0));
        assert_eq!(value(&page, "litefs_db_ltx_count{db=\"a.db\"}"), Some(1.0));
        assert_eq!(value(&page, "litefs_db_ltx_bytes{db=\"a.db\"}"), Some(100.0));
        assert_eq!(value(&page, "litefs_is_primary"), Some(1.0));
        assert_eq!(value(&page, "litefs_db_count"), Some(1.0));
        assert_eq!(value(&page, "litefleet_lease_epoch"), Some(3.0));
        assert_eq!(value(&page, "litefleet_fuse_ops_total{op=\"write\"}"), Some(1.0));
        assert_eq!(value(&page, "litefleet_commit_seconds_count{db=\"a.db\"}"), Some(1.0));
        assert_eq!(
            value(&page, "litefleet_replication_lag_seconds_count{db=\"a.db\",replica=\"n2\"}"),
            Some(1.0)
        );
        assert!(page.contains("# TYPE litefs_db_commit_count counter"), "{page}");
        // The replica leaves: its gauges read NaN, not their last values.
        m.set_gauges(&node, &[("a.db".into(), DbGauges { txid: Txid(2), ..Default::default() })]);
        let page = m.render(true);
        let lag = value(&page, "litefleet_replica_lag_txns{db=\"a.db\",replica=\"n2\"}");
        assert!(lag.is_some_and(f64::is_nan), "{page}");
        let clean = m.render(false);
        assert!(!clean.contains("litefs_"), "{clean}");
        assert!(clean.contains("litefleet_commit_seconds_bucket"), "{clean}");
    }
}
