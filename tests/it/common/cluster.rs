//! A cluster of `litefleet mount` processes on loopback for replication tests: node `n1` is
//! the static primary, the others follow it over QUIC with certificates from a fresh CA.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use litefleet::core::types::Pos;

pub struct ClusterNode {
    pub name: String,
    pub root: PathBuf,
    pub mnt: PathBuf,
    pub data: PathBuf,
    pub cfg: PathBuf,
    pub child: Option<Child>,
    /// Network namespace the node runs in (`nsenter --net=/run/netns/NAME`).
    pub netns: Option<String>,
    /// `http.addr` (`host:port`): the HTTP API on TCP, QUIC on UDP.
    pub http: String,
}

impl ClusterNode {
    /// The node's HTTP API at `path` (`/info`, ...).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }
}

/// Where one node listens and whom it follows.
pub struct NodeNet {
    pub netns: Option<String>,
    /// `http.addr` (the QUIC listen address).
    pub listen: String,
    /// `lease.advertise-url`: the primary's URL as this node reaches it.
    pub primary_url: String,
    /// Extra `data:` keys (YAML lines indented by two spaces).
    pub data_extra: String,
    /// The whole `lease:` section; `None`: static, `n1` the primary.
    pub lease: Option<String>,
}

pub struct Cluster {
    pub nodes: Vec<ClusterNode>,
}

/// A port free for UDP and TCP on every address, never handed out before by this process.
///
/// Tests run side by side in one process: a port taken by binding port 0 and released at
/// once can be handed by the kernel to the next bind of port 0 (a QUIC client, a relay's
/// upstream socket, another test's node) before the node it was meant for binds it. These
/// ports come from below Linux's ephemeral range (32768–60999 by default), where port 0
/// never lands, starting at an offset of the pid so that test runs on one machine start
/// apart; a port something already holds is skipped.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 21_000;
    const SPAN: u32 = 11_000;
    static TAKEN: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7919) % SPAN;
    loop {
        let n = TAKEN.fetch_add(1, Ordering::Relaxed);
        assert!(n < SPAN, "every port of {LOW}..{} was handed out", LOW + SPAN);
        // invariant: LOW + SPAN < 65536.
        let port = (LOW + (start + n) % SPAN) as u16;
        if std::net::UdpSocket::bind(("0.0.0.0", port)).is_ok()
            && std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()
        {
            return port;
        }
    }
}

/// Development certificates for nodes `n1..=n{n}` under `root/certs`.
pub fn dev_certs(root: &Path, n: usize) -> PathBuf {
    let certs = root.join("certs");
    let names: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
    let out = Command::new(env!("CARGO_BIN_EXE_litefleet"))
        .args(["certs", "dev", "--out"])
        .arg(&certs)
        .arg("--nodes")
        .arg(names.join(","))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    certs
}

