//! SQLite's own TCL test suite, on the mount of a real `litefleet mount` primary and on a
//! bare directory in the same run (`scripts/sqlite-testsuite.sh`): every file of
//! `scripts/sqlite-tests-ci.txt` must give the same result on the mount as bare, and the
//! comparison table is printed.
//!
//! The suite and `testfixture` come from Debian's `sqlite3` source package
//! (`scripts/fetch-sqlite-tests.sh`: a private deb-src entry, `tcl-dev`; built once and
//! cached under `target/sqlite-tests`). The files CI runs are chosen for time; the whole list
//! (`scripts/sqlite-tests.txt`) is run by hand, see README.md.

use std::path::Path;
use std::process::Command;

#[test]
fn sqlite_test_suite_gives_the_same_results_on_the_mount_as_bare() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fetch = Command::new(root.join("scripts/fetch-sqlite-tests.sh"))
        .arg(root.join("target/sqlite-tests"))
        .status()
        .expect("running scripts/fetch-sqlite-tests.sh");
    assert!(
        fetch.success(),
        "could not fetch and build SQLite's test suite (see the lines above: it needs root for \
         apt-get, Debian's source mirrors, and tcl-dev)"
    );
    let out = root.join("target/sqlite-testsuite-ci");
    let run = Command::new(root.join("scripts/sqlite-testsuite.sh"))
        .arg("--list")
        .arg(root.join("scripts/sqlite-tests-ci.txt"))
        .arg("--out")
        .arg(&out)
        .env("LITEFLEET_BIN", env!("CARGO_BIN_EXE_litefleet"))
        .env("SQLITE_TESTS", root.join("target/sqlite-tests"))
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
