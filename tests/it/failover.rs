//! Failover with a real Consul (1.8.7): three candidate nodes (`litefleet mount` processes,
//! QUIC + mTLS, FUSE). The primary is killed with -9; the others stop hearing from it,
//! depose it (its session destroyed), one takes the lease after the lock-delay and accepts
//! writes, the third node follows it, and the old primary, restarted, rejoins as a replica.
//! Twice, then every node is byte-identical.

use std::time::{Duration, Instant};

use crate::common::cluster::{Cluster, wait_for};
use crate::common::consul::Consul;
use crate::common::writers::{Op, Writers, commits};
use crate::common::{need, tmp};
use litefleet::core::types::Pos;

const N: usize = 3;

fn write(c: &Cluster, i: usize, rows: usize) {
    c.sql_ok(
        i,
        "f.db",
        &format!(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<{rows}) \
             INSERT INTO t(v) SELECT randomblob(300) FROM c;"
        ),
    );
}

fn converge(c: &Cluster, primary: usize) -> Pos {
    let want = c.pos(primary, "f.db").expect("primary position");
    for i in 0..N {
        if i != primary && c.nodes[i].child.is_some() {
            wait_for(&format!("n{} to reach {want}", i + 1), Duration::from_secs(60), || {
                c.pos(i, "f.db") == Some(want)
            });
        }
    }
    want
}

#[test]
#[allow(clippy::disallowed_methods)]
fn kill_the_primary_a_candidate_takes_over_and_the_old_one_rejoins() {
    need::fuse();
    need::sqlite3();
    need::consul();
    let root = tmp("failover");
    let consul = Consul::start(root.join("consul"));
    let mut c = Cluster::start_consul(&root, N, &consul.url(), "litefleet/failover", "");
    // n1 starts first and takes the lease; the others then follow it.
    let first = c.wait_new_primary(&[0; N], None, Duration::from_secs(30));
    c.sql_ok(
        first,
        "f.db",
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);",
    );
    write(&c, first, 100);
    converge(&c, first);
    // Replicas refuse writes.
    let other = (first + 1) % N;
    let (ok, text) = c.sql(other, "f.db", "INSERT INTO t(v) VALUES (1);");
    assert!(!ok && text.contains("readonly"), "{text}");

    let mut primary = first;
    for round in 0..2 {
        let before: Vec<usize> = (0..N).map(|i| c.terms(i)).collect();
        let killed = Instant::now();
        c.kill_node(primary);
        let next = c.wait_new_primary(&before, Some(primary), Duration::from_secs(60));
        let elected = killed.elapsed();
        // Writes succeed on the new primary (as soon as the mount is writable).
        wait_for("writes on the new primary", Duration::from_secs(10), || {
            c.sql(next, "f.db", "INSERT INTO t(v) VALUES (randomblob(300));").0
        });
        let writable = killed.elapsed();
        write(&c, next, 50);
        // The old primary restarts and rejoins as a replica.
        c.start_node(primary);
        let pos = converge(&c, next);
        eprintln!(
            "round {round}: n{} killed, n{} elected after {elected:?}, writable after \
             {writable:?}; all at {pos}",
            primary + 1,
            next + 1
        );
        assert!(c.log(primary).contains("following"), "the old primary follows");
        primary = next;
    }
    // Byte-identical everywhere, integrity ok.
    c.sql_ok(primary, "f.db", "PRAGMA wal_checkpoint(TRUNCATE);");
    converge(&c, primary);
    let image = std::fs::read(c.nodes[primary].data.join("dbs/f.db/database")).unwrap();
    for i in 0..N {
        if i != primary {
            assert!(c.replica_image(i, "f.db") == image, "n{} differs", i + 1);
        }
        assert_eq!(c.sql_ok(i, "f.db", "PRAGMA integrity_check;").trim(), "ok");
    }
    let rows = c.sql_ok(primary, "f.db", "SELECT count(*) FROM t;");
    assert_eq!(rows.trim(), (100 + 2 * 51).to_string(), "no acknowledged write lost");
    drop(c);
    drop(consul);
}

