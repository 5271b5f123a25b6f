//! Runs every fuzz entry point over the committed seed corpus (and any crash reproducers kept
//! under `fuzz/regressions/<target>/`), so a regression fails `cargo test` without cargo-fuzz.

use std::fs;
use std::path::Path;

fn each_input(target: &str, f: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for dir in [root.join("corpus").join(target), root.join("regressions").join(target)] {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for e in entries {
            let p = e.unwrap().path();
            f(&fs::read(&p).unwrap());
            n += 1;
        }
    }
    n
}

#[test]
fn ltx_targets_accept_their_seeds() {
    use litefleet::fuzzing::ltx::*;
    assert!(each_input("ltx_decode", ltx_decode) > 10);
    assert!(each_input("ltx_roundtrip", ltx_roundtrip) > 10);
    assert!(each_input("ltx_encode", ltx_encode) >= 3);
}

#[test]
fn wire_targets_accept_their_seeds() {
    use litefleet::fuzzing::wire::*;
    assert!(each_input("frame_decode", frame_decode) >= 10);
    assert!(each_input("frame_roundtrip", frame_roundtrip) >= 10);
    for seed in seed_frames() {
        frame_decode(&seed);
        frame_roundtrip(&seed);
    }
}
