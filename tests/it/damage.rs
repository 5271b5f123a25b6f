//! Nothing acknowledged is lost whatever happens to one node's disk: damaged or missing LTX
//! files, writes that bypass SQLite, a database page flipped behind litefleet's back, a
//! database file that is gone. Each test runs a static primary `n1` and a replica `n2` as
//! real `litefleet mount` processes, damages files in a data directory, and checks that
//! every row the primary acknowledged and the replica held is still on both, that the log
//! says what happened, and that the other database keeps working.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::cluster::{Cluster, wait_for};
use crate::common::{need, tmp};

const CONVERGE: Duration = Duration::from_secs(30);

fn insert(c: &Cluster, node: usize, db: &str, tag: &str, txns: usize) {
    for _ in 0..txns {
        c.sql_ok(node, db, &format!("INSERT INTO t(tag, v) VALUES ('{tag}', randomblob(300));"));
    }
}

fn count(c: &Cluster, node: usize, db: &str) -> u64 {
    c.sql_ok(node, db, "SELECT count(*) FROM t;").trim().parse().unwrap()
}

fn create(c: &Cluster, db: &str, mode: &str) {
    c.sql_ok(
        0,
        db,
        &format!(
            "PRAGMA journal_mode={mode}; CREATE TABLE t(id INTEGER PRIMARY KEY, tag TEXT, v BLOB);"
        ),
    );
}

fn ltx_dir(c: &Cluster, node: usize, db: &str) -> PathBuf {
    c.nodes[node].data.join("dbs").join(db).join("ltx")
}

/// LTX files of `db` on `node`, oldest first (by max TXID, as litefleet orders them).
fn ltx_files(c: &Cluster, node: usize, db: &str) -> Vec<PathBuf> {
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(ltx_dir(c, node, db))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "ltx"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            // min-max.ltx: order by max, then min.
            let (min, max) = name.trim_end_matches(".ltx").split_once('-').unwrap();
            (format!("{max}{min}"), p)
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, p)| p).collect()
}

fn flip(path: &Path, at: u64) {
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x5a;
    f.write_all_at(&b, at).unwrap();
    f.sync_all().unwrap();
}

fn truncate_half(path: &Path) {
    let len = std::fs::metadata(path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(path).unwrap().set_len(len / 2).unwrap();
}

/// Flips a byte in page `pgno` of a database file and puts its mtime back.
fn flip_page_keep_mtime(path: &Path, pgno: u64) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap();
    let (s, ns) = (m.mtime(), m.mtime_nsec());
    flip(path, (pgno - 1) * 4096 + 2000);
    let st = Command::new("touch")
        .arg("-m")
        .arg("-d")
        .arg(format!("@{s}.{ns:09}"))
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
    let m2 = std::fs::metadata(path).unwrap();
    assert_eq!((m2.mtime(), m2.mtime_nsec()), (s, ns), "mtime restored");
}

fn db_file(c: &Cluster, node: usize, db: &str) -> PathBuf {
    c.nodes[node].data.join("dbs").join(db).join("database")
}

fn diverged(c: &Cluster, node: usize) -> bool {
    c.nodes[node].data.join("diverged").exists()
}

/// `litefleet verify --config` of (stopped) node `i`: (exit 0, output).
fn verify(c: &Cluster, i: usize) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_litefleet"))
        .args(["verify", "--config"])
        .arg(&c.nodes[i].cfg)
        .output()
        .unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// How often node `i` started following the primary (one line per session).
fn sessions(c: &Cluster, i: usize) -> usize {
    c.log(i).matches("following the primary").count()
}

