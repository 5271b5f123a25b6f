//! `GET /export` and `POST /import` (and `litefleet export` / `litefleet import`) on real
//! processes: an export is a valid SQLite file at one position, taken while a writer
//! commits, and byte-identical to the database at that position; an import replaces a
//! database that the replicas then serve; bad uploads, a replica, long readers and a full
//! disk get clear status codes and leave the database as it was.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::cluster::{Cluster, sql_at, wait_for};
use crate::common::http::{self, Method};
use crate::common::{need, replay, tmp};

const CONVERGE: Duration = Duration::from_secs(30);

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_litefleet")).args(args).output().unwrap()
}

/// A database file of `rows` rows of 100 random bytes, in `mode`.
fn make_db(path: &Path, rows: u32, mode: &str) {
    let _ = std::fs::remove_file(path);
    let (ok, out) = sql_at(
        path,
        &format!(
            "PRAGMA journal_mode={mode}; CREATE TABLE t(x); WITH RECURSIVE c(i) AS (SELECT 1 \
             UNION ALL SELECT i+1 FROM c WHERE i<{rows}) INSERT INTO t SELECT randomblob(100) \
             FROM c; PRAGMA wal_checkpoint(TRUNCATE);"
        ),
    );
    assert!(ok, "{out}");
}

fn txid_header(r: &http::Resp) -> u64 {
    u64::from_str_radix(&r.header("litefleet-txid").expect("litefleet-txid"), 16).unwrap()
}

