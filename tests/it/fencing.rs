//! No two writable primaries: three candidates on a real Consul, a writer on *every* node
//! inserting as fast as it can, and the primary frozen with SIGSTOP past the failover
//! timeout (its session is destroyed, another node takes over and accepts writes), then
//! thawed with SIGCONT. Every commit any writer saw succeed is an interval `[start, end]`
//! holding the instant it was accepted: every commit of the old term must start before any
//! commit of the new term ends, nothing started after the freeze may succeed on the frozen
//! node, and once awake it refuses writes (its fence expired while it slept; its lease is
//! gone), then demotes itself and follows the new primary without a restart.

use std::time::{Duration, Instant};

use crate::common::cluster::{Cluster, wait_for};
use crate::common::consul::Consul;
use crate::common::writers::{Op, Writers, assert_terms_ordered, commits};
use crate::common::{need, tmp};

const N: usize = 3;

#[test]
#[allow(clippy::disallowed_methods)]
fn a_paused_primary_never_writes_alongside_its_successor() {
    need::fuse();
    need::sqlite3();
    need::consul();
    let root = tmp("fencing");
    let consul = Consul::start(root.join("consul"));
    let c = Cluster::start_consul(&root, N, &consul.url(), "litefleet/fencing", "");
    let p = c.wait_new_primary(&[0; N], None, Duration::from_secs(30));
    c.writers_table(p, "f.db");

    let started = Instant::now();
    let writers = Writers::start((0..N).map(|i| (i, c.db(i, "f.db"))));
    writers.wait("commits on the primary", Duration::from_secs(30), |ops| {
        commits(ops, p, started) >= 20
    });

    // Freeze the primary with writes in flight.
    let before: Vec<usize> = (0..N).map(|i| c.terms(i)).collect();
    c.signal(p, libc::SIGSTOP);
    // SIGSTOP is delivered asynchronously: the freeze starts when every thread is stopped
    // (a write may still be accepted between kill(2) and that).
    wait_for("the primary to stop", Duration::from_secs(5), || c.stopped(p));
    let frozen = Instant::now();
    let next = c.wait_new_primary(&before, Some(p), Duration::from_secs(40));
    let elected = frozen.elapsed();
    // The successor takes writes while the old primary still sleeps.
    writers.wait("commits on the new primary", Duration::from_secs(30), |ops| {
        commits(ops, next, frozen) >= 20
    });
    c.signal(p, libc::SIGCONT);
    let thawed = Instant::now();
    // The thawed node learns its lease is gone (renew: 404) and stays read-only.
    wait_for("the old primary to learn it lost the lease", Duration::from_secs(20), || {
        c.log(p).contains("lease lost")
    });
    // The writer on the thawed node tries again (and is refused) after it learnt that.
    let learnt = Instant::now();
    writers.wait("attempts on the thawed node", Duration::from_secs(30), |ops| {
        ops.iter().any(|o| o.node == p && o.start > learnt)
    });
    let ops: Vec<Op> = writers.stop();

    // The property: a commit is accepted at some instant inside [start, end] (the writer only
    // sees the interval), so two primaries' commits are ordered by their terms exactly when
    // every commit of the old term *starts* before every commit of the new term *ends*.
    // (A commit in flight when the primary froze can *end* after its successor's first
    // commit: its WAL write was taken before the freeze and SQLite's return only came after
    // the thaw.) And nothing that started after the freeze was accepted.
    let ok: Vec<&Op> = ops.iter().filter(|o| o.ok).collect();
    let on = |n: usize| ok.iter().filter(|o| o.node == n).count();
    assert!(
        on(p) > 0 && on(next) > 0,
        "commits on both the old ({}) and new ({}) primary",
        on(p),
        on(next)
    );
    let third = (0..N).find(|&i| i != p && i != next).unwrap();
    assert_eq!(on(third), 0, "the third node never was primary");
    let (_, first_new_end) = assert_terms_ordered(&ops, p, next);
    let late: Vec<_> = ok
        .iter()
        .filter(|o| o.node == p && o.start > frozen)
        .map(|o| (o.start - frozen, o.end.saturating_duration_since(frozen)))
        .collect();
    assert!(
        late.is_empty(),
        "the frozen primary accepted writes started after the freeze: {late:?}"
    );
    let spanning = ok.iter().filter(|o| o.node == p && o.end > thawed).count();
    let attempts_after = ops.iter().filter(|o| o.node == p && o.start > thawed).count();
    assert!(attempts_after > 0, "the writer on the thawed node kept trying");
    eprintln!(
        "n{} frozen: n{} elected after {elected:?}, its first commit ended {:?} after the \
         freeze; commits: {} on the old primary ({spanning} in flight across the freeze, \
         returned after the thaw), {} on the new one, {} attempts refused",
        p + 1,
        next + 1,
        first_new_end.saturating_duration_since(frozen),
        on(p),
        on(next),
        ops.len() - ok.len()
    );

    // The old primary, still running, demotes itself and follows its successor (no
    // restart). Async replication: commits it acknowledged but never shipped are not on the
    // new primary (they are set aside when it rejoins). Count them.
    let want = c.pos(next, "f.db").unwrap();
    wait_for("the old primary rejoins", Duration::from_secs(60), || c.pos(p, "f.db") == Some(want));
    assert!(c.log(p).contains("demoted: this node was the primary"), "n{} demoted live", p + 1);
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
