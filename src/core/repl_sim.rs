//! Simulation of replication on the sans-IO core: a primary committing random transactions
//! (growing, shrinking, group-committed into ranged files, compacted, trimmed by retention),
//! a replica that disconnects, restarts and reconnects at random, files corrupted in
//! transit. Every interleaving, over many seeds, must end with the replica byte-identical
//! at the primary's position, its TXID never going backwards, and no corrupt file applied.

use crate::core::ltx::{
    DbState, FLAG_COMPRESS_LZ4, LtxReader, MemStore, PageChecksums, PageStore, compact,
    page_checksum,
};
use crate::core::repl::{Incoming, Plan, plan};
use crate::core::types::{PageNo, Pos, Txid};

use crate::core::sim::{PS, Rng};

struct Primary {
    store: MemStore,
    state: DbState,
    /// (min, max, file bytes), sorted.
    files: Vec<(Txid, Txid, Vec<u8>)>,
    /// Per-transaction files (the in-memory fan-out), by TXID.
    live: Vec<(Pos, Vec<u8>)>,
}

fn encode(pre: Pos, min: Txid, post: Pos, commit: u32, pages: &[(PageNo, Vec<u8>)]) -> Vec<u8> {
    crate::core::sim::encode(FLAG_COMPRESS_LZ4, pre, min, post, commit, pages)
}

impl Primary {
    fn commit(&mut self, rng: &mut Rng) {
        let old = self.state.checksums.page_count();
        let commit = match rng.below(10) {
            0 if old > 2 => old - 1 - rng.below(u64::from(old / 2)) as u32, // shrink
            1..=3 => old + 1 + rng.below(3) as u32,                         // grow
            _ => old.max(1),
        };
        let mut pages: Vec<(PageNo, Vec<u8>)> = Vec::new();
        // Growth must be written in full; then some random existing pages.
        for p in old + 1..=commit {
            pages.push((PageNo(p), vec![rng.next() as u8; PS as usize]));
        }
        for _ in 0..rng.below(4) {
            let p = 1 + rng.below(u64::from(commit)) as u32;
            if !pages.iter().any(|(q, _)| q.0 == p) {
                pages.push((PageNo(p), vec![rng.next() as u8; PS as usize]));
            }
        }
        if self.state.pos.txid == Txid::ZERO {
            pages =
                (1..=commit).map(|p| (PageNo(p), vec![rng.next() as u8; PS as usize])).collect();
        }
        pages.sort_by_key(|(p, _)| *p);
        for (p, d) in &pages {
            self.store.write_page(*p, d).unwrap();
            self.state.checksums.set(*p, page_checksum(*p, d));
        }
        self.store.truncate(commit, PS).unwrap();
        self.state.checksums.truncate(commit);
        let pre = self.state.pos;
        let post = Pos { txid: Txid(pre.txid.0 + 1), checksum: self.state.checksums.checksum() };
        self.state.pos = post;
        self.state.page_size = PS;
        let file = encode(pre, post.txid, post, commit, &pages);
        self.live.push((pre, file.clone()));
        // Group commit: sometimes merge into the newest file instead of a new one.
        if rng.chance(30)
            && let Some((min, max, last)) = self.files.pop()
            && max.0 + 1 == post.txid.0
        {
            let readers = vec![
                LtxReader::new(&last[..], last.len() as u64).unwrap(),
                LtxReader::new(&file[..], file.len() as u64).unwrap(),
            ];
            let (out, _) = compact(readers, FLAG_COMPRESS_LZ4, Vec::new()).unwrap();
            self.files.push((min, post.txid, out));
        } else {
            self.files.push((post.txid, post.txid, file));
        }
        // Retention: sometimes drop the oldest files (never the newest).
        if rng.chance(5) && self.files.len() > 3 {
            let n = rng.below(self.files.len() as u64 - 1) as usize;
            self.files.drain(..n);
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        let n = self.state.checksums.page_count();
        let pages: Vec<(PageNo, Vec<u8>)> = (1..=n)
            .map(|p| {
                let off = (p - 1) as usize * PS as usize;
                let mut b = vec![0u8; PS as usize];
                let end = (off + PS as usize).min(self.store.bytes.len());
                if off < end {
                    b[..end - off].copy_from_slice(&self.store.bytes[off..end]);
                }
                (PageNo(p), b)
            })
            .collect();
        encode(Pos::EMPTY, Txid(1), self.state.pos, n, &pages)
    }
}

struct Replica {
    store: MemStore,
    state: DbState,
    connected: bool,
    /// Position the primary believes it sent (per session).
    sent: Option<Pos>,
    applied: usize,
    refused: usize,
}

impl Replica {
    /// Verifies and applies; a corrupt file leaves everything unchanged.
    fn receive(&mut self, file: &[u8], corrupt: bool) -> bool {
        let mut f = file.to_vec();
        if corrupt {
            let i = f.len() / 2;
            f[i] ^= 0x40;
        }
        let before = (self.state.pos, self.store.bytes.clone());
        match Incoming::check(&f[..], f.len() as u64, &self.state, None) {
            Ok(inc) => {
                assert!(inc.pos.txid >= self.state.pos.txid, "TXID went backwards");
                if inc.snapshot {
                    self.store.bytes.clear();
                }
                for (p, d, _) in &inc.pages {
                    self.store.write_page(*p, d).unwrap();
                }
                self.store.truncate(inc.commit, inc.page_size).unwrap();
                inc.commit_to(&mut self.state);
                self.applied += 1;
                true
            }
            Err(_) => {
                assert_eq!(
                    (self.state.pos, self.store.bytes.clone()),
                    before,
                    "refused file changed state"
                );
                self.refused += 1;
                false
            }
        }
    }

