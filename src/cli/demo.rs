//! `litefleet demo`: a local cluster (one `litefleet mount` process per node, a static
//! primary and replicas over QUIC with mutual TLS, temporary directories, loopback ports),
//! a writer committing to `demo.db` on the primary, and a live line with each node's
//! position and lag. Prints the mount path so a person can open the
//! database with `sqlite3`; cleans up on Ctrl-C, SIGTERM or SIGHUP (or after `--duration`):
//! every node stopped, every mount gone, the directory removed.
//!
//! The nodes run in their own process group (a terminal's Ctrl-C and hangup reach only the
//! demo, which stops them in order), and each dies with the demo: it gets SIGTERM when the
//! demo ends in any way, SIGKILL included (`PR_SET_PDEATHSIG`), and unmounts on it. Only
//! the directory stays behind after a SIGKILL.

use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub struct DemoArgs {
    pub nodes: usize,
    pub dir: Option<PathBuf>,
    pub duration: Option<Duration>,
    pub interval: Duration,
}

struct Cleanup {
    root: PathBuf,
    nodes: Vec<(PathBuf, Child)>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for (_, c) in &mut self.nodes {
            // SAFETY: signalling a child we spawned.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
        for (mnt, c) in &mut self.nodes {
            let _ = c.wait();
            if litefleet::mount::is_mounted(mnt) {
                let _ = litefleet::mount::force_unmount(mnt);
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[allow(clippy::disallowed_methods)]
fn wait_mounted(mnt: &Path, child: &mut Child) -> anyhow::Result<()> {
    let t = Instant::now();
    while !litefleet::mount::is_mounted(mnt) {
        if STOP.load(Ordering::SeqCst) {
            bail!("interrupted while starting the nodes");
        }
        if let Some(st) = child.try_wait()? {
            bail!("the node exited before mounting: {st}");
        }
        if t.elapsed() > Duration::from_secs(30) {
            bail!("the node did not mount {} within 30 s", mnt.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

#[allow(clippy::disallowed_methods)]
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    install_stop_handler()?;
    let root = args.dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("litefleet-demo-{}", std::process::id()))
    });
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    // Absolute: it becomes each node's fuse.dir and data.dir (a relative fuse.dir is refused).
    let root = root.canonicalize().with_context(|| format!("resolving {}", root.display()))?;
    let mut cleanup = Cleanup { root: root.clone(), nodes: Vec::new() };
    let exe = std::env::current_exe()?;

    let nodes = args.nodes.max(1);
    let names: Vec<String> = (1..=nodes).map(|i| format!("n{i}")).collect();
    // The repository's INSECURE development certificates when run from a checkout (they
    // cover n1..n3), else a fresh development set.
    let repo_certs = Path::new("certs-dev");
    let certs = if repo_certs.join("ca.pem").exists()
        && names.iter().all(|n| repo_certs.join(format!("{n}.pem")).exists())
    {
        repo_certs.canonicalize()?
    } else {
        let dir = root.join("certs");
        litefleet::certs::dev(&dir, &names)?;
        dir
    };
    // QUIC takes the UDP port, the HTTP API the TCP port of the same number.
    let free_port = || -> anyhow::Result<u16> {
        loop {
            let port = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port();
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
    };
    let primary_port = free_port()?;
    let mut mounts = Vec::new();
    let mut apis = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let node = root.join(name);
        let mnt = node.join("mnt");
        let cfg = node.join("litefs.yml");
        std::fs::create_dir_all(&node)?;
        let port = if i == 0 { primary_port } else { free_port()? };
        apis.push(format!("http://127.0.0.1:{port}"));
        std::fs::write(
            &cfg,
            format!(
                "fuse:\n  dir: {mnt:?}\ndata:\n  dir: {data:?}\nhttp:\n  addr: \"127.0.0.1:{port}\"\n\
                 lease:\n  type: static\n  candidate: {cand}\n  hostname: {name}\n  advertise-url: \"http://127.0.0.1:{primary_port}\"\n\
                 tls:\n  ca: {ca:?}\n  cert: {cert:?}\n  key: {key:?}\n",
                data = node.join("data"),
                cand = i == 0,
                ca = certs.join("ca.pem"),
                cert = certs.join(format!("{name}.pem")),
                key = certs.join(format!("{name}-key.pem")),
            ),
        )?;
        let log = std::fs::File::create(node.join("node.log"))?;
        let mut cmd = Command::new(&exe);
        cmd.arg("mount")
            .arg("--config")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Ctrl-C and a hangup reach the demo; it stops the nodes itself, in order.
            .process_group(0);
        die_with_parent(&mut cmd);
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        cleanup.nodes.push((mnt.clone(), child));
        wait_mounted(&mnt, &mut cleanup.nodes[i].1)?;
        mounts.push(mnt);
    }

    let db = mounts[0].join("demo.db");
    println!("litefleet demo: {nodes} nodes on loopback (static lease, n1 primary), QUIC + mTLS");
    println!("  certificates  {} (INSECURE development set)", certs.display());
    for ((name, mnt), api) in names.iter().zip(&mounts).zip(&apis) {
        println!(
            "  {name}  mount {}   log {}",
            mnt.display(),
            mnt.with_file_name("node.log").display()
        );
        println!("      api {api}   metrics {api}/metrics   status: litefleet status -url {api}");
    }
    println!(
        "  try           sqlite3 {} 'SELECT count(*), max(at) FROM events'",
        mounts[nodes - 1].join("demo.db").display()
    );
    println!("  stop          Ctrl-C (removes {})", root.display());

    let conn = rusqlite::Connection::open(&db)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY, at TEXT, payload BLOB)",
    )?;
    let mut insert = conn.prepare(
        "INSERT INTO events(at, payload) VALUES (strftime('%Y-%m-%d %H:%M:%f', 'now'), randomblob(200))",
    )?;
    let start = Instant::now();
    let mut commits = 0u64;
    let mut last_us = 0u128;
    let mut out = std::io::stdout();
    while !STOP.load(Ordering::SeqCst) && args.duration.is_none_or(|d| start.elapsed() < d) {
        let t = Instant::now();
        insert.execute([])?;
        last_us = t.elapsed().as_micros();
        commits += 1;
        let mut line = format!("\r  commits {commits}  last {last_us} us |");
        for (name, mnt) in names.iter().zip(&mounts) {
            let pos = std::fs::read_to_string(mnt.join("demo.db-pos")).unwrap_or_default();
            let txid = pos.split('/').next().unwrap_or("-").trim_start_matches('0');
            let lag = std::fs::read_to_string(mnt.join(".lag")).unwrap_or_default();
            let lag: i64 = lag.trim().parse().unwrap_or(-1);
            line.push_str(&format!(" {name} txid {txid:>4} lag {lag:>4} ms |"));
        }
        write!(out, "{line}  ")?;
        out.flush()?;
        std::thread::sleep(args.interval);
    }
    println!();
    // The cluster as the primary sees it, before it stops.
    match super::status::fetch_info(&apis[0]) {
        Ok(info) => print!("\n{}\n", super::status::render(&info)),
        Err(e) => println!("(no status from {}: {e:#})", apis[0]),
    }
    drop(insert);
    drop(conn);
    let rows: i64 = {
        let c = rusqlite::Connection::open(&db)?;
        c.query_row("SELECT count(*) FROM events", [], |r| r.get(0))?
    };
    println!("stopping: {rows} rows in demo.db, last commit took {last_us} us");
    drop(cleanup);
    Ok(ExitCode::SUCCESS)
}

/// The signals that stop the demo (and clean up): Ctrl-C, `kill`, a closed terminal.
const STOP_SIGNALS: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Set by [`on_stop_signal`]; the demo's loops poll it.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_sig: libc::c_int) {
    // Async-signal-safe: one atomic store.
    STOP.store(true, Ordering::SeqCst);
}

/// Installs a handler for [`STOP_SIGNALS`]. A handler, not a blocked mask and `sigwait`:
/// a process-directed signal goes to any thread that does not block it, and threads
/// started before the demo runs (the logger's) would take the default action, killing the
/// demo without cleanup. Children start with default dispositions (exec resets handlers).
fn install_stop_handler() -> anyhow::Result<()> {
    for sig in STOP_SIGNALS {
        // SAFETY: a zeroed sigaction is valid; the handler only stores to an atomic.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            bail!("installing the handler for signal {sig}: {}", io::Error::last_os_error());
        }
    }
    // Unblocked in this thread (a parent may have blocked them), so a handler runs.
    // SAFETY: sigset initialised by sigemptyset/sigaddset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in STOP_SIGNALS {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
    Ok(())
}

/// Makes the child get SIGTERM when the demo dies, however it dies (a `litefleet mount`
/// unmounts and exits on it). Hazard: the kernel sends it when the *thread* that spawned the
/// child exits, so nodes must be spawned from the main thread, which lives as long as the
/// demo.
fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id() as i32;
    // SAFETY: the closure runs in the forked child before exec and makes only
    // async-signal-safe calls (prctl, getppid), allocating nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The demo died between fork and prctl: no signal would come; give up.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        })
    };
}
