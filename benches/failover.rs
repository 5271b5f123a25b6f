//! Failover benchmark, one run on this machine (`cargo bench --bench failover`; needs root,
//! /dev/fuse and Consul 1.8.7 at target/consul/consul, from `scripts/fetch-consul.sh`): three
//! `litefleet mount` candidates on a real Consul agent, a writer on every other node
//! inserting as fast as it can (see `run`), and the primary taken away. Write
//! unavailability is measured from the event to the end of the first commit that succeeds
//! on the new primary.
//!
//! Prints a table for:
//! - crash failover (kill -9 of the primary), litefleet defaults (fast failover: suspicion
//!   after 1 s of silence, session destroyed, lock-delay 1 s), several rounds;
//! - the same with fast failover off (`failover-timeout: 0s`: the lease moves when Consul
//!   expires the session, as in LiteFS);
//! - graceful shutdown of the primary (SIGTERM: writes stop, candidates catch up, the lease
//!   is released);
//! - graceful handoff (`litefleet promote` on the next node): here unavailability is the
//!   longest stretch without any successful commit on any node around the handoff, and the
//!   old primary's own `paused_ms` (writes stopped → lease moved) is reported besides.

#[allow(dead_code)]
#[path = "../tests/it/common/cluster.rs"]
mod cluster;
#[allow(dead_code)]
#[path = "../tests/it/common/consul.rs"]
mod consul;
#[allow(dead_code)]
#[path = "../tests/it/common/writers.rs"]
mod writers;

use std::time::{Duration, Instant};

use cluster::Cluster;
use consul::Consul;
use writers::{Op, Writers};

const N: usize = 3;

enum Event {
    Kill,
    Term,
    Promote,
}

/// `litefleet promote` on node `i`.
fn promote(c: &Cluster, i: usize) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_litefleet"))
        .args(["promote", "--mount"])
        .arg(&c.nodes[i].mnt)
        .output()
        .unwrap();
    assert!(out.status.success(), "promote n{}: {}", i + 1, String::from_utf8_lossy(&out.stderr));
}

/// The last `paused_ms=<n>` node `i` logged.
fn paused_ms(c: &Cluster, i: usize) -> Duration {
    // The log is coloured: drop the escape sequences (`ESC [ … m`) first.
    let mut log = String::new();
    let mut esc = false;
    for ch in c.log(i).chars() {
        match (esc, ch) {
            (false, '\x1b') => esc = true,
            (true, 'm') => esc = false,
            (true, _) => {}
            (false, ch) => log.push(ch),
        }
    }
    let at = log.rfind("paused_ms=").expect("a handoff was logged");
    let n: String = log[at + 10..].chars().take_while(char::is_ascii_digit).collect();
    Duration::from_millis(n.parse().unwrap())
}

/// Takes the current primary away `rounds` times; returns each round's unavailability
/// (and, for a handoff, how long the old primary paused writes).
#[allow(clippy::disallowed_methods)]
fn run(name: &str, extra: &str, event: Event, rounds: usize) -> (Vec<Duration>, Vec<Duration>) {
    let root = std::env::temp_dir().join(format!("litefleet-bench-failover-{name}"));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let consul = Consul::start(root.join("consul"));
    let mut c = Cluster::start_consul(&root, N, &consul.url(), "litefleet/bench", extra);
    let mut p = c.wait_new_primary(&[0; N], None, Duration::from_secs(30));
    c.writers_table(p, "f.db");
    let (mut out, mut paused) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        c.wait_all_at(p, "f.db", Duration::from_secs(60));
        // No writer on a node that is killed or stopped: SQLite maps `-shm` through the
        // mount, and a mapping whose FUSE daemon died faults with SIGBUS (this process).
        let victim = match event {
            Event::Promote => None,
            Event::Kill | Event::Term => Some(p),
        };
        let on = (0..N).filter(|&i| Some(i) != victim).map(|i| (i, c.db(i, "f.db")));
        let ws = Writers::start(on);
        std::thread::sleep(Duration::from_millis(500));
        let before: Vec<usize> = (0..N).map(|i| c.terms(i)).collect();
        let at = Instant::now();
        match event {
            Event::Kill => c.kill_node(p),
            Event::Term => c.stop_node(p),
            Event::Promote => promote(&c, (p + 1) % N),
        }
        let next = c.wait_new_primary(&before, Some(p), Duration::from_secs(60));
        if let Event::Promote = event {
            // Writers reconnect on their own: the longest stretch with no commit anywhere.
            std::thread::sleep(Duration::from_millis(500));
            let ops: Vec<Op> = ws.stop();
            let mut ends: Vec<Instant> =
                ops.iter().filter(|o| o.ok && o.end >= at).map(|o| o.end).collect();
            ends.push(at);
            ends.sort();
            out.push(ends.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default());
            paused.push(paused_ms(&c, p));
            c.stop_node(p);
            c.start_node(p);
            p = next;
            continue;
        }
        // Until a write succeeds on the new primary (a probe besides the writer threads).
        let probe_ok = loop {
            if c.sql(next, "f.db", "INSERT INTO t(node) VALUES (-1);").0 {
                break Instant::now();
            }
            assert!(at.elapsed() < Duration::from_secs(60), "no write succeeded on n{}", next + 1);
            std::thread::sleep(Duration::from_millis(5));
        };
        std::thread::sleep(Duration::from_millis(300));
        let ops: Vec<Op> = ws.stop();
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
    (out, paused)
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
    let (fast, _) = run("fast", "", Event::Kill, 5);
    let (slow, _) = run("ttl", "    failover-timeout: 0s\n", Event::Kill, 1);
    let (term, _) = run("term", "", Event::Term, 3);
    let (hand, paused) = run("promote", "", Event::Promote, 5);
    println!("| scenario (3 candidates, Consul 1.8.7, loopback) | mean | max | runs (ms) |");
    println!("|---|---|---|---|");
    println!("| crash (kill -9), litefleet defaults | {} |", stats(&fast));
    println!("| crash (kill -9), fast failover off (LiteFS behaviour) | {} |", stats(&slow));
    println!("| graceful shutdown of the primary (SIGTERM) | {} |", stats(&term));
    println!("| graceful handoff (promote): longest stretch without a commit | {} |", stats(&hand));
    println!("| graceful handoff (promote): old primary's writes paused | {} |", stats(&paused));
}
