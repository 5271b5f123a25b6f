//! The scheduled scrub: every `data.scrub-interval`, each database, as SQLite reads it, is
//! compared with its position's checksum (`Db::scrub`). Startup recovery already scans
//! every database whose checksum cache cannot prove it unchanged; this finds damage that
//! happens while the node runs (a page flipped on disk, a write behind litefleet's back).
//!
//! On a mismatch the database is marked damaged (`Db::mark_damaged`): a primary refuses
//! writes to it from then on, with the reason, since its replicas hold the intact copy; a
//! replica asks the primary for a snapshot and is repaired.
//!
//! Every LTX file is verified too; a damaged one is renamed `*.ltx.damaged` and logged, as
//! catch-up does when it meets one (replicas that need it then get a snapshot). Hazard: LTX
//! files are written in place under their final name (no temp file), so a file modified in
//! the last [`SETTLE`] may still be being written and is left for the next round.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

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

/// A file modified this recently may still be being written: not verified this round.
pub const SETTLE: Duration = Duration::from_secs(10);

/// Scrubs every database once; returns how many databases or LTX files are damaged.
pub fn run_once(store: &Store) -> usize {
    let mut bad = 0;
    for db in store.list() {
        bad += scrub_ltx(db.name(), db.ltx_dir());
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

/// Verifies every settled LTX file of one database; returns how many were set aside.
fn scrub_ltx(name: &str, dir: &crate::db::LtxDir) -> usize {
    let files = match dir.list() {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(db = name, error = %e, "scrub: cannot list LTX files");
            return 0;
        }
    };
    #[allow(clippy::disallowed_methods)] // the shell owns the clock
    let now = SystemTime::now();
    let mut bad = 0;
    for (_, _, path) in files {
        let settled = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| now.duration_since(t).unwrap_or_default() >= SETTLE);
        if !settled {
            continue;
        }
        match crate::db::LtxDir::verify(&path) {
            Ok(_) => {}
            // Removed by retention meanwhile.
            Err(crate::core::ltx::LtxError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                bad += 1;
                let aside = path.with_extension("ltx.damaged");
                tracing::error!(db = name, file = %path.display(), error = %e,
                    aside = %aside.display(),
                    "scrub: LTX file is damaged: moved aside; replicas that need it get a snapshot");
                if let Err(e) = std::fs::rename(&path, &aside) {
                    tracing::warn!(db = name, error = %e, "scrub: cannot move the file aside");
                }
            }
        }
    }
    bad
}
