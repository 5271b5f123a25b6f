//! Replication benchmark, one run on this machine (`cargo bench --bench replication`; needs
//! root and /dev/fuse): `litefleet mount` processes on loopback with QUIC + mTLS.
//!
//! Prints:
//! - replication lag (commit returns on the primary → the replica's `-pos` shows it) p50 and
//!   p99, at 100 commits/s and at the maximum rate;
//! - primary commits/s with 0, 1 and 3 replicas attached (WAL, synchronous=NORMAL,
//!   single-row INSERTs of 200 bytes), and the ratio to 0 replicas;
//! - snapshot catch-up speed of a fresh replica on a `LITEFLEET_BENCH_SNAPSHOT_MB` database
//!   (default 1024).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct Node {
    mnt: PathBuf,
    data: PathBuf,
    cfg: PathBuf,
    child: Option<Child>,
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_litefleet")
}

#[allow(clippy::disallowed_methods)]
fn wait(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(secs), "timeout: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn make_nodes(root: &Path, n: usize) -> Vec<Node> {
    let names: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
    let certs = root.join("certs");
    let st = Command::new(exe())
        .args(["certs", "dev", "--out"])
        .arg(&certs)
        .arg("--nodes")
        .arg(names.join(","))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let primary = free_port();
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let dir = root.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            let port = if i == 0 { primary } else { free_port() };
            let cfg = dir.join("litefs.yml");
            std::fs::write(
                &cfg,
                format!(
                    "fuse:\n  dir: {mnt:?}\ndata:\n  dir: {data:?}\nhttp:\n  addr: \"127.0.0.1:{port}\"\n\
                     lease:\n  type: static\n  candidate: {cand}\n  hostname: {name}\n  advertise-url: \"http://127.0.0.1:{primary}\"\n\
                     tls:\n  ca: {ca:?}\n  cert: {cert:?}\n  key: {key:?}\n",
                    mnt = dir.join("mnt"),
                    data = dir.join("data"),
                    cand = i == 0,
                    ca = certs.join("ca.pem"),
                    cert = certs.join(format!("{name}.pem")),
                    key = certs.join(format!("{name}-key.pem")),
                ),
            )
            .unwrap();
            Node { mnt: dir.join("mnt"), data: dir.join("data"), cfg, child: None }
        })
        .collect()
}

