//! Failover benchmark, one run on this machine (`cargo bench --bench failover`; needs root,
//! /dev/fuse and Consul 1.8.7, fetched by `scripts/fetch-consul.sh` if missing): three
//! `litefleet mount` candidates on a real Consul agent, a writer on every node inserting as
//! fast as it can, and the primary taken away. Write unavailability is measured from the
//! event to the end of the first commit that succeeds on the new primary.
//!
//! Prints a table for:
//! - crash failover (kill -9 of the primary), litefleet defaults (fast failover: suspicion
//!   after 1 s of silence, session destroyed, lock-delay 1 s), several rounds;
//! - the same with fast failover off (`failover-timeout: 0s`: the lease moves when Consul
//!   expires the session, as in LiteFS);
//! - graceful shutdown of the primary (SIGTERM: writes stop, the lease is released).

#[allow(dead_code)]
#[path = "../tests/common/cluster.rs"]
mod cluster;
#[allow(dead_code)]
#[path = "../tests/common/consul.rs"]
mod consul;
#[allow(dead_code)]
#[path = "../tests/common/writers.rs"]
mod writers;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cluster::Cluster;
use consul::Consul;
use writers::{Op, writer};

const N: usize = 3;

enum Event {
    Kill,
    Term,
}

/// Takes the current primary away `rounds` times; returns each round's unavailability.
#[allow(clippy::disallowed_methods)]
fn run(name: &str, extra: &str, event: Event, rounds: usize) -> Vec<Duration> {
    let root = std::env::temp_dir().join(format!("litefleet-bench-failover-{name}"));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let consul = Consul::start(root.join("consul"));
    let mut c = Cluster::start_consul(&root, N, &consul.url(), "litefleet/bench", extra);
    let mut p = c.wait_new_primary(&[0; N], None, Duration::from_secs(30));
    c.writers_table(p, "f.db");
    let mut out = Vec::new();
    for _ in 0..rounds {
        c.wait_all_at(p, "f.db", Duration::from_secs(60));
        let stop = Arc::new(AtomicBool::new(false));
        let ws: Vec<_> = (0..N)
            .map(|i| {
                let (path, stop) = (c.db(i, "f.db"), stop.clone());
                std::thread::spawn(move || writer(i, path, stop))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        let before: Vec<usize> = (0..N).map(|i| c.terms(i)).collect();
        let at = Instant::now();
        match event {
            Event::Kill => c.kill_node(p),
            Event::Term => c.stop_node(p),
        }
        let next = c.wait_new_primary(&before, Some(p), Duration::from_secs(60));
        // Until a write succeeds on the new primary (a probe besides the writer threads).
        let probe_ok = loop {
            if c.sql(next, "f.db", "INSERT INTO t(node) VALUES (-1);").0 {
                break Instant::now();
            }
            assert!(at.elapsed() < Duration::from_secs(60), "no write succeeded on n{}", next + 1);
            std::thread::sleep(Duration::from_millis(5));
        };
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        let ops: Vec<Op> = ws.into_iter().flat_map(|w| w.join().unwrap()).collect();
        let resumed = ops
            .iter()
            .filter(|o| o.ok && o.node == next && o.start >= at)
            .map(|o| o.end)
            .min()
            .map_or(probe_ok, |w| w.min(probe_ok));
        out.push(resumed - at);
        c.start_node(p);
        p = next;
    }
    drop(c);
    drop(consul);
    out
}

fn stats(v: &[Duration]) -> String {
    let ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    let max = ms.iter().cloned().fold(0.0, f64::max);
    let all: Vec<String> = ms.iter().map(|m| format!("{m:.0}")).collect();
    format!("{mean:>8.0} ms | {max:>8.0} ms | {}", all.join(", "))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let fast = run("fast", "", Event::Kill, 5);
    let slow = run("ttl", "    failover-timeout: 0s\n", Event::Kill, 1);
    let term = run("term", "", Event::Term, 3);
    println!("| scenario (3 candidates, Consul 1.8.7, loopback) | mean | max | runs (ms) |");
    println!("|---|---|---|---|");
    println!("| crash (kill -9), litefleet defaults | {} |", stats(&fast));
    println!("| crash (kill -9), fast failover off (LiteFS behaviour) | {} |", stats(&slow));
    println!("| graceful shutdown of the primary (SIGTERM) | {} |", stats(&term));
}
