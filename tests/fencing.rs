//! No two writable primaries: three candidates on a real Consul, a writer on *every* node
//! inserting as fast as it can, and the primary frozen with SIGSTOP past the failover
//! timeout (its session is destroyed, another node takes over and accepts writes), then
//! thawed with SIGCONT. Every commit any writer saw succeed is an interval
//! `[start, end]`; intervals on different nodes must never overlap, and the frozen node,
//! once awake, must refuse writes (its fence expired while it slept; its lease is gone).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::cluster::{Cluster, wait_for};
use common::consul::Consul;
use common::tmp;

const N: usize = 3;

#[derive(Debug, Clone, Copy)]
struct Op {
    node: usize,
    start: Instant,
    end: Instant,
    ok: bool,
    id: i64,
}

/// Inserts on `path` until `stop`, recording every attempt.
#[allow(clippy::disallowed_methods)]
fn writer(node: usize, path: std::path::PathBuf, stop: Arc<AtomicBool>) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut conn: Option<rusqlite::Connection> = None;
    let mut n = 0i64;
    while !stop.load(Ordering::Relaxed) {
        if conn.is_none() {
            match rusqlite::Connection::open(&path) {
                Ok(c) => {
                    let _ = c.busy_timeout(Duration::from_millis(200));
                    conn = Some(c);
                }
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            }
        }
        n += 1;
        let id = (node as i64) << 40 | n;
        let start = Instant::now();
        let r = conn
            .as_ref()
            .unwrap()
            .execute("INSERT INTO t(id, node) VALUES (?1, ?2)", (id, node as i64));
        let end = Instant::now();
        ops.push(Op { node, start, end, ok: r.is_ok(), id });
        if r.is_err() {
            conn = None; // a read-only or failed connection is reopened
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    ops
}

fn signal(c: &Cluster, i: usize, sig: i32) {
    let pid = c.nodes[i].child.as_ref().unwrap().id() as i32;
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

#[test]
#[allow(clippy::disallowed_methods)]
fn a_paused_primary_never_writes_alongside_its_successor() {
    let root = tmp("fencing");
    let consul = Consul::start(root.join("consul"));
    let mut c = Cluster::start_consul(&root, N, &consul.url(), "litefleet/fencing", "");
    let p = c.wait_new_primary(&[0; N], None, Duration::from_secs(30));
    c.sql_ok(
        p,
        "f.db",
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, node INT);",
    );
    let want = c.pos(p, "f.db").unwrap();
    for i in 0..N {
        wait_for("replicas have the table", Duration::from_secs(30), || {
            c.pos(i, "f.db") == Some(want)
        });
    }

    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..N)
        .map(|i| {
            let (path, stop) = (c.db(i, "f.db"), stop.clone());
            std::thread::spawn(move || writer(i, path, stop))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));

    // Freeze the primary with writes in flight.
    let before: Vec<usize> = (0..N).map(|i| c.terms(i)).collect();
    let frozen = Instant::now();
    signal(&c, p, libc::SIGSTOP);
    let next = c.wait_new_primary(&before, Some(p), Duration::from_secs(40));
    let elected = frozen.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    signal(&c, p, libc::SIGCONT);
    let thawed = Instant::now();
    // The thawed node learns its lease is gone (renew: 404) and stays read-only.
    wait_for("the old primary to learn it lost the lease", Duration::from_secs(20), || {
        c.log(p).contains("lease lost")
    });
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let mut ops: Vec<Op> = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();

    // The property: successful commits on different nodes never overlap in time.
    ops.sort_by_key(|o| o.start);
    let ok: Vec<&Op> = ops.iter().filter(|o| o.ok).collect();
    let mut last_end: [Option<Instant>; N] = [None; N];
    for o in &ok {
        for (other, end) in last_end.iter().enumerate() {
            if other != o.node
                && let Some(end) = end
            {
                assert!(
                    *end < o.start,
                    "n{} committed from {:?} while n{} had a commit ending at {:?} (t0 = freeze)",
                    o.node + 1,
                    o.start.saturating_duration_since(frozen),
                    other + 1,
                    end.saturating_duration_since(frozen)
                );
            }
        }
        last_end[o.node] = Some(last_end[o.node].map_or(o.end, |e| e.max(o.end)));
    }
    let on = |n: usize| ok.iter().filter(|o| o.node == n).count();
    assert!(
        on(p) > 0 && on(next) > 0,
        "commits on both the old ({}) and new ({}) primary",
        on(p),
        on(next)
    );
    // The frozen node accepted nothing after it woke.
    let late = ok.iter().filter(|o| o.node == p && o.end > thawed).count();
    assert_eq!(late, 0, "the thawed primary committed {late} writes");
    let attempts_after = ops.iter().filter(|o| o.node == p && o.start > thawed).count();
    assert!(attempts_after > 0, "the writer on the thawed node kept trying");
    let last_old = ok.iter().filter(|o| o.node == p).map(|o| o.end).max().unwrap();
    let first_new = ok.iter().filter(|o| o.node == next).map(|o| o.start).min().unwrap();
    eprintln!(
        "n{} frozen: n{} elected after {elected:?}; writes unavailable for {:?} (last old \
         commit ended {:?} after the freeze, first new one started {:?} after); commits: {} on \
         the old primary, {} on the new one, {} attempts refused",
        p + 1,
        next + 1,
        first_new.saturating_duration_since(last_old),
        last_old.saturating_duration_since(frozen),
        first_new.saturating_duration_since(frozen),
        on(p),
        on(next),
        ops.len() - ok.len()
    );

    // Async replication: commits the old primary acknowledged but never shipped are not on
    // the new primary (they are set aside when it rejoins). Count them.
    c.kill_node(p);
    c.start_node(p);
    let want = c.pos(next, "f.db").unwrap();
    wait_for("the old primary rejoins", Duration::from_secs(60), || c.pos(p, "f.db") == Some(want));
    let have: std::collections::HashSet<i64> = c
        .sql_ok(next, "f.db", "SELECT id FROM t;")
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    let lost = ok.iter().filter(|o| !have.contains(&o.id)).count();
    let lost_new = ok.iter().filter(|o| o.node == next && !have.contains(&o.id)).count();
    assert_eq!(lost_new, 0, "the new primary lost its own commits");
    eprintln!(
        "acknowledged commits missing on the new primary (async mode): {lost} of {}",
        ok.len()
    );
    drop(c);
    drop(consul);
}
