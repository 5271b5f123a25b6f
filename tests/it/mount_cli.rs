//! `litefleet mount` as a separate process: config file, mount, SIGTERM, exec.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::cluster::wait_for;
use crate::common::{need, tmp};

fn config(root: &Path, extra: &str) -> PathBuf {
    let path = root.join("litefs.yml");
    std::fs::write(
        &path,
        format!(
            "fuse:\n  dir: \"${{ROOT}}/mnt\"\ndata:\n  dir: \"${{ROOT}}/data\"\nlease:\n  type: static\n  candidate: true\n\
             http:\n  addr: \"127.0.0.1:{}\"\n{extra}",
            crate::common::cluster::free_port()
        ),
    )
    .unwrap();
    path
}

fn spawn(root: &Path, cfg: &Path, exec: &[&str]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_litefleet"));
    cmd.arg("mount").arg("--config").arg(cfg).env("ROOT", root).stdout(Stdio::null());
    if !exec.is_empty() {
        cmd.arg("--").args(exec);
    }
    cmd.spawn().unwrap()
}

fn wait_mounted(mnt: &Path) {
    wait_for("the mount", Duration::from_secs(20), || litefleet::mount::is_mounted(mnt));
}

#[test]
fn mounts_serves_and_unmounts_on_sigterm() {
    need::fuse();
    need::sqlite3();
    let root = tmp("cli-sigterm");
    let cfg = config(&root, "");
    let mut child = spawn(&root, &cfg, &[]);
    let mnt = root.join("mnt");
    wait_mounted(&mnt);
    let st = Command::new("sqlite3")
        .arg(mnt.join("app.db"))
        .arg("PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (42);")
        .status()
        .unwrap();
    assert!(st.success());
    let pos = std::fs::read_to_string(mnt.join("app.db-pos")).unwrap();
    assert_eq!(pos.len(), 34, "{pos:?}");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!litefleet::mount::is_mounted(&mnt), "unmounted on SIGTERM");
    assert!(root.join("data/dbs/app.db/database").exists());
}

#[test]
fn exec_runs_the_app_and_its_exit_code_is_ours() {
    need::fuse();
    need::sqlite3();
    let root = tmp("cli-exec");
    let cfg = config(&root, "");
    let script = "sqlite3 \"$LITEFLEET_MOUNT/e.db\" 'CREATE TABLE t(x); INSERT INTO t VALUES (1);' && exit 7";
    let mut child = spawn(&root, &cfg, &["sh", "-c", script]);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(7));
    assert!(!litefleet::mount::is_mounted(&root.join("mnt")));
    assert!(root.join("data/dbs/e.db/ltx").read_dir().unwrap().count() >= 1);
}

#[test]
fn a_stale_mount_is_cleared_and_bad_config_is_reported() {
    need::fuse();
    let root = tmp("cli-stale");
    let cfg = config(&root, "");
    let mut child = spawn(&root, &cfg, &[]);
    wait_mounted(&root.join("mnt"));
    child.kill().unwrap(); // SIGKILL: the mount stays behind, dead
    child.wait().unwrap();
    assert!(litefleet::mount::is_mounted(&root.join("mnt")));
    let mut child = spawn(&root, &cfg, &["sh", "-c", "test -e \"$LITEFLEET_MOUNT\" && exit 3"]);
    assert_eq!(child.wait().unwrap().code(), Some(3));

    let bad = root.join("bad.yml");
    std::fs::write(&bad, "fuse:\n  dir: /x\n  dirr: /y\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_litefleet"))
        .arg("mount")
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dirr") && err.contains(":3:"), "{err}");
}

