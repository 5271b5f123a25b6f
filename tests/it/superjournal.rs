//! Multi-database transactions (SQLite's super-journal, `<db>-mj…`) on a real two-node
//! cluster: one transaction writing two attached databases commits in every rollback
//! journal mode that uses a super-journal, stays atomic on the primary across kill -9 of
//! the node at pseudo-random points, and arrives on the replica as one transaction per
//! database (each on its own stream); both databases end byte-identical.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::cluster::{Cluster, wait_for};
use crate::common::{need, tmp};

const CONVERGE: Duration = Duration::from_secs(30);
const MODES: [&str; 3] = ["DELETE", "TRUNCATE", "PERSIST"];

fn assert_identical(c: &Cluster, db: &str) {
    c.wait_identical(1, db, CONVERGE);
}

/// Python's sqlite3 (the system's SQLite) in the mount: `script` with `a` the connection to
/// a.db, b.db attached as `b`, both in `mode`.
fn python(dir: &std::path::Path, mode: &str, script: &str) -> Command {
    let mut cmd = Command::new("python3");
    cmd.current_dir(dir).arg("-c").arg(format!(
        "import sqlite3, sys\n\
         a = sqlite3.connect('a.db', isolation_level=None, timeout=10)\n\
         a.execute(\"ATTACH 'b.db' AS b\")\n\
         a.execute('PRAGMA main.journal_mode={mode}')\n\
         a.execute('PRAGMA b.journal_mode={mode}')\n\
         {script}\n"
    ));
    cmd
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    text
}

fn leftovers(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("-mj"))
        .collect()
}

