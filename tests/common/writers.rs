//! A writer that inserts as fast as it can on one node's mount and records every attempt
//! (start, end, success): the raw data of the fencing test and the failover benchmark.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Op {
    pub node: usize,
    pub start: Instant,
    pub end: Instant,
    pub ok: bool,
    pub id: i64,
}

/// Inserts on `path` until `stop`, recording every attempt.
#[allow(clippy::disallowed_methods)]
pub fn writer(node: usize, path: std::path::PathBuf, stop: Arc<AtomicBool>) -> Vec<Op> {
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
