//! Startup time of a node on a 1 GiB database: `cargo bench --bench startup` (needs root).
//!
//! Builds `dbs/big.db/database` with bare SQLite (1 GiB, 4 KiB pages), then times, in one
//! run: the first open (adopts the file: full scan plus a snapshot LTX at TXID 1), a restart
//! after a clean shutdown (checksum cache), and a restart after a crash (no cache: full
//! scan), each with the page cache warm. Prints a table.

use std::path::Path;
use std::time::{Duration, Instant};

use litefleet::core::types::NodeId;
use litefleet::db::DbOptions;
use litefleet::store::Store;

const SIZE: u64 = 1 << 30;

#[allow(clippy::disallowed_methods)]
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let v = f();
    (v, t.elapsed())
}

fn open(data: &Path, rt: &tokio::runtime::Runtime) -> Store {
    let opts = DbOptions { compress: false, node_id: NodeId(1) };
    Store::open(data, opts, rt.handle().clone(), Default::default()).unwrap()
}

fn main() {
    let root = std::env::temp_dir().join(format!("litefleet-startup-{}", std::process::id()));
    let data = root.join("data");
    let dir = data.join("dbs").join("big.db");
    std::fs::create_dir_all(&dir).unwrap();
    let (_, build) = timed(|| {
        let c = rusqlite::Connection::open(dir.join("database")).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=DELETE; PRAGMA synchronous=OFF; CREATE TABLE t(v BLOB);",
        )
        .unwrap();
        let tx = c.unchecked_transaction().unwrap();
        let rows = SIZE / 4000;
        for _ in 0..rows {
            tx.execute("INSERT INTO t VALUES (randomblob(3900))", []).unwrap();
        }
        tx.commit().unwrap();
    });
    let size = std::fs::metadata(dir.join("database")).unwrap().len();
    println!("database: {} MiB, built in {:.1} s", size >> 20, build.as_secs_f64());
    let rt = litefleet::rt::runtime().unwrap();

    let (store, first) = timed(|| open(&data, &rt));
    let pos = store.get("big.db").unwrap().pos();
    for db in store.list() {
        db.shutdown();
    }
    drop(store);
    let (store, clean) = timed(|| open(&data, &rt));
    assert_eq!(store.get("big.db").unwrap().pos(), pos);
    drop(store); // no shutdown: as after kill -9, the checksum cache is not written
    let (store, crashed) = timed(|| open(&data, &rt));
    assert_eq!(store.get("big.db").unwrap().pos(), pos);
    drop(store);

    println!("{:<44} {:>10}", "startup of a 1 GiB database", "seconds");
    println!("{:<44} {:>10.3}", "first open (scan + snapshot LTX at TXID 1)", first.as_secs_f64());
    println!("{:<44} {:>10.3}", "restart after clean shutdown", clean.as_secs_f64());
    println!("{:<44} {:>10.3}", "restart after a crash (full scan)", crashed.as_secs_f64());
    let _ = std::fs::remove_dir_all(&root);
}
