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
use std::fs::File;
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
    pos_tx: watch::Sender<Pos>,
    events: broadcast::Sender<Arc<Committed>>,
    last_ltx_ms: Arc<AtomicI64>,
}

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
            pos_tx,
            events,
            last_ltx_ms: Arc::new(AtomicI64::new(0)),
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

    /// Records one transaction in a file of its own, durable if `c.durable`. Returns the
    /// new position, or `None` if the transaction changed nothing (no file is written then).
    pub fn commit(&mut self, c: &Commit) -> Result<Option<Pos>, DbError> {
        let before = self.state.pos;
        self.commit_group(std::slice::from_ref(c))?;
        if c.durable {
            self.sync()?;
        }
        Ok((self.state.pos != before).then_some(self.state.pos))
    }

    /// Records consecutive transactions, as few files as possible: one LTX file covering
    /// the TXID range of each run of transactions (LiteFS reads such compacted files as
    /// written). Group commit: under load the actor finds many transactions queued and
    /// pays one file creation for all of them. Subscribers still get one [`Committed`] per
    /// transaction.
    ///
    /// Runs are split where a snapshot starts (the first file, or the first after a
    /// deletion, holds only its own transaction) and where the WAL salts change (a file
    /// describes one WAL generation).
    ///
    /// On failure returns how many commits of `batch` were recorded before it.
    pub fn commit_batch(&mut self, batch: &[Commit]) -> Result<(), (usize, DbError)> {
        let mut rest = batch;
        while !rest.is_empty() {
            let snapshot = self.state.pos.txid == Txid::ZERO || self.deleted;
            let salts = |c: &Commit| c.wal.map(|w| (w.salt1, w.salt2));
            let n = if snapshot {
                1
            } else {
                1 + rest[1..].iter().take_while(|c| salts(c) == salts(&rest[0])).count()
            };
            self.commit_group(&rest[..n]).map_err(|e| (batch.len() - rest.len(), e))?;
            rest = &rest[n..];
        }
        Ok(())
    }

    /// Writes one file for `group` (see [`LtxLog::commit_batch`]).
    fn commit_group(&mut self, group: &[Commit]) -> Result<(), DbError> {
        let snapshot = self.state.pos.txid == Txid::ZERO || self.deleted;
        let mut sums = if snapshot { PageChecksums::new() } else { self.state.checksums.clone() };
        let mut pos = self.state.pos;
        // Final content of every page the group changed, dropped again above a shrink.
        let mut union: BTreeMap<PageNo, (&[u8], Checksum)> = BTreeMap::new();
        let mut txns: Vec<Txn<'_>> = Vec::with_capacity(group.len());
        for c in group {
            let old = sums.page_count();
            let first_snapshot = snapshot && txns.is_empty();
            let changed: Vec<(PageNo, &[u8], Checksum)> = c
                .pages
                .iter()
                .map(|(p, d)| (*p, d.as_slice(), page_checksum(*p, d)))
                .filter(|(p, _, sum)| first_snapshot || p.0 > old || sums.page(*p) != Some(*sum))
                .collect();
            if !first_snapshot && changed.is_empty() && c.commit == old {
                continue; // changed nothing: no TXID
            }
            let txid = pos.txid.next().ok_or(DbError::Recovery {
                name: self.name.clone(),
                reason: "TXID space exhausted".into(),
            })?;
            for (p, d, sum) in &changed {
                sums.set(*p, *sum);
                union.insert(*p, (d, *sum));
            }
            sums.truncate(c.commit);
            let _ = union.split_off(&PageNo(c.commit.saturating_add(1)));
            if first_snapshot && c.commit > 0 {
                let missing = sums.missing(c.page_size).count();
                if missing > 0 {
                    return Err(DbError::Recovery {
                        name: self.name.clone(),
                        reason: format!("snapshot at TXID {txid} lacks {missing} pages"),
                    });
                }
            }
            let post = Pos { txid, checksum: sums.checksum() };
            txns.push(Txn { pre: pos, post, commit: c, changed });
            pos = post;
        }
        let (Some(first), Some(last)) = (txns.first(), txns.last()) else { return Ok(()) };
        let wal = match (first.commit.wal, last.commit.wal) {
            (Some(a), Some(b)) => Some(WalRange {
                offset: a.offset,
                size: b.offset + b.size - a.offset,
                salt1: b.salt1,
                salt2: b.salt2,
            }),
            _ => None,
        };
        let pages: Vec<(PageNo, &[u8])> = union.iter().map(|(p, (d, _))| (*p, *d)).collect();
        let file = self.encode(first.pre, last.post, last.commit, wal, &pages)?;
        self.dir.write_file(first.post.txid, last.post.txid, &file, false)?;
        let path =
            self.dir.path().join(crate::core::ltx::file_name(first.post.txid, last.post.txid));
        self.unsynced.push(path);

        // Published only now: a subscriber never sees a transaction without its file.
        let single = txns.len() == 1;
        let publish = self.events.receiver_count() > 0;
        let mut file = Some(file);
        for t in &txns {
            if !publish {
                break;
            }
            let ltx = if single {
                file.take().unwrap_or_default()
            } else {
                let pages: Vec<(PageNo, &[u8])> =
                    t.changed.iter().map(|(p, d, _)| (*p, *d)).collect();
                self.encode(t.pre, t.post, t.commit, t.commit.wal, &pages)?
            };
            let _ =
                self.events.send(Arc::new(Committed { pre: t.pre, pos: t.post, ltx: ltx.into() }));
        }
        self.state.checksums = sums;
        self.state.pos = last.post;
        self.state.page_size = last.commit.page_size;
        self.deleted = false;
        self.last_ltx_ms.store(last.commit.timestamp_ms, Ordering::Relaxed);
        self.pos_tx.send_replace(self.state.pos);
        tracing::debug!(db = %self.name, pos = %self.state.pos, txns = txns.len(),
            pages = pages.len(), "committed");
        Ok(())
    }

    /// Encodes one LTX file from `pre` to `post` ending with `last`'s commit.
    fn encode(
        &self,
        pre: Pos,
        post: Pos,
        last: &Commit,
        wal: Option<WalRange>,
        pages: &[(PageNo, &[u8])],
    ) -> Result<Vec<u8>, DbError> {
        let min = pre.txid.next().unwrap_or(post.txid);
        let w = wal.unwrap_or_default();
        let header = Header {
            flags: if self.opts.compress { FLAG_COMPRESS_LZ4 } else { 0 },
            page_size: last.page_size,
            commit: last.commit,
            min_txid: min,
            max_txid: post.txid,
            timestamp: last.timestamp_ms,
            // Only TXID 1 has no pre-apply checksum.
            pre_apply_checksum: if min == Txid(1) { Checksum(0) } else { pre.checksum },
            wal_offset: w.offset as i64,
            wal_size: w.size as i64,
            wal_salt1: w.salt1,
            wal_salt2: w.salt2,
            node_id: self.opts.node_id,
        };
        let mut buf = Vec::with_capacity(pages.len() * (last.page_size as usize + 4) + 256);
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
        let pre = self.state.pos;
        let post = Pos { txid, checksum: PageChecksums::new().checksum() };
        let c = Commit {
            page_size,
            commit: 0,
            pages: Vec::new(),
            wal: None,
            durable: true,
            timestamp_ms,
        };
        let file = self.encode(pre, post, &c, None, &[])?;
        self.dir.write_file(txid, txid, &file, true)?;
        self.sync()?;
        let _ = self.events.send(Arc::new(Committed { pre, pos: post, ltx: file.into() }));
        self.state = DbState { pos: post, page_size, checksums: PageChecksums::new() };
        self.deleted = true;
        self.last_ltx_ms.store(timestamp_ms, Ordering::Relaxed);
        self.pos_tx.send_replace(post);
        Ok(post)
    }

    /// fdatasyncs every LTX file written since the last sync.
    ///
    /// Hazard: the directory itself is not fsynced. On ext4 (journaled), fsync of a new
    /// file commits the journal transaction that holds its directory entry; other
    /// filesystems may need a directory fsync, which [`LtxDir::sync_dir`] provides.
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

    pub fn has_unsynced(&self) -> bool {
        !self.unsynced.is_empty()
    }
}

/// One transaction of a group, before its file is written.
struct Txn<'a> {
    pre: Pos,
    post: Pos,
    commit: &'a Commit,
    changed: Vec<(PageNo, &'a [u8], Checksum)>,
}

fn ltx_io(e: LtxError) -> io::Error {
    match e {
        LtxError::Io(e) => e,
        e => io::Error::other(e.to_string()),
    }
}
