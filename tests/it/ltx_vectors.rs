//! Compatibility with real LiteFS v0.5.14 output (tests/vectors/litefs-0.5.14, see its README):
//! every file decodes and verifies, the incremental chain and the snapshot each rebuild
//! `expected.db` byte for byte at `expected.pos`, files we re-encode carry LiteFS's checksums,
//! and a compaction of the chain rebuilds the same database.

use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use litefleet::core::ltx::{
    DbState, FLAG_COMPRESS_LZ4, LtxReader, LtxWriter, MemStore, apply, compact, parse_file_name,
    verify,
};
use litefleet::core::types::Pos;

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/litefs-0.5.14")
}

/// The `.ltx` files of a directory, sorted by MinTXID.
fn ltx_files(dir: &Path) -> Vec<(PathBuf, Bytes)> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ltx"))
        .collect();
    files.sort_by_key(|p| parse_file_name(p.file_name().unwrap().to_str().unwrap()).unwrap());
    assert!(!files.is_empty(), "no LTX files in {}", dir.display());
    files.into_iter().map(|p| (p.clone(), Bytes::from(fs::read(&p).unwrap()))).collect()
}

fn reader(b: &Bytes) -> LtxReader<&[u8]> {
    LtxReader::new(&b[..], b.len() as u64).unwrap()
}

fn expected(db: &str) -> (Vec<u8>, Pos) {
    let dir = vectors().join(db);
    let pos = fs::read_to_string(dir.join("expected.pos")).unwrap().parse().unwrap();
    (fs::read(dir.join("expected.db")).unwrap(), pos)
}

const DBS: [&str; 2] = ["wal.db", "journal.db"];

#[test]
fn every_vector_file_verifies_and_names_its_range() {
    for db in DBS {
        for sub in ["incremental", "snapshot"] {
            for (path, bytes) in ltx_files(&vectors().join(db).join(sub)) {
                let s = verify(&bytes[..], bytes.len() as u64)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let name = path.file_name().unwrap().to_str().unwrap();
                assert_eq!(
                    parse_file_name(name),
                    Some((s.header.min_txid, s.header.max_txid)),
                    "{name}"
                );
                assert!(s.header.is_compressed(), "LiteFS compresses by default");
            }
        }
    }
}

