//! Writers that insert as fast as they can on nodes' mounts and record every attempt
//! (start, end, success): the raw data of the fencing test and the failover benchmark.
//! The attempts are visible while the writers run, so a test waits for the ones it needs
//! ([`Writers::wait`]) rather than for a guessed time.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Op {
    pub node: usize,
    pub start: Instant,
    pub end: Instant,
    pub ok: bool,
    pub id: i64,
    /// SQLite's extended result code of a failed attempt (0: success; -1: not SQLite's).
    pub code: i32,
}

/// `(code, count)` of the failed attempts of `node` that started after `after`.
pub fn errors(ops: &[Op], node: usize, after: Instant) -> Vec<(i32, usize)> {
    let mut m = std::collections::BTreeMap::new();
    for o in ops.iter().filter(|o| !o.ok && o.node == node && o.start > after) {
        *m.entry(o.code).or_insert(0) += 1;
    }
    m.into_iter().collect()
}

/// Writers running on some nodes, one thread each; every attempt is recorded.
pub struct Writers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    ops: Arc<Mutex<Vec<Op>>>,
}

impl Writers {
    /// Starts a [`writer`] for every `(node, database path)`.
    pub fn start(on: impl IntoIterator<Item = (usize, PathBuf)>) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let ops = Arc::new(Mutex::new(Vec::new()));
        let threads = on
            .into_iter()
            .map(|(i, path)| {
                let (stop, ops) = (stop.clone(), ops.clone());
                std::thread::spawn(move || writer(i, path, &stop, &ops))
            })
            .collect();
        Writers { stop, threads, ops }
    }

    /// Waits until the attempts that ended so far satisfy `f`.
    pub fn wait(&self, what: &str, timeout: Duration, f: impl Fn(&[Op]) -> bool) {
        super::cluster::wait_for(what, timeout, || f(&self.ops.lock().unwrap()));
    }

    /// Stops every writer; returns every attempt.
    pub fn stop(self) -> Vec<Op> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        std::mem::take(&mut *self.ops.lock().unwrap())
    }
}

/// How many of `ops` are commits on `node` that ended after `after`.
pub fn commits(ops: &[Op], node: usize, after: Instant) -> usize {
    ops.iter().filter(|o| o.ok && o.node == node && o.end > after).count()
}

static SEQ: AtomicI64 = AtomicI64::new(1);

/// Inserts on `path` until `stop`, recording every attempt in `ops`.
#[allow(clippy::disallowed_methods)]
fn writer(node: usize, path: PathBuf, stop: &AtomicBool, ops: &Mutex<Vec<Op>>) {
    let mut conn: Option<rusqlite::Connection> = None;
    while !stop.load(Ordering::Relaxed) {
        if conn.is_none() {
            match rusqlite::Connection::open(&path) {
                Ok(c) => {
                    let _ = c.busy_timeout(Duration::from_millis(200));
                    conn = Some(c);
                }
                Err(_) => {
                    // Pacing, not a wait: the mount is not there (yet, or any more).
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            }
        }
        // Unique across writers and runs of this process (a later writer on the same node
        // must not collide with rows an earlier one left).
        let id = (node as i64) << 40 | SEQ.fetch_add(1, Ordering::Relaxed);
        let start = Instant::now();
        let r = conn
            .as_ref()
            .unwrap()
            .execute("INSERT INTO t(id, node) VALUES (?1, ?2)", (id, node as i64));
        let end = Instant::now();
        let code = match &r {
            Ok(_) => 0,
            Err(rusqlite::Error::SqliteFailure(e, _)) => e.extended_code,
            Err(_) => -1,
        };
        ops.lock().unwrap().push(Op { node, start, end, ok: r.is_ok(), id, code });
        if r.is_err() {
            conn = None; // a read-only or failed connection is reopened
            // Pacing, not a wait: a refused writer retries at most 100 times a second.
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// No two writable primaries, from the writers' side: a commit is accepted at some instant
/// inside its `[start, end]` (the writer only sees the interval), so the terms of the `old`
/// and the `new` primary are ordered exactly when every successful commit on `old` *started*
/// before every successful commit on `new` *ended*. Returns (the last start on `old`, the
/// first end on `new`); panics naming both when they overlap, or when either node has no
/// successful commit at all.
pub fn assert_terms_ordered(ops: &[Op], old: usize, new: usize) -> (Instant, Instant) {
    let ok = |n: usize| ops.iter().filter(move |o| o.ok && o.node == n);
    let first = ops.iter().map(|o| o.start).min().expect("writes were attempted");
    let last_old_start = ok(old).map(|o| o.start).max().expect("commits on the old primary");
    let first_new_end = ok(new).map(|o| o.end).min().unwrap_or_else(|| {
        panic!("no commit on the new primary n{}: errors {:?}", new + 1, errors(ops, new, first))
    });
    assert!(
        last_old_start < first_new_end,
        "n{} started a commit {:?} after n{} had committed",
        old + 1,
        last_old_start - first_new_end,
        new + 1,
    );
    (last_old_start, first_new_end)
}