#[test]
fn a_transaction_over_two_databases_commits_in_every_rollback_mode() {
    need::fuse();
    need::sqlite3();
    need::python3();
    let c = Cluster::start(&tmp("superjournal-modes"), 2);
    let p = c.nodes[0].mnt.clone();
    run(&mut python(
        &p,
        "DELETE",
        "a.execute('CREATE TABLE t(v)'); a.execute('CREATE TABLE b.t(v)')\n\
         a.execute('INSERT INTO t VALUES (0)'); a.execute('INSERT INTO b.t VALUES (0)')",
    ));
    for (i, mode) in MODES.iter().enumerate() {
        let before = (c.pos(0, "a.db").unwrap().txid, c.pos(0, "b.db").unwrap().txid);
        run(&mut python(
            &p,
            mode,
            "a.execute('BEGIN')\n\
             a.execute('UPDATE t SET v = v + 1'); a.execute('UPDATE b.t SET v = v + 1')\n\
             a.execute('COMMIT')",
        ));
        let n = (i + 1).to_string();
        assert_eq!(c.sql_ok(0, "a.db", "SELECT v FROM t;").trim(), n, "{mode}");
        assert_eq!(c.sql_ok(0, "b.db", "SELECT v FROM t;").trim(), n, "{mode}");
        // One transaction on each database's own stream; the super-journal is node-local
        // and gone after the commit.
        let after = (c.pos(0, "a.db").unwrap().txid, c.pos(0, "b.db").unwrap().txid);
        assert!(after.0 > before.0 && after.1 > before.1, "{mode}: {before:?} -> {after:?}");
        assert_eq!(leftovers(&p), Vec::<String>::new(), "{mode}");
        for db in ["a.db", "b.db"] {
            assert_identical(&c, db);
        }
        assert_eq!(c.sql_ok(1, "b.db", "SELECT v FROM t;").trim(), n, "{mode} on the replica");
    }
    let dbs: Vec<String> = std::fs::read_dir(c.nodes[0].data.join("dbs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!dbs.iter().any(|n| n.contains("-mj")), "a super-journal became a database: {dbs:?}");
}

/// xorshift: reproducible kill points.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn a_transaction_over_two_databases_is_atomic_across_kill_9_of_the_node() {
    need::fuse();
    need::sqlite3();
    need::python3();
    let mut c = Cluster::start(&tmp("superjournal-crash"), 2);
    let p = c.nodes[0].mnt.clone();
    run(&mut python(
        &p,
        "DELETE",
        "a.execute('CREATE TABLE t(v)'); a.execute('CREATE TABLE b.t(v)')\n\
         a.execute('INSERT INTO t VALUES (0)'); a.execute('INSERT INTO b.t VALUES (0)')",
    ));
    let mut seed: u64 =
        std::env::var("SUPERJOURNAL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_2026);
    let mut acked = 0u64;
    let journal = c.nodes[0].data.join("dbs/a.db/journal");
    for round in 0..12 {
        let mode = MODES[round % MODES.len()];
        // The writer prints the value after each acknowledged commit.
        let mut w = python(
            &p,
            mode,
            "while True:\n    a.execute('BEGIN')\n    a.execute('UPDATE t SET v = v + 1')\n    \
             a.execute('UPDATE b.t SET v = v + 1')\n    a.execute('COMMIT')\n    \
             print(a.execute('SELECT v FROM t').fetchone()[0], flush=True)",
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        let kill_after = 5 + next(&mut seed) % 40;
        let mut lines = BufReader::new(w.stdout.take().unwrap()).lines();
        for _ in 0..kill_after {
            let v: u64 = lines.next().unwrap().unwrap().trim().parse().unwrap();
            acked = acked.max(v);
        }
        if round % 2 == 0 {
            // The kill point: a pseudo-random moment inside the next few transactions.
            std::thread::sleep(Duration::from_micros(next(&mut seed) % 6000));
        } else {
            // The kill point: a transaction seen open (a.db's journal carries its magic).
            // Random moments alone missed every open transaction in some runs on a loaded
            // machine, and then the test proved nothing about recovery.
            wait_for("an open transaction on a.db", CONVERGE, || journal_is_hot(&journal));
        }
        c.kill_node(0);
        // What the writer printed before it saw the mount go.
        for l in lines.map_while(Result::ok) {
            acked = acked.max(l.trim().parse().unwrap_or(0));
        }
        let _ = w.wait();
        c.start_node(0);
        wait_for("the restarted mount", CONVERGE, || p.join(".lag").exists());
        let out = run(&mut python(
            &p,
            mode,
            "print(a.execute('SELECT v FROM t').fetchone()[0], \
             a.execute('SELECT v FROM b.t').fetchone()[0])",
        ));
        let v: Vec<u64> = out.split_whitespace().map(|x| x.parse().unwrap()).collect();
        assert_eq!(v[0], v[1], "round {round} ({mode}): a and b disagree: {out}");
        assert!(v[0] >= acked, "round {round} ({mode}): acknowledged {acked}, found {}", v[0]);
        acked = v[0];
    }
    // The kills must have cut transactions open: recovery played a journal back (the
    // super-journal still there) or kept a committed one (it was gone).
    let log = c.log(0);
    let (rolled, kept) = (
        log.matches("rolling back hot journal").count(),
        log.matches("journal of a committed multi-database transaction").count(),
    );
    eprintln!("recovery: {rolled} journals rolled back, {kept} committed ones kept");
    assert!(rolled + kept > 0, "no kill landed inside a transaction");
    for db in ["a.db", "b.db"] {
        assert_identical(&c, db);
    }
    let r = c.sql_ok(1, "a.db", "SELECT v FROM t;");
    assert_eq!(r.trim(), c.sql_ok(1, "b.db", "SELECT v FROM t;").trim());
}

/// Whether the journal at `path` starts with the rollback journal's magic: a transaction
/// is open (between transactions it is gone, empty, or has a zeroed header).
fn journal_is_hot(path: &std::path::Path) -> bool {
    use std::io::Read;
    let mut b = [0u8; 8];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut b)).is_ok()
        && b == litefleet::core::sqlite::JOURNAL_MAGIC
}
