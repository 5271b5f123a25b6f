//! Failover with a real Consul (1.8.7): three candidate nodes (`litefleet mount` processes,
//! QUIC + mTLS, FUSE). The primary is killed with -9; another candidate takes the lease
//! after the session TTL and lock-delay, accepts writes, the third node follows it, and the
//! old primary, restarted, rejoins as a replica. Twice, then every node is byte-identical.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::{Cluster, NodeNet, free_udp_port, wait_for};
use common::consul::Consul;
use common::tmp;
use litefleet::core::types::Pos;

const N: usize = 3;

fn primaries_in_log(c: &Cluster, i: usize) -> usize {
    c.log(i).matches("this node is the primary").count()
}

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
    let root = tmp("failover");
    let consul = Consul::start(root.join("consul"));
    let certs = root.join("certs");
    let out = Command::new(env!("CARGO_BIN_EXE_litefleet"))
        .args(["certs", "dev", "--out", certs.to_str().unwrap(), "--nodes", "n1,n2,n3"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let nets: Vec<NodeNet> = (0..N)
        .map(|i| {
            let port = free_udp_port();
            NodeNet {
                netns: None,
                listen: format!("127.0.0.1:{port}"),
                primary_url: String::new(),
                data_extra: String::new(),
                lease: Some(format!(
                    "lease:\n  type: consul\n  candidate: true\n  hostname: n{n}\n  \
                     advertise-url: \"http://127.0.0.1:{port}\"\n  consul:\n    url: \"{url}\"\n    \
                     key: \"litefleet/failover\"\n    ttl: 10s\n    lock-delay: 1s\n",
                    n = i + 1,
                    url = consul.url()
                )),
            }
        })
        .collect();
    // n1 starts first and takes the lease; the others then follow it.
    let mut c = Cluster::start_custom(&root, nets, &certs);
    let first = (0..N)
        .find(|&i| primaries_in_log(&c, i) > 0)
        .or_else(|| {
            let t = Instant::now();
            loop {
                if let Some(i) = (0..N).find(|&i| primaries_in_log(&c, i) > 0) {
                    break Some(i);
                }
                if t.elapsed() > Duration::from_secs(30) {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
        .expect("a primary was elected");
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
        let before: Vec<usize> = (0..N).map(|i| primaries_in_log(&c, i)).collect();
        let killed = Instant::now();
        c.kill_node(primary);
        let mut next = None;
        wait_for("a new primary", Duration::from_secs(60), || {
            next = (0..N).find(|&i| i != primary && primaries_in_log(&c, i) > before[i]);
            next.is_some()
        });
        let next = next.unwrap();
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