#[test]
fn exports_are_consistent_under_load_and_identical_at_their_position() {
    need::fuse();
    need::sqlite3();
    let root = tmp("export");
    let c = Cluster::start(&root, 2);
    c.sql_ok(0, "e.db", "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v);");
    let base = c.wait_all_at(0, "e.db", CONVERGE).txid.0;
    // A writer commits one row per transaction while exports are taken.
    let mut writer = Command::new("sqlite3")
        .arg(c.db(0, "e.db"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut w = writer.stdin.take().unwrap();
    let rows = 3000;
    let feeder = std::thread::spawn(move || {
        for i in 1..=rows {
            writeln!(w, "INSERT INTO t(v) VALUES (randomblob(200));").unwrap();
            if i % 100 == 0 {
                w.flush().unwrap();
            }
        }
    });
    for i in 0..5 {
        let r = http::get(&c.nodes[i % 2].url("/export?name=e.db"));
        assert_eq!(r.status, 200, "{}", r.text());
        let txid = txid_header(&r);
        let f = root.join(format!("export-{i}.db"));
        std::fs::write(&f, &r.body).unwrap();
        assert_eq!(sql_at(&f, "PRAGMA integrity_check;").1.trim(), "ok");
        // One row per transaction after the table's: the file is the database at `txid`.
        let n: u64 = sql_at(&f, "SELECT count(*) FROM t;").1.trim().parse().unwrap();
        assert_eq!(n, txid - base, "export {i} at TXID {txid}");
    }
    feeder.join().unwrap();
    drop(writer.stdin.take());
    assert!(writer.wait().unwrap().success());
    let pos = c.wait_all_at(0, "e.db", CONVERGE);
    // At rest: primary and replica export the same bytes, which are the LTX chain's replay.
    let a = http::get(&c.nodes[0].url("/export?name=e.db"));
    let b = http::get(&c.nodes[1].url("/export?name=e.db"));
    assert_eq!(txid_header(&a), pos.txid.0);
    assert_eq!(txid_header(&b), pos.txid.0);
    assert!(a.body == b.body, "the replica's export differs from the primary's");
    c.sql_ok(0, "e.db", "PRAGMA wal_checkpoint(TRUNCATE);");
    let (image, at) = replay(&c.nodes[0].data, "e.db");
    assert_eq!(at, pos);
    assert!(a.body == image, "the export differs from the LTX chain's replay at {pos}");
    assert!(a.header("litefleet-locked-ms").is_some());

    // The CLI writes the same file (and removes a stale -wal beside it).
    let out = root.join("cli.db");
    std::fs::write(root.join("cli.db-wal"), b"stale").unwrap();
    let url = c.nodes[1].url("");
    let o = cli(&["export", "-name", "e.db", "-url", &url, out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read(&out).unwrap() == a.body);
    assert!(!root.join("cli.db-wal").exists());
    assert!(!root.join("cli.db.tmp").exists());

    // Unknown databases and bad names.
    assert_eq!(http::get(&c.nodes[0].url("/export?name=nope.db")).status, 404);
    assert_eq!(http::get(&c.nodes[0].url("/export?name=..%2Fx")).status, 400);
    assert_eq!(http::get(&c.nodes[0].url("/export")).status, 400);
}

#[test]
fn imports_replace_a_database_that_replicas_serve_and_bad_uploads_change_nothing() {
    need::fuse();
    need::sqlite3();
    let root = tmp("import");
    let c = Cluster::start(&root, 2);
    c.sql_ok(0, "i.db", "CREATE TABLE old(x); INSERT INTO old VALUES (1);");
    let before = c.wait_all_at(0, "i.db", CONVERGE);
    let snapshot = |i: usize| http::get(&c.nodes[i].url("/export?name=i.db")).body;
    let old = snapshot(0);

    // Bad uploads: 400 with the reason, the database unchanged.
    let good = root.join("good.db");
    make_db(&good, 20_000, "DELETE");
    let bytes = std::fs::read(&good).unwrap();
    let mut wrong_ps = bytes.clone();
    wrong_ps[16..18].copy_from_slice(&1000u16.to_be_bytes());
    let mut corrupt = bytes.clone();
    for b in &mut corrupt[4096 * 40..4096 * 40 + 600] {
        *b = 0xff;
    }
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "i.db",
            b"this is not a database at all, not even close............".repeat(3),
            "not a SQLite",
        ),
        ("i.db", bytes[..bytes.len() - 1000].to_vec(), "whole number"),
        ("i.db", bytes[..4096 * 10].to_vec(), "header says"),
        ("i.db", wrong_ps, "page size"),
        ("i.db", corrupt, "integrity_check"),
        ("i.db", Vec::new(), "empty"),
        ("a%2Fb.db", bytes.clone(), "'/'"),
        ("..", bytes.clone(), "'..'"),
        ("i.db-wal", bytes.clone(), "not a database name"),
    ];
    for (name, body, why) in cases {
        let r = http::post(&c.nodes[0].url(&format!("/import?name={name}")), body);
        assert_eq!(r.status, 400, "{name}: {}", r.text());
        assert!(r.text().contains(why), "{name}: {:?} lacks {why:?}", r.text());
        assert_eq!(c.pos(0, "i.db"), Some(before), "{name}: the database changed");
    }
    assert!(snapshot(0) == old);

    // On a replica: 503 naming the primary.
    let r = http::post(&c.nodes[1].url("/import?name=i.db"), bytes.clone());
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("n1"), "{}", r.text());

    // The CLI imports; the replica serves the new database at the same position.
    let url = c.nodes[0].url("");
    let o = cli(&["import", "-name", "i.db", "-url", &url, good.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let pos = c.wait_all_at(0, "i.db", CONVERGE);
    assert_eq!(pos.txid.0, before.txid.0 + 1, "one transaction: {stdout}");
    assert!(stdout.contains(&format!("{:016x}", pos.txid.0)), "{stdout}");
    assert_eq!(c.sql_ok(1, "i.db", "SELECT count(*) FROM t;").trim(), "20000");
    assert!(!c.sql(1, "i.db", "SELECT * FROM old;").0, "the old table is gone");
    assert_eq!(c.sql_ok(1, "i.db", "PRAGMA integrity_check;").trim(), "ok");
    assert!(snapshot(0) == snapshot(1), "primary and replica differ after the import");
    // A new database, in WAL mode, over plain HTTP.
    let wal = root.join("wal.db");
    make_db(&wal, 500, "WAL");
    let r = http::post(&c.nodes[0].url("/import?name=new.db"), std::fs::read(&wal).unwrap());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["txID"], format!("{:016x}", 1));
    c.wait_all_at(0, "new.db", CONVERGE);
    assert_eq!(c.sql_ok(1, "new.db", "SELECT count(*) FROM t;").trim(), "500");
    // A WAL database keeps its page size: another one is 409, nothing changed.
    assert_eq!(c.sql_ok(0, "new.db", "PRAGMA journal_mode;").trim(), "wal");
    let at = c.pos(0, "new.db");
    let big_pages = root.join("8k.db");
    let _ = std::fs::remove_file(&big_pages);
    let (ok, out) =
        sql_at(&big_pages, "PRAGMA page_size=8192; CREATE TABLE t(x); INSERT INTO t VALUES (1);");
    assert!(ok, "{out}");
    let r = http::post(&c.nodes[0].url("/import?name=new.db"), std::fs::read(&big_pages).unwrap());
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("page size"), "{}", r.text());
    assert_eq!(c.pos(0, "new.db"), at);
    assert_eq!(c.sql_ok(0, "new.db", "SELECT count(*) FROM t;").trim(), "500");
}

