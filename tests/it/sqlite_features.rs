//! Everything SQLite does with a file, on a real two-node cluster: each feature is used on
//! the primary through the mount (the `sqlite3` CLI and Python's `sqlite3`, real
//! processes), its data reads back there, and the database arrives on the replica
//! byte-identical.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::cluster::{Cluster, sql_at};
use crate::common::{need, tmp};

const CONVERGE: Duration = Duration::from_secs(30);

fn assert_identical(c: &Cluster, db: &str) {
    c.wait_identical(1, db, CONVERGE);
    let (ok, out) = c.sql(1, db, "PRAGMA integrity_check;");
    assert!(ok && out.trim() == "ok", "{db} on the replica: {out}");
}

fn python(dir: &Path, script: &str) -> String {
    let out = Command::new("python3").current_dir(dir).arg("-c").arg(script).output().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    text
}

const FILL: &str = "CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB); WITH RECURSIVE n(i) AS \
    (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 400) INSERT INTO t(b) SELECT \
    randomblob(300) FROM n;";

#[test]
fn page_sizes_from_512_to_65536_in_rollback_and_wal_modes() {
    need::fuse();
    need::sqlite3();
    need::python3();
    let c = Cluster::start(&tmp("feat-pagesize"), 2);
    let mut ps = 512;
    while ps <= 65536 {
        for mode in ["DELETE", "WAL"] {
            let db = format!("p{ps}-{mode}.db");
            c.sql_ok(0, &db, &format!("PRAGMA page_size={ps}; PRAGMA journal_mode={mode}; {FILL}"));
            c.sql_ok(0, &db, "UPDATE t SET b = randomblob(500) WHERE id % 3 = 0;");
            let got = c.sql_ok(0, &db, "PRAGMA page_size;");
            assert_eq!(got.trim(), ps.to_string(), "{db}");
            assert_identical(&c, &db);
        }
        ps *= 2;
    }
}

#[test]
fn mmap_size_and_temp_store() {
    need::fuse();
    need::sqlite3();
    need::python3();
    let c = Cluster::start(&tmp("feat-mmap"), 2);
    for (db, mode) in [("m-wal.db", "WAL"), ("m-del.db", "DELETE")] {
        c.sql_ok(0, db, &format!("PRAGMA journal_mode={mode}; PRAGMA mmap_size=268435456; {FILL}"));
        // Reads through the mapping see every later commit.
        let out = c.sql_ok(
            0,
            db,
            "PRAGMA mmap_size=268435456; UPDATE t SET b = zeroblob(10) WHERE id <= 100; \
             SELECT count(*) FROM t WHERE length(b) = 10;",
        );
        assert_eq!(out.trim().lines().last(), Some("100"), "{db}: {out}");
        assert_identical(&c, db);
    }
    for store in ["FILE", "MEMORY"] {
        let db = format!("temp-{store}.db");
        let out = c.sql_ok(
            0,
            &db,
            &format!(
                "PRAGMA temp_store={store}; {FILL} CREATE TEMP TABLE x AS SELECT * FROM t; \
                 INSERT INTO t(b) SELECT b FROM x ORDER BY b; SELECT count(*) FROM t;"
            ),
        );
        assert_eq!(out.trim().lines().last(), Some("800"), "{db}: {out}");
        assert_identical(&c, &db);
    }
}

#[test]
fn exclusive_locking_in_wal_mode() {
    need::fuse();
    need::sqlite3();
    need::python3();
    let c = Cluster::start(&tmp("feat-exclusive"), 2);
    let p = c.nodes[0].mnt.clone();
    // No -shm: the wal-index lives in the connection's heap memory.
    let out = python(
        &p,
        "import sqlite3, os\n\
         a = sqlite3.connect('x.db', isolation_level=None)\n\
         a.execute('PRAGMA locking_mode=EXCLUSIVE')\n\
         a.execute('PRAGMA journal_mode=WAL')\n\
         a.execute('CREATE TABLE t(v)')\n\
         for i in range(200):\n    a.execute('INSERT INTO t VALUES (?)', (i,))\n\
         print(os.path.exists('x.db-shm'), a.execute('SELECT count(*) FROM t').fetchone()[0])\n\
         a.close()\n",
    );
    assert_eq!(out.trim(), "False 200", "{out}");
    assert_eq!(c.sql_ok(0, "x.db", "SELECT sum(v) FROM t;").trim(), "19900");
    assert_identical(&c, "x.db");
    // And in rollback mode.
    c.sql_ok(
        0,
        "y.db",
        &format!("PRAGMA locking_mode=EXCLUSIVE; {FILL} DELETE FROM t WHERE id > 50;"),
    );
    assert_identical(&c, "y.db");
}