#[test]
fn damaged_newest_ltx_on_the_primary_is_rebuilt_from_its_database() {
    need::fuse();
    need::sqlite3();
    let root = tmp("damage-newest");
    let mut c = Cluster::start(&root, 2);
    for db in ["a.db", "b.db"] {
        create(&c, db, "DELETE");
        insert(&c, 0, db, "x", 6);
    }
    let want = c.wait_all_at(0, "a.db", CONVERGE);
    c.wait_all_at(0, "b.db", CONVERGE);

    // The primary stops cleanly; its newest file of a.db is cut in half afterwards.
    c.stop_node(0);
    let newest = ltx_files(&c, 0, "a.db").pop().unwrap();
    truncate_half(&newest);
    c.start_node(0);
    wait_for("n1 serving a.db", CONVERGE, || c.pos(0, "a.db").is_some());

    // The database file is the authority: no transaction is rolled back, nobody resynced.
    assert_eq!(c.pos(0, "a.db"), Some(want), "the primary kept its position");
    let log = c.log(0);
    assert!(log.contains("LTX file is damaged"), "damage named as such:\n{log}");
    assert!(!log.contains("is torn"), "a clean shutdown's file is not called torn");
    assert!(log.contains("wrote a snapshot LTX file at that position"), "{log}");
    assert!(newest.with_extension("ltx.damaged").exists(), "the damaged file is kept aside");
    insert(&c, 0, "a.db", "after", 3);
    insert(&c, 0, "b.db", "after", 3);
    let a = c.wait_all_at(0, "a.db", CONVERGE);
    c.wait_all_at(0, "b.db", CONVERGE);
    assert_eq!(count(&c, 1, "a.db"), 9);
    assert_eq!(count(&c, 1, "b.db"), 9);
    assert!(!diverged(&c, 1), "the replica's history was never set aside");
    assert!(!c.log(1).contains("resync"), "the replica was not resynced");

    // And it survives another restart from the rebuilt history.
    c.stop_node(0);
    c.start_node(0);
    wait_for("n1 back", CONVERGE, || c.pos(0, "a.db") == Some(a));
    assert_eq!(c.sql_ok(0, "a.db", "PRAGMA integrity_check;").trim(), "ok");
}

#[test]
fn a_corrupt_ltx_file_gets_a_lagging_replica_a_snapshot() {
    need::fuse();
    need::sqlite3();
    let root = tmp("damage-flip");
    let mut c = Cluster::start(&root, 2);
    for db in ["a.db", "b.db"] {
        create(&c, db, "WAL");
        insert(&c, 0, db, "x", 3);
        c.wait_all_at(0, db, CONVERGE);
    }
    // The replica falls behind; the primary's newest file of a.db gets a flipped bit.
    c.stop_node(1);
    insert(&c, 0, "a.db", "lag", 5);
    c.stop_node(0);
    let newest = ltx_files(&c, 0, "a.db").pop().unwrap();
    let len = std::fs::metadata(&newest).unwrap().len();
    flip(&newest, len / 2);
    c.start_node(0);
    let before = sessions(&c, 1);
    c.start_node(1);

    let want = c.pos(0, "a.db").unwrap();
    wait_for("n2 to catch up on a.db", CONVERGE, || c.pos(1, "a.db") == Some(want));
    assert_eq!(count(&c, 1, "a.db"), 8);
    let log = c.log(0);
    assert!(log.contains("LTX file on disk is damaged"), "the primary names the file:\n{log}");
    assert!(log.contains("sending a snapshot"), "{log}");
    // The other database advances too, and the replica did not loop.
    insert(&c, 0, "b.db", "y", 2);
    c.wait_all_at(0, "b.db", CONVERGE);
    assert!(sessions(&c, 1) - before <= 2, "replica reconnected {} times", sessions(&c, 1));
    assert!(c.primary_image("a.db") == c.replica_image(1, "a.db"));
}