#[allow(clippy::disallowed_methods)]
pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts that `f` stays true for all of `window` (checked every 20 ms). For what must *not*
/// happen (a commit that must stay blocked), where no event ends the wait: the window is
/// how long "not yet" is watched, started by the caller after the event that makes "not
/// yet" meaningful.
#[allow(clippy::disallowed_methods)]
pub fn holds_for(what: &str, window: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while t.elapsed() < window {
        assert!(f(), "{what} stopped holding after {:?}", t.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Cluster {
    /// Writes configs and certificates for `n` nodes on loopback and starts them all.
    pub fn start(root: &Path, n: usize) -> Cluster {
        Cluster::start_with(root, n, "")
    }

    /// As [`Cluster::start`], with extra `data:` keys on every node.
    pub fn start_with(root: &Path, n: usize, data_extra: &str) -> Cluster {
        let certs = dev_certs(root, n);
        let port = free_port();
        let nets = (0..n)
            .map(|i| NodeNet {
                netns: None,
                listen: format!("127.0.0.1:{}", if i == 0 { port } else { free_port() }),
                primary_url: format!("http://127.0.0.1:{port}"),
                data_extra: data_extra.to_owned(),
                lease: None,
            })
            .collect();
        Cluster::start_custom(root, nets, &certs)
    }

    /// Writes configs for the nodes `nets` (node `i` is `n{i+1}`, `n1` the primary), with
    /// certificates `<name>.pem` from `certs`, and starts them all.
    pub fn start_custom(root: &Path, nets: Vec<NodeNet>, certs: &Path) -> Cluster {
        let nodes = nets
            .into_iter()
            .enumerate()
            .map(|(i, net)| {
                let name = format!("n{}", i + 1);
                let nroot = root.join(&name);
                std::fs::create_dir_all(&nroot).unwrap();
                let cfg = nroot.join("litefs.yml");
                let lease = net.lease.clone().unwrap_or_else(|| {
                    format!(
                        "lease:\n  type: static\n  candidate: {}\n  hostname: {name}\n  advertise-url: \"{}\"\n",
                        i == 0,
                        net.primary_url
                    )
                });
                std::fs::write(
                    &cfg,
                    format!(
                        "fuse:\n  dir: {mnt:?}\ndata:\n  dir: {data:?}\n{extra}http:\n  addr: \"{listen}\"\n\
                         {lease}tls:\n  ca: {ca:?}\n  cert: {cert:?}\n  key: {key:?}\n",
                        mnt = nroot.join("mnt"),
                        data = nroot.join("data"),
                        listen = net.listen,
                        extra = net.data_extra,
                        ca = certs.join("ca.pem"),
                        cert = certs.join(format!("{name}.pem")),
                        key = certs.join(format!("{name}-key.pem")),
                    ),
                )
                .unwrap();
                ClusterNode {
                    name,
                    mnt: nroot.join("mnt"),
                    data: nroot.join("data"),
                    root: nroot,
                    cfg,
                    child: None,
                    netns: net.netns,
                    http: net.listen,
                }
            })
            .collect::<Vec<_>>();
        let n = nodes.len();
        let mut c = Cluster { nodes };
        for i in 0..n {
            c.start_node(i);
        }
        c
    }

    /// `n` candidates on loopback sharing the Consul lease at `consul_url` (key `key`), with
    /// `extra` appended to each `lease.consul:` section (lines indented by four spaces).
    pub fn start_consul(
        root: &Path,
        n: usize,
        consul_url: &str,
        key: &str,
        extra: &str,
    ) -> Cluster {
        let certs = dev_certs(root, n);
        Cluster::start_custom(root, consul_nets(n, consul_url, key, extra), &certs)
    }

    /// How many times node `i` became the primary (from its log).
    pub fn terms(&self, i: usize) -> usize {
        self.log(i).matches("this node is the primary").count()
    }

    /// Waits until a node other than `not` became the primary more often than `before`
    /// says; returns it.
    pub fn wait_new_primary(
        &self,
        before: &[usize],
        not: Option<usize>,
        timeout: Duration,
    ) -> usize {
        let mut next = None;
        wait_for("a new primary", timeout, || {
            next = (0..self.nodes.len()).find(|&i| Some(i) != not && self.terms(i) > before[i]);
            next.is_some()
        });
        next.unwrap()
    }

    pub fn start_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.root.join("node.log"))
            .unwrap();
        let mut cmd = match &node.netns {
            // Only the network namespace changes: the FUSE mount stays visible here.
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg(env!("CARGO_BIN_EXE_litefleet"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_litefleet")),
        };
        let child = cmd
            .arg("mount")
            .arg("--config")
            .arg(&node.cfg)
            .env("LITEFLEET_LOG", "info,litefleet=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        node.child = Some(child);
        let mnt = node.mnt.clone();
        wait_for("the mount", Duration::from_secs(30), || litefleet::mount::is_mounted(&mnt));
    }

    /// SIGTERM and wait.
    pub fn stop_node(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let st = c.wait().unwrap();
            assert!(st.success(), "{} exited with {st}", self.nodes[i].name);
        }
    }

    /// kill -9, and clear the dead mount. A daemon still not gone after 10 s is stuck
    /// exiting on its own mount (see `mount::abort_connection`): that is reported, and its
    /// connection aborted so the test goes on.
    #[allow(clippy::disallowed_methods)]
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            c.kill().unwrap();
            let t = Instant::now();
            while c.try_wait().unwrap().is_none() {
                if t.elapsed() > Duration::from_secs(10) {
                    eprintln!(
                        "{} is stuck exiting; aborting its FUSE connection",
                        self.nodes[i].name
                    );
                    let _ = litefleet::mount::abort_connection(&self.nodes[i].mnt);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = litefleet::mount::force_unmount(&self.nodes[i].mnt);
    }

    /// Sends `sig` to node `i`'s process.
    pub fn signal(&self, i: usize, sig: i32) {
        let pid = self.nodes[i].child.as_ref().unwrap().id() as i32;
        // SAFETY: signalling our own child.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    /// Whether every thread of node `i` is stopped (state `T` in `/proc/<pid>/task/*/stat`):
    /// SIGSTOP is delivered asynchronously.
    pub fn stopped(&self, i: usize) -> bool {
        let pid = self.nodes[i].child.as_ref().unwrap().id();
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
        tasks.flatten().all(|t| {
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            // The state follows the parenthesised command name.
            stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('T'))
        })
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.nodes[i].root.join("node.log")).unwrap_or_default()
    }

    pub fn db(&self, i: usize, db: &str) -> PathBuf {
        self.nodes[i].mnt.join(db)
    }

    pub fn pos(&self, i: usize, db: &str) -> Option<Pos> {
        std::fs::read_to_string(self.nodes[i].mnt.join(format!("{db}-pos"))).ok()?.parse().ok()
    }

    /// Runs SQL with the sqlite3 CLI on node `i`; returns (success, stdout + stderr).
    pub fn sql(&self, i: usize, db: &str, sql: &str) -> (bool, String) {
        sql_at(&self.db(i, db), sql)
    }

    /// Every running node at node `p`'s position of `db`; returns it.
    pub fn wait_all_at(&self, p: usize, db: &str, timeout: Duration) -> Pos {
        let want = self.pos(p, db).expect("primary position");
        for i in 0..self.nodes.len() {
            if self.nodes[i].child.is_some() {
                wait_for(&format!("n{} to reach {want} on {db}", i + 1), timeout, || {
                    self.pos(i, db) == Some(want)
                });
            }
        }
        want
    }

    /// The table the writers of `writers.rs` insert into, created in WAL mode on the
    /// primary `p` and replicated to every running node.
    pub fn writers_table(&self, p: usize, db: &str) {
        self.sql_ok(
            p,
            db,
            "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, node INT);",
        );
        self.wait_all_at(p, db, Duration::from_secs(30));
    }

    pub fn sql_ok(&self, i: usize, db: &str, sql: &str) -> String {
        let (ok, text) = self.sql(i, db, sql);
        assert!(ok, "node {i} {db}: {sql}: {text}");
        text
    }

    /// Waits until every node serves `db` at the primary's position.
    pub fn wait_converged(&self, db: &str, timeout: Duration) -> Pos {
        let want = self.pos(0, db).expect("primary position");
        for i in 1..self.nodes.len() {
            if self.nodes[i].child.is_none() {
                continue;
            }
            wait_for(&format!("{} to reach {want} on {db}", self.nodes[i].name), timeout, || {
                self.pos(i, db) == Some(want)
            });
        }
        want
    }

    /// The primary's database file after a checkpoint (the image every replica must hold).
    pub fn primary_image(&self, db: &str) -> Vec<u8> {
        let mode = self.sql_ok(0, db, "PRAGMA journal_mode;");
        if mode.trim() == "wal" {
            self.sql_ok(0, db, "PRAGMA wal_checkpoint(TRUNCATE);");
        }
        std::fs::read(self.nodes[0].data.join("dbs").join(db).join("database")).unwrap()
    }

    /// Waits until replica `i` holds `db` at the primary's position with the primary's bytes
    /// (re-read each time: writes outside SQLite, as `cp` makes, are recorded when the last
    /// descriptor is released, which FUSE delivers just after `close` returns).
    pub fn wait_identical(&self, i: usize, db: &str, timeout: Duration) {
        let file = self.nodes[i].data.join("dbs").join(db).join("database");
        wait_for(
            &format!("{db} on {} identical to the primary", self.nodes[i].name),
            timeout,
            || {
                let p = self.pos(0, db);
                p.is_some()
                    && self.pos(i, db) == p
                    && std::fs::read(&file).ok() == Some(self.primary_image(db))
                    && self.pos(0, db) == p
            },
        );
    }

    pub fn replica_image(&self, i: usize, db: &str) -> Vec<u8> {
        std::fs::read(self.nodes[i].data.join("dbs").join(db).join("database")).unwrap()
    }
}

/// Runs SQL with the sqlite3 CLI on the database at `path`; returns (success, stdout +
/// stderr).
pub fn sql_at(path: &Path, sql: &str) -> (bool, String) {
    let out = Command::new("sqlite3")
        .arg("-cmd")
        .arg(".timeout 10000")
        .arg(path)
        .arg(sql)
        .output()
        .unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Loopback networking for `n` Consul candidates sharing the lease at `consul_url` (key
/// `key`), with `extra` appended to each `lease:` section after `consul:` (lines indented by
/// four spaces belong to `consul:`, by two to `lease:`).
pub fn consul_nets(n: usize, consul_url: &str, key: &str, extra: &str) -> Vec<NodeNet> {
    (0..n)
        .map(|i| {
            let port = free_port();
            NodeNet {
                netns: None,
                listen: format!("127.0.0.1:{port}"),
                primary_url: String::new(),
                data_extra: String::new(),
                lease: Some(format!(
                    "lease:\n  type: consul\n  candidate: true\n  hostname: n{n}\n  \
                     advertise-url: \"http://127.0.0.1:{port}\"\n  consul:\n    url: \"{consul_url}\"\n    \
                     key: \"{key}\"\n    ttl: 10s\n    lock-delay: 1s\n{extra}",
                    n = i + 1,
                )),
            }
        })
        .collect()
}

/// Loopback networking for `n` nodes under a static lease, `n1` listening on `port`. Node
/// `i` dials the primary at `dial(i)` (a relay port, or `port`); `lease_extra` is appended
/// to every `lease:` section (lines indented by two spaces).
pub fn static_nets(
    n: usize,
    port: u16,
    dial: impl Fn(usize) -> u16,
    lease_extra: &str,
) -> Vec<NodeNet> {
    (0..n)
        .map(|i| NodeNet {
            netns: None,
            listen: format!("127.0.0.1:{}", if i == 0 { port } else { free_port() }),
            primary_url: String::new(),
            data_extra: String::new(),
            lease: Some(format!(
                "lease:\n  type: static\n  candidate: {}\n  hostname: n{}\n  \
                 advertise-url: \"http://127.0.0.1:{}\"\n{lease_extra}",
                i == 0,
                i + 1,
                dial(i),
            )),
        })
        .collect()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                // SAFETY: signalling our own child.
                unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
                let _ = c.wait();
            }
            if litefleet::mount::is_mounted(&n.mnt) {
                let _ = litefleet::mount::force_unmount(&n.mnt);
            }
        }
    }
}
