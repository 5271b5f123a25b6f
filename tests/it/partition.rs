//! No two writable primaries across network partitions: three candidates, each in its own
//! network namespace on a bridged LAN with a real Consul on the host, and a writer on every
//! node inserting as fast as it can. Packets are dropped silently (`common::lan`):
//!
//! 1. the primary is cut off from the other nodes but still reaches Consul: the others stop
//!    hearing it and depose it (its session destroyed); it must stop writing before the
//!    successor's first commit although nothing told it over the network it lost;
//! 2. the (new) primary is cut off from Consul but still reaches the other nodes: it cannot
//!    renew, so its own fence stops its writes and its role ends before the session could
//!    expire; another node takes the lease.
//!
//! After each, the link heals and the old primary, still running, demotes itself and rejoins
//! as a replica (commits only it had are set aside, never merged; a connection it had open
//! all along then reads the new primary's rows), and every node converges. The property checked
//! for each pair of terms is `writers::assert_terms_ordered`.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::cluster::{Cluster, NodeNet, wait_for};
use crate::common::consul::Consul;
use crate::common::lan::{End, Lan};
use crate::common::writers::{Op, Writers, assert_terms_ordered, commits};
use crate::common::{need, tmp};

const N: usize = 3;
/// The nodes' QUIC port, inside their own namespaces: nothing else listens there.
const PORT: u16 = 20303;
const DB: &str = "p.db";

