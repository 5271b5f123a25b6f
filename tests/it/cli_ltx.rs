//! `litefleet ltx` as a user runs it: a real process over real files.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::tmp;

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/litefs-0.5.14")
}

fn litefleet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_litefleet")).args(args).output().unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn verify_accepts_litefs_vectors_and_reports_the_chain() {
    let wal = vectors().join("wal.db/incremental");
    let out = litefleet(&["ltx", "verify", s(&wal)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("unbroken"), "{stdout}");
    assert!(stdout.contains("000000000000000e/a76fb11f2293664f"), "{stdout}");
    assert!(stdout.contains("14 files checked, 0 problems"), "{stdout}");
}

#[test]
fn verify_flags_a_corrupt_file_and_a_missing_one() {
    let dir = tmp("ltx-corrupt");
    for e in fs::read_dir(vectors().join("journal.db/incremental")).unwrap() {
        let p = e.unwrap().path();
        fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    let victim = dir.join("0000000000000004-0000000000000004.ltx");
    let mut b = fs::read(&victim).unwrap();
    let n = b.len();
    b[n - 1] ^= 1; // the file checksum
    fs::write(&victim, b).unwrap();
    fs::remove_file(dir.join("0000000000000006-0000000000000006.ltx")).unwrap();
    let out = litefleet(&["ltx", "verify", s(&dir)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAILED: file checksum mismatch"), "{stdout}");
    assert!(stdout.contains("chain break"), "{stdout}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn apply_and_compact_rebuild_expected_db() {
    let dir = tmp("ltx-apply");
    for db in ["wal.db", "journal.db"] {
        let want = fs::read(vectors().join(db).join("expected.db")).unwrap();
        let pos = fs::read_to_string(vectors().join(db).join("expected.pos")).unwrap();
        let out_db = dir.join(db);
        let out = litefleet(&[
            "ltx",
            "apply",
            s(&vectors().join(db).join("incremental")),
            "--out",
            s(&out_db),
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), pos.trim());
        assert!(fs::read(&out_db).unwrap() == want, "{db}");

        let ltx = dir.join(format!("{db}.ltx"));
        let out = litefleet(&[
            "ltx",
            "compact",
            s(&vectors().join(db).join("incremental")),
            "--out",
            s(&ltx),
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let again = dir.join(format!("{db}.2"));
        let out = litefleet(&["ltx", "apply", s(&ltx), "--out", s(&again)]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), pos.trim());
        assert!(fs::read(&again).unwrap() == want, "{db} via compaction");

        let out = litefleet(&["ltx", "dump", "--pages", s(&ltx)]);
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("(verified)"));
    }
    // Replaying an incremental file onto an unrelated non-empty database is refused.
    let out = litefleet(&[
        "ltx",
        "apply",
        s(&vectors().join("wal.db/incremental/0000000000000002-0000000000000002.ltx")),
        "--out",
        s(&dir.join("wal.db")),
    ]);
    assert_eq!(out.status.code(), Some(1));
    fs::remove_dir_all(&dir).unwrap();
}
