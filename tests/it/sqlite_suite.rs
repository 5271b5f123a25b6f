//! SQLite's own TCL test suite, on the mount of a real `litefleet mount` primary and on a
//! bare directory in the same run (`scripts/sqlite-testsuite.sh`): every file of
//! `scripts/sqlite-tests-ci.txt` must give the same result on the mount as bare, and the
//! comparison table is printed.
//!
//! The suite and `testfixture` come from Debian's `sqlite3` source package, fetched and built
//! once under `target/sqlite-tests` by `scripts/fetch-sqlite-tests.sh` (a private deb-src
//! entry, `tcl-dev`), a step of its own before the tests. The files CI runs are chosen for
//! time; the whole list (`scripts/sqlite-tests.txt`) is run by hand, see README.md.

use std::path::Path;
use std::process::Command;

use crate::common::need;

#[test]
fn sqlite_test_suite_gives_the_same_results_on_the_mount_as_bare() {
    need::fuse();
    need::python3();
    let suite = need::sqlite_suite();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = root.join("target/sqlite-testsuite-ci");
    let run = Command::new(root.join("scripts/sqlite-testsuite.sh"))
        .arg("--list")
        .arg(root.join("scripts/sqlite-tests-ci.txt"))
        .arg("--out")
        .arg(&out)
        .env("LITEFLEET_BIN", env!("CARGO_BIN_EXE_litefleet"))
        .env("SQLITE_TESTS", suite)
        .status()
        .expect("running scripts/sqlite-testsuite.sh");
    let table = std::fs::read_to_string(out.join("table.txt")).unwrap_or_default();
    eprintln!("{table}");
    assert!(
        run.success(),
        "SQLite's test files differ on the mount (first failures: {})",
        out.join("failures.txt").display()
    );
}
