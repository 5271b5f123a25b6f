//! `litefleet demo` leaves nothing behind: stopped by SIGHUP (a closed terminal) it stops
//! every node, removes every mount and its directory; killed with SIGKILL its nodes still
//! die with it (each gets SIGTERM from the kernel) and unmount.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::cluster::wait_for;
use crate::common::{need, tmp};

/// A running demo with its stdout collected, its temp directory under `tmpdir`.
struct Demo {
    child: Child,
    out: Arc<Mutex<String>>,
    root: PathBuf,
    /// The node processes (the demo's children), once it is up.
    nodes: Vec<u32>,
}

impl Demo {
    fn start(tmpdir: &Path) -> Demo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_litefleet"))
            .arg("demo")
            .env("TMPDIR", tmpdir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = Arc::new(Mutex::new(String::new()));
        let mut stdout = child.stdout.take().unwrap();
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let root = tmpdir.join(format!("litefleet-demo-{}", child.id()));
        let mut d = Demo { child, out, root, nodes: Vec::new() };
        // Up once it commits: every node is mounted by then.
        wait_for("the demo's first commits", Duration::from_secs(60), || {
            assert!(d.child.try_wait().unwrap().is_none(), "demo exited: {}", d.output());
            d.output().contains("commits 3 ")
        });
        d.nodes = children(d.child.id());
        assert_eq!(d.nodes.len(), 3, "three node processes: {:?}", d.nodes);
        assert_eq!(mounts_under(&d.root).len(), 3);
        d
    }

    fn output(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in &self.nodes {
            // SAFETY: a pid this test saw as the demo's child; SIGKILL after the test.
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
        for m in mounts_under(&self.root) {
            let _ = litefleet::mount::force_unmount(&m);
        }
    }
}

/// The pids whose parent is `ppid` (from `/proc/<pid>/stat`).
fn children(ppid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let Some((_, rest)) = stat.rsplit_once(") ") else { continue };
        if rest.split(' ').nth(1).and_then(|p| p.parse::<u32>().ok()) == Some(ppid) {
            out.push(pid);
        }
    }
    out
}

/// Whether `pid` is still a process (a zombie nobody reaps counts as gone: it runs nothing).
fn running(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
}

/// Mount points at or below `root`.
fn mounts_under(root: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|m| m.starts_with(root))
        .collect()
}

#[test]
fn sighup_stops_every_node_and_removes_mounts_and_directory() {
    need::fuse();
    let tmpdir = tmp("demo-sighup");
    let mut d = Demo::start(&tmpdir);
    assert!(d.root.is_dir(), "{}", d.root.display());
    d.signal(libc::SIGHUP);
    let mut status = None;
    wait_for("the demo to exit", Duration::from_secs(60), || {
        status = d.child.try_wait().unwrap();
        status.is_some()
    });
    assert!(status.unwrap().success(), "{:?}: {}", status, d.output());
    assert!(d.output().contains("stopping:"), "{}", d.output());
    for pid in &d.nodes {
        assert!(!running(*pid), "node {pid} still runs");
    }
    assert_eq!(mounts_under(&d.root), Vec::<PathBuf>::new());
    assert!(!d.root.exists(), "{} left behind", d.root.display());
}

#[test]
fn sigkill_of_the_demo_takes_its_nodes_down() {
    need::fuse();
    let tmpdir = tmp("demo-sigkill");
    let mut d = Demo::start(&tmpdir);
    d.signal(libc::SIGKILL);
    d.child.wait().unwrap();
    // Each node gets SIGTERM from the kernel and shuts down cleanly (a primary may wait up
    // to 3 s for its replicas first).
    wait_for("every node to exit", Duration::from_secs(60), || {
        d.nodes.iter().all(|p| !running(*p))
    });
    wait_for("every mount to go", Duration::from_secs(10), || mounts_under(&d.root).is_empty());
    let _ = std::fs::remove_dir_all(&d.root);
}
