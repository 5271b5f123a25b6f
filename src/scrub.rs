//! The scheduled scrub: every `data.scrub-interval`, each database, as SQLite reads it, is
//! compared with its position's checksum (`Db::scrub`). Startup recovery already scans
//! every database whose checksum cache cannot prove it unchanged; this finds damage that
//! happens while the node runs (a page flipped on disk, a write behind litefleet's back).
//!
//! On a mismatch the database is marked damaged (`Db::mark_damaged`): a primary refuses
//! writes to it from then on, with the reason, since its replicas hold the intact copy; a
//! replica asks the primary for a snapshot and is repaired.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::store::Store;

/// Runs the scrub on a thread until `stop` is set (and the thread unparked). An interval of
/// zero runs nothing.
pub fn spawn(
    store: Arc<Store>,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        if every.is_zero() {
            return;
        }
        while !stop.load(Ordering::SeqCst) {
            std::thread::park_timeout(every);
            if stop.load(Ordering::SeqCst) {
                break;
            }
            run_once(&store);
        }
    })
}

/// Scrubs every database once; returns how many differ from their positions.
pub fn run_once(store: &Store) -> usize {
    let mut bad = 0;
    for db in store.list() {
        let pos = db.pos();
        match db.scrub() {
            Ok(None) => tracing::debug!(db = db.name(), %pos, "scrub: ok"),
            Ok(Some(actual)) => {
                bad += 1;
                let reason = format!(
                    "scrub: its content has checksum {actual}, its position {pos} says {}",
                    pos.checksum
                );
                tracing::error!(db = db.name(), %pos, %actual,
                    primary = store.node().writable(),
                    "scrub: database differs from its position (damaged on disk, or written \
                     behind litefleet's back); a primary refuses writes to it, a replica \
                     resyncs it from the primary");
                db.mark_damaged(reason);
            }
            Err(e) => tracing::warn!(db = db.name(), error = %e, "scrub failed"),
        }
    }
    bad
}
