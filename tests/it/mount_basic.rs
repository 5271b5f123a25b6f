//! The mount with real SQLite clients (the `sqlite3` CLI, separate processes): every commit
//! becomes an LTX file, the chain replays to the database, and the position is exact.

use crate::common::{Node, need, tmp};

fn check_chain(node: &Node, db: &str) {
    let (image, pos) = node.replay(db);
    assert_eq!(node.pos_file(db), pos, "{db}: -pos equals the replayed chain's position");
    // In rollback mode (or after a checkpoint) the database file is the whole truth.
    let wal = node.data.join("dbs").join(db).join("wal");
    if !wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0 {
        let file = std::fs::read(node.data.join("dbs").join(db).join("database")).unwrap();
        assert!(file == image, "{db}: replayed LTX chain differs from the database file");
    }
}

#[test]
fn delete_mode_commits_become_ltx_files() {
    need::fuse();
    need::sqlite3();
    let root = tmp("delete-mode");
    let node = Node::start(&root);
    node.sql("a.db", "PRAGMA journal_mode=DELETE; CREATE TABLE t(x); INSERT INTO t VALUES (1);");
    node.sql("a.db", "INSERT INTO t VALUES (2); INSERT INTO t VALUES (3);");
    assert_eq!(node.sql("a.db", "SELECT sum(x) FROM t;").trim(), "6");
    check_chain(&node, "a.db");
    assert!(node.pos_file("a.db").txid.0 >= 3);
    node.stop();
}

#[test]
fn wal_mode_commits_become_ltx_files() {
    need::fuse();
    need::sqlite3();
    let root = tmp("wal-mode");
    let node = Node::start(&root);
    node.sql("w.db", "PRAGMA journal_mode=WAL; CREATE TABLE t(x);");
    for i in 0..20 {
        node.sql("w.db", &format!("INSERT INTO t VALUES ({i});"));
    }
    assert_eq!(node.sql("w.db", "SELECT count(*) FROM t;").trim(), "20");
    let (image, pos) = node.replay("w.db");
    assert_eq!(node.pos_file("w.db"), pos);
    node.sql("w.db", "PRAGMA wal_checkpoint(TRUNCATE);");
    let file = std::fs::read(node.data.join("dbs/w.db/database")).unwrap();
    assert!(file == image, "after a checkpoint the database file equals the replay");
    node.stop();
}

/// A new database whose first transaction is larger than SQLite's page cache: SQLite spills
/// pages 2.. to the new file before it writes page 1. It is a database (replicated, with an
/// LTX file), not a node-local file.
#[test]
fn a_first_transaction_that_spills_the_cache_creates_a_database() {
    need::fuse();
    need::sqlite3();
    let root = tmp("spill-create");
    let node = Node::start(&root);
    node.sql(
        "s.db",
        "PRAGMA cache_size=10; BEGIN; CREATE TABLE t(x); WITH RECURSIVE c(i) AS (SELECT 1 \
         UNION ALL SELECT i+1 FROM c WHERE i<20000) INSERT INTO t SELECT randomblob(100) FROM c; \
         COMMIT;",
    );
    assert!(node.data.join("dbs/s.db").is_dir(), "s.db stayed a node-local file");
    assert_eq!(node.sql("s.db", "SELECT count(*) FROM t;").trim(), "20000");
    assert_eq!(node.pos_file("s.db").txid.0, 1);
    check_chain(&node, "s.db");
    node.stop();
}