#[test]
fn incremental_chain_rebuilds_expected_db() {
    for db in DBS {
        let (want, want_pos) = expected(db);
        let mut store = MemStore::default();
        let mut state = DbState::default();
        for (path, bytes) in ltx_files(&vectors().join(db).join("incremental")) {
            apply(reader(&bytes), &mut store, &mut state)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        assert_eq!(state.pos, want_pos, "{db}");
        assert!(store.bytes == want, "{db}: database differs from expected.db");
        // The checksums we maintained incrementally equal a full rescan.
        let pages = (want.len() / state.page_size as usize) as u32;
        let rescanned = DbState::scan(&mut store, want_pos, state.page_size, pages).unwrap();
        assert_eq!(rescanned.checksums.checksum(), want_pos.checksum);
    }
}

#[test]
fn snapshot_alone_rebuilds_expected_db() {
    for db in DBS {
        let (want, want_pos) = expected(db);
        let files = ltx_files(&vectors().join(db).join("snapshot"));
        assert_eq!(files.len(), 1);
        let mut store = MemStore { bytes: vec![0xee; 12345] };
        let mut state = DbState::default();
        let pos = apply(reader(&files[0].1), &mut store, &mut state).unwrap();
        assert_eq!(pos, want_pos, "{db}");
        assert!(store.bytes == want, "{db}: database differs from expected.db");
    }
}

#[test]
fn reencoded_files_carry_litefs_checksums() {
    for db in DBS {
        for sub in ["incremental", "snapshot"] {
            for (path, bytes) in ltx_files(&vectors().join(db).join(sub)) {
                let theirs = verify(&bytes[..], bytes.len() as u64).unwrap();
                for flags in [0, FLAG_COMPRESS_LZ4] {
                    let mut r = reader(&bytes);
                    let header = litefleet::core::ltx::Header { flags, ..*r.header() };
                    let mut w = LtxWriter::new(Vec::new(), header).unwrap();
                    while let Some(p) = r.next_page().unwrap() {
                        w.write_page(p.pgno, p.data).unwrap();
                    }
                    let (out, trailer) = w.finish(theirs.trailer.post_apply_checksum).unwrap();
                    let ours = verify(&out[..], out.len() as u64).unwrap();
                    assert_eq!(ours.trailer, trailer);
                    assert_eq!(trailer.post_apply_checksum, theirs.trailer.post_apply_checksum);
                    // The file checksum covers the header, flags included, and the logical
                    // (uncompressed) content: same flags, same checksum as LiteFS's.
                    if flags == theirs.header.flags {
                        assert_eq!(trailer, theirs.trailer, "{}", path.display());
                    } else {
                        assert_ne!(trailer.file_checksum, theirs.trailer.file_checksum);
                    }
                    assert_eq!(ours.page_count, theirs.page_count);
                    if flags == 0 {
                        assert!(out.len() > bytes.len(), "uncompressed is larger");
                    }
                }
            }
        }
    }
}

#[test]
fn compaction_of_the_chain_rebuilds_expected_db() {
    for db in DBS {
        let (want, want_pos) = expected(db);
        let files = ltx_files(&vectors().join(db).join("incremental"));
        // Whole chain: a snapshot equivalent to LiteFS's own snapshot.
        let inputs = files.iter().map(|(_, b)| reader(b)).collect();
        let (out, h) = compact(inputs, FLAG_COMPRESS_LZ4, Vec::new()).unwrap();
        assert!(h.is_snapshot());
        let mut store = MemStore::default();
        let mut state = DbState::default();
        assert_eq!(apply(reader(&Bytes::from(out)), &mut store, &mut state).unwrap(), want_pos);
        assert!(store.bytes == want, "{db}");
        // A tail of the chain applied on top of the head.
        let split = files.len() / 2;
        let mut store = MemStore::default();
        let mut state = DbState::default();
        for (_, b) in &files[..split] {
            apply(reader(b), &mut store, &mut state).unwrap();
        }
        let inputs = files[split..].iter().map(|(_, b)| reader(b)).collect();
        let (out, h) = compact(inputs, 0, Vec::new()).unwrap();
        assert!(!h.is_snapshot());
        assert_eq!(apply(reader(&Bytes::from(out)), &mut store, &mut state).unwrap(), want_pos);
        assert!(store.bytes == want, "{db}");
    }
}

#[test]
fn litefs_data_dir_replays_to_its_databases() {
    let tmp = std::env::temp_dir().join(format!("litefleet-datadir-{}", std::process::id()));
    fs::create_dir_all(&tmp).unwrap();
    let st = std::process::Command::new("tar")
        .arg("xzf")
        .arg(vectors().join("primary-datadir.tar.gz"))
        .arg("-C")
        .arg(&tmp)
        .status()
        .unwrap();
    assert!(st.success());
    for (db, pos) in [
        ("app.db", "0000000000000016/de6e5107092f964d"),
        ("legacy.db", "0000000000000003/ef2d09dd080c7cdf"),
    ] {
        let dir = tmp.join("data/dbs").join(db);
        let mut store = MemStore::default();
        let mut state = DbState::default();
        for (path, b) in ltx_files(&dir.join("ltx")) {
            apply(reader(&b), &mut store, &mut state)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        assert_eq!(state.pos, pos.parse::<Pos>().unwrap(), "{db}");
        let database = fs::read(dir.join("database")).unwrap();
        assert!(store.bytes == database, "{db}: replay differs from the database file");
    }
    fs::remove_dir_all(&tmp).unwrap();
}