#[test]
fn writes_that_bypass_sqlite_become_replicated_transactions() {
    need::fuse();
    need::sqlite3();
    let root = tmp("damage-dd");
    let mut c = Cluster::start(&root, 2);
    create(&c, "a.db", "DELETE");
    insert(&c, 0, "a.db", "old", 2);
    create(&c, "b.db", "DELETE");
    insert(&c, 0, "b.db", "x", 2);
    c.wait_all_at(0, "a.db", CONVERGE);
    c.wait_all_at(0, "b.db", CONVERGE);

    // A database made elsewhere, copied over a.db with dd.
    let src = root.join("src.db");
    let (ok, text) = crate::common::cluster::sql_at(
        &src,
        "CREATE TABLE t(id INTEGER PRIMARY KEY, tag TEXT, v BLOB); \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50) \
         INSERT INTO t(tag, v) SELECT 'copied', randomblob(300) FROM n;",
    );
    assert!(ok, "{text}");
    let before = c.pos(0, "a.db").unwrap();
    let dd = Command::new("dd")
        .arg(format!("if={}", src.display()))
        .arg(format!("of={}", c.db(0, "a.db").display()))
        .args(["bs=4096", "conv=fsync"])
        .output()
        .unwrap();
    assert!(dd.status.success(), "{}", String::from_utf8_lossy(&dd.stderr));
    // dd's fsync made the writes a transaction before it returned.
    let p = c.pos(0, "a.db").unwrap();
    assert!(p.txid.0 > before.txid.0 + 1, "a deletion (O_TRUNC), then the writes: {p}");
    wait_for("n2 to get the copied database", CONVERGE, || c.pos(1, "a.db") == c.pos(0, "a.db"));
    assert_eq!(count(&c, 1, "a.db"), 50, "the replica has the copied rows");
    assert!(c.primary_image("a.db") == c.replica_image(1, "a.db"));

    // `cp` of a database file onto the mount (writes of many pages at once) replicates too.
    let cp = Command::new("cp").arg(&src).arg(c.db(0, "c.db")).output().unwrap();
    assert!(cp.status.success(), "{}", String::from_utf8_lossy(&cp.stderr));
    wait_for("n2 to get the copied c.db", CONVERGE, || {
        c.pos(1, "c.db").is_some_and(|p| p.txid.0 > 0) && c.pos(1, "c.db") == c.pos(0, "c.db")
    });
    assert_eq!(count(&c, 1, "c.db"), 50);

    // It survives restarts (twice), and every other database with it.
    for _ in 0..2 {
        c.stop_node(0);
        c.start_node(0);
        assert_eq!(count(&c, 0, "a.db"), 50);
        assert_eq!(count(&c, 0, "b.db"), 2);
    }

    // Random pages written into the middle: the replica gets exactly the same bytes.
    let junk = root.join("junk");
    std::fs::write(&junk, vec![0xa5u8; 8192]).unwrap();
    let before = c.pos(0, "a.db").unwrap();
    let dd = Command::new("dd")
        .arg(format!("if={}", junk.display()))
        .arg(format!("of={}", c.db(0, "a.db").display()))
        .args(["bs=4096", "seek=1", "conv=notrunc"])
        .output()
        .unwrap();
    assert!(dd.status.success(), "{}", String::from_utf8_lossy(&dd.stderr));
    // No fsync: the close (FUSE release, answered after close returned) records them.
    wait_for("-pos to move", CONVERGE, || c.pos(0, "a.db") != Some(before));
    wait_for("n2 to get the junk", CONVERGE, || c.pos(1, "a.db") == c.pos(0, "a.db"));
    let img = std::fs::read(db_file(&c, 0, "a.db")).unwrap();
    assert!(img == c.replica_image(1, "a.db"), "the nodes hold the same bytes");
    assert!(img[4096..8192].iter().all(|&b| b == 0xa5));

    // Truncation replicates at once (to zero bytes: a deletion).
    let st = Command::new("truncate").args(["-s", "0"]).arg(c.db(0, "b.db")).status().unwrap();
    assert!(st.success());
    let p = c.pos(0, "b.db").unwrap();
    wait_for("n2 to see the truncation", CONVERGE, || c.pos(1, "b.db") == Some(p));
    assert!(c.log(0).contains("recorded as its deletion"));
    // The same name takes a new database.
    create(&c, "b.db", "DELETE");
    insert(&c, 0, "b.db", "new", 1);
    c.wait_all_at(0, "b.db", CONVERGE);
    assert_eq!(count(&c, 1, "b.db"), 1);
}

