//! The HTTP API's costs, in one run: `cargo bench --bench http` (needs root and /dev/fuse).
//!
//! 1. Commit rate through the mount (one connection, single-row `INSERT`s of 200-byte rows,
//!    WAL, synchronous=NORMAL) with `/metrics` scraped every 100 ms and `/events` followed,
//!    as a ratio to the rate with neither. Cases alternate (plain, observed, plain, ...) so
//!    that drift of the machine hits both; the ratio is of the medians. Target: ≥ 0.97.
//! 2. Export and import of a database of `BENCH_MB` MiB (default 1024) over HTTP on
//!    loopback, in MB/s, beside `sqlite3 .backup` and `VACUUM INTO` of the same file on the
//!    same disk; with the time writes waited for the export's copy.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use litefleet::core::types::NodeId;
use litefleet::db::DbOptions;
use litefleet::http::{Api, ApiConfig};
use litefleet::mount::Mounted;
use litefleet::store::Store;
use rusqlite::Connection;

const CASE_TIME: Duration = Duration::from_secs(3);
const ROUNDS: usize = 4;

/// One HTTP/1.1 request on a fresh connection; returns the status line and the body length.
fn get(addr: SocketAddr, path: &str) -> (String, usize) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out);
    let status = text.lines().next().unwrap_or("").to_owned();
    (status, out.len())
}

/// CPU time (user + system) of this whole process so far: the node, SQLite, and the
/// scraper and follower threads.
fn cpu() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// One round's result.
#[derive(Debug, Clone, Copy)]
struct Round {
    per_s: f64,
    /// CPU microseconds the process spent per commit.
    cpu_us: f64,
}

/// When each commit of a round returned, by TXID.
type Done = Vec<(u64, Instant)>;

/// Commits for `CASE_TIME`.
#[allow(clippy::disallowed_methods)]
fn commits(conn: &Connection, db: &litefleet::db::Db) -> (Round, Done) {
    let row = vec![0x5au8; 200];
    let mut stmt = conn.prepare_cached("INSERT INTO t(v) VALUES (?1)").unwrap();
    // Each INSERT is one transaction: one TXID each, from the position before the round.
    let first = db.pos().txid.0;
    let mut done = Vec::with_capacity(40_000);
    let c0 = cpu();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < CASE_TIME {
        stmt.execute([&row]).unwrap();
        n += 1;
        done.push((first + n, Instant::now()));
    }
    let per_s = n as f64 / start.elapsed().as_secs_f64();
    (Round { per_s, cpu_us: (cpu() - c0).as_secs_f64() * 1e6 / n as f64 }, done)
}

