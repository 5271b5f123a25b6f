//! Synchronous replication benchmark, one run on this machine (`cargo bench --bench sync`;
//! needs root and /dev/fuse): the commit latency a `lease.sync-replicas: 1` cluster pays,
//! against asynchronous replication and bare SQLite in the same run.
//!
//! Two `litefleet mount` processes (static lease, QUIC + mTLS), one writer on the primary
//! committing single-row INSERTs of 200 bytes (WAL, synchronous=NORMAL) one after the
//! other. The replica's link is loopback, or a UDP relay that delays every datagram by
//! 25 ms each way (`tc netem delay 25ms` on both ends; the kernel here has no netem).

#[allow(dead_code)]
#[path = "../tests/it/common/cluster.rs"]
mod cluster;
#[allow(dead_code)]
#[path = "../tests/it/common/relay.rs"]
mod relay;

use std::path::Path;
use std::time::{Duration, Instant};

use cluster::{Cluster, dev_certs, free_port, static_nets, wait_for};
use relay::Relay;

/// Commit latencies (ms) of `n` commits, or as many as fit in `max`.
#[allow(clippy::disallowed_methods)]
fn commits(path: &Path, n: usize, max: Duration) -> Vec<f64> {
    let c = rusqlite::Connection::open(path).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c.pragma_update(None, "journal_mode", "WAL").unwrap();
    c.pragma_update(None, "synchronous", "NORMAL").unwrap();
    c.execute_batch("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB)").unwrap();
    let row = vec![0x5au8; 200];
    // Warm-up: the replica has the table, the connection its caches.
    for _ in 0..20 {
        c.execute("INSERT INTO t(v) VALUES (?1)", [&row]).unwrap();
    }
    let t0 = Instant::now();
    let mut out = Vec::with_capacity(n);
    while out.len() < n && t0.elapsed() < max {
        let t = Instant::now();
        c.execute("INSERT INTO t(v) VALUES (?1)", [&row]).unwrap();
        out.push(t.elapsed().as_secs_f64() * 1e3);
    }
    out
}

/// A primary and one replica; `delay`: the replica reaches the primary through a relay
/// with this one-way delay.
fn pair(root: &Path, sync: u32, delay: Option<Duration>) -> (Cluster, Option<Relay>) {
    let _ = std::fs::remove_dir_all(root);
    std::fs::create_dir_all(root).unwrap();
    let certs = dev_certs(root, 2);
    let port = free_port();
    let (dial, relay) = match delay {
        Some(d) => {
            let rport = free_port();
            let r = Relay::start(
                format!("127.0.0.1:{rport}").parse().unwrap(),
                format!("127.0.0.1:{port}").parse().unwrap(),
                d,
                0.0,
            );
            (rport, Some(r))
        }
        None => (port, None),
    };
    let extra = format!("  sync-replicas: {sync}\n");
    let nets = static_nets(2, port, |i| if i == 0 { port } else { dial }, &extra);
    let c = Cluster::start_custom(root, nets, &certs);
    (c, relay)
}

fn stats(v: &mut [f64]) -> (f64, f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let p = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    (p(0.5), p(0.99), mean, 1e3 / mean)
}

#[allow(clippy::disallowed_methods)]
fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let base = std::env::temp_dir().join(format!("litefleet-bench-sync-{}", std::process::id()));
    let secs = Duration::from_secs(5);
    let mut rows: Vec<(String, Vec<f64>)> = Vec::new();

    // Bare SQLite on the same disk, no FUSE.
    std::fs::create_dir_all(&base).unwrap();
    rows.push(("bare SQLite (no FUSE)".into(), commits(&base.join("bare.db"), 5000, secs)));

    for (label, sync, delay, n) in [
        ("async, replica on loopback", 0, None, 5000),
        ("sync-replicas 1, loopback", 1, None, 5000),
        ("async, replica 25 ms away (each way)", 0, Some(Duration::from_millis(25)), 5000),
        ("sync-replicas 1, 25 ms away (each way)", 1, Some(Duration::from_millis(25)), 100),
    ] {
        let root = base.join(format!("s{sync}-{}", delay.map_or(0, |d| d.as_millis())));
        let (c, relay) = pair(&root, sync, delay);
        // The replica is connected (a sync commit would wait for it anyway; an async one
        // must not be measured before replication runs).
        wait_for("the replica follows", Duration::from_secs(30), || {
            c.log(1).contains("following the primary")
        });
        let lat = commits(&c.db(0, "b.db"), n, secs);
        let want = c.pos(0, "b.db").unwrap();
        wait_for("the replica catches up", Duration::from_secs(60), || {
            c.pos(1, "b.db") == Some(want)
        });
        rows.push((label.into(), lat));
        drop(c);
        drop(relay);
    }

    println!(
        "| commit latency, WAL synchronous=NORMAL, 200-byte rows | p50 ms | p99 ms | mean ms | commits/s | × bare |"
    );
    println!("|---|---|---|---|---|---|");
    let bare = stats(&mut rows[0].1.clone()).2;
    for (label, v) in &mut rows {
        let (p50, p99, mean, rate) = stats(v);
        println!("| {label} | {p50:.3} | {p99:.3} | {mean:.3} | {rate:.0} | {:.1} |", mean / bare);
    }
    let _ = std::fs::remove_dir_all(&base);
}
