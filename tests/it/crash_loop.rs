//! Crash safety: a writer (rusqlite, synchronous=FULL, separate process) and the node
//! (`litefleet mount`, separate process) are killed with SIGKILL at pseudo-random points,
//! many rounds, in WAL and DELETE modes. After every restart: the node starts without help,
//! `integrity_check` is ok, every commit the writer saw succeed is there, and the LTX chain
//! replays to exactly the database at exactly the reported position.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{example, need, replay, tmp};
use litefleet::core::types::Pos;

fn spawn_node(root: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_litefleet"))
        .arg("mount")
        .arg("--config")
        .arg(root.join("litefs.yml"))
        .env("LITEFLEET_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits for the node's own mount. Reading `.lag` takes an open, which only a live
/// litefleet mount answers: the dead mount being replaced fails it (ENOTCONN) even for names
/// it had cached, and the empty directory underneath, readable once the new node detached
/// the dead mount, has no `.lag` (checking "mounted and readable" raced there, and SQLite
/// then created an empty database in that directory).
#[allow(clippy::disallowed_methods)]
fn wait_mounted(mnt: &Path, node: &mut Child) {
    let t = Instant::now();
    while !litefleet::mount::is_mounted(mnt) || std::fs::read(mnt.join(".lag")).is_err() {
        if let Some(st) = node.try_wait().unwrap() {
            panic!("node exited during startup: {st}");
        }
        assert!(t.elapsed() < Duration::from_secs(30), "mount did not appear");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// xorshift: reproducible "random" kill points.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn check_consistent(root: &Path, db: &str, log: &Path) {
    let mnt = root.join("mnt");
    let out = Command::new(example("sqlclient"))
        .arg("check")
        .arg(mnt.join(db))
        .arg(log)
        .output()
        .unwrap();
    assert!(out.status.success(), "check failed: {}", String::from_utf8_lossy(&out.stderr));
    // Fold the WAL into the database file, then compare with the LTX chain.
    let st = Command::new("sqlite3")
        .arg(mnt.join(db))
        .arg("PRAGMA wal_checkpoint(TRUNCATE);")
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let (image, pos) = replay(&root.join("data"), db);
    let reported: Pos =
        std::fs::read_to_string(mnt.join(format!("{db}-pos"))).unwrap().parse().unwrap();
    assert_eq!(reported, pos, "-pos equals the LTX chain");
    let file = std::fs::read(root.join("data/dbs").join(db).join("database")).unwrap();
    assert!(file == image, "the LTX chain replays to the database");
}

fn crash_rounds(mode: &str, rounds: usize, mut seed: u64) {
    let root = tmp(&format!("crash-{mode}"));
    std::fs::write(
        root.join("litefs.yml"),
        format!(
            "fuse: {{dir: {0}/mnt}}\ndata: {{dir: {0}/data, compress: true}}\nlease: {{type: static, candidate: true}}\n\
             http: {{addr: \"127.0.0.1:{1}\"}}\n",
            root.display(),
            crate::common::cluster::free_port()
        ),
    )
    .unwrap();
    let mnt = root.join("mnt");
    let log = root.join("acked.log");
    let db = "c.db";
    let mut progressed = 0;
    let mut last_acked = 0;
    let mut node = spawn_node(&root);
    wait_mounted(&mnt, &mut node);
    for round in 0..rounds {
        let mut writer = Command::new(example("sqlclient"))
            .arg("write")
            .arg(mnt.join(db))
            .arg(mode)
            .arg("FULL")
            .arg(&log)
            .stderr(std::fs::File::create(root.join(format!("writer-{round}.err"))).unwrap())
            .spawn()
            .unwrap();
        // The kill point: a pseudo-random moment of the writer's run (the workload, not a
        // wait: it may land before its first commit, or inside its startup).
        std::thread::sleep(Duration::from_millis(50 + next(&mut seed) % 400));
        // Kill both, in either order.
        if next(&mut seed).is_multiple_of(2) {
            node.kill().unwrap();
            writer.kill().unwrap();
        } else {
            writer.kill().unwrap();
            // As above: a pseudo-random gap between the two kills.
            std::thread::sleep(Duration::from_millis(next(&mut seed) % 20));
            node.kill().unwrap();
        }
        node.wait().unwrap();
        writer.wait().unwrap();
        node = spawn_node(&root);
        wait_mounted(&mnt, &mut node);
        check_consistent(&root, db, &log);
        let acked = std::fs::read_to_string(&log).unwrap_or_default().lines().count();
        if acked > last_acked {
            progressed += 1;
        }
        last_acked = acked;
        eprintln!("{mode} round {round}: {acked} commits acknowledged so far, all present");
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(node.id() as i32, libc::SIGTERM) };
    assert!(node.wait().unwrap().success());
    assert!(
        progressed * 4 >= rounds * 3,
        "the writer made progress in only {progressed} of {rounds} rounds"
    );
}

#[test]
fn kill_9_in_wal_mode() {
    need::fuse();
    need::sqlite3();
    crash_rounds("WAL", 12, 0x9e37_79b9_7f4a_7c15);
}

#[test]
fn kill_9_in_delete_mode() {
    need::fuse();
    need::sqlite3();
    crash_rounds("DELETE", 12, 0xd1b5_4a32_d192_ed03);
}
