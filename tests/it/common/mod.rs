//! The harness every integration test shares: an in-process node (store + FUSE mount) in a
//! temp dir, `sqlite3` run as a separate process against it, and the modules below
//! (`cluster` of `litefleet mount` processes, `consul`, `lan` of network namespaces, `relay`,
//! `writers`, and `need`: what a test needs from the machine).
//!
//! Tests run in one process, two at a time by default: nothing here may be a fixed name,
//! port or address. Directories come from [`tmp`] (unique per call), ports from
//! [`cluster::free_port`] (never handed out twice), namespace, interface names and subnets
//! from [`lan::claim`].

pub mod app;
pub mod cluster;
pub mod consul;
pub mod http;
pub mod lan;
pub mod need;
pub mod relay;
pub mod writers;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use litefleet::core::ltx::{DbState, LtxReader, MemStore, apply};
use litefleet::core::types::{NodeId, Pos};
use litefleet::db::DbOptions;
use litefleet::mount::Mounted;
use litefleet::store::Store;

pub struct Node {
    pub data: PathBuf,
    pub mnt: PathBuf,
    pub store: Arc<Store>,
    pub mounted: Option<Mounted>,
    /// The runtime the store's actors run on, kept as long as the node.
    _rt: tokio::runtime::Runtime,
}

/// Starts an `sqlclient` example process with its output captured.
pub fn client(args: &[&str]) -> Child {
    Command::new(example("sqlclient"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a client and returns the number it printed; panics with its stderr on failure.
pub fn finish(c: Child, what: &str) -> u64 {
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// A fresh, empty directory `$TMPDIR/litefleet-<name>-<pid>-<n>`, where `n` counts the calls
/// in this process: tests run side by side in one process, so the pid alone does not keep
/// two of them (or two calls of one) apart.
pub fn tmp(name: &str) -> PathBuf {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("litefleet-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

impl Node {
    pub fn start(root: &Path) -> Node {
        let data = root.join("data");
        let mnt = root.join("mnt");
        let rt = litefleet::rt::runtime().unwrap();
        let opts = DbOptions { compress: true, node_id: NodeId(7) };
        let store =
            Arc::new(Store::open(&data, opts, rt.handle().clone(), Default::default()).unwrap());
        let mounted = Mounted::mount(store.clone(), &mnt, false, 2).unwrap();
        Node { data, mnt, store, mounted: Some(mounted), _rt: rt }
    }

    pub fn stop(mut self) {
        if let Some(m) = self.mounted.take() {
            m.unmount().unwrap();
        }
        for db in self.store.list() {
            db.shutdown();
        }
    }

    pub fn db_path(&self, name: &str) -> PathBuf {
        self.mnt.join(name)
    }

    /// Runs SQL through the sqlite3 CLI (a separate process) and returns stdout.
    pub fn sql(&self, db: &str, sql: &str) -> String {
        let out = Command::new("sqlite3").arg(self.db_path(db)).arg(sql).output().unwrap();
        assert!(
            out.status.success(),
            "sqlite3 {db} {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Checkpoints (if in WAL mode), flushes the LTX log, and checks the LTX chain replays
    /// to the database file, that `-pos` equals the chain's position, and
    /// `integrity_check` is ok.
    pub fn assert_consistent(&self, db: &str) {
        let mode = self.sql(db, "PRAGMA journal_mode;");
        if mode.trim() == "wal" {
            self.sql(db, "PRAGMA wal_checkpoint(TRUNCATE);");
        }
        if let Some(d) = self.store.get(db) {
            d.sync_pending().unwrap();
        }
        let (image, pos) = self.replay(db);
        assert_eq!(self.pos_file(db), pos, "{db}: -pos");
        let file = std::fs::read(self.data.join("dbs").join(db).join("database")).unwrap();
        assert_eq!(file.len(), image.len(), "{db}: size");
        assert!(file == image, "{db}: LTX replay differs from the database");
        assert_eq!(self.sql(db, "PRAGMA integrity_check;").trim(), "ok");
    }

    pub fn pos_file(&self, db: &str) -> Pos {
        std::fs::read_to_string(self.mnt.join(format!("{db}-pos"))).unwrap().parse().unwrap()
    }

    /// Replays every LTX file of `db` from an empty database and returns the image and
    /// position. Requires the chain to start at TXID 1.
    pub fn replay(&self, db: &str) -> (Vec<u8>, Pos) {
        replay(&self.data, db)
    }
}

/// Replays every LTX file of `db` under data dir `data` from an empty database.
pub fn replay(data: &Path, db: &str) -> (Vec<u8>, Pos) {
    let dir = data.join("dbs").join(db).join("ltx");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "ltx"))
        .collect();
    files.sort();
    let mut store = MemStore::default();
    let mut state = DbState::default();
    for f in files {
        let b = std::fs::read(&f).unwrap();
        apply(LtxReader::new(&b[..], b.len() as u64).unwrap(), &mut store, &mut state)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    }
    (store.bytes, state.pos)
}

/// Path of an example binary built next to the test binary (`cargo test` builds the
/// examples; `cargo test --test it` alone does not).
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("examples").join(name);
    assert!(
        path.exists(),
        "needs the example {name} at {}: run cargo build --examples",
        path.display()
    );
    path
}
