//! Commit throughput and latency through the mount versus bare SQLite, in one run:
//! `cargo bench --bench commit` (needs root and /dev/fuse).
//!
//! Workload: one connection, single-row `INSERT` transactions of 200-byte rows, for a fixed
//! time per case. Each case runs on a bare directory and on a litefleet mount (in-process
//! node, LTX compression on, as LiteFS's default) and prints commits/s, p50 and p99 commit
//! latency and the mount/bare throughput ratio.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use litefleet::core::types::NodeId;
use litefleet::db::DbOptions;
use litefleet::mount::Mounted;
use litefleet::store::Store;
use rusqlite::Connection;

const CASE_TIME: Duration = Duration::from_secs(4);

struct Result {
    commits_per_s: f64,
    p50_us: f64,
    p99_us: f64,
}

#[allow(clippy::disallowed_methods)]
fn run(path: &Path, journal: &str, sync: &str) -> Result {
    let _ = std::fs::remove_file(path);
    let conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", journal).unwrap();
    conn.pragma_update(None, "synchronous", sync).unwrap();
    conn.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)").unwrap();
    let row = vec![0x5au8; 200];
    let mut stmt = conn.prepare("INSERT INTO t(v) VALUES (?1)").unwrap();
    let mut lat = Vec::new();
    let start = Instant::now();
    while start.elapsed() < CASE_TIME {
        let t = Instant::now();
        stmt.execute([&row]).unwrap();
        lat.push(t.elapsed());
    }
    let total = start.elapsed();
    lat.sort();
    let pct =
        |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1e6;
    Result {
        commits_per_s: lat.len() as f64 / total.as_secs_f64(),
        p50_us: pct(0.5),
        p99_us: pct(0.99),
    }
}

fn main() {
    let root = std::env::temp_dir().join(format!("litefleet-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let bare = root.join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    let rt = litefleet::rt::runtime().unwrap();
    let opts = DbOptions { compress: true, node_id: NodeId(1) };
    let store = Arc::new(
        Store::open(&root.join("data"), opts, rt.handle().clone(), Default::default()).unwrap(),
    );
    let mnt = root.join("mnt");
    let mounted = Mounted::mount(store, &mnt, false, 4).unwrap();

    println!("single-row INSERT commits, 200-byte rows, {} s per case", CASE_TIME.as_secs());
    println!(
        "{:<18} {:>6} {:>11} {:>9} {:>9}   {:>11} {:>9} {:>9}   {:>6}",
        "case", "", "bare c/s", "p50 us", "p99 us", "mount c/s", "p50 us", "p99 us", "ratio"
    );
    for (name, journal, sync) in [
        ("WAL, NORMAL", "WAL", "NORMAL"),
        ("WAL, FULL", "WAL", "FULL"),
        ("DELETE, FULL", "DELETE", "FULL"),
    ] {
        if let Ok(only) = std::env::var("BENCH_CASE")
            && !name.contains(only.as_str())
        {
            continue;
        }
        let file = format!("{}.db", name.replace([',', ' '], ""));
        let b = run(&bare.join(&file), journal, sync);
        let m = run(&mnt.join(&file), journal, sync);
        println!(
            "{:<18} {:>6} {:>11.0} {:>9.0} {:>9.0}   {:>11.0} {:>9.0} {:>9.0}   {:>6.2}",
            name,
            "",
            b.commits_per_s,
            b.p50_us,
            b.p99_us,
            m.commits_per_s,
            m.p50_us,
            m.p99_us,
            m.commits_per_s / b.commits_per_s
        );
    }
    mounted.unmount().unwrap();
    let _ = std::fs::remove_dir_all(&root);
}