/// Runs `f` while a thread scrapes `/metrics` every 100 ms and another follows `/events`;
/// returns `f`'s result, the scrapes made and when each `tx` event (by TXID) was read.
#[allow(clippy::disallowed_methods)]
fn observed<T>(
    addr: SocketAddr,
    metrics: bool,
    events: Option<&'static str>,
    f: impl FnOnce() -> T,
) -> (T, u64, Done) {
    let stop = Arc::new(AtomicBool::new(false));
    let scrapes = Arc::new(AtomicU64::new(0));
    let scraper = {
        let (stop, scrapes) = (stop.clone(), scrapes.clone());
        std::thread::spawn(move || {
            while metrics && !stop.load(Ordering::Relaxed) {
                let (status, _) = get(addr, "/metrics");
                assert!(status.contains("200"), "{status}");
                scrapes.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let follower = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut seen: Done = Vec::with_capacity(40_000);
            let Some(path) = events else { return seen };
            let mut s = TcpStream::connect(addr).unwrap();
            write!(s, "GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").unwrap();
            s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
            let mut r = BufReader::new(s);
            let mut line = String::new();
            while !stop.load(Ordering::Relaxed) {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) => break,
                    Ok(_) => {
                        if let Some(i) = line.find("\"txID\":\"") {
                            let hex = &line[i + 8..(i + 24).min(line.len())];
                            if let Ok(t) = u64::from_str_radix(hex, 16) {
                                seen.push((t, Instant::now()));
                            }
                        }
                    }
                    Err(_) => {} // read timeout: look at `stop` again
                }
            }
            seen
        })
    };
    let out = f();
    stop.store(true, Ordering::Relaxed);
    scraper.join().unwrap();
    let seen = follower.join().unwrap();
    (out, scrapes.load(Ordering::Relaxed), seen)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn sqlite3(db: &Path, sql: &str) {
    let out = Command::new("sqlite3").arg(db).arg(sql).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[allow(clippy::disallowed_methods)]
fn timed(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

fn main() {
    let root = std::env::temp_dir().join(format!("litefleet-bench-http-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let bare = root.join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    let rt = litefleet::rt::runtime().unwrap();
    let opts = DbOptions { compress: true, node_id: NodeId(1) };
    let data = root.join("data");
    let store =
        Arc::new(Store::open(&data, opts, rt.handle().clone(), Default::default()).unwrap());
    let mnt = root.join("mnt");
    let mounted = Mounted::mount(store.clone(), &mnt, false, 4).unwrap();
    let listener = litefleet::http::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let api = Arc::new(Api {
        store: store.clone(),
        cfg: ApiConfig {
            node_id: NodeId(1),
            hostname: "bench".into(),
            advertise_url: format!("http://{addr}"),
            candidate: true,
            mount: mnt.clone(),
            token: None,
        },
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = rt.spawn(litefleet::http::serve(listener, api, stop_rx));

    // 1. Commit rate, observed or not.
    let conn = Connection::open(mnt.join("c.db")).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    conn.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)").unwrap();
    // Cases in turn, round after round, so that the machine's drift (a shared VM's
    // neighbours) hits each alike; each observed round is compared with the plain round
    // just before it.
    let cases = [
        ("/metrics every 100 ms", true, None),
        ("/events followed", false, Some("/events")),
        ("/metrics every 100 ms + /events followed", true, Some("/events")),
        ("/events?coalesce=1ms followed", false, Some("/events?coalesce=1ms")),
        ("/metrics + /events?coalesce=1ms", true, Some("/events?coalesce=1ms")),
    ];
    let mut plain = Vec::new();
    let mut rounds = vec![Vec::new(); cases.len()];
    let mut ratios = vec![Vec::new(); cases.len()];
    // Delivery latency of `tx` events: read by the follower minus the commit's return.
    let mut latency_us: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let (mut scrapes, mut lines) = (0, 0);
    let db = store.get("c.db").expect("c.db");
    for _ in 0..ROUNDS {
        for (i, &(_, m, e)) in cases.iter().enumerate() {
            let (p, _) = commits(&conn, &db);
            plain.push(p);
            let ((r, done), s, seen) = observed(addr, m, e, || commits(&conn, &db));
            rounds[i].push(r);
            ratios[i].push(r.per_s / p.per_s);
            scrapes += s;
            lines += seen.len();
            let at: HashMap<u64, Instant> = done.into_iter().collect();
            for (t, read) in seen {
                if let Some(d) = at.get(&t) {
                    let us = if read >= *d {
                        (read - *d).as_secs_f64() * 1e6
                    } else {
                        -((*d - read).as_secs_f64() * 1e6)
                    };
                    latency_us[i].push(us);
                }
            }
        }
    }
    let rate = |v: &[Round]| median(v.iter().map(|r| r.per_s).collect());
    let cpu_us = |v: &[Round]| median(v.iter().map(|r| r.cpu_us).collect());
    println!(
        "commit rate through the mount (WAL, NORMAL, 200-byte rows), {ROUNDS} rounds of each case \
         after a plain round, {:.1} s each",
        CASE_TIME.as_secs_f64()
    );
    println!("{:<44} {:>10} {:>8} {:>12}", "case", "commits/s", "ratio", "CPU us/commit");
    println!("{:<44} {:>10.0} {:>8} {:>12.1}", "neither", rate(&plain), "1.00", cpu_us(&plain));
    for (i, (name, _, _)) in cases.iter().enumerate() {
        println!(
            "{:<44} {:>10.0} {:>8.3} {:>12.1}",
            name,
            rate(&rounds[i]),
            median(ratios[i].clone()),
            cpu_us(&rounds[i])
        );
    }
    println!(
        "  (ratio: median of each round's rate over the plain round before it; target >= 0.97; \
         CPU: the whole process, node and clients; {scrapes} scrapes, {lines} events read)"
    );
    for (i, (name, _, _)) in cases.iter().enumerate() {
        println!("  {name}: ratios {:.3?}", ratios[i]);
    }
    for (i, (name, _, _)) in cases.iter().enumerate() {
        let l = &mut latency_us[i];
        if l.is_empty() {
            continue;
        }
        l.sort_by(|a, b| a.total_cmp(b));
        let q = |p: f64| l[((l.len() as f64 * p) as usize).min(l.len() - 1)];
        let within = l.iter().filter(|&&x| x <= 1000.0).count() as f64 / l.len() as f64;
        println!(
            "  {name}: delivery (read by the follower − commit returned) p50 {:.0} us, p99 {:.0} \
             us, max {:.0} us; {:.1}% within 1 ms",
            q(0.5),
            q(0.99),
            l[l.len() - 1],
            within * 100.0
        );
    }
    drop(conn);

    // 2. Export and import of a large database.
    let mb: u64 = std::env::var("BENCH_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    if mb == 0 {
        let _ = stop_tx.send(true);
        let _ = rt.block_on(server);
        mounted.unmount().unwrap();
        let _ = std::fs::remove_dir_all(&root);
        return;
    }
    let src = bare.join("src.db");
    // Rows of ~4000 bytes: one per 4 KiB page, `mb` MiB in all.
    let rows = mb * 256;
    sqlite3(
        &src,
        &format!(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; CREATE TABLE t(x); WITH RECURSIVE \
             c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<{rows}) INSERT INTO t SELECT \
             randomblob(3900) FROM c;"
        ),
    );
    let size = std::fs::metadata(&src).unwrap().len();
    let mbs = |secs: f64| size as f64 / (1 << 20) as f64 / secs;
    let t_backup =
        timed(|| sqlite3(&src, &format!(".backup {}", bare.join("backup.db").display())));
    let t_vacuum =
        timed(|| sqlite3(&src, &format!("VACUUM INTO '{}'", bare.join("vacuum.db").display())));
    let cli = env!("CARGO_BIN_EXE_litefleet");
    let url = format!("http://{addr}");
    // Import over a raw connection, to read the server's breakdown; the CLI's import is
    // the same request (tests/it/transfer.rs drives it).
    let mut import_json = String::new();
    let t_import = timed(|| {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(
            s,
            "POST /import?name=big.db HTTP/1.1\r\nHost: bench\r\nContent-Length: {size}\r\n\
             Connection: close\r\n\r\n"
        )
        .unwrap();
        std::io::copy(&mut std::fs::File::open(&src).unwrap(), &mut s).unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        import_json = resp.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    });
    let _ = cli;
    let out = bare.join("export.db");
    let t_export = timed(|| {
        let o = Command::new(cli)
            .args(["export", "-name", "big.db", "-url", &url])
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    });
    assert_eq!(std::fs::metadata(&out).unwrap().len(), size);
    // How long writes waited for the export's copy (the server reports it per export).
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET /export?name=big.db HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut head = String::new();
    let mut r = BufReader::new(s);
    let mut locked_ms = String::new();
    while r.read_line(&mut head).unwrap() > 0 && head != "\r\n" {
        if let Some(v) = head.to_ascii_lowercase().strip_prefix("litefleet-locked-ms:") {
            locked_ms = v.trim().to_owned();
        }
        head.clear();
    }
    std::io::copy(&mut r, &mut std::io::sink()).unwrap();
    println!();
    println!(
        "a {:.0} MiB database ({} pages of 4 KiB), on the same disk",
        size as f64 / 1048576.0,
        size / 4096
    );
    println!("{:<44} {:>8} {:>8}", "copy", "s", "MB/s");
    for (name, t) in [
        ("sqlite3 .backup (bare file)", t_backup),
        ("VACUUM INTO (bare file)", t_vacuum),
        ("litefleet import (HTTP, through the mount)", t_import),
        ("litefleet export (HTTP)", t_export),
    ] {
        println!("{:<44} {:>8.2} {:>8.0}", name, t, mbs(t));
    }
    println!("writes waited {locked_ms} ms for the export's copy");
    println!("import, as the server timed it: {import_json}");

    let _ = stop_tx.send(true);
    let _ = rt.block_on(server);
    mounted.unmount().unwrap();
    let _ = std::fs::remove_dir_all(&root);
}
