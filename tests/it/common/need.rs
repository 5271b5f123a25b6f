//! What a test needs from the machine, checked at its start. A test calls the checks for the
//! real parts it uses (`need::fuse()`, `need::consul()`, ...) first; a missing part fails
//! the test with one line naming it and how to get it. Never a silent skip: a test that
//! did not run must not look like one that passed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Fails the calling test with `line`.
#[track_caller]
fn missing(line: &str) -> ! {
    panic!("{line}")
}

/// Whether this process runs as root.
fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether `cmd args` runs and exits 0.
fn runs(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// FUSE mounts, in this process or in `litefleet mount` processes: `/dev/fuse`, and root
/// (mount(2) without `fusermount3`; the tests also detach and abort mounts themselves).
#[track_caller]
pub fn fuse() {
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        missing(&format!(
            "needs /dev/fuse ({e}): apt-get install fuse3 and modprobe fuse (in a container: \
             --device /dev/fuse --cap-add SYS_ADMIN)"
        ));
    }
    if !root() {
        missing("needs root for FUSE mounts (mount(2), umount2, fusectl): run the tests as root");
    }
}

/// The `sqlite3` command-line shell, which most mount tests run against the mount.
#[track_caller]
pub fn sqlite3() {
    if !runs("sqlite3", &["-version"]) {
        missing("needs the sqlite3 command: apt-get install sqlite3");
    }
}

/// `python3` with its `sqlite3` module (tests that need the system's SQLite library in a
/// process of its own, with features the CLI lacks).
#[track_caller]
pub fn python3() {
    if !runs("python3", &["-c", "import sqlite3"]) {
        missing("needs python3 with its sqlite3 module: apt-get install python3");
    }
}

/// Prometheus's server and `promtool` (Debian's `prometheus` package).
#[track_caller]
pub fn prometheus() {
    if !runs("prometheus", &["--version"]) || !runs("promtool", &["--version"]) {
        missing("needs prometheus and promtool: apt-get install prometheus");
    }
}

/// Network namespaces: root, `ip netns` (iproute2) and `nsenter` (util-linux) to run a node
/// inside one.
#[track_caller]
pub fn netns() {
    if !root() {
        missing("needs root for ip netns: run the tests as root");
    }
    if !runs("ip", &["netns", "list"]) {
        missing("needs ip netns: apt-get install iproute2");
    }
    if !runs("nsenter", &["--version"]) {
        missing("needs nsenter: apt-get install util-linux");
    }
}

/// A Consul agent binary (1.8.7, the version the lease was written against).
#[track_caller]
pub fn consul() {
    if let Err(line) = super::consul::binary() {
        missing(&line);
    }
}

/// SQLite's TCL test suite and its `testfixture`, built from Debian's source package by
/// `scripts/fetch-sqlite-tests.sh` the first time a test needs it (it needs root for
/// apt-get, deb-src mirrors and tcl-dev, and takes minutes). Returns the directory.
#[track_caller]
pub fn sqlite_suite() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target/sqlite-tests");
    fetch_once(&dir.join("testfixture"), &root.join("scripts/fetch-sqlite-tests.sh"), &dir);
    if !dir.join("testfixture").is_file() || !dir.join("test/tester.tcl").is_file() {
        missing(
            "needs SQLite's TCL test suite at target/sqlite-tests: \
             scripts/fetch-sqlite-tests.sh target/sqlite-tests failed (see above)",
        );
    }
    dir
}

/// Runs `script dest` unless `want` exists, one fetch at a time in this process (tests run
/// two at a time; two fetches into one directory would race). Its output goes to the test's.
pub fn fetch_once(want: &Path, script: &Path, dest: &Path) {
    static FETCH: std::sync::Mutex<()> = std::sync::Mutex::new(());
    if want.is_file() {
        return;
    }
    let _one = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    if want.is_file() {
        return;
    }
    eprintln!("fetching {} (once): {} {}", want.display(), script.display(), dest.display());
    let _ = std::process::Command::new(script).arg(dest).status();
}