#[test]
fn a_write_beside_a_wal_that_holds_newer_pages_is_refused() {
    need::fuse();
    need::sqlite3();
    let root = tmp("damage-wal");
    let c = Cluster::start(&root, 2);
    create(&c, "w.db", "WAL");
    insert(&c, 0, "w.db", "x", 3);
    // An open connection keeps the WAL's frames (no checkpoint at close).
    let conn = rusqlite::Connection::open(c.db(0, "w.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    conn.execute("INSERT INTO t(tag) VALUES ('held')", []).unwrap();
    let junk = root.join("junk");
    std::fs::write(&junk, vec![0x11u8; 4096]).unwrap();
    // A page beyond what the WAL holds: not a checkpoint write.
    let dd = Command::new("dd")
        .arg(format!("if={}", junk.display()))
        .arg(format!("of={}", c.db(0, "w.db").display()))
        .args(["bs=4096", "seek=40", "conv=notrunc"])
        .output()
        .unwrap();
    assert!(!dd.status.success(), "refused");
    let err = String::from_utf8_lossy(&dd.stderr);
    assert!(err.contains("Operation not permitted"), "{err}");
    assert!(c.log(0).contains("outside a SQLite transaction while its WAL holds newer pages"));
    drop(conn);
    c.wait_all_at(0, "w.db", CONVERGE);
    assert_eq!(count(&c, 1, "w.db"), 4);
    assert_eq!(c.sql_ok(0, "w.db", "PRAGMA integrity_check;").trim(), "ok");
}

#[test]
fn a_flipped_page_is_found_and_a_replica_repairs_itself() {
    need::fuse();
    need::sqlite3();
    let root = tmp("damage-scrub");
    let mut c = Cluster::start_with(&root, 2, "  scrub-interval: 1s\n");
    for db in ["a.db", "b.db"] {
        create(&c, db, "DELETE");
        insert(&c, 0, db, "x", 8);
        c.wait_all_at(0, db, CONVERGE);
    }
    // On the stopped replica, mtime put back: the checksum cache must not vouch for it.
    c.stop_node(1);
    flip_page_keep_mtime(&db_file(&c, 1, "a.db"), 2);
    let (ok, out) = verify(&c, 1);
    assert!(!ok && out.contains("differs from its position"), "{out}");
    c.start_node(1);
    let want = c.pos(0, "a.db").unwrap();
    wait_for("n2 repaired at start", CONVERGE, || {
        c.pos(1, "a.db") == Some(want) && c.primary_image("a.db") == c.replica_image(1, "a.db")
    });
    assert!(c.log(1).contains("files changed since the checksum cache was written"));

    // On the running replica, behind its back: the scheduled scrub finds it.
    flip(&db_file(&c, 1, "a.db"), 4096 + 3000);
    wait_for("the replica's scrub to repair a.db", CONVERGE, || {
        c.primary_image("a.db") == c.replica_image(1, "a.db")
    });
    assert!(c.log(1).contains("scrub: database differs from its position"), "{}", c.log(1));
    assert_eq!(count(&c, 1, "a.db"), 8);

    // An LTX file damaged at rest on the running primary (written a minute ago, so it has
    // settled): the scrub moves it aside.
    let files = ltx_files(&c, 0, "a.db");
    let victim = files[files.len() / 2].clone();
    flip(&victim, std::fs::metadata(&victim).unwrap().len() / 2);
    let st = Command::new("touch").args(["-m", "-d", "1 minute ago"]).arg(&victim).status();
    assert!(st.unwrap().success());
    wait_for("the scrub to set the LTX file aside", CONVERGE, || {
        victim.with_extension("ltx.damaged").exists()
    });
    assert!(c.log(0).contains("scrub: LTX file is damaged"));

    // On the running primary: writes to that database are refused, the others go on.
    flip(&db_file(&c, 0, "b.db"), 4096 + 3000);
    wait_for("the primary's scrub to find b.db", CONVERGE, || {
        c.log(0).contains("scrub: database differs from its position")
    });
    let (ok, text) = c.sql(0, "b.db", "INSERT INTO t(tag) VALUES ('refused');");
    assert!(!ok, "a damaged database refuses writes: {text}");
    insert(&c, 0, "a.db", "more", 1);
    c.wait_all_at(0, "a.db", CONVERGE);
    assert_eq!(count(&c, 1, "b.db"), 8, "the replica keeps its intact copy");
}

#[test]
fn a_database_that_fails_recovery_is_quarantined_and_the_node_serves_the_rest() {
    need::fuse();
    need::sqlite3();
    let root = tmp("damage-missing");
    let mut c = Cluster::start(&root, 2);
    for db in ["a.db", "b.db"] {
        create(&c, db, "DELETE");
        insert(&c, 0, db, "x", 4);
        c.wait_all_at(0, db, CONVERGE);
    }
    c.stop_node(0);
    c.stop_node(1);
    std::fs::remove_file(db_file(&c, 0, "a.db")).unwrap();
    // `litefleet verify` on the stopped nodes says so, and only for that database.
    let (ok, out) = verify(&c, 0);
    assert!(!ok, "{out}");
    assert!(out.contains("the database file is missing"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("b.db") && l.ends_with(" ok")), "{out}");
    let (ok, out) = verify(&c, 1);
    assert!(ok, "{out}");
    c.start_node(1);
    c.start_node(0);
    insert(&c, 0, "b.db", "y", 2);
    c.wait_all_at(0, "b.db", CONVERGE);
    let log = c.log(0);
    assert!(log.contains("database quarantined"), "{log}");
    let (ok, _) = c.sql(0, "a.db", "SELECT count(*) FROM t;");
    assert!(!ok, "the quarantined database is not served (nor re-created empty)");
    assert!(!db_file(&c, 0, "a.db").exists());
    assert_eq!(count(&c, 1, "a.db"), 4, "the replica keeps its copy");
    assert!(!diverged(&c, 1));
}

/// Rounds of random damage between clean restarts: a byte flipped in, or truncation or
/// deletion of, a random LTX file on either node, or a page flipped (mtime put back) in the
/// replica's database. After each round every acknowledged row is on both nodes.
#[test]
fn randomized_damage_between_restarts_loses_nothing() {
    need::fuse();
    need::sqlite3();
    let root = tmp("damage-random");
    let mut c = Cluster::start(&root, 2);
    create(&c, "a.db", "WAL");
    create(&c, "b.db", "DELETE");
    let mut rows = 0;
    // A new seed per run, printed; DAMAGE_SEED=<seed> replays a failure's choices.
    let seed = std::env::var("DAMAGE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| (std::process::id() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    eprintln!("seed {seed}");
    let mut rng = seed;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    for round in 0..16 {
        insert(&c, 0, "a.db", "r", 4);
        insert(&c, 0, "b.db", "r", 4);
        rows += 4;
        c.wait_all_at(0, "a.db", CONVERGE);
        c.wait_all_at(0, "b.db", CONVERGE);
        // The replica sometimes lags behind the damage.
        let lagging = next(2) == 0;
        if lagging {
            c.stop_node(1);
            insert(&c, 0, "a.db", "lag", 2);
            insert(&c, 0, "b.db", "lag", 2);
            rows += 2;
        }
        c.stop_node(0);
        if !lagging {
            c.stop_node(1);
        }
        let node = next(2) as usize;
        let db = if next(2) == 0 { "a.db" } else { "b.db" };
        let what = next(4);
        let files = ltx_files(&c, node, db);
        // The newest file half the time: recovery treats it specially.
        let f = match next(2) {
            0 => files.last().unwrap(),
            _ => &files[next(files.len() as u64) as usize],
        };
        match what {
            0 => flip(f, std::fs::metadata(f).unwrap().len() / 2),
            1 => truncate_half(f),
            2 => std::fs::remove_file(f).unwrap(),
            _ => flip_page_keep_mtime(&db_file(&c, 1, db), 2),
        }
        eprintln!("round {round}: damage {what} on n{} {db} ({})", node + 1, f.display());
        c.start_node(0);
        c.start_node(1);
        for db in ["a.db", "b.db"] {
            let want = c.pos(0, db).unwrap();
            wait_for(&format!("round {round}: n2 at {want} on {db}"), CONVERGE, || {
                c.pos(1, db) == Some(want)
            });
            for n in 0..2 {
                assert_eq!(count(&c, n, db), rows, "round {round}: n{} {db}", n + 1);
                assert_eq!(c.sql_ok(n, db, "PRAGMA integrity_check;").trim(), "ok");
            }
        }
        assert!(c.primary_image("b.db") == c.replica_image(1, "b.db"), "round {round}");
    }
}

#[test]
fn a_failing_disk_for_one_database_on_a_replica_does_not_stall_the_others() {
    need::fuse();
    need::sqlite3();
    let root = tmp("damage-disk");
    let c = Cluster::start(&root, 2);
    for db in ["a.db", "b.db"] {
        create(&c, db, "WAL");
        insert(&c, 0, db, "x", 2);
        c.wait_all_at(0, db, CONVERGE);
    }
    // The replica cannot write a.db's LTX files any more (immutable directory: even root
    // gets EPERM).
    let dir = ltx_dir(&c, 1, "a.db");
    let chattr = |flag: &str| {
        let st = Command::new("chattr").arg(flag).arg(&dir).status().unwrap();
        assert!(st.success(), "chattr {flag}");
    };
    chattr("+i");
    insert(&c, 0, "a.db", "stuck", 3);
    wait_for("the replica to report the failure", CONVERGE, || {
        c.log(1).contains("this database pauses, the others go on")
    });
    // b.db keeps following meanwhile, through the retries.
    for _ in 0..3 {
        insert(&c, 0, "b.db", "y", 1);
        c.wait_all_at(0, "b.db", CONVERGE);
    }
    assert_ne!(c.pos(1, "a.db"), c.pos(0, "a.db"));
    chattr("-i");
    c.wait_all_at(0, "a.db", CONVERGE);
    assert_eq!(count(&c, 1, "a.db"), 5);
}

#[test]
fn a_snapshot_of_a_damaged_primary_database_is_never_sent() {
    need::fuse();
    need::sqlite3();
    let root = tmp("damage-snap");
    let mut c = Cluster::start(&root, 2);
    for db in ["a.db", "b.db"] {
        create(&c, db, "DELETE");
        insert(&c, 0, db, "x", 6);
        c.wait_all_at(0, db, CONVERGE);
    }
    // The replica loses its copy of b.db and needs a snapshot; the primary's file of b.db is
    // damaged behind its back meanwhile (no scrub runs in this test).
    c.stop_node(1);
    std::fs::remove_dir_all(c.nodes[1].data.join("dbs").join("b.db")).unwrap();
    flip(&db_file(&c, 0, "b.db"), 4096 + 3000);
    c.start_node(1);
    wait_for("the primary to find b.db damaged", CONVERGE, || {
        c.log(0).contains("database damaged on the primary")
    });
    // a.db keeps replicating on the same connection; b.db takes no writes on the primary.
    insert(&c, 0, "a.db", "y", 2);
    c.wait_all_at(0, "a.db", CONVERGE);
    let (ok, text) = c.sql(0, "b.db", "INSERT INTO t(tag) VALUES ('refused');");
    assert!(!ok, "{text}");
    assert!(c.pos(1, "b.db").is_none(), "no damaged snapshot reached the replica");
}