#[test]
fn retention_removes_old_ltx_files_and_keeps_the_newest() {
    need::fuse();
    need::sqlite3();
    let root = tmp("cli-retention");
    let cfg = config(
        &root,
        "data:\n  dir: \"${ROOT}/data\"\n  retention: 1s\n  retention-monitor-interval: 200ms\n",
    );
    // The `data` key above replaces the one `config` wrote.
    let text =
        std::fs::read_to_string(&cfg).unwrap().replacen("data:\n  dir: \"${ROOT}/data\"\n", "", 1);
    std::fs::write(&cfg, text).unwrap();
    let mut child = spawn(&root, &cfg, &[]);
    let mnt = root.join("mnt");
    wait_mounted(&mnt);
    let sql = |q: &str| {
        let st = Command::new("sqlite3").arg(mnt.join("r.db")).arg(q).status().unwrap();
        assert!(st.success(), "{q}");
    };
    sql("CREATE TABLE t(x);");
    for i in 0..5 {
        sql(&format!("INSERT INTO t VALUES ({i});"));
    }
    let ltx = root.join("data/dbs/r.db/ltx");
    let count = || {
        ltx.read_dir()
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "ltx"))
            .count()
    };
    assert!(count() >= 6, "one file per commit at this pace: {}", count());
    // Every file passes retention 1 s after it was written; the newest is always kept.
    wait_for("retention to remove the old files", Duration::from_secs(20), || count() <= 1);
    assert_eq!(count(), 1, "retention left {} files", count());
    sql("INSERT INTO t VALUES (99);");
    assert_eq!(count(), 2);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    // A restart continues from the newest file.
    let mut child = spawn(&root, &cfg, &[]);
    wait_mounted(&mnt);
    let out = Command::new("sqlite3")
        .arg(mnt.join("r.db"))
        .arg("SELECT count(*) FROM t;")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "6");
    let pos = std::fs::read_to_string(mnt.join("r.db-pos")).unwrap();
    assert!(pos.starts_with("0000000000000007/"), "{pos}");
    // SAFETY: as above.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

#[test]
fn demo_writes_through_a_node_and_cleans_up() {
    need::fuse();
    let root = tmp("cli-demo");
    let dir = root.join("demo");
    let out = Command::new(env!("CARGO_BIN_EXE_litefleet"))
        .args(["demo", "--duration", "2", "--interval-ms", "20", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    // Three nodes by default: every one shows a position.
    for n in ["n1 txid", "n2 txid", "n3 txid"] {
        assert!(text.contains(n), "{n}: {text}");
    }
    let rows: u64 = text
        .split("stopping: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(rows > 5, "{text}");
    assert!(!dir.exists(), "demo directory removed");
    for n in ["n1", "n2", "n3"] {
        assert!(!litefleet::mount::is_mounted(&dir.join(n).join("mnt")));
    }
}

/// `exec` as a list: each command but the last runs to completion first (migrations), and
/// one with `if-candidate: true` runs only on a candidate; the last one's exit code is the
/// node's.
#[test]
fn exec_lists_run_in_order_and_if_candidate_skips_non_candidates() {
    need::fuse();
    for candidate in [true, false] {
        let root = tmp("cli-exec-list");
        let exec = "exec:\n  - cmd: \"echo migrated >> ${ROOT}/order\"\n    if-candidate: true\n  \
                    - cmd: \"echo setup >> ${ROOT}/order\"\n  - cmd: \"echo app >> ${ROOT}/order; \
                    exit 5\"\n";
        let cfg = config(&root, exec);
        if !candidate {
            // A replica (of a primary that is not there: exec does not wait for one).
            let certs = crate::common::cluster::dev_certs(&root, 1);
            let tls = format!(
                "tls:\n  ca: {:?}\n  cert: {:?}\n  key: {:?}\n",
                certs.join("ca.pem"),
                certs.join("n1.pem"),
                certs.join("n1-key.pem")
            );
            let text = std::fs::read_to_string(&cfg).unwrap().replacen(
                "  candidate: true\n",
                &format!("  candidate: false\n  advertise-url: \"http://127.0.0.1:9\"\n{tls}"),
                1,
            );
            std::fs::write(&cfg, text).unwrap();
        }
        let mut child = spawn(&root, &cfg, &[]);
        assert_eq!(child.wait().unwrap().code(), Some(5), "candidate: {candidate}");
        let order = std::fs::read_to_string(root.join("order")).unwrap();
        let want = if candidate { "migrated\nsetup\napp\n" } else { "setup\napp\n" };
        assert_eq!(order, want, "candidate: {candidate}");
    }
}
