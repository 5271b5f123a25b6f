//! A deposed primary's unreplicated tail is kept, never silently discarded: `n1` commits
//! while its replica is down, dies, `n2` becomes the primary and commits other
//! transactions, and `n1` rejoins as a replica. Its history is not the new primary's, so its
//! LTX files are moved under `data/diverged/<db>/…` (named in a log line), the database is
//! resynced byte-identical, and the moved files still rebuild the lost transactions.
//!
//! Two databases cover both detections: `ahead.db` (the old primary's TXID is past the new
//! primary's: the primary sends a resync snapshot) and `behind.db` (the new primary went
//! further: the old primary's position sits inside the new primary's history, where only the
//! replica's own post-apply check can see that its transactions differ).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::cluster::{Cluster, wait_for};
use crate::common::{need, tmp};

const CONVERGE: Duration = Duration::from_secs(30);

fn insert(c: &Cluster, node: usize, db: &str, tag: &str, txns: usize) {
    for _ in 0..txns {
        c.sql_ok(node, db, &format!("INSERT INTO t(tag, v) VALUES ('{tag}', randomblob(200));"));
    }
}

fn count(c: &Cluster, node: usize, db: &str, tag: &str) -> u64 {
    c.sql_ok(node, db, &format!("SELECT count(*) FROM t WHERE tag = '{tag}';"))
        .trim()
        .parse()
        .unwrap()
}

/// Makes node `to` the static primary in every node's config.
fn swap_primary(c: &Cluster, from: usize, to: usize, from_url: &str, to_url: &str) {
    for n in &c.nodes {
        let cfg = std::fs::read_to_string(&n.cfg).unwrap();
        let cfg = cfg.replace(from_url, to_url);
        let cfg = if n.name == c.nodes[to].name {
            cfg.replace("candidate: false", "candidate: true")
        } else if n.name == c.nodes[from].name {
            cfg.replace("candidate: true", "candidate: false")
        } else {
            cfg
        };
        std::fs::write(&n.cfg, cfg).unwrap();
    }
}

fn listen_url(cfg: &Path) -> String {
    let text = std::fs::read_to_string(cfg).unwrap();
    let line = text.lines().find(|l| l.trim_start().starts_with("addr:")).unwrap();
    format!("http://{}", line.split('"').nth(1).unwrap())
}

/// The LTX files set aside for `db` on a node (every directory under `diverged/<db>`).
fn set_aside(data: &Path, db: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(dirs) = std::fs::read_dir(data.join("diverged").join(db)) else { return out };
    for d in dirs.flatten() {
        for f in std::fs::read_dir(d.path()).unwrap().flatten() {
            out.push(f.path());
        }
    }
    out.sort();
    out
}

fn image(c: &Cluster, node: usize, db: &str) -> Vec<u8> {
    std::fs::read(c.nodes[node].data.join("dbs").join(db).join("database")).unwrap()
}

#[test]
fn deposed_primary_tail_is_set_aside_and_node_converges() {
    need::fuse();
    need::sqlite3();
    let root = tmp("diverge");
    let mut c = Cluster::start(&root, 2);
    let (url1, url2) = (listen_url(&c.nodes[0].cfg), listen_url(&c.nodes[1].cfg));
    for db in ["ahead.db", "behind.db"] {
        c.sql_ok(
            0,
            db,
            "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, tag TEXT, v BLOB);",
        );
        insert(&c, 0, db, "common", 10);
        c.wait_converged(db, CONVERGE);
    }

    // n1 commits with its replica down: nobody else gets these.
    c.kill_node(1);
    insert(&c, 0, "ahead.db", "tail", 20);
    insert(&c, 0, "behind.db", "tail", 5);
    let old = [c.pos(0, "ahead.db").unwrap(), c.pos(0, "behind.db").unwrap()];
    c.kill_node(0);

    // n2 takes over and commits other transactions.
    swap_primary(&c, 0, 1, &url1, &url2);
    c.start_node(1);
    wait_for("n2 writable", CONVERGE, || {
        c.sql(1, "ahead.db", "INSERT INTO t(tag) VALUES ('probe');").0
    });
    insert(&c, 1, "ahead.db", "new", 3);
    insert(&c, 1, "behind.db", "new", 30);
    let new = [c.pos(1, "ahead.db").unwrap(), c.pos(1, "behind.db").unwrap()];
    assert!(old[0].txid > new[0].txid && old[1].txid < new[1].txid, "{old:?} {new:?}");

    // n1 rejoins as a replica.
    c.start_node(0);
    for (i, db) in ["ahead.db", "behind.db"].into_iter().enumerate() {
        wait_for(&format!("n1 to resync {db}"), CONVERGE, || c.pos(0, db) == Some(new[i]));
        assert_eq!(count(&c, 0, db, "tail"), 0, "{db}: the new primary's history wins");
        c.sql_ok(1, db, "PRAGMA wal_checkpoint(TRUNCATE);");
        let want = c.pos(1, db).unwrap();
        wait_for(&format!("n1 at {want} on {db}"), CONVERGE, || c.pos(0, db) == Some(want));
        assert!(image(&c, 0, db) == image(&c, 1, db), "{db}: bytes differ");
        assert_eq!(c.sql_ok(0, db, "PRAGMA integrity_check;").trim(), "ok");

        // The old primary's files are kept and rebuild its tail.
        let files = set_aside(&c.nodes[0].data, db);
        assert!(!files.is_empty(), "{db}: nothing set aside");
        let out = root.join(format!("rebuilt-{db}"));
        let st = Command::new(env!("CARGO_BIN_EXE_litefleet"))
            .args(["ltx", "apply", "--out"])
            .arg(&out)
            .args(&files)
            .output()
            .unwrap();
        assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
        let rebuilt = Command::new("sqlite3")
            .arg(&out)
            .arg("SELECT count(*) FROM t WHERE tag = 'tail';")
            .output()
            .unwrap();
        let want_tail = if db == "ahead.db" { "20" } else { "5" };
        assert_eq!(String::from_utf8_lossy(&rebuilt.stdout).trim(), want_tail, "{db}");
    }
    let log = c.log(0);
    assert!(log.contains("its LTX files were moved aside"), "no log line naming the files");
    // The new primary is still the only writer.
    let (ok, text) = c.sql(0, "ahead.db", "INSERT INTO t(tag) VALUES ('x');");
    assert!(!ok && text.contains("readonly"), "{text}");
}
