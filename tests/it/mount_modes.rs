//! Every journal mode through the mount with the `sqlite3` CLI: TRUNCATE, PERSIST, switches
//! between rollback and WAL on a live database, exclusive locking in WAL mode, every
//! checkpoint kind, VACUUM, a WAL of thousands of pages, deletion, many databases. After each
//! scenario the LTX chain replays to exactly the database SQLite holds.

use crate::common::{Node, need, tmp};

fn assert_consistent(node: &Node, db: &str) {
    node.assert_consistent(db);
}

#[test]
fn truncate_and_persist_modes() {
    need::fuse();
    need::sqlite3();
    let node = Node::start(&tmp("modes-rollback"));
    for mode in ["TRUNCATE", "PERSIST"] {
        let db = format!("{}.db", mode.to_lowercase());
        node.sql(&db, &format!("PRAGMA journal_mode={mode}; CREATE TABLE t(x);"));
        for i in 0..10 {
            node.sql(&db, &format!("PRAGMA journal_mode={mode}; INSERT INTO t VALUES ({i});"));
        }
        node.sql(
            &db,
            &format!("PRAGMA journal_mode={mode}; BEGIN; INSERT INTO t VALUES (99); ROLLBACK;"),
        );
        assert_eq!(node.sql(&db, "SELECT count(*), sum(x) FROM t;").trim(), "10|45");
        assert_consistent(&node, &db);
        assert!(node.pos_file(&db).txid.0 >= 11, "{db}");
    }
    node.stop();
}

#[test]
fn switching_modes_on_a_live_database() {
    need::fuse();
    need::sqlite3();
    let node = Node::start(&tmp("modes-switch"));
    let db = "s.db";
    node.sql(db, "PRAGMA journal_mode=DELETE; CREATE TABLE t(x TEXT); INSERT INTO t VALUES ('a');");
    node.sql(db, "PRAGMA journal_mode=WAL; INSERT INTO t VALUES ('b');");
    node.sql(db, "INSERT INTO t VALUES ('c');");
    node.sql(db, "PRAGMA journal_mode=TRUNCATE; INSERT INTO t VALUES ('d');");
    node.sql(db, "PRAGMA journal_mode=WAL; INSERT INTO t VALUES ('e');");
    node.sql(db, "PRAGMA journal_mode=PERSIST; INSERT INTO t VALUES ('f');");
    assert_eq!(node.sql(db, "SELECT group_concat(x, '') FROM t;").trim(), "abcdef");
    assert_consistent(&node, db);
    node.stop();
}

#[test]
fn exclusive_locking_mode_in_wal() {
    need::fuse();
    need::sqlite3();
    let node = Node::start(&tmp("modes-exclusive"));
    let db = "x.db";
    node.sql(
        db,
        "PRAGMA journal_mode=WAL; PRAGMA locking_mode=EXCLUSIVE; CREATE TABLE t(x); \
         INSERT INTO t VALUES (1); INSERT INTO t VALUES (2); BEGIN; INSERT INTO t VALUES (3); COMMIT;",
    );
    assert_eq!(node.sql(db, "SELECT sum(x) FROM t;").trim(), "6");
    assert_consistent(&node, db);
    node.stop();
}

#[test]
fn checkpoints_of_every_kind_and_a_large_wal() {
    need::fuse();
    need::sqlite3();
    let node = Node::start(&tmp("modes-checkpoint"));
    let db = "c.db";
    node.sql(db, "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t(x BLOB);");
    for kind in ["PASSIVE", "FULL", "RESTART", "TRUNCATE"] {
        node.sql(db, "INSERT INTO t VALUES (randomblob(3000));");
        node.sql(db, &format!("PRAGMA wal_checkpoint({kind});"));
        node.sql(db, "INSERT INTO t VALUES (randomblob(3000));");
    }
    // One transaction of ~5000 pages: a WAL far past the default autocheckpoint.
    node.sql(
        db,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 5000) \
         INSERT INTO t SELECT randomblob(3500) FROM n;",
    );
    // (The CLI checkpoints and removes the WAL when it closes, so look at the LTX file.)
    let biggest = std::fs::read_dir(node.data.join("dbs").join(db).join("ltx"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .max()
        .unwrap();
    assert!(biggest > 5000 * 3500, "largest LTX file is {biggest} bytes");
    // Automatic checkpoints back on, more commits.
    for _ in 0..5 {
        node.sql(db, "PRAGMA wal_autocheckpoint=100; INSERT INTO t VALUES (randomblob(100000));");
    }
    assert_eq!(node.sql(db, "SELECT count(*) FROM t;").trim(), "5013");
    assert_consistent(&node, db);
    node.stop();
}

#[test]
fn vacuum_in_both_modes() {
    need::fuse();
    need::sqlite3();
    let node = Node::start(&tmp("modes-vacuum"));
    for (db, mode) in [("vw.db", "WAL"), ("vd.db", "DELETE")] {
        node.sql(db, &format!("PRAGMA journal_mode={mode}; CREATE TABLE t(x BLOB);"));
        node.sql(
            db,
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 500) \
             INSERT INTO t SELECT randomblob(2000) FROM n;",
        );
        node.sql(db, "DELETE FROM t WHERE rowid % 3 != 0;");
        node.sql(db, "VACUUM;");
        node.sql(db, "INSERT INTO t VALUES (randomblob(10));");
        assert_eq!(node.sql(db, "SELECT count(*) FROM t;").trim(), "167");
        assert_consistent(&node, db);
    }
    node.stop();
}

#[test]
fn deleting_and_recreating_a_database() {
    need::fuse();
    need::sqlite3();
    let node = Node::start(&tmp("modes-delete"));
    let db = "d.db";
    node.sql(db, "CREATE TABLE t(x); INSERT INTO t VALUES (1);");
    let before = node.pos_file(db);
    std::fs::remove_file(node.db_path(db)).unwrap();
    assert!(!node.db_path(db).exists());
    let after = node.pos_file(db);
    assert_eq!(after.txid.0, before.txid.0 + 1, "a deletion LTX");
    assert_eq!(after.checksum.0, 1 << 63, "empty database checksum");
    let (image, pos) = node.replay(db);
    assert!(image.is_empty());
    assert_eq!(pos, after);
    // Re-created under the same name, it continues the TXID sequence.
    node.sql(db, "CREATE TABLE u(y); INSERT INTO u VALUES (2);");
    assert!(node.pos_file(db).txid.0 > after.txid.0);
    assert_consistent(&node, db);
    node.stop();
}

#[test]
fn many_databases_in_one_mount() {
    need::fuse();
    need::sqlite3();
    let node = Node::start(&tmp("modes-many"));
    for i in 0..20 {
        let db = format!("db{i:02}.db");
        let mode = if i % 2 == 0 { "WAL" } else { "DELETE" };
        node.sql(
            &db,
            &format!("PRAGMA journal_mode={mode}; CREATE TABLE t(x); INSERT INTO t VALUES ({i});"),
        );
    }
    let names: Vec<String> = std::fs::read_dir(&node.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".db"))
        .collect();
    assert_eq!(names.len(), 20, "{names:?}");
    for i in 0..20 {
        assert_consistent(&node, &format!("db{i:02}.db"));
    }
    node.stop();
}