fn start(n: &mut Node) {
    let child = Command::new(exe())
        .arg("mount")
        .arg("--config")
        .arg(&n.cfg)
        .env("LITEFLEET_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    n.child = Some(child);
    let mnt = n.mnt.clone();
    wait("mount", 30, || litefleet::mount::is_mounted(&mnt));
}

fn stop(n: &mut Node) {
    if let Some(mut c) = n.child.take() {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let _ = c.wait();
    }
}

fn txid(mnt: &Path, db: &str) -> u64 {
    std::fs::read_to_string(mnt.join(format!("{db}-pos")))
        .ok()
        .and_then(|s| u64::from_str_radix(s.split('/').next()?, 16).ok())
        .unwrap_or(0)
}

fn open(path: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c.pragma_update(None, "journal_mode", "WAL").unwrap();
    c.pragma_update(None, "synchronous", "NORMAL").unwrap();
    c.execute_batch("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB)").unwrap();
    c
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

/// Commits at `rate` per second (0: as fast as possible) for `dur`; returns lag samples in
/// ms, measured by a thread spinning on the replica's `-pos`.
#[allow(clippy::disallowed_methods)]
fn lag_run(primary: &Path, replica: &Path, rate: u32, dur: Duration) -> (Vec<f64>, f64) {
    let conn = open(&primary.join("lag.db"));
    let row = vec![0x5au8; 200];
    let base = Instant::now();
    let n = 1 << 20;
    let commit_at: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let done = Arc::new(AtomicBool::new(false));
    let start_txid = txid(primary, "lag.db");
    LAST.store(u64::MAX, Ordering::Release);
    let watcher = {
        let (commit_at, done, replica) = (commit_at.clone(), done.clone(), replica.to_owned());
        std::thread::spawn(move || {
            let mut seen = start_txid;
            let mut lags = Vec::new();
            let mut deadline = None;
            while seen < LAST.load(Ordering::Acquire) {
                let t = txid(&replica, "lag.db");
                let now = base.elapsed().as_micros() as u64;
                for x in seen + 1..=t {
                    let at = commit_at[(x - start_txid) as usize % n].load(Ordering::Acquire);
                    if at > 0 {
                        lags.push((now.saturating_sub(at)) as f64 / 1000.0);
                    }
                }
                seen = seen.max(t);
                if done.load(Ordering::Acquire) {
                    let d = *deadline.get_or_insert(base.elapsed() + Duration::from_secs(30));
                    if base.elapsed() > d {
                        break; // the replica never caught up: reported as missing samples
                    }
                }
            }
            lags
        })
    };
    let t0 = Instant::now();
    let mut commits = 0u64;
    while t0.elapsed() < dur {
        conn.execute("INSERT INTO t(v) VALUES (?1)", [&row]).unwrap();
        commits += 1;
        let x = start_txid + commits;
        commit_at[(x - start_txid) as usize % n]
            .store(base.elapsed().as_micros() as u64, Ordering::Release);
        if rate > 0 {
            let next = Duration::from_secs_f64(commits as f64 / f64::from(rate));
            if let Some(d) = next.checked_sub(t0.elapsed()) {
                std::thread::sleep(d);
            }
        }
    }
    let rate_done = commits as f64 / t0.elapsed().as_secs_f64();
    // Last TXID committed, for the watcher to wait for.
    LAST.store(start_txid + commits, Ordering::Release);
    done.store(true, Ordering::Release);
    (watcher.join().unwrap(), rate_done)
}

/// The last TXID a lag run committed (`u64::MAX` while it runs).
static LAST: AtomicU64 = AtomicU64::new(u64::MAX);

#[allow(clippy::disallowed_methods)]
fn commit_rate(primary: &Path, dur: Duration) -> f64 {
    let conn = open(&primary.join("rate.db"));
    let row = vec![0x5au8; 200];
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed() < dur {
        conn.execute("INSERT INTO t(v) VALUES (?1)", [&row]).unwrap();
        n += 1;
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

#[allow(clippy::disallowed_methods)]
fn main() {
    let root = std::env::temp_dir().join(format!("litefleet-replbench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mut nodes = make_nodes(&root, 5);
    start(&mut nodes[0]);

    // Commit rate with 0, 1 and 3 replicas.
    let secs = Duration::from_secs(4);
    let r0 = commit_rate(&nodes[0].mnt, secs);
    start(&mut nodes[1]);
    wait("replica 1", 60, || txid(&nodes[1].mnt, "rate.db") == txid(&nodes[0].mnt, "rate.db"));
    let r1 = commit_rate(&nodes[0].mnt, secs);
    start(&mut nodes[2]);
    start(&mut nodes[3]);
    for i in 1..4 {
        wait("replicas", 60, || txid(&nodes[i].mnt, "rate.db") == txid(&nodes[0].mnt, "rate.db"));
    }
    let r3 = commit_rate(&nodes[0].mnt, secs);
    stop(&mut nodes[2]);
    stop(&mut nodes[3]);

    // Lag, one replica attached.
    let (mut slow, slow_rate) = lag_run(&nodes[0].mnt, &nodes[1].mnt, 100, secs);
    let (mut fast, fast_rate) = lag_run(&nodes[0].mnt, &nodes[1].mnt, 0, secs);

    println!("replication on loopback (QUIC + mTLS), WAL synchronous=NORMAL, 200-byte rows");
    println!(
        "{:<40} {:>10} {:>10} {:>10}",
        "lag: commit → replica serves it", "commits/s", "p50 ms", "p99 ms"
    );
    println!(
        "{:<40} {:>10.0} {:>10.3} {:>10.3}",
        "  100 commits/s",
        slow_rate,
        pct(&mut slow, 0.5),
        pct(&mut slow, 0.99)
    );
    println!(
        "{:<40} {:>10.0} {:>10.3} {:>10.3}",
        "  maximum rate",
        fast_rate,
        pct(&mut fast, 0.5),
        pct(&mut fast, 0.99)
    );
    println!("{:<40} {:>10} {:>10}", "primary commit rate", "commits/s", "ratio");
    println!("{:<40} {:>10.0} {:>10.2}", "  0 replicas", r0, 1.0);
    println!("{:<40} {:>10.0} {:>10.2}", "  1 replica", r1, r1 / r0);
    println!("{:<40} {:>10.0} {:>10.2}", "  3 replicas", r3, r3 / r0);

    // Snapshot catch-up: a big database, then a fresh replica.
    let mb: u64 = std::env::var("LITEFLEET_BENCH_SNAPSHOT_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    stop(&mut nodes[1]);
    {
        let c = open(&nodes[0].mnt.join("big.db"));
        c.pragma_update(None, "cache_size", -65536).unwrap();
        let tx = c.unchecked_transaction().unwrap();
        for _ in 0..(mb << 20) / 4000 {
            tx.execute("INSERT INTO t(v) VALUES (randomblob(3900))", []).unwrap();
        }
        tx.commit().unwrap();
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    }
    let size = std::fs::metadata(nodes[0].data.join("dbs/big.db/database")).unwrap().len();
    let want = txid(&nodes[0].mnt, "big.db");
    let t = Instant::now();
    start(&mut nodes[4]);
    wait("snapshot", 600, || txid(&nodes[4].mnt, "big.db") == want);
    let el = t.elapsed().as_secs_f64();
    println!("{:<40} {:>10} {:>10}", "snapshot catch-up (fresh replica)", "MiB", "MB/s");
    println!(
        "{:<40} {:>10} {:>10.0}",
        "  start → serving the database",
        size >> 20,
        size as f64 / 1e6 / el
    );

    for n in &mut nodes {
        stop(n);
    }
    let _ = std::fs::remove_dir_all(&root);
}