fn litefleet(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_litefleet")).args(args).output().unwrap();
    assert!(out.status.success(), "litefleet {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// One partition: writers on every node, `cut` applied to the primary `p`, a successor
/// elected, then writes stopped and the link healed. Returns the successor and the ops.
#[allow(clippy::disallowed_methods)]
fn partition(c: &Cluster, lan: &Lan, p: usize, what: &str, cut: &[(End, End)]) -> (usize, Vec<Op>) {
    let started = Instant::now();
    let writers = Writers::start((0..N).map(|i| (i, c.db(i, DB))));
    writers.wait("commits on the primary", Duration::from_secs(30), |ops| {
        commits(ops, p, started) >= 20
    });
    let before: Vec<usize> = (0..N).map(|i| c.terms(i)).collect();
    for &(a, b) in cut {
        lan.cut(a, b);
    }
    let t_cut = Instant::now();
    let next = c.wait_new_primary(&before, Some(p), Duration::from_secs(60));
    let elected = t_cut.elapsed();
    // Both sides keep trying under the partition: the successor commits, and the old
    // primary's writer is refused after the successor's first commit.
    writers.wait(
        "the old primary refused after its successor's commits",
        Duration::from_secs(30),
        |ops| {
            let Some(first) = ops.iter().filter(|o| o.ok && o.node == next).map(|o| o.end).min()
            else {
                return false;
            };
            commits(ops, next, t_cut) >= 20
                && ops.iter().any(|o| o.node == p && !o.ok && o.start > first)
        },
    );
    let ops: Vec<Op> = writers.stop();
    for &(a, b) in cut {
        lan.heal(a, b);
    }

    let (last_old_start, first_new_end) = assert_terms_ordered(&ops, p, next);
    let ok = |n: usize| ops.iter().filter(|o| o.ok && o.node == n).count();
    let third = (0..N).find(|&i| i != p && i != next).unwrap();
    assert_eq!(ok(third), 0, "n{} never was primary", third + 1);
    // The old primary kept trying, and was refused, after its successor took over.
    let refused_after =
        ops.iter().filter(|o| o.node == p && o.start > first_new_end && !o.ok).count();
    assert!(refused_after > 0, "the old primary's writer kept trying");
    let last_old = last_old_start.saturating_duration_since(t_cut);
    eprintln!(
        "{what}: n{} cut off; n{} elected {elected:?} later, its first commit ended {:?} \
         after the cut; the old primary's last commit started {last_old:?} after the cut \
         and it refused {refused_after} attempts after the successor's first commit; \
         commits: {} on the old primary, {} on the new one",
        p + 1,
        next + 1,
        first_new_end.saturating_duration_since(t_cut),
        ok(p),
        ok(next),
    );
    (next, ops)
}

/// The old primary `old`, still running, demotes itself once it learns of its successor
/// and follows `primary` (no restart): it reaches `primary`'s position. `reader`, a
/// connection opened on `old` before the partition and kept open across the demotion, then
/// reads exactly what `primary` has. Returns how many of `ops`' acknowledged commits
/// `primary` lacks (async replication: the old primary's commits after the cut are set
/// aside when it rejoins).
fn rejoin(
    c: &Cluster,
    old: usize,
    primary: usize,
    ops: &[Op],
    demoted_before: usize,
    reader: &rusqlite::Connection,
) -> usize {
    wait_for("the old primary to demote itself", Duration::from_secs(60), || {
        c.log(old).matches(DEMOTED).count() > demoted_before
    });
    c.wait_all_at(primary, DB, Duration::from_secs(60));
    assert_eq!(c.sql_ok(old, DB, "PRAGMA integrity_check;").trim(), "ok");
    let count = |s: String| s.trim().parse::<i64>().unwrap();
    let want = count(c.sql_ok(primary, DB, "SELECT count(*) FROM t;"));
    let seen: i64 = reader.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
    assert_eq!(seen, want, "a connection open across the demotion reads the new primary's rows");
    let have: std::collections::HashSet<i64> = c
        .sql_ok(primary, DB, "SELECT id FROM t;")
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    let missing =
        |n: usize| ops.iter().filter(|o| o.ok && o.node == n && !have.contains(&o.id)).count();
    assert_eq!(missing(primary), 0, "the new primary lost its own commits");
    let lost = missing(old);
    let aside = c.nodes[old].data.join("diverged");
    if lost > 0 {
        assert!(aside.exists(), "n{}'s {lost} unreplicated commits were set aside", old + 1);
    }
    lost
}

const DEMOTED: &str = "demoted: this node was the primary";

/// A read connection on node `i`, its wal-index mapped by a first read.
fn reader(c: &Cluster, i: usize) -> rusqlite::Connection {
    let r = rusqlite::Connection::open(c.db(i, DB)).unwrap();
    r.busy_timeout(Duration::from_secs(30)).unwrap();
    let _: i64 = r.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
    r
}

#[test]
#[allow(clippy::disallowed_methods)]
fn partitions_never_give_two_writable_primaries() {
    need::fuse();
    need::sqlite3();
    need::netns();
    need::consul();
    let root = tmp("partition");
    let lan = Lan::new(N, "lq");
    let host = lan.addr(End::Host);
    let consul = Consul::start_on(root.join("consul"), &[&host]);

    let certs = root.join("certs");
    let certs_s = certs.to_str().unwrap();
    litefleet(&["certs", "ca", "--out", certs_s]);
    for i in 0..N {
        let (name, addr) = (format!("n{}", i + 1), lan.addr(End::Node(i)));
        litefleet(&[
            "certs", "issue", "--ca-dir", certs_s, "--out", certs_s, "--name", &name, "--san",
            &addr,
        ]);
    }
    let nets = (0..N)
        .map(|i| NodeNet {
            netns: Some(lan.names[i].clone()),
            listen: format!("0.0.0.0:{PORT}"),
            primary_url: String::new(),
            data_extra: String::new(),
            lease: Some(format!(
                "lease:\n  type: consul\n  candidate: true\n  hostname: n{n}\n  \
                 advertise-url: \"http://{addr}:{PORT}\"\n  consul:\n    \
                 url: \"http://{host}:{http}\"\n    key: \"litefleet/partition\"\n    \
                 ttl: 10s\n    lock-delay: 1s\n",
                n = i + 1,
                addr = lan.addr(End::Node(i)),
                http = consul.http,
            )),
        })
        .collect();
    let c = Cluster::start_custom(&root, nets, &certs);
    let p = c.wait_new_primary(&[0; N], None, Duration::from_secs(30));
    c.writers_table(p, DB);

    // 1. The primary loses its peers, not Consul.
    let peers: Vec<(End, End)> =
        (0..N).filter(|&i| i != p).map(|i| (End::Node(p), End::Node(i))).collect();
    let (rd, demoted) = (reader(&c, p), c.log(p).matches(DEMOTED).count());
    let (q, ops) = partition(&c, &lan, p, "cut from its peers", &peers);
    let lost1 = rejoin(&c, p, q, &ops, demoted, &rd);

    // 2. The new primary loses Consul, not its peers.
    let (rd, demoted) = (reader(&c, q), c.log(q).matches(DEMOTED).count());
    let (r, ops) = partition(&c, &lan, q, "cut from Consul", &[(End::Node(q), End::Host)]);
    let lost2 = rejoin(&c, q, r, &ops, demoted, &rd);

    eprintln!(
        "acknowledged commits of the old primary set aside, not on its successor (async \
         mode): {lost1} after the peer cut, {lost2} after the Consul cut"
    );
    // Every node serves the same database.
    c.sql_ok(r, DB, "PRAGMA wal_checkpoint(TRUNCATE);");
    c.wait_all_at(r, DB, Duration::from_secs(60));
    let image = std::fs::read(c.nodes[r].data.join("dbs").join(DB).join("database")).unwrap();
    for i in (0..N).filter(|&i| i != r) {
        assert!(c.replica_image(i, DB) == image, "n{} differs", i + 1);
    }
    drop(c);
    drop(consul);
    drop(lan);
}
