//! Graceful handoff (`litefleet promote`, `protocol.md` §12) with a real Consul (1.8.7), three
//! candidates (`litefleet mount` processes, QUIC + mTLS, FUSE) and a writer on every node
//! committing as fast as it can: the lease moves to the node that asked, the old primary
//! stops writing first, no commit any writer saw succeed is lost, and a rolling restart of
//! every node (promoting another node before restarting the primary) keeps the cluster
//! writable except for the handoff windows.

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::cluster::{Cluster, wait_for};
use crate::common::consul::Consul;
use crate::common::writers::{Op, Writers, commits};
use crate::common::{need, tmp};

const N: usize = 3;

/// `litefleet promote` on node `i`; its duration.
#[allow(clippy::disallowed_methods)]
fn promote(c: &Cluster, i: usize) -> Duration {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_litefleet"))
        .args(["promote", "--mount"])
        .arg(&c.nodes[i].mnt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promote n{}: {}{}",
        i + 1,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed()
}

/// The longest time no writer committed anything, between `from` and `to`.
fn longest_gap(ops: &[Op], from: Instant, to: Instant) -> Duration {
    let mut ends: Vec<Instant> =
        ops.iter().filter(|o| o.ok && o.end >= from && o.end <= to).map(|o| o.end).collect();
    ends.sort();
    ends.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default()
}

#[test]
#[allow(clippy::disallowed_methods)]
fn promote_under_load_and_a_rolling_restart() {
    need::fuse();
    need::sqlite3();
    need::consul();
    let root = tmp("handoff");
    let consul = Consul::start(root.join("consul"));
    let mut c = Cluster::start_consul(&root, N, &consul.url(), "litefleet/handoff", "");
    let mut p = c.wait_new_primary(&[0; N], None, Duration::from_secs(30));
    c.writers_table(p, "h.db");
    let started = Instant::now();
    let writers = Writers::start((0..N).map(|i| (i, c.db(i, "h.db"))));
    writers.wait("commits on the primary", Duration::from_secs(30), |ops| {
        commits(ops, p, started) >= 20
    });

    // Handoff under load: every node in turn is promoted while the writers run.
    let mut windows = Vec::new();
    for step in 0..N {
        let t = (p + 1) % N;
        let before: Vec<usize> = (0..N).map(|i| c.terms(i)).collect();
        let from = Instant::now();
        let took = promote(&c, t);
        // `promote` returns once the node is the primary; its log line may come just after.
        wait_for(
            &format!("n{} to log that it is the primary", t + 1),
            Duration::from_secs(5),
            || c.terms(t) > before[t],
        );
        // The old primary's log line follows the Consul transaction's answer, which may come
        // just after the target already took over.
        wait_for(&format!("n{} to hand over", p + 1), Duration::from_secs(5), || {
            c.log(p).contains("lease handed over")
        });
        // The old primary refuses writes.
        let (ok, text) = c.sql(p, "h.db", "INSERT INTO t(id, node) VALUES (NULL, -1);");
        assert!(!ok, "the old primary n{} still writes: {text}", p + 1);
        // The window ends once the writers commit on the new primary again.
        let now = Instant::now();
        writers.wait("commits on the new primary", Duration::from_secs(30), |ops| {
            commits(ops, t, now) >= 20
        });
        windows.push((from, Instant::now()));
        eprintln!("step {step}: n{} -> n{}: promote returned in {took:?}", p + 1, t + 1);
        // Rolling restart: the old primary (read-only now) restarts and rejoins.
        c.stop_node(p);
        c.start_node(p);
        p = t;
    }
    // The last restart is over once the writers commit on the primary again.
    let now = Instant::now();
    writers.wait("commits after the rolling restart", Duration::from_secs(30), |ops| {
        commits(ops, p, now) >= 20 && ops.iter().filter(|o| o.ok).count() > 100
    });
    let ops: Vec<Op> = writers.stop();

    // Unavailability: the longest stretch without any successful commit around each
    // handoff.
    for (i, (from, to)) in windows.iter().enumerate() {
        let gap = longest_gap(&ops, *from, *to);
        eprintln!("handoff {i}: longest stretch without a commit: {gap:?}");
    }
    // Nothing any writer saw succeed is missing on the final primary; every node converges.
    c.wait_all_at(p, "h.db", Duration::from_secs(60));
    let have: HashSet<i64> = c
        .sql_ok(p, "h.db", "SELECT id FROM t;")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let acked: Vec<i64> = ops.iter().filter(|o| o.ok).map(|o| o.id).collect();
    let lost = acked.iter().filter(|id| !have.contains(id)).count();
    eprintln!("{} commits acknowledged across {} handoffs, {lost} lost", acked.len(), N);
    assert!(acked.len() > 100, "the writers committed too little ({})", acked.len());
    assert_eq!(lost, 0, "a handoff lost acknowledged commits");
    for i in 0..N {
        assert!(!c.log(i).contains("diverged"), "n{} diverged in a handoff", i + 1);
        assert_eq!(c.sql_ok(i, "h.db", "PRAGMA integrity_check;").trim(), "ok");
    }
    drop(c);
    drop(consul);
}

/// `litefleet run` (LiteFS's `litefs run`) with `--url` pointing at node `i`'s API.
fn run_cli(c: &Cluster, i: usize, flags: &[&str], cmd: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_litefleet"))
        .arg("run")
        .arg("-url")
        .arg(c.nodes[i].url(""))
        .args(flags)
        .arg("--")
        .args(cmd)
        .output()
        .unwrap()
}

#[test]
fn run_promotes_a_candidate_before_its_command_and_skips_non_candidates() {
    need::fuse();
    need::sqlite3();
    need::consul();
    let root = tmp("run-promote");
    let consul = Consul::start(root.join("consul"));
    let c = Cluster::start_consul(&root, 2, &consul.url(), "litefleet/run-promote", "");
    let p = c.wait_new_primary(&[0; 2], None, Duration::from_secs(30));
    let t = 1 - p;
    c.sql_ok(p, "m.db", "CREATE TABLE t(x);");
    c.wait_all_at(p, "m.db", Duration::from_secs(30));
    // A migration run on the replica with -promote: the node becomes the primary first, so
    // the command's write succeeds there; its exit code is run's (`-json` is sqlite3's own
    // flag, passed through untouched).
    let db = c.db(t, "m.db");
    let sql = "INSERT INTO t VALUES (1); SELECT count(*) AS n FROM t;";
    let o = run_cli(
        &c,
        t,
        &["-promote", "-if-candidate", "-v"],
        &["sqlite3", "-json", db.to_str().unwrap(), sql],
    );
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("\"n\":1"), "{out}");
    assert!(err.contains("promoting this node") && err.contains("is the primary"), "{err}");
    wait_for("the promoted node to log it", Duration::from_secs(10), || c.terms(t) >= 1);
    // The command's exit code comes back; a HALT lock is refused, nothing runs.
    let o = run_cli(&c, t, &[], &["sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    let o =
        run_cli(&c, p, &["-with-halt-lock-on", db.to_str().unwrap()], &["touch", "/nonexistent/x"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not built"), "{o:?}");
    drop(c);
    drop(consul);

    // A static replica is no candidate: -if-candidate skips the command.
    let root = tmp("run-skip");
    let c = Cluster::start(&root, 2);
    let marker = root.join("ran");
    let o = run_cli(&c, 1, &["-if-candidate"], &["touch", marker.to_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");
    assert!(!marker.exists(), "ran on a node that is not a candidate");
    let o = run_cli(&c, 0, &["-if-candidate"], &["touch", marker.to_str().unwrap()]);
    assert!(o.status.success() && marker.exists(), "{o:?}");
}
