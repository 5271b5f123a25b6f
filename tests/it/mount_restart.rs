//! Restarts: a node stopped and started again serves the same databases at the same
//! positions and goes on; a LiteFS v0.5 data directory opens at its positions; damage found
//! at startup is repaired or reported precisely.

use std::path::Path;

use crate::common::{Node, need, tmp};
use litefleet::core::types::Pos;

#[test]
fn restart_keeps_data_and_positions() {
    need::fuse();
    need::sqlite3();
    let root = tmp("restart");
    let node = Node::start(&root);
    node.sql("w.db", "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);");
    node.sql("d.db", "CREATE TABLE t(x); INSERT INTO t VALUES (1);");
    let (pw, pd) = (node.pos_file("w.db"), node.pos_file("d.db"));
    node.stop();
    let node = Node::start(&root);
    assert_eq!(node.pos_file("w.db"), pw);
    assert_eq!(node.pos_file("d.db"), pd);
    node.sql("w.db", "INSERT INTO t VALUES (2);");
    node.sql("d.db", "INSERT INTO t VALUES (2);");
    assert_eq!(node.sql("w.db", "SELECT sum(x) FROM t;").trim(), "3");
    assert_eq!(node.pos_file("w.db").txid.0, pw.txid.0 + 1);
    assert_eq!(node.pos_file("d.db").txid.0, pd.txid.0 + 1);
    let (_, pos) = node.replay("d.db");
    assert_eq!(pos, node.pos_file("d.db"));
    node.stop();
}

fn untar(tarball: &Path, into: &Path) {
    let st = std::process::Command::new("tar")
        .arg("xzf")
        .arg(tarball)
        .arg("-C")
        .arg(into)
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn litefs_data_directory_is_served_and_continued() {
    need::fuse();
    need::sqlite3();
    let root = tmp("litefs-datadir");
    untar(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/vectors/litefs-0.5.14/primary-datadir.tar.gz"),
        &root,
    );
    let node = Node::start(&root);
    assert_eq!(
        node.pos_file("app.db"),
        "0000000000000016/de6e5107092f964d".parse::<Pos>().unwrap()
    );
    assert_eq!(
        node.pos_file("legacy.db"),
        "0000000000000003/ef2d09dd080c7cdf".parse::<Pos>().unwrap()
    );
    assert_eq!(node.sql("app.db", "SELECT count(*) FROM users;").trim(), "20");
    assert_eq!(node.sql("legacy.db", "SELECT count(*) FROM notes;").trim(), "3");
    node.sql("app.db", "INSERT INTO users(name) SELECT 'new' ;");
    node.sql("legacy.db", "INSERT INTO notes(body) VALUES ('from litefleet');");
    assert_eq!(node.pos_file("app.db").txid.0, 0x17);
    assert_eq!(node.pos_file("legacy.db").txid.0, 4);
    // The whole chain, LiteFS's files then ours, replays to the database.
    for db in ["app.db", "legacy.db"] {
        node.sql(db, "PRAGMA wal_checkpoint(TRUNCATE);");
        let (image, pos) = node.replay(db);
        assert_eq!(pos, node.pos_file(db));
        assert!(
            image == std::fs::read(node.data.join("dbs").join(db).join("database")).unwrap(),
            "{db}"
        );
    }
    node.stop();
}

fn open_store(root: &Path) -> Result<litefleet::store::Store, litefleet::store::StoreError> {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    let rt = RT.get_or_init(|| litefleet::rt::runtime().unwrap());
    litefleet::store::Store::open(
        &root.join("data"),
        litefleet::db::DbOptions { compress: true, node_id: litefleet::core::types::NodeId(1) },
        rt.handle().clone(),
        Default::default(),
    )
}

fn flip_byte(path: &Path, page: usize, ps: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[(page - 1) * ps + 100] ^= 0xff;
    std::fs::write(path, b).unwrap();
}

#[test]
fn damage_at_startup_is_repaired_or_reported_precisely() {
    need::fuse();
    need::sqlite3();
    let root = tmp("tampered");
    let node = Node::start(&root);
    node.sql(
        "t.db",
        "CREATE TABLE t(x); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 40) \
         INSERT INTO t SELECT randomblob(2000) FROM n;",
    );
    node.sql("t.db", "UPDATE t SET x = zeroblob(10) WHERE rowid = 40;");
    let pos = node.pos_file("t.db");
    let pages = node.sql("t.db", "PRAGMA page_count;").trim().parse::<usize>().unwrap();
    node.stop();
    let path = root.join("data/dbs/t.db/database");

    // Page 1 is in the newest LTX file (the change counter moves every commit): re-applying
    // that file repairs it.
    flip_byte(&path, 1, 4096);
    let store = open_store(&root).expect("repaired by re-applying the newest LTX file");
    assert_eq!(store.get("t.db").unwrap().pos(), pos);
    drop(store);
    let node = Node::start(&root);
    assert_eq!(node.sql("t.db", "PRAGMA integrity_check;").trim(), "ok");
    node.stop();

    // A page only older files wrote cannot be repaired locally: reported, naming the
    // database, both checksums and the way out.
    flip_byte(&path, pages / 2, 4096);
    // The database is quarantined; the store (every other database) opens.
    let store = open_store(&root).expect("the other databases are served");
    assert!(store.get("t.db").is_none(), "a tampered database opened silently");
    let err = store.quarantined().get("t.db").cloned().expect("quarantined with its reason");
    assert!(
        err.contains("t.db") && err.contains("does not match position") && err.contains("Way out"),
        "{err}"
    );
}

#[test]
fn a_torn_newest_ltx_file_is_moved_aside_and_the_database_reapplied() {
    need::fuse();
    need::sqlite3();
    let root = tmp("torn");
    let node = Node::start(&root);
    node.sql("t.db", "CREATE TABLE t(x); INSERT INTO t VALUES (1);");
    let good = node.pos_file("t.db");
    node.sql("t.db", "INSERT INTO t VALUES (2);");
    node.stop();
    // Simulate a crash that left the newest LTX file torn and the database at the older
    // position: truncate the newest file, and put the database back.
    let ltx = root.join("data/dbs/t.db/ltx");
    let mut files: Vec<_> = std::fs::read_dir(&ltx).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let newest = files.last().unwrap().clone();
    let len = std::fs::metadata(&newest).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&newest).unwrap().set_len(len / 2).unwrap();
    // Rebuild the database at the older position from the remaining chain.
    let mut store = litefleet::core::ltx::MemStore::default();
    let mut state = litefleet::core::ltx::DbState::default();
    for f in &files[..files.len() - 1] {
        let b = std::fs::read(f).unwrap();
        litefleet::core::ltx::apply(
            litefleet::core::ltx::LtxReader::new(&b[..], b.len() as u64).unwrap(),
            &mut store,
            &mut state,
        )
        .unwrap();
    }
    std::fs::write(root.join("data/dbs/t.db/database"), &store.bytes).unwrap();
    // A crash leaves no checksum cache (a clean shutdown writes it).
    std::fs::remove_file(root.join("data/dbs/t.db/checksums")).unwrap();
    let node = Node::start(&root);
    assert_eq!(node.pos_file("t.db"), good);
    assert!(newest.with_extension("ltx.torn").exists(), "the torn file is kept aside");
    assert!(!newest.exists());
    assert_eq!(node.sql("t.db", "SELECT count(*) FROM t;").trim(), "1");
    node.stop();
}