/// SIGTERM of the primary under write load: it stops writes, waits until its candidates
/// hold its last commit, then releases the lease; whoever takes it has every commit any
/// writer saw succeed, even with asynchronous replication, and nothing is set aside.
#[test]
#[allow(clippy::disallowed_methods)]
fn sigterm_of_the_primary_loses_no_acknowledged_commit() {
    need::fuse();
    need::sqlite3();
    need::consul();
    let root = tmp("failover-term");
    let consul = Consul::start(root.join("consul"));
    let mut c = Cluster::start_consul(&root, N, &consul.url(), "litefleet/failover-term", "");
    let mut p = c.wait_new_primary(&[0; N], None, Duration::from_secs(30));
    c.writers_table(p, "t.db");
    let mut acked = Vec::new();
    for round in 0..2 {
        // The primary's writer is a group of its own, stopped right before the SIGTERM:
        // SQLite maps `-shm` through the mount, and a mapping whose FUSE daemon exited
        // faults with SIGBUS, which would take this test process (every test) down.
        let old_writer = Writers::start([(p, c.db(p, "t.db"))]);
        let others = (0..N).filter(|&i| i != p).map(|i| (i, c.db(i, "t.db")));
        let writers = Writers::start(others);
        let started = Instant::now();
        old_writer.wait("commits on the primary", Duration::from_secs(30), |ops| {
            commits(ops, p, started) >= 20
        });
        let before: Vec<usize> = (0..N).map(|i| c.terms(i)).collect();
        let old_ops = old_writer.stop();
        c.stop_node(p);
        let next = c.wait_new_primary(&before, Some(p), Duration::from_secs(30));
        // The writer on the new primary commits there (no second writer competes with it:
        // SQLite's busy handler is not fair, a tight loop can starve another connection).
        writers.wait("commits on the new primary", Duration::from_secs(30), |ops| {
            commits(ops, next, started) >= 20
        });
        let mut ops = writers.stop();
        ops.extend(old_ops);
        let on_old = ops.iter().filter(|o| o.ok && o.node == p).count();
        assert!(on_old > 0, "round {round}: the old primary committed nothing");
        let on_new = ops.iter().filter(|o| o.ok && o.node == next).count();
        assert!(on_new > 0, "round {round}: nothing committed on the new primary n{}", next + 1);
        assert!(
            c.log(p).contains("drained: every connected candidate holds every commit"),
            "round {round}: n{} did not drain",
            p + 1
        );
        acked.extend(ops.iter().filter(|o| o.ok).map(|o| o.id));
        c.start_node(p);
        c.wait_all_at(next, "t.db", Duration::from_secs(60));
        assert!(!c.nodes[p].data.join("diverged").exists(), "n{} set commits aside", p + 1);
        eprintln!(
            "round {round}: n{} stopped, n{} took over; {on_old} commits on n{}",
            p + 1,
            next + 1,
            p + 1
        );
        p = next;
    }
    let have: std::collections::HashSet<i64> = c
        .sql_ok(p, "t.db", "SELECT id FROM t;")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let lost = acked.iter().filter(|id| !have.contains(id)).count();
    assert_eq!(lost, 0, "{lost} of {} acknowledged commits lost", acked.len());
    drop(c);
    drop(consul);
}

