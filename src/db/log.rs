//! The LTX log of one database: turns committed transactions into LTX files, owns the
//! position, and publishes every new transaction to subscribers.
//!
//! Owned by the database's actor ([`super::actor`]) while the node runs, and used directly
//! by startup recovery before the actor exists. Single-threaded by construction: nothing
//! here locks.
//!
//! Durability: [`LtxLog::commit`] writes the file (page cache only) unless the commit asks
//! for `durable`; [`LtxLog::sync`] fdatasyncs every file written since the last sync. The
//! shell decides when (see [`super`]: before a checkpoint or WAL restart could destroy the
//! WAL copy of a transaction, on SQLite's fsync of a rollback-journal database, and when
//! idle).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use bytes::Bytes;
use tokio::sync::{broadcast, watch};

use super::{DbError, DbOptions, LtxDir};
use crate::core::ltx::{
    DbState, FLAG_COMPRESS_LZ4, Header, LtxError, LtxWriter, PageChecksums, page_checksum,
};
use crate::core::types::{Checksum, PageNo, Pos, Txid};

/// WAL fields of an LTX header: offset and size of the transaction's frames, and the salts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalRange {
    pub offset: u64,
    pub size: u64,
    pub salt1: u32,
    pub salt2: u32,
}

/// One committed transaction as SQLite left it: the database has `commit` pages and
/// `pages` hold the content of every page the transaction may have changed (sorted, no
/// duplicates, no lock page). Pages whose content did not change are dropped here.
#[derive(Debug)]
pub struct Commit {
    pub page_size: u32,
    pub commit: u32,
    pub pages: Vec<(PageNo, Vec<u8>)>,
    pub wal: Option<WalRange>,
    /// fdatasync this file (and every earlier unsynced one) before returning.
    pub durable: bool,
    /// Timestamp for the LTX header, milliseconds since the Unix epoch (the shell's clock).
    pub timestamp_ms: i64,
}

/// A transaction that reached the LTX directory, as subscribers see it.
#[derive(Debug, Clone)]
pub struct Committed {
    /// Position before the transaction (the replica must be here to apply `ltx`).
    pub pre: Pos,
    /// Position after it.
    pub pos: Pos,
    /// The whole LTX file.
    pub ltx: Bytes,
}

/// Capacity of the in-memory fan-out. A subscriber further behind than this many
/// transactions gets `Lagged` and must catch up from the LTX directory.
pub const FANOUT_CAPACITY: usize = 1024;

/// See the module docs.
pub struct LtxLog {
    name: String,
    dir: LtxDir,
    opts: DbOptions,
    pub(super) state: DbState,
    /// True after a deletion: the next file is a snapshot.
    pub(super) deleted: bool,
    unsynced: Vec<PathBuf>,
    /// Transactions staged for the next file.
    staged: Option<Staged>,
    pos_tx: watch::Sender<Pos>,
    events: broadcast::Sender<Arc<Committed>>,
    last_ltx_ms: Arc<AtomicI64>,
    /// This node wrote the transactions after this TXID itself (as a primary) and no
    /// other node has confirmed them: kept in [`OWN_FILE`] (durable before the first of
    /// them is written), cleared when a replicated file continues exactly from this node's
    /// position (its pre-apply checksum proves the whole history) or a snapshot replaces
    /// it. See `core::repl::ApplyError::Unconfirmed`.
    pub(super) own_since: Option<Txid>,
    /// The node's event fan-out (`/events`), and this database's name as events carry it.
    hub: Option<(Arc<crate::observe::Hub>, Arc<str>)>,
    metrics: Option<Arc<crate::metrics::DbMetrics>>,
}

/// File under `dbs/<name>/` holding [`LtxLog::own_since`] (a decimal TXID).
pub const OWN_FILE: &str = "own-since";

impl LtxLog {
    pub fn new(name: &str, dir: LtxDir, opts: DbOptions) -> LtxLog {
        let (pos_tx, _) = watch::channel(Pos::EMPTY);
        let (events, _) = broadcast::channel(FANOUT_CAPACITY);
        LtxLog {
            name: name.to_owned(),
            dir,
            opts,
            state: DbState::default(),
            deleted: false,
            unsynced: Vec::new(),
            staged: None,
            pos_tx,
            events,
            last_ltx_ms: Arc::new(AtomicI64::new(0)),
            own_since: None,
            hub: None,
            metrics: None,
        }
        .with_own_since()
    }