    /// A restart: the in-memory checksums are rebuilt from the stored bytes.
    fn restart(&mut self) {
        let n = (self.store.bytes.len() / PS as usize) as u32;
        let mut c = PageChecksums::new();
        for p in 1..=n {
            let mut b = vec![0u8; PS as usize];
            self.store.read_page(PageNo(p), &mut b).unwrap();
            c.set(PageNo(p), page_checksum(PageNo(p), &b));
        }
        c.truncate(n);
        self.state.checksums = c;
        self.connected = false;
    }
}

/// One session step for a connected replica: catch up from files, then live.
fn sync(p: &Primary, r: &mut Replica, rng: &mut Rng) -> bool {
    let ranges: Vec<(Txid, Txid)> = p.files.iter().map(|(a, b, _)| (*a, *b)).collect();
    let at = (r.state.pos.txid != Txid::ZERO).then_some(r.state.pos);
    match plan(at, p.state.pos, &ranges, false, None) {
        Plan::UpToDate => {}
        Plan::Files(idx) => {
            for i in idx {
                if !r.receive(&p.files[i].2, rng.chance(3)) {
                    return false; // the session ends; reconnect
                }
            }
        }
        Plan::Snapshot(_) | Plan::Resync(_) => {
            if !r.receive(&p.snapshot(), rng.chance(3)) {
                return false;
            }
        }
        Plan::Deletion(_) => unreachable!("no deletions simulated"),
    }
    r.sent = Some(r.state.pos);
    true
}

fn run(seed: u64) {
    let mut rng = Rng(seed | 1);
    let mut p = Primary {
        store: MemStore::default(),
        state: DbState::default(),
        files: Vec::new(),
        live: Vec::new(),
    };
    let mut r = Replica {
        store: MemStore::default(),
        state: DbState::default(),
        connected: false,
        sent: None,
        applied: 0,
        refused: 0,
    };
    for _ in 0..300 {
        match rng.below(10) {
            0..=5 => {
                p.commit(&mut rng);
                // Live delivery of the new transaction to a connected, caught-up replica.
                if r.connected {
                    let (pre, file) = p.live.last().unwrap().clone();
                    if r.sent == Some(pre) {
                        if r.receive(&file, rng.chance(3)) {
                            r.sent = Some(r.state.pos);
                        } else {
                            r.connected = false;
                        }
                    }
                }
            }
            6 => r.connected = false,
            7 => r.restart(),
            _ => {
                if !r.connected {
                    r.connected = sync(&p, &mut r, &mut rng);
                }
            }
        }
    }
    // Final: reconnect until in sync (corruption may need several attempts).
    for _ in 0..100 {
        if sync(&p, &mut r, &mut rng) && r.state.pos == p.state.pos {
            break;
        }
    }
    assert_eq!(r.state.pos, p.state.pos, "seed {seed}: position");
    assert!(r.store.bytes == p.store.bytes, "seed {seed}: bytes differ");
    assert!(r.applied > 0, "seed {seed}");
}

#[test]
fn random_interleavings_never_lose_or_reorder() {
    for seed in 1..=100u64 {
        run(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    }
}