/// kill -9 of the primary in a loop while writers run on the other nodes: each time a new
/// primary takes writes, the old one rejoins after a restart, and no commit any writer saw
/// succeed is lost. (No writer runs on the node about to be killed: SQLite maps `-shm`
/// through the mount, and a mapping whose FUSE daemon died faults with SIGBUS, which would
/// take this test process down with it.)
#[test]
#[allow(clippy::disallowed_methods)]
fn kill_loop_with_writers_running() {
    need::fuse();
    need::sqlite3();
    need::consul();
    let root = tmp("failover-loop");
    let consul = Consul::start(root.join("consul"));
    let mut c = Cluster::start_consul(&root, N, &consul.url(), "litefleet/failover-loop", "");
    let mut p = c.wait_new_primary(&[0; N], None, Duration::from_secs(30));
    c.writers_table(p, "l.db");
    let mut acked = Vec::new();
    for round in 0..3 {
        let on = (0..N).filter(|&i| i != p).map(|i| (i, c.db(i, "l.db")));
        let writers = Writers::start(on);
        let before: Vec<usize> = (0..N).map(|i| c.terms(i)).collect();
        let killed = Instant::now();
        c.kill_node(p);
        let next = c.wait_new_primary(&before, Some(p), Duration::from_secs(60));
        writers.wait("commits on the new primary", Duration::from_secs(30), |ops| {
            commits(ops, next, killed) >= 20
        });
        let ops: Vec<Op> = writers.stop();
        let ok: Vec<&Op> = ops.iter().filter(|o| o.ok).collect();
        assert!(ok.iter().any(|o| o.node == next), "round {round}: no commit on n{}", next + 1);
        assert!(ok.iter().all(|o| o.node == next), "round {round}: a commit on a replica");
        let first = ok.iter().map(|o| o.end).min().unwrap();
        acked.extend(ok.iter().map(|o| o.id));
        c.start_node(p);
        let pos = c.wait_all_at(next, "l.db", Duration::from_secs(60));
        eprintln!(
            "round {round}: n{} killed, n{} took {} commits, the first {:?} after the kill; \
             all at {pos}",
            p + 1,
            next + 1,
            ok.len(),
            first.saturating_duration_since(killed)
        );
        p = next;
    }
    let have: std::collections::HashSet<i64> = c
        .sql_ok(p, "l.db", "SELECT id FROM t;")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let lost = acked.iter().filter(|id| !have.contains(id)).count();
    assert_eq!(lost, 0, "{lost} of {} acknowledged commits lost", acked.len());
    for i in 0..N {
        assert_eq!(c.sql_ok(i, "l.db", "PRAGMA integrity_check;").trim(), "ok");
    }
    drop(c);
    drop(consul);
}

/// The election prefers the most up-to-date candidate (`protocol.md` §10.4). One replica
/// (`behind`) is killed while the primary commits and the other replica keeps up; then the
/// primary is killed and the lagging replica restarted at once. Both race for the lease
/// once the old primary is deposed, but the up-to-date one must win, every round, and no
/// commit is lost. (Without the preference either could win: the lease alone cannot tell
/// them apart, and the commits only the primary and the up-to-date replica had would be
/// set aside.)
#[test]
#[allow(clippy::disallowed_methods)]
fn the_most_up_to_date_candidate_wins() {
    need::fuse();
    need::sqlite3();
    need::consul();
    let root = tmp("failover-elect");
    let consul = Consul::start(root.join("consul"));
    let mut c = Cluster::start_consul(&root, N, &consul.url(), "litefleet/failover-elect", "");
    let mut p = c.wait_new_primary(&[0; N], None, Duration::from_secs(30));
    c.writers_table(p, "e.db");
    let mut rows = 0;
    for round in 0..3 {
        let (behind, ahead) = ((p + 1) % N, (p + 2) % N);
        c.kill_node(behind);
        for _ in 0..5 {
            c.sql_ok(p, "e.db", "INSERT INTO t(node) VALUES (1);");
            rows += 1;
        }
        let want = c.pos(p, "e.db").unwrap();
        wait_for("the other replica to catch up", Duration::from_secs(10), || {
            c.pos(ahead, "e.db") == Some(want)
        });
        let before: Vec<usize> = (0..N).map(|i| c.terms(i)).collect();
        c.kill_node(p);
        c.start_node(behind);
        let next = c.wait_new_primary(&before, Some(p), Duration::from_secs(30));
        assert_eq!(
            next,
            ahead,
            "round {round}: n{} (behind) won the lease over n{} (up to date)",
            behind + 1,
            ahead + 1
        );
        c.start_node(p);
        c.wait_all_at(next, "e.db", Duration::from_secs(60));
        let held_back = c.log(behind).contains("a more up-to-date candidate exists");
        eprintln!("round {round}: n{} won; n{} held back: {held_back}", next + 1, behind + 1);
        p = next;
    }
    let n = c.sql_ok(p, "e.db", "SELECT count(*) FROM t;");
    assert_eq!(n.trim(), rows.to_string(), "a commit was lost");
    drop(c);
    drop(consul);
}