    /// Publishes every transaction from now on to `hub` (`/events`) and counts them in
    /// `metrics`.
    pub fn set_observers(
        &mut self,
        hub: Arc<crate::observe::Hub>,
        metrics: Arc<crate::metrics::DbMetrics>,
    ) {
        self.hub = Some((hub, Arc::from(self.name.as_str())));
        self.metrics = Some(metrics);
    }

    /// Tells the hub about transactions `min..=pos.txid` (nothing is built without a
    /// subscriber).
    fn publish(&self, min: Txid, pos: Pos, page_size: u32, commit: u32, ts: i64) {
        if let Some((hub, name)) = &self.hub {
            hub.tx(name, min, pos, page_size, commit, ts);
        }
    }

    fn own_path(&self) -> PathBuf {
        self.dir.path().parent().unwrap_or(self.dir.path()).join(OWN_FILE)
    }

    fn with_own_since(mut self) -> LtxLog {
        self.own_since = std::fs::read_to_string(self.own_path())
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Txid);
        self
    }

    /// Records (once per term) that this node's own transactions start after `pre`.
    fn note_own(&mut self, pre: Txid) -> Result<(), DbError> {
        if self.own_since.is_some() {
            return Ok(());
        }
        let path = self.own_path();
        let mut f = File::create(&path)?;
        std::io::Write::write_all(&mut f, format!("{}\n", pre.0).as_bytes())?;
        f.sync_all()?;
        self.own_since = Some(pre);
        Ok(())
    }

    /// This node's history was confirmed by, or replaced with, the primary's.
    fn confirm_own(&mut self) {
        if self.own_since.take().is_some() {
            let _ = std::fs::remove_file(self.own_path());
            tracing::debug!(db = %self.name, "own transactions confirmed by the primary");
        }
    }

    pub fn pos(&self) -> Pos {
        self.state.pos
    }

    pub fn pos_watch(&self) -> watch::Receiver<Pos> {
        self.pos_tx.subscribe()
    }

    pub fn events(&self) -> broadcast::Sender<Arc<Committed>> {
        self.events.clone()
    }

    pub fn last_ltx_ms(&self) -> Arc<AtomicI64> {
        self.last_ltx_ms.clone()
    }

    /// Sets the recovered position (startup only).
    pub(super) fn set_recovered(&mut self, state: DbState, deleted: bool, last_ms: i64) {
        self.state = state;
        self.deleted = deleted;
        self.last_ltx_ms.store(last_ms, Ordering::Relaxed);
        self.pos_tx.send_replace(self.state.pos);
    }

    /// Records one transaction and writes its file at once, durable if `c.durable`
    /// (startup recovery). Returns the new position, or `None` if the transaction changed
    /// nothing (no file is written then).
    pub fn commit(&mut self, c: Commit) -> Result<Option<Pos>, DbError> {
        let before = self.state.pos;
        let durable = c.durable;
        self.stage(c)?;
        self.flush()?;
        if durable {
            self.sync()?;
        }
        Ok((self.state.pos != before).then_some(self.state.pos))
    }

    /// Takes one committed transaction: assigns its TXID, advances the position, publishes
    /// it to subscribers (with its own LTX bytes), and adds its pages to the staged file.
    /// Nothing touches the disk: [`LtxLog::flush`] writes the staged file.
    ///
    /// Group commit: consecutive transactions share one LTX file covering their TXID range
    /// (a compacted file, which LiteFS reads as written), so a burst of commits costs one
    /// file creation instead of one each. A staged transaction that has no file yet is
    /// still in the WAL, which the shell keeps until a barrier flushed it.
    pub fn stage(&mut self, c: Commit) -> Result<(), DbError> {
        let old = self.state.checksums.page_count();
        // A page size change rewrites every page, as after a deletion (see `Db::write`).
        let resized = self.state.page_size != 0 && c.page_size != self.state.page_size;
        let snapshot = self.state.pos.txid == Txid::ZERO || self.deleted || resized;
        let mut changed: Vec<(PageNo, Vec<u8>, Checksum)> = Vec::with_capacity(c.pages.len());
        for (p, d) in c.pages {
            let sum = page_checksum(p, &d);
            if snapshot || p.0 > old || self.state.checksums.page(p) != Some(sum) {
                changed.push((p, d, sum));
            }
        }
        if !snapshot && changed.is_empty() && c.commit == old {
            return Ok(()); // changed nothing: no TXID
        }
        let salts = |w: Option<WalRange>| w.map(|w| (w.salt1, w.salt2));
        if self
            .staged
            .as_ref()
            .is_some_and(|st| salts(st.wal) != salts(c.wal) || st.page_size != c.page_size)
        {
            // One file describes one WAL generation, at one page size.
            self.flush()?;
        }
        let txid = self.state.pos.txid.next().ok_or(DbError::Recovery {
            name: self.name.clone(),
            reason: "TXID space exhausted".into(),
        })?;
        if snapshot {
            let mut sums = PageChecksums::new();
            for (p, _, sum) in &changed {
                sums.set(*p, *sum);
            }
            sums.truncate(c.commit);
            let missing = if c.commit > 0 { sums.missing(c.page_size).count() } else { 0 };
            if missing > 0 {
                return Err(DbError::Recovery {
                    name: self.name.clone(),
                    reason: format!("snapshot at TXID {txid} lacks {missing} pages"),
                });
            }
            self.state.checksums = sums;
        } else {
            // In place: a clone would cost O(database) per commit.
            for (p, _, sum) in &changed {
                self.state.checksums.set(*p, *sum);
            }
            self.state.checksums.truncate(c.commit);
        }
        let pre = self.state.pos;
        let post = Pos { txid, checksum: self.state.checksums.checksum() };
        self.state.pos = post;
        self.state.page_size = c.page_size;
        self.deleted = false;
        // Invariant: the position is published before the transaction is offered to the
        // replication streams. A replica can apply it and ACK it before this thread runs
        // again, and the primary bounds every ACK by `Db::pos` (an ACK read against the
        // old position was recorded one TXID short, and a synchronous commit then waited
        // for an ACK no replica would send again).
        self.pos_tx.send_replace(post);

        if self.events.receiver_count() > 0 {
            let pages: Vec<(PageNo, &[u8])> =
                changed.iter().map(|(p, d, _)| (*p, d.as_slice())).collect();
            let ltx =
                self.encode(pre, post, c.page_size, c.commit, c.timestamp_ms, c.wal, &pages)?;
            let _ = self.events.send(Arc::new(Committed { pre, pos: post, ltx: ltx.into() }));
        }
        let st = self.staged.get_or_insert_with(|| Staged {
            pre,
            post,
            page_size: c.page_size,
            commit: c.commit,
            timestamp_ms: c.timestamp_ms,
            wal: c.wal,
            pages: BTreeMap::new(),
            txns: 0,
            bytes: 0,
        });
        for (p, d, _) in changed {
            st.bytes += d.len();
            st.pages.insert(p, d);
        }
        let _ = st.pages.split_off(&PageNo(c.commit.saturating_add(1)));
        st.post = post;
        st.page_size = c.page_size;
        st.commit = c.commit;
        st.timestamp_ms = c.timestamp_ms;
        st.wal = match (st.wal, c.wal) {
            (Some(a), Some(b)) => Some(WalRange {
                offset: a.offset,
                size: b.offset + b.size - a.offset,
                salt1: b.salt1,
                salt2: b.salt2,
            }),
            (_, w) => w,
        };
        st.txns += 1;
        self.publish(txid, post, c.page_size, c.commit, c.timestamp_ms);
        if let Some(m) = &self.metrics {
            m.txns(txid, txid, Some(crate::clock::now()));
        }
        tracing::trace!(db = %self.name, pos = %post, "staged");
        Ok(())
    }

    /// Transactions and page bytes staged but not written.
    pub fn staged(&self) -> (usize, usize) {
        self.staged.as_ref().map(|s| (s.txns, s.bytes)).unwrap_or_default()
    }

    /// Writes the staged file (page cache only: see [`LtxLog::sync`]). On failure the
    /// staged transactions stay staged, to be retried.
    pub fn flush(&mut self) -> Result<(), DbError> {
        let Some(pre) = self.staged.as_ref().map(|s| s.pre.txid) else { return Ok(()) };
        self.note_own(pre)?;
        let Some(st) = self.staged.take() else { return Ok(()) };
        let pages: Vec<(PageNo, &[u8])> =
            st.pages.iter().map(|(p, d)| (*p, d.as_slice())).collect();
        let written = self
            .encode(st.pre, st.post, st.page_size, st.commit, st.timestamp_ms, st.wal, &pages)
            .and_then(|file| {
                let min = st.pre.txid.next().unwrap_or(st.post.txid);
                Ok((self.dir.write_file(min, st.post.txid, &file, false)?, file.len()))
            });
        match written {
            Ok((path, len)) => {
                self.note_written(len);
                self.unsynced.push(path);
                self.last_ltx_ms.store(st.timestamp_ms, Ordering::Relaxed);
                tracing::debug!(db = %self.name, pos = %st.post, txns = st.txns,
                    pages = st.pages.len(), "LTX file written");
                Ok(())
            }
            Err(e) => {
                self.staged = Some(st);
                Err(e)
            }
        }
    }

    fn note_written(&self, len: usize) {
        if let Some(m) = &self.metrics {
            m.ltx_written(len);
        }
    }

    /// Encodes one LTX file from `pre` to `post` ending with `last`'s commit.
    #[allow(clippy::too_many_arguments)]
    fn encode(
        &self,
        pre: Pos,
        post: Pos,
        page_size: u32,
        commit: u32,
        timestamp_ms: i64,
        wal: Option<WalRange>,
        pages: &[(PageNo, &[u8])],
    ) -> Result<Vec<u8>, DbError> {
        let min = pre.txid.next().unwrap_or(post.txid);
        let w = wal.unwrap_or_default();
        let header = Header {
            flags: if self.opts.compress { FLAG_COMPRESS_LZ4 } else { 0 },
            page_size,
            commit,
            min_txid: min,
            max_txid: post.txid,
            timestamp: timestamp_ms,
            // Only TXID 1 has no pre-apply checksum.
            pre_apply_checksum: if min == Txid(1) { Checksum(0) } else { pre.checksum },
            wal_offset: w.offset as i64,
            wal_size: w.size as i64,
            wal_salt1: w.salt1,
            wal_salt2: w.salt2,
            node_id: self.opts.node_id,
        };
        let mut buf = Vec::with_capacity(pages.len() * (page_size as usize + 4) + 256);
        let mut lw = LtxWriter::new(&mut buf, header).map_err(ltx_io)?;
        for (p, d) in pages {
            lw.write_page(*p, d).map_err(ltx_io)?;
        }
        lw.finish(post.checksum).map_err(ltx_io)?;
        Ok(buf)
    }

    /// Records a deletion of the database (an LTX file with Commit 0), durably.
    pub fn delete(&mut self, page_size: u32, timestamp_ms: i64) -> Result<Pos, DbError> {
        let page_size = if page_size == 0 { 4096 } else { page_size };
        let txid = self.state.pos.txid.next().ok_or(DbError::Recovery {
            name: self.name.clone(),
            reason: "TXID space exhausted".into(),
        })?;
        self.flush()?;
        let pre = self.state.pos;
        self.note_own(pre.txid)?;
        let post = Pos { txid, checksum: PageChecksums::new().checksum() };
        let file = self.encode(pre, post, page_size, 0, timestamp_ms, None, &[])?;
        self.dir.write_file(txid, txid, &file, true)?;
        self.note_written(file.len());
        if let Some(m) = &self.metrics {
            m.txns(txid, txid, Some(crate::clock::now()));
        }
        self.sync()?;
        self.state = DbState { pos: post, page_size, checksums: PageChecksums::new() };
        self.deleted = true;
        self.last_ltx_ms.store(timestamp_ms, Ordering::Relaxed);
        // Published before it is offered to the streams (see `stage`).
        self.pos_tx.send_replace(post);
        let _ = self.events.send(Arc::new(Committed { pre, pos: post, ltx: file.into() }));
        self.publish(txid, post, page_size, 0, timestamp_ms);
        Ok(post)
    }

    /// Stores a file received from the primary under its own name (replica), before its
    /// pages reach the database file: a killed replica finds it and re-applies it. It is
    /// fdatasynced by the idle sync, not here: after a power loss a replica whose database
    /// and newest LTX file disagree reports its real checksum and the primary resyncs it
    /// (see `recover`), so durability here would only buy speed of recovery, at an fsync
    /// per transaction.
    pub fn store_received(&mut self, min: Txid, max: Txid, ltx: &[u8]) -> Result<(), DbError> {
        self.flush()?;
        let path = self.dir.write_file(min, max, ltx, false)?;
        self.note_written(ltx.len());
        self.unsynced.push(path);
        Ok(())
    }

    /// Takes the position of a file applied on a replica (see `replica::apply`).
    pub fn adopt(&mut self, inc: &crate::core::repl::Incoming) {
        let pre = self.state.pos;
        if inc.snapshot || inc.min_txid.0 == pre.txid.0 + 1 {
            self.confirm_own();
        }
        inc.commit_to(&mut self.state);
        self.deleted = inc.commit == 0;
        self.last_ltx_ms.store(inc.timestamp_ms, Ordering::Relaxed);
        self.pos_tx.send_replace(self.state.pos);
        // A snapshot is one event at its position, not one per TXID it covers.
        let min = if inc.snapshot { self.state.pos.txid } else { inc.min_txid };
        self.publish(min, self.state.pos, inc.page_size, inc.commit, inc.timestamp_ms);
        if let Some(m) = &self.metrics {
            // Counted as the TXIDs the position moved by (a snapshot from nothing: all).
            m.txns(Txid(pre.txid.0 + 1), self.state.pos.txid, None);
            m.applied(inc.timestamp_ms, crate::clock::wall_ms(), inc.snapshot);
        }
        tracing::debug!(db = %self.name, %pre, pos = %self.state.pos, "applied");
    }

    /// fdatasyncs every LTX file written since the last sync.
    ///
    /// Hazard: the directory itself is not fsynced per file. On ext4, fsync of a new file
    /// makes its directory entry durable too (with a journal, the commit holds it; without
    /// one, ext4 syncs the parent of a new inode); other filesystems may need
    /// [`LtxDir::sync_dir`].
    pub fn sync(&mut self) -> Result<(), DbError> {
        for path in &self.unsynced {
            match File::open(path) {
                Ok(f) => f.sync_data()?,
                // Removed by retention since: nothing to make durable.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.unsynced.clear();
        Ok(())
    }

    /// Moves every LTX file into `dest` (created), durably: the database's history is not the
    /// primary's, and a resync snapshot is about to replace it. Returns the moved files'
    /// names. The database file and position are unchanged until the snapshot applies.
    pub fn set_aside(&mut self, dest: &std::path::Path) -> Result<Vec<String>, DbError> {
        self.flush()?;
        self.sync()?;
        let files = self.dir.list()?;
        if files.is_empty() {
            self.confirm_own();
            return Ok(Vec::new());
        }
        fs::create_dir_all(dest)?;
        let mut names = Vec::new();
        for (_, _, path) in files {
            let Some(name) = path.file_name() else { continue };
            fs::rename(&path, dest.join(name))?;
            names.push(name.to_string_lossy().into_owned());
        }
        // Both directories: the files must be in exactly one place after a crash.
        File::open(dest)?.sync_all()?;
        self.dir.sync_dir()?;
        if let Some(m) = &self.metrics {
            m.set_aside(names.len());
            m.ltx_dir(0, 0);
        }
        // This node's own unconfirmed transactions are in the files set aside: kept there,
        // and the snapshot that follows may replace them here.
        self.confirm_own();
        Ok(names)
    }

    pub fn has_unsynced(&self) -> bool {
        !self.unsynced.is_empty()
    }
}

/// Transactions `pre.txid + 1 ..= post.txid`, waiting to be written as one file.
struct Staged {
    pre: Pos,
    post: Pos,
    page_size: u32,
    commit: u32,
    timestamp_ms: i64,
    /// Frames of all staged transactions (one WAL generation), if WAL commits.
    wal: Option<WalRange>,
    /// Final content of every page changed, none above `commit`.
    pages: BTreeMap<PageNo, Vec<u8>>,
    txns: usize,
    bytes: usize,
}

fn ltx_io(e: LtxError) -> io::Error {
    match e {
        LtxError::Io(e) => e,
        e => io::Error::other(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::types::NodeId;

    /// A stream that receives a transaction and sees its ACK come back must find the
    /// position already at that transaction (the primary bounds ACKs by it). A subscriber
    /// spinning on the fan-out checks every transaction the moment it is offered.
    #[test]
    fn the_position_is_published_before_the_transaction_is_offered() {
        let dir = std::env::temp_dir().join(format!("litefleet-log-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let opts = DbOptions { compress: false, node_id: NodeId(1) };
        let mut log = LtxLog::new("a.db", LtxDir::new(dir.clone()), opts);
        let pos = log.pos_watch();
        let mut rx = log.events().subscribe();
        const TXNS: u64 = 2000;
        let checker = std::thread::spawn(move || {
            let mut short = 0;
            let mut seen = 0;
            while seen < TXNS {
                match rx.try_recv() {
                    Ok(c) => {
                        seen += 1;
                        if pos.borrow().txid < c.pos.txid {
                            short += 1;
                        }
                    }
                    Err(broadcast::error::TryRecvError::Empty) => std::hint::spin_loop(),
                    Err(e) => panic!("{e}"),
                }
            }
            short
        });
        for i in 0..TXNS {
            // Many changed pages: staging them takes long enough to be seen.
            let pages = (1..=64).map(|p| (PageNo(p), vec![(i + p as u64) as u8; 4096])).collect();
            let c = Commit {
                page_size: 4096,
                commit: 64,
                pages,
                wal: None,
                durable: false,
                timestamp_ms: 0,
            };
            log.stage(c).unwrap();
            if log.staged().0 >= 100 {
                log.flush().unwrap();
            }
        }
        let short = checker.join().unwrap();
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(short, 0, "transactions offered before their position");
    }
}
