//! LTX decode + verify throughput on a 100 MB file: `cargo bench --bench ltx_decode`.
//!
//! Builds a 25,600-page (4 KiB) snapshot, about 100 MB of page data, with pages that are half
//! pseudo-random and half zero (roughly how full SQLite b-tree pages compress), written plain and
//! LZ4-compressed. Each row decodes the whole file through `ltx::verify` (every page header
//! checked, file checksum and snapshot post-apply checksum recomputed) and reports the best of
//! five runs. Baseline rows give the cost floor on this machine: one CRC-64 pass over the same
//! bytes and a bare LZ4 frame decompression.

use std::io::Read;
use std::time::{Duration, Instant};

use litefleet::core::ltx::{
    FLAG_COMPRESS_LZ4, Header, LtxWriter, PageChecksums, page_checksum, verify,
};
use litefleet::core::types::{Checksum, NodeId, PageNo, Txid};

const PAGE: usize = 4096;
const PAGES: u32 = 25_600;
const RUNS: usize = 5;

fn pages() -> Vec<Vec<u8>> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..PAGES)
        .map(|_| {
            let mut p = vec![0u8; PAGE];
            for chunk in p[..PAGE / 2].chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunk.copy_from_slice(&x.to_le_bytes());
            }
            p
        })
        .collect()
}

fn encode(pages: &[Vec<u8>], flags: u32, snapshot: bool) -> Vec<u8> {
    let h = Header {
        flags,
        page_size: PAGE as u32,
        commit: PAGES,
        min_txid: Txid(if snapshot { 1 } else { 2 }),
        max_txid: Txid(2),
        timestamp: 0,
        node_id: NodeId(1),
        pre_apply_checksum: Checksum(if snapshot { 0 } else { Checksum::FLAG | 1 }),
        ..Header::default()
    };
    let mut sums = PageChecksums::new();
    let mut w = LtxWriter::new(Vec::with_capacity(PAGES as usize * (PAGE + 4)), h).unwrap();
    for (i, p) in pages.iter().enumerate() {
        let pgno = PageNo(i as u32 + 1);
        w.write_page(pgno, p).unwrap();
        sums.set(pgno, page_checksum(pgno, p));
    }
    w.finish(sums.checksum()).unwrap().0
}

// A benchmark measures wall time by definition.
#[allow(clippy::disallowed_methods)]
fn best(mut f: impl FnMut()) -> Duration {
    (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap()
}

fn row(name: &str, file_bytes: usize, d: Duration) {
    let logical = (PAGES as usize * PAGE) as f64 / 1e6;
    println!(
        "{name:<34} {:>9.1} {:>10.1} {:>10.1} {:>10.0}",
        file_bytes as f64 / 1e6,
        logical,
        d.as_secs_f64() * 1e3,
        logical / d.as_secs_f64()
    );
}

fn main() {
    let pages = pages();
    let plain = encode(&pages, 0, true);
    let lz4 = encode(&pages, FLAG_COMPRESS_LZ4, true);
    let plain_inc = encode(&pages, 0, false);
    let lz4_inc = encode(&pages, FLAG_COMPRESS_LZ4, false);
    println!("LTX decode + verify, {PAGES} pages of {PAGE} bytes, best of {RUNS}");
    println!("{:<34} {:>9} {:>10} {:>10} {:>10}", "case", "file MB", "page MB", "ms", "MB/s");
    // Snapshots also recompute every page checksum to check the post-apply checksum; an
    // incremental file's post-apply checksum can only be checked against a database (apply).
    for (name, f) in [
        ("snapshot, plain", &plain),
        ("snapshot, lz4", &lz4),
        ("incremental, plain", &plain_inc),
        ("incremental, lz4", &lz4_inc),
    ] {
        let d = best(|| {
            verify(&f[..], f.len() as u64).unwrap();
        });
        row(&format!("decode+verify {name}"), f.len(), d);
    }
    // Baselines: the unavoidable work, measured on the same bytes.
    let crc = crc::Crc::<u64, crc::Table<16>>::new(&crc::CRC_64_GO_ISO);
    row(
        "baseline: one CRC-64 pass",
        plain.len(),
        best(|| {
            std::hint::black_box(crc.checksum(&plain));
        }),
    );
    row(
        "baseline: bare LZ4 frame decode",
        lz4.len(),
        best(|| {
            let mut d = lz4_flex::frame::FrameDecoder::new(&lz4[100..lz4.len() - 16]);
            let mut buf = vec![0u8; 1 << 16];
            while d.read(&mut buf).unwrap() > 0 {}
        }),
    );
}
