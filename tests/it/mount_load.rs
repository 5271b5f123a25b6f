//! Load through the mount, separate processes: concurrent writers and readers (bank
//! transfers: every read transaction sees a constant total and positions never go back),
//! and transactions of 100 MB, in WAL and rollback modes. After each, the LTX chain replays
//! to the database and `-pos` is the real position.

use std::process::{Child, Command};

use crate::common::{Node, client, example, finish, need, tmp};

fn bank(mode: &str) {
    let root = tmp(&format!("bank-{mode}"));
    let node = Node::start(&root);
    let db = node.db_path("bank.db");
    let db = db.to_str().unwrap();
    let pos = format!("{db}-pos");
    let st = Command::new(example("sqlclient")).args(["bank-init", db, mode, "200"]).status();
    assert!(st.unwrap().success());
    let writers: Vec<Child> =
        (1..=3).map(|seed| client(&["bank-transfer", db, "4000", &seed.to_string()])).collect();
    let readers: Vec<Child> =
        (0..2).map(|_| client(&["bank-read", db, "4000", "200", &pos])).collect();
    let transfers: u64 = writers.into_iter().map(|w| finish(w, "writer")).sum();
    let reads: u64 = readers.into_iter().map(|r| finish(r, "reader")).sum();
    eprintln!("{mode}: {transfers} transfers, {reads} consistent reads");
    assert!(transfers > 50, "{transfers} transfers");
    assert!(reads > 10, "{reads} reads");
    let total = node.sql("bank.db", "SELECT sum(balance) FROM acct;");
    assert_eq!(total.trim(), "200000");
    node.assert_consistent("bank.db");
    node.stop();
}

#[test]
fn concurrent_writers_and_readers_wal() {
    need::fuse();
    need::sqlite3();
    bank("WAL");
}

#[test]
fn concurrent_writers_and_readers_delete() {
    need::fuse();
    need::sqlite3();
    bank("DELETE");
}

fn big_transaction(mode: &str) {
    let root = tmp(&format!("big-{mode}"));
    let node = Node::start(&root);
    node.sql(
        "big.db",
        &format!("PRAGMA journal_mode={mode}; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);"),
    );
    // 100 rows of 1 MiB, one transaction: about 26,000 pages.
    node.sql(
        "big.db",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100) \
         INSERT INTO t SELECT x, randomblob(1048576) FROM c;",
    );
    let before = node.pos_file("big.db");
    // And one that rewrites most of it.
    node.sql("big.db", "UPDATE t SET v = randomblob(1048576) WHERE id % 4 != 0;");
    assert!(node.pos_file("big.db").txid > before.txid);
    assert_eq!(
        node.sql("big.db", "SELECT count(*), sum(length(v)) FROM t;").trim(),
        "100|104857600"
    );
    node.assert_consistent("big.db");
    node.stop();
}

#[test]
fn transactions_of_100_mb_wal() {
    need::fuse();
    need::sqlite3();
    big_transaction("WAL");
}

#[test]
fn transactions_of_100_mb_delete() {
    need::fuse();
    need::sqlite3();
    big_transaction("DELETE");
}
