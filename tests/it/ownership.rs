//! A node's directories and ports are its own: `litefleet mount` processes that would share
//! a mount point, a data directory or a UDP port, or that would both act as the static
//! primary, refuse to start with a clear error, and the node already running keeps serving.
//! Bad paths (relative, or a file where a directory belongs) are named. Clearing the dead
//! mount of a killed node is covered by `mount_cli.rs` (`a_stale_mount_is_cleared…`) and
//! `crash_loop.rs`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::common::cluster::{dev_certs, free_port, sql_at, wait_for};
use crate::common::{need, tmp};

const STARTUP: Duration = Duration::from_secs(30);

/// A node's config: `fuse.dir` and `data.dir` as given, a static lease, plus `extra`.
fn config(path: &Path, mnt: &Path, data: &Path, extra: &str) -> PathBuf {
    std::fs::write(
        path,
        format!(
            "fuse:\n  dir: {mnt:?}\ndata:\n  dir: {data:?}\n{}",
            if extra.contains("lease:") {
                extra.to_owned()
            } else {
                format!("lease:\n  type: static\n  candidate: true\n{extra}")
            }
        ),
    )
    .unwrap();
    path.to_owned()
}

/// A running `litefleet mount`, its stderr in `log`, killed on drop (and its mount
/// detached, unless it is one that must refuse to start: `mnt` may be another node's).
struct Node {
    child: Child,
    log: PathBuf,
    mnt: Option<PathBuf>,
}

impl Node {
    fn spawn(cfg: &Path, mnt: &Path) -> Node {
        let log = cfg.with_extension("log");
        let child = Command::new(env!("CARGO_BIN_EXE_litefleet"))
            .arg("mount")
            .arg("--config")
            .arg(cfg)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Node { child, log, mnt: Some(mnt.to_owned()) }
    }