#[test]
fn journal_size_limit_persist_wal_and_auto_vacuum() {
    need::fuse();
    need::sqlite3();
    need::python3();
    let c = Cluster::start(&tmp("feat-limits"), 2);
    let p = c.nodes[0].mnt.clone();
    // PERSIST keeps the journal; journal_size_limit truncates it after each commit.
    c.sql_ok(
        0,
        "j.db",
        &format!("PRAGMA journal_mode=PERSIST; PRAGMA journal_size_limit=0; {FILL} DELETE FROM t;"),
    );
    let j = std::fs::metadata(p.join("j.db-journal")).map(|m| m.len()).unwrap_or(0);
    assert_eq!(j, 0, "journal_size_limit=0 leaves an empty journal");
    assert_identical(&c, "j.db");
    // WAL: the limit truncates the WAL after a checkpoint resets it.
    c.sql_ok(
        0,
        "w.db",
        &format!(
            "PRAGMA journal_mode=WAL; PRAGMA journal_size_limit=4096; {FILL} \
             PRAGMA wal_checkpoint(RESTART); INSERT INTO t(b) VALUES (1);"
        ),
    );
    assert_identical(&c, "w.db");
    // SQLITE_FCNTL_PERSIST_WAL: the WAL stays after the last connection closes.
    let mut sh = Command::new("sqlite3")
        .arg(p.join("pw.db"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    let script = format!("PRAGMA journal_mode=WAL;\n.filectrl persist_wal 1\n{FILL}\n");
    sh.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    let out = sh.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(p.join("pw.db-wal").exists(), "persist_wal keeps the -wal file");
    c.sql_ok(0, "pw.db", "INSERT INTO t(b) VALUES (2);");
    assert_eq!(c.sql_ok(0, "pw.db", "SELECT count(*) FROM t;").trim(), "401");
    assert_identical(&c, "pw.db");
    // auto_vacuum FULL shrinks the file at each commit; INCREMENTAL on request.
    for (db, av) in [("av-full.db", "FULL"), ("av-inc.db", "INCREMENTAL")] {
        c.sql_ok(0, db, &format!("PRAGMA auto_vacuum={av}; {FILL}"));
        let big = std::fs::metadata(p.join(db)).unwrap().len();
        c.sql_ok(0, db, "DELETE FROM t WHERE id > 20; PRAGMA incremental_vacuum;");
        let small = std::fs::metadata(p.join(db)).unwrap().len();
        assert!(small < big / 4, "{db}: {big} -> {small}");
        assert_identical(&c, db);
    }
}

#[test]
fn restore_backup_and_a_copied_in_file_become_databases() {
    need::fuse();
    need::sqlite3();
    need::python3();
    let root = tmp("feat-restore");
    let c = Cluster::start(&root, 2);
    let p = c.nodes[0].mnt.clone();
    let src = root.join("src.db");
    let (ok, out) = sql_at(&src, &format!("PRAGMA page_size=8192; {FILL}"));
    assert!(ok, "{out}");
    // sqlite3 .restore into a new database on the mount.
    c.sql_ok(0, "restored.db", &format!(".restore {}", src.display()));
    assert_eq!(c.sql_ok(0, "restored.db", "SELECT count(*) FROM t;").trim(), "400");
    assert_identical(&c, "restored.db");
    // And over an existing one, with other contents and another page size.
    c.sql_ok(
        0,
        "over.db",
        "PRAGMA page_size=1024; CREATE TABLE old(x); INSERT INTO old VALUES (1);",
    );
    c.sql_ok(0, "over.db", &format!(".restore {}", src.display()));
    assert_eq!(c.sql_ok(0, "over.db", "SELECT count(*) FROM t;").trim(), "400");
    assert_identical(&c, "over.db");
    // The page size changed by VACUUM, both ways.
    for ps in [65536, 512, 4096] {
        c.sql_ok(0, "restored.db", &format!("PRAGMA page_size={ps}; VACUUM;"));
        assert_eq!(c.sql_ok(0, "restored.db", "PRAGMA page_size;").trim(), ps.to_string());
        assert_identical(&c, "restored.db");
    }
    // A file copied in (one write per 128 KiB, as cp does).
    std::fs::copy(&src, p.join("copied.db")).unwrap();
    assert_eq!(c.sql_ok(0, "copied.db", "SELECT count(*) FROM t;").trim(), "400");
    assert_identical(&c, "copied.db");
    assert_eq!(c.replica_image(1, "copied.db"), std::fs::read(&src).unwrap());
}

#[test]
fn switching_journal_modes_on_a_database_with_data() {
    need::fuse();
    need::sqlite3();
    need::python3();
    // The switch to WAL rewrites header bytes 18/19 inside a rollback-journal transaction
    // whose own page 1 already says WAL: it must still be recorded (it once was not, and
    // the primary's file then differed from its position and from every replica).
    let c = Cluster::start(&tmp("feat-switch"), 2);
    for from in ["DELETE", "TRUNCATE", "PERSIST", "MEMORY", "OFF"] {
        let db = format!("s-{from}.db");
        c.sql_ok(0, &db, &format!("PRAGMA journal_mode={from}; {FILL}"));
        c.sql_ok(0, &db, "PRAGMA journal_mode=WAL; INSERT INTO t(b) VALUES (1);");
        assert_identical(&c, &db);
        c.sql_ok(0, &db, &format!("PRAGMA journal_mode={from}; INSERT INTO t(b) VALUES (2);"));
        assert_identical(&c, &db);
        let n = c.sql_ok(1, &db, "SELECT count(*) FROM t;");
        assert_eq!(n.trim(), "402", "{db} on the replica");
    }
}

#[test]
fn more_than_a_hundred_databases_all_reach_the_replica() {
    need::fuse();
    need::sqlite3();
    need::python3();
    // One QUIC stream per database: past quinn's default of 100 concurrent streams the
    // 101st database once never reached a replica.
    let c = Cluster::start(&tmp("feat-many"), 2);
    let p = c.nodes[0].mnt.clone();
    python(
        &p,
        "import sqlite3\n\
         for i in range(150):\n    d = sqlite3.connect('m%03d.db' % i)\n    \
         d.execute('CREATE TABLE t(x)'); d.execute('INSERT INTO t VALUES (?)', (i,))\n    \
         d.commit(); d.close()\n",
    );
    for i in [0, 99, 100, 101, 149] {
        let db = format!("m{i:03}.db");
        assert_identical(&c, &db);
        assert_eq!(c.sql_ok(1, &db, "SELECT x FROM t;").trim(), i.to_string());
    }
}