#[test]
fn an_import_waits_for_readers_and_a_full_disk_loses_nothing() {
    need::fuse();
    need::sqlite3();
    need::python3();
    let root = tmp("import-busy");
    // The whole cluster on a small file system, so an upload can fill it.
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=48m", "tmpfs"])
        .arg(&root)
        .status()
        .unwrap();
    assert!(st.success(), "mounting a tmpfs at {}", root.display());
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _tmpfs = Unmount(root.clone());
    let c = Cluster::start(&root, 1);
    c.sql_ok(
        0,
        "r.db",
        "PRAGMA journal_mode=DELETE; CREATE TABLE old(x); INSERT INTO old VALUES (1);",
    );
    let before = c.pos(0, "r.db").unwrap();
    let upload = std::env::temp_dir().join(format!("litefleet-upload-{}.db", std::process::id()));
    make_db(&upload, 2_000, "DELETE");
    let bytes = std::fs::read(&upload).unwrap();
    let _ = std::fs::remove_file(&upload);

    // A reader holds a read transaction (rollback-journal mode: the import's write lock
    // waits for it): 409 after the busy timeout, nothing changed.
    let script = "import sqlite3, sys\n\
        con = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
        con.execute('BEGIN'); con.execute('SELECT count(*) FROM old').fetchall()\n\
        print('reading', flush=True); sys.stdin.readline()\n\
        con.execute('COMMIT')\n";
    let mut reader = Command::new("python3")
        .args(["-c", script])
        .arg(c.db(0, "r.db"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(reader.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "reading");
    let r = http::post(&c.nodes[0].url("/import?name=r.db&busy-timeout=500ms"), bytes.clone());
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("busy"), "{}", r.text());
    assert_eq!(c.pos(0, "r.db"), Some(before));
    // The reader ends: the same import goes in.
    drop(reader.stdin.take());
    assert!(reader.wait().unwrap().success());
    let r = http::post(&c.nodes[0].url("/import?name=r.db"), bytes.clone());
    assert_eq!(r.status, 200, "{}", r.text());
    let after = c.pos(0, "r.db").unwrap();
    assert_eq!(after.txid.0, before.txid.0 + 1);

    // An upload larger than the free space: 507, the database and the disk as they were.
    let big = vec![0u8; 64 << 20];
    let r = http::request(Method::POST, &c.nodes[0].url("/import?name=r.db"), &[], big).unwrap();
    assert_eq!(r.status, 507, "{}", r.text());
    assert!(r.text().contains("No space left"), "{}", r.text());
    assert_eq!(c.pos(0, "r.db"), Some(after));
    let leftovers: Vec<_> = std::fs::read_dir(&c.nodes[0].data)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".transfer-"))
        .collect();
    assert!(leftovers.is_empty(), "spool files left: {leftovers:?}");
    // The node goes on: a commit after it.
    c.sql_ok(0, "r.db", "INSERT INTO t VALUES (randomblob(10));");
    wait_for("the commit after the full disk", CONVERGE, || {
        c.pos(0, "r.db").is_some_and(|p| p.txid.0 == after.txid.0 + 1)
    });
    drop(c);
}