    /// Starts a node and waits until its own mount answers: reading `.lag` takes an open,
    /// which only a live litefleet mount serves.
    fn start(cfg: &Path, mnt: &Path) -> Node {
        let mut n = Node::spawn(cfg, mnt);
        wait_for("the node's mount", STARTUP, || {
            if let Some(st) = n.child.try_wait().unwrap() {
                panic!("node exited during startup ({st}): {}", n.log_text());
            }
            litefleet::mount::is_mounted(mnt) && std::fs::read(mnt.join(".lag")).is_ok()
        });
        n
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) for the process to exit on its own.
    #[allow(clippy::disallowed_methods)]
    fn exit(&mut self, timeout: Duration) -> ExitStatus {
        let t = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(t.elapsed() < timeout, "still running after {timeout:?}: {}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM; asserts a clean exit.
    fn stop(mut self) {
        self.signal(libc::SIGTERM);
        let st = self.exit(STARTUP);
        assert!(st.success(), "exit {st}: {}", self.log_text());
        let mnt = self.mnt.as_ref().expect("a started node has its mount");
        assert!(!litefleet::mount::is_mounted(mnt), "unmounted on SIGTERM");
    }

    fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child.
        assert_eq!(unsafe { libc::kill(self.pid() as i32, sig) }, 0);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(mnt) = &self.mnt
            && litefleet::mount::is_mounted(mnt)
        {
            let _ = litefleet::mount::force_unmount(mnt);
        }
    }
}

/// Runs a node that must refuse to start: exit code 1 within `timeout`; returns its stderr.
fn refused(cfg: &Path, mnt: &Path, timeout: Duration) -> String {
    let mut n = Node::spawn(cfg, mnt);
    n.mnt = None;
    let st = n.exit(timeout);
    let text = n.log_text();
    assert_eq!(st.code(), Some(1), "{text}");
    text
}

/// How many mounts `/proc/self/mountinfo` lists at `path`.
fn mounts_at(path: &Path) -> usize {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let want = path.to_str().unwrap();
    info.lines().filter(|l| l.split(' ').nth(4) == Some(want)).count()
}

/// Commits a row through the mount and reads every row back.
fn write_and_count(mnt: &Path, v: i64) -> i64 {
    let (ok, out) = sql_at(
        &mnt.join("app.db"),
        &format!(
            "CREATE TABLE IF NOT EXISTS t(v); INSERT INTO t VALUES ({v}); SELECT count(*) FROM t;"
        ),
    );
    assert!(ok, "{out}");
    out.trim().parse().unwrap()
}

#[test]
fn a_second_node_on_the_same_fuse_dir_refuses_and_names_the_pid() {
    need::fuse();
    need::sqlite3();
    let root = tmp("own-fuse");
    let mnt = root.join("mnt");
    let a = Node::start(&config(&root.join("a.yml"), &mnt, &root.join("data-a"), ""), &mnt);
    assert_eq!(write_and_count(&mnt, 1), 1);

    let err = refused(&config(&root.join("b.yml"), &mnt, &root.join("data-b"), ""), &mnt, STARTUP);
    let want =
        format!("fuse.dir {} is a live litefleet mount held by pid {}", mnt.display(), a.pid());
    assert!(err.contains(&want), "{err}");
    assert!(!err.contains("stale"), "the live mount was never called stale: {err}");

    // The first node still serves, through the same single mount.
    assert_eq!(mounts_at(&mnt), 1);
    assert_eq!(write_and_count(&mnt, 2), 2);
    a.stop();
}

#[test]
fn a_wedged_live_mount_is_not_taken_over() {
    need::fuse();
    need::sqlite3();
    let root = tmp("own-wedged");
    let mnt = root.join("mnt");
    let a = Node::start(&config(&root.join("a.yml"), &mnt, &root.join("data-a"), ""), &mnt);
    assert_eq!(write_and_count(&mnt, 1), 1);

    // A stopped daemon answers nothing: the second node's liveness check times out, which
    // proves nothing dead.
    a.signal(libc::SIGSTOP);
    let err = refused(&config(&root.join("b.yml"), &mnt, &root.join("data-b"), ""), &mnt, STARTUP);
    a.signal(libc::SIGCONT);
    assert!(err.contains(&format!("held by pid {}", a.pid())) && err.contains("wedged"), "{err}");

    assert_eq!(mounts_at(&mnt), 1);
    assert_eq!(write_and_count(&mnt, 2), 2);
    a.stop();
}

#[test]
fn a_second_node_on_the_same_data_dir_refuses_and_names_the_pid() {
    need::fuse();
    need::sqlite3();
    let root = tmp("own-data");
    let data = root.join("data");
    let (mnt_a, mnt_b) = (root.join("mnt-a"), root.join("mnt-b"));
    let a = Node::start(&config(&root.join("a.yml"), &mnt_a, &data, ""), &mnt_a);
    assert_eq!(write_and_count(&mnt_a, 1), 1);

    let err = refused(&config(&root.join("b.yml"), &mnt_b, &data, ""), &mnt_b, STARTUP);
    let want = format!("data.dir {} is in use by pid {}", data.display(), a.pid());
    assert!(err.contains(&want), "{err}");
    assert!(!litefleet::mount::is_mounted(&mnt_b), "the refused node mounted nothing");

    assert_eq!(write_and_count(&mnt_a, 2), 2);
    a.stop();
    // Released with its holder: the same data directory starts again.
    let b = Node::start(&root.join("b.yml"), &mnt_b);
    assert_eq!(write_and_count(&mnt_b, 3), 3);
    b.stop();
}

#[test]
fn a_relative_fuse_dir_is_refused() {
    let root = tmp("own-relative");
    let cfg = config(&root.join("n.yml"), Path::new("mnt"), &root.join("data"), "");
    let err = refused(&cfg, &root.join("mnt"), STARTUP);
    assert!(err.contains("fuse.dir: must be an absolute path, not mnt"), "{err}");
}

#[test]
fn a_file_where_a_directory_belongs_is_named() {
    let root = tmp("own-file");
    let file = root.join("file");
    std::fs::write(&file, b"not a directory").unwrap();

    let cfg = config(&root.join("f.yml"), &file, &root.join("data-f"), "");
    let err = refused(&cfg, &file, STARTUP);
    assert!(err.contains(&format!("fuse.dir {} is not a directory", file.display())), "{err}");
    assert!(!err.contains("File exists"), "{err}");

    let cfg = config(&root.join("d.yml"), &root.join("mnt"), &file, "");
    let err = refused(&cfg, &root.join("mnt"), STARTUP);
    assert!(err.contains(&format!("data.dir {} is not a directory", file.display())), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"not a directory", "the file is left alone");
}

/// `tls:` keys for node `name` with certificates under `certs`.
fn tls(certs: &Path, name: &str) -> String {
    format!(
        "tls:\n  ca: {:?}\n  cert: {:?}\n  key: {:?}\n",
        certs.join("ca.pem"),
        certs.join(format!("{name}.pem")),
        certs.join(format!("{name}-key.pem"))
    )
}

#[test]
fn a_udp_port_in_use_fails_startup_before_mounting() {
    let root = tmp("own-udp");
    let certs = dev_certs(&root, 1);
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mnt = root.join("mnt");
    let extra = format!("quic:\n  addr: \"127.0.0.1:{port}\"\n{}", tls(&certs, "n1"));
    let err =
        refused(&config(&root.join("n.yml"), &mnt, &root.join("data"), &extra), &mnt, STARTUP);
    assert!(err.contains(&format!("quic.addr 127.0.0.1:{port}: address already in use")), "{err}");
    assert!(!litefleet::mount::is_mounted(&mnt));
    drop(taken);
}

/// A static candidate's config (`n`, listening on `listen`, advertising `advertise`).
fn candidate(
    root: &Path,
    certs: &Path,
    n: &str,
    listen: u16,
    advertise: u16,
) -> (PathBuf, PathBuf) {
    let mnt = root.join(format!("mnt-{n}"));
    let extra = format!(
        "http:\n  addr: \"127.0.0.1:{listen}\"\nlease:\n  type: static\n  candidate: true\n  \
         hostname: {n}\n  advertise-url: \"http://127.0.0.1:{advertise}\"\n{}",
        tls(certs, n)
    );
    let cfg = config(&root.join(format!("{n}.yml")), &mnt, &root.join(format!("data-{n}")), &extra);
    (cfg, mnt)
}

#[test]
fn a_second_static_candidate_with_a_copied_config_refuses() {
    need::fuse();
    need::sqlite3();
    let root = tmp("own-two-primaries");
    let certs = dev_certs(&root, 2);
    let (p1, p2) = (free_port(), free_port());
    let (cfg1, mnt1) = candidate(&root, &certs, "n1", p1, p1);
    // node2's config is node1's: candidate, advertising node1's URL.
    let (cfg2, mnt2) = candidate(&root, &certs, "n2", p2, p1);
    let n1 = Node::start(&cfg1, &mnt1);
    assert_eq!(write_and_count(&mnt1, 1), 1);

    let err = refused(&cfg2, &mnt2, STARTUP);
    assert!(err.contains(&format!("already answers as the primary at 127.0.0.1:{p1}")), "{err}");
    assert!(err.contains("host \"n1\"") && err.contains("lease.candidate: false"), "{err}");
    assert!(!litefleet::mount::is_mounted(&mnt2));
    assert_eq!(write_and_count(&mnt1, 2), 2);
    assert!(!n1.log_text().contains("ERROR"), "{}", n1.log_text());
    n1.stop();
}

#[test]
fn a_primary_appearing_at_the_advertised_address_makes_the_misconfigured_node_read_only() {
    need::fuse();
    need::sqlite3();
    let root = tmp("own-later-primary");
    let certs = dev_certs(&root, 2);
    let (p1, p2) = (free_port(), free_port());
    let (cfg1, mnt1) = candidate(&root, &certs, "n1", p1, p1);
    let (cfg2, mnt2) = candidate(&root, &certs, "n2", p2, p1);
    // node1 is down: nobody answers at its address, so node2 starts as a primary.
    let n2 = Node::start(&cfg2, &mnt2);
    assert_eq!(write_and_count(&mnt2, 1), 1);

    let n1 = Node::start(&cfg1, &mnt1);
    // node2's next probe reaches node1: node2 goes read-only, node1 keeps accepting writes.
    wait_for("node2 to go read-only", STARTUP, || {
        !sql_at(&mnt2.join("app.db"), "INSERT INTO t VALUES (2);").0
    });
    let (ok, out) = sql_at(&mnt2.join("app.db"), "INSERT INTO t VALUES (3);");
    assert!(!ok && out.contains("readonly"), "{out}");
    let log = n2.log_text();
    assert!(log.contains("ERROR") && log.contains("read-only until restarted"), "{log}");
    assert_eq!(write_and_count(&mnt1, 1), 1);
    n1.stop();
    n2.stop();
}
