//! Writes the seed corpus for the fuzz targets: `cargo run --example fuzz_seeds -- fuzz/corpus`.
//!
//! Seeds are valid encodings: small LTX files written by LiteFS (from tests/vectors), files our
//! writer produces (plain, compressed, snapshot, incremental, deletion), writer scripts, and
//! one encoding of every wire frame. The output is committed; rerun this after a format change.

use std::fs;
use std::path::{Path, PathBuf};

use litefleet::core::ltx::{FLAG_COMPRESS_LZ4, Header, LtxWriter, PageChecksums, page_checksum};
use litefleet::core::types::{Checksum, NodeId, PageNo, Txid};

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join(name), bytes).unwrap();
}

fn ltx(flags: u32, min: u64, commit: u32, pages: &[u32], pre: u64) -> Vec<u8> {
    let h = Header {
        flags,
        page_size: 512,
        commit,
        min_txid: Txid(min),
        max_txid: Txid(min),
        timestamp: 1_700_000_000_000,
        pre_apply_checksum: Checksum(pre),
        node_id: NodeId(0x1122334455667788),
        ..Header::default()
    };
    let mut w = LtxWriter::new(Vec::new(), h).unwrap();
    let mut sums = PageChecksums::new();
    for &p in pages {
        let data: Vec<u8> = (0..512u32).map(|i| (i * p) as u8).collect();
        w.write_page(PageNo(p), &data).unwrap();
        sums.set(PageNo(p), page_checksum(PageNo(p), &data));
    }
    sums.truncate(commit);
    w.finish(sums.checksum()).unwrap().0
}

fn main() {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz/corpus".into()));
    let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/litefs-0.5.14");
    let mut n = 0;
    for db in ["wal.db", "journal.db"] {
        for sub in ["incremental", "snapshot"] {
            for e in fs::read_dir(vectors.join(db).join(sub)).unwrap() {
                let p = e.unwrap().path();
                let bytes = fs::read(&p).unwrap();
                if bytes.len() > 4096 {
                    continue; // keep seeds small: large inputs slow every fuzz iteration
                }
                let name = format!("litefs-{db}-{}", p.file_name().unwrap().to_string_lossy());
                write(&out, "ltx_decode", &name, &bytes);
                write(&out, "ltx_roundtrip", &name, &bytes);
                n += 1;
            }
        }
    }
    let pre = Checksum::FLAG | 0x0123_4567;
    for (name, bytes) in [
        ("snapshot-plain", ltx(0, 1, 3, &[1, 2, 3], 0)),
        ("snapshot-lz4", ltx(FLAG_COMPRESS_LZ4, 1, 3, &[1, 2, 3], 0)),
        ("incremental-plain", ltx(0, 5, 4, &[2, 4], pre)),
        ("incremental-lz4", ltx(FLAG_COMPRESS_LZ4, 5, 4, &[2, 4], pre)),
        ("deletion", ltx(0, 6, 0, &[], pre)),
    ] {
        write(&out, "ltx_decode", name, &bytes);
        write(&out, "ltx_roundtrip", name, &bytes);
        n += 1;
    }
    for (name, script) in [
        ("snapshot", vec![8u8, 3, 1, 0xaa, 1, 0xbb, 1, 0xcc]),
        ("incremental-lz4", vec![4 | 1, 9, 2, 0x11, 5, 0x22]),
        ("deletion", vec![0, 0]),
    ] {
        write(&out, "ltx_encode", name, &script);
        n += 1;
    }
    for (i, bytes) in litefleet::fuzzing::wire::seed_frames().into_iter().enumerate() {
        write(&out, "frame_decode", &format!("frame-{i:02}"), &bytes);
        write(&out, "frame_roundtrip", &format!("frame-{i:02}"), &bytes);
        n += 1;
    }
    println!("wrote {n} seeds under {}", out.display());
}
