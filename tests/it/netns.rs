//! Replication across hosts in network namespaces: each node in its own namespace with a
//! veth link to the host, every replica reaching the primary through a link with 25 ms of
//! delay and 1% loss each way (a UDP relay on the host does what `tc netem` would: this
//! kernel has no netem, see `common::relay`). Certificates are issued with `litefleet certs
//! ca` / `certs issue --san <ip>`, for the addresses the nodes really dial.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::cluster::{Cluster, NodeNet, free_port, wait_for};
use crate::common::lan::claim;
use crate::common::relay::Relay;
use crate::common::{need, tmp};

const DELAY: Duration = Duration::from_millis(25);
const LOSS: f64 = 0.01;

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip (iproute2) is installed");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Namespaces and veth links, removed on drop.
struct Net {
    names: Vec<String>,
}

impl Net {
    /// Node `i` gets namespace `names[i]` with `10.<net>.<i+1>.2/24` on its veth, the host
    /// side `10.<net>.<i+1>.1/24`; names and `net` from [`claim`] (the machine's, not this
    /// process's: unique while they exist). Returns `net` too.
    fn new(n: usize) -> (Net, u8) {
        let (tag, net) = claim("lf");
        let mut names = Vec::new();
        for i in 0..n {
            let ns = format!("{tag}{i}");
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
            ip(&["netns", "add", &ns]);
            names.push(ns.clone());
            let (host, peer) = (format!("{tag}h{i}"), format!("{tag}p{i}"));
            ip(&["link", "add", &host, "type", "veth", "peer", "name", &peer]);
            ip(&["link", "set", &peer, "netns", &ns]);
            let sub = i + 1;
            ip(&["addr", "add", &format!("10.{net}.{sub}.1/24"), "dev", &host]);
            ip(&["link", "set", &host, "up"]);
            ip(&["-n", &ns, "addr", "add", &format!("10.{net}.{sub}.2/24"), "dev", &peer]);
            ip(&["-n", &ns, "link", "set", &peer, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&["-n", &ns, "route", "add", "default", "via", &format!("10.{net}.{sub}.1")]);
        }
        (Net { names }, net)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in &self.names {
            // Deleting the namespace deletes its end of the veth, and so the pair.
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

fn litefleet(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_litefleet")).args(args).output().unwrap();
    assert!(out.status.success(), "litefleet {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
#[allow(clippy::disallowed_methods)]
fn replication_over_delayed_lossy_links_between_namespaces() {
    need::fuse();
    need::sqlite3();
    need::netns();
    let root = tmp("netns");
    let n = 3;
    let (nets, net) = Net::new(n);
    // The relays listen on the host, where other tests' nodes and relays listen too (the
    // nodes, each in a namespace of its own, could use any port).
    let port = free_port();
    // Replica i dials the host side of its own link; the relay there forwards to the
    // primary's namespace address through the impaired path.
    let primary_addr: SocketAddr = format!("10.{net}.1.2:{port}").parse().unwrap();
    let relays: Vec<Relay> = (1..n)
        .map(|i| {
            let at: SocketAddr = format!("10.{net}.{}.1:{port}", i + 1).parse().unwrap();
            Relay::start(at, primary_addr, DELAY, LOSS)
        })
        .collect();
    let certs = root.join("certs");
    let certs_s = certs.to_str().unwrap();
    litefleet(&["certs", "ca", "--out", certs_s]);
    let mut n1 = vec!["certs", "issue", "--ca-dir", certs_s, "--out", certs_s, "--name", "n1"];
    let sans: Vec<String> = (1..n).map(|i| format!("10.{net}.{}.1", i + 1)).collect();
    for s in &sans {
        n1.extend(["--san", s.as_str()]);
    }
    litefleet(&n1);
    for i in 2..=n {
        let name = format!("n{i}");
        litefleet(&["certs", "issue", "--ca-dir", certs_s, "--out", certs_s, "--name", &name]);
    }
    let layout = (0..n)
        .map(|i| NodeNet {
            netns: Some(nets.names[i].clone()),
            listen: format!("0.0.0.0:{port}"),
            data_extra: String::new(),
            lease: None,
            primary_url: if i == 0 {
                format!("http://10.{net}.1.2:{port}")
            } else {
                format!("http://10.{net}.{}.1:{port}", i + 1)
            },
        })
        .collect();
    let c = Cluster::start_custom(&root, layout, &certs);
    c.sql_ok(
        0,
        "net.db",
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);",
    );
    c.wait_converged("net.db", Duration::from_secs(60));

    // Lag: one transaction at a time, from the primary's commit to each replica's -pos. The
    // commits go through one connection kept open, so the measurement starts when COMMIT
    // returns (a sqlite3 process would add its close, whose checkpoint and fsyncs can take
    // longer than the link's delay on a loaded machine).
    let writer = rusqlite::Connection::open(c.db(0, "net.db")).unwrap();
    writer.busy_timeout(Duration::from_secs(10)).unwrap();
    let mut lags = Vec::new();
    for k in 0..60 {
        let rows = if k % 10 == 0 { 200 } else { 1 };
        let t0 = Instant::now();
        writer
            .execute_batch(&format!(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<{rows}) \
                 INSERT INTO t(v) SELECT randomblob(400) FROM c;"
            ))
            .unwrap();
        let committed = t0.elapsed();
        let want = c.pos(0, "net.db").unwrap();
        for i in 1..n {
            wait_for("the replica", Duration::from_secs(30), || {
                c.pos(i, "net.db").is_some_and(|p| p.txid >= want.txid)
            });
            // Lag measured from the end of the commit (sqlite3 exits after it).
            lags.push(t0.elapsed().saturating_sub(committed));
        }
    }
    drop(writer);
    lags.sort();
    let (p50, p99, max) = (percentile(&lags, 0.5), percentile(&lags, 0.99), lags[lags.len() - 1]);
    let dropped: u64 =
        relays.iter().map(|r| r.dropped.load(std::sync::atomic::Ordering::Relaxed)).sum();
    let relayed: u64 =
        relays.iter().map(|r| r.relayed.load(std::sync::atomic::Ordering::Relaxed)).sum();
    eprintln!(
        "lag over a {DELAY:?} / {}% link: p50 {p50:?} p99 {p99:?} max {max:?} \
         ({relayed} datagrams relayed, {dropped} dropped)",
        LOSS * 100.0
    );
    // Lag tracks the link: never below its one-way delay (measured from COMMIT returning,
    // so a smaller number would mean the measurement is wrong), and not stuck behind
    // timeouts either.
    assert!(p50 >= DELAY, "p50 {p50:?} below the link delay");
    assert!(p50 < Duration::from_secs(2), "p50 {p50:?}");

    // A bulk load converges byte-identical over the same links.
    c.sql_ok(
        0,
        "net.db",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<5000) \
         INSERT INTO t(v) SELECT randomblob(1000) FROM c;",
    );
    let want = c.wait_converged("net.db", Duration::from_secs(120));
    c.sql_ok(0, "net.db", "PRAGMA wal_checkpoint(TRUNCATE);");
    let want2 = c.wait_converged("net.db", Duration::from_secs(120));
    let image = std::fs::read(c.nodes[0].data.join("dbs/net.db/database")).unwrap();
    for i in 1..n {
        assert!(c.replica_image(i, "net.db") == image, "n{} differs at {want}/{want2}", i + 1);
        assert_eq!(c.sql_ok(i, "net.db", "PRAGMA integrity_check;").trim(), "ok");
    }
    assert!(dropped > 0, "the links lost datagrams ({relayed} relayed)");
    drop(c);
    drop(relays);
}
