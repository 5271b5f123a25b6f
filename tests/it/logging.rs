//! Logs of real `litefleet mount` processes, written to a file as an operator's service
//! manager would: a flood of QUIC-shaped garbage cannot fill them (each handshake failure
//! is a WARN with the sender's address, rate-limited with a count) and replication goes on;
//! `log.format`, `log.timestamp` and `log.debug` work; no colour escapes off a terminal.

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::cluster::{Cluster, dev_certs, free_port, static_nets, wait_for};
use crate::common::{need, tmp};

/// How long the garbage is sent for.
const SPRAY: Duration = Duration::from_secs(3);
/// A summary comes at most one window (10 s) plus one tick (1 s) after the first
/// suppressed line; some slack on top for a loaded machine.
const SUMMARY_WAIT: Duration = Duration::from_secs(30);

/// A small xorshift generator: the bytes only need to look random to quinn.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn fill(&mut self, b: &mut [u8]) {
        for c in b.chunks_mut(8) {
            let r = self.next().to_le_bytes();
            c.copy_from_slice(&r[..c.len()]);
        }
    }
}

/// A datagram shaped like a client's QUIC v1 Initial packet (RFC 9000 §17.2.2), padded to
/// the 1200 bytes a server requires: long header, type Initial, version 1, random
/// connection IDs, no token, a length covering the rest, then random "encrypted" bytes,
/// so the server derives keys and attempts a handshake that fails to authenticate.
fn quic_initial(rng: &mut Rng) -> Vec<u8> {
    const LEN: usize = 1200;
    let mut p = Vec::with_capacity(LEN);
    p.push(0xc0 | (rng.next() as u8 & 0x03)); // long header, fixed bit, Initial, pn length
    p.extend_from_slice(&0x0000_0001u32.to_be_bytes()); // QUIC v1
    let dcid_len = 8 + (rng.next() % 13) as usize; // 8..=20 bytes
    p.push(dcid_len as u8);
    let mut dcid = vec![0; dcid_len];
    rng.fill(&mut dcid);
    p.extend_from_slice(&dcid);
    let scid_len = (rng.next() % 21) as usize;
    p.push(scid_len as u8);
    let mut scid = vec![0; scid_len];
    rng.fill(&mut scid);
    p.extend_from_slice(&scid);
    p.push(0x00); // token length 0
    let rest = LEN - p.len() - 2;
    p.extend_from_slice(&(0x4000 | rest as u16).to_be_bytes()); // 2-byte varint length
    let mut payload = vec![0; rest];
    rng.fill(&mut payload);
    p.extend_from_slice(&payload);
    p
}

#[test]
#[allow(clippy::disallowed_methods)]
fn a_flood_of_quic_garbage_is_rate_limited_and_replication_goes_on() {
    need::fuse();
    need::sqlite3();
    let root = tmp("log-flood");
    let certs = dev_certs(&root, 2);
    let port = free_port();
    let c = Cluster::start_custom(&root, static_nets(2, port, |_| port, ""), &certs);
    c.sql_ok(0, "f.db", "PRAGMA journal_mode=WAL; CREATE TABLE t(x);");
    c.wait_converged("f.db", Duration::from_secs(30));

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let from = sock.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sprayer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id()));
            let t = Instant::now();
            let mut sent = 0u64;
            while t.elapsed() < SPRAY && !stop.load(Ordering::Relaxed) {
                // Paced (about 4000 a second) so the sender does not starve the node of CPU.
                for _ in 0..20 {
                    if sock.send_to(&quic_initial(&mut rng), ("127.0.0.1", port)).is_ok() {
                        sent += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            sent
        })
    };
    // While the garbage flows, a commit on the primary still reaches the replica.
    c.sql_ok(0, "f.db", "INSERT INTO t VALUES (1);");
    let pos = c.wait_converged("f.db", Duration::from_secs(30));
    let sent = sprayer.join().unwrap();
    eprintln!("sent {sent} datagrams from {from}; replica at {pos}");

    let failed = |log: &str| {
        log.lines()
            .filter(|l| l.contains("WARN") && l.contains("QUIC handshake failed"))
            .filter(|l| l.contains(&format!("peer={from}")))
            .count()
    };
    let summary = |log: &str| {
        log.lines()
            .find(|l| {
                l.contains("suppressed ")
                    && l.contains("repeated log lines")
                    && l.contains("QUIC handshake failed")
            })
            .map(str::to_owned)
    };
    wait_for("a WARN naming the sender", Duration::from_secs(10), || failed(&c.log(0)) > 0);
    wait_for("the suppression summary", SUMMARY_WAIT, || summary(&c.log(0)).is_some());
    let log = c.log(0);
    let lines = log.lines().count();
    let summary = summary(&log).unwrap();
    eprintln!("{lines} lines; {summary}");
    // The count is part of the line: "suppressed N repeated log lines".
    let n: u64 = summary
        .split("suppressed ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(n > 0, "{summary}");
    assert!(summary.contains("WARN"), "the summary keeps the site's level: {summary}");
    // One burst of 10 per 10 s window; the 3 s flood spans two windows at most even if the
    // node works through a backlog of datagrams on a slow machine.
    assert!(failed(&log) <= 20, "one burst per window of failures shown:\n{log}");
    assert!(lines < 200, "{lines} lines after {sent} datagrams:\n{log}");
    assert!(!log.contains("\x1b["), "colour escapes in a log file");
    // Still replicating after the flood.
    c.sql_ok(0, "f.db", "INSERT INTO t VALUES (2);");
    c.wait_converged("f.db", Duration::from_secs(30));
}

// ===== log.* settings ===== //

/// Runs a static primary with `log` as its `log:` section (YAML lines indented by two
/// spaces) and `env` as `LITEFLEET_LOG` (unset if `None`), commits once through the mount,
/// stops it with SIGTERM and returns its stderr.
fn node_log(name: &str, log: &str, env: Option<&str>) -> String {
    let root = tmp(name);
    let cfg = root.join("litefs.yml");
    std::fs::write(
        &cfg,
        format!(
            "fuse:\n  dir: {:?}\ndata:\n  dir: {:?}\nlease:\n  type: static\n  candidate: true\n\
             http:\n  addr: \"127.0.0.1:{}\"\nlog:\n{log}",
            root.join("mnt"),
            root.join("data"),
            crate::common::cluster::free_port(),
        ),
    )
    .unwrap();
    let out = root.join("node.log");
    let mut child = spawn(&cfg, &out, env);
    let mnt = root.join("mnt");
    wait_for("the mount", Duration::from_secs(30), || litefleet::mount::is_mounted(&mnt));
    let st = Command::new("sqlite3")
        .arg(mnt.join("l.db"))
        .arg("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .status()
        .unwrap();
    assert!(st.success());
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(!text.contains("\x1b["), "colour escapes in a log file:\n{text}");
    text
}

fn spawn(cfg: &Path, log: &Path, env: Option<&str>) -> Child {
    let file = std::fs::File::create(log).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_litefleet"));
    cmd.arg("mount").arg("--config").arg(cfg).stdout(Stdio::null()).stderr(file);
    match env {
        Some(v) => cmd.env("LITEFLEET_LOG", v),
        None => cmd.env_remove("LITEFLEET_LOG"),
    };
    cmd.spawn().unwrap()
}

/// Whether a text line starts with an RFC 3339 timestamp (`2026-01-02T03:04:05.678Z`).
fn stamped(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 20 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[10] == b'T'
}

#[test]
fn json_is_one_object_per_line_with_level_and_message() {
    need::fuse();
    need::sqlite3();
    let text = node_log("log-json", "  format: json\n  timestamp: false\n", None);
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
        assert!(v.get("timestamp").is_none(), "timestamp: false: {line}");
    }
    assert!(text.contains(r#""message":"starting""#), "{text}");
    assert!(!text.contains(r#""level":"DEBUG""#), "debug is off by default: {text}");
}

#[test]
fn json_with_timestamps_and_debug() {
    need::fuse();
    need::sqlite3();
    let text = node_log("log-json-ts", "  format: json\n  timestamp: true\n  debug: true\n", None);
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        assert!(v["timestamp"].is_string(), "{line}");
    }
    assert!(text.contains(r#""level":"DEBUG""#), "{text}");
}

#[test]
fn text_has_no_timestamps_by_default_and_no_debug() {
    need::fuse();
    need::sqlite3();
    let text = node_log("log-text", "  format: text\n", None);
    assert!(text.lines().all(|l| !stamped(l)), "{text}");
    assert!(text.lines().any(|l| l.trim_start().starts_with("INFO")), "{text}");
    assert!(!text.contains("DEBUG"), "{text}");
}

#[test]
fn text_timestamps_and_debug_when_asked() {
    need::fuse();
    need::sqlite3();
    let text = node_log("log-text-ts", "  timestamp: true\n  debug: true\n", None);
    assert!(text.lines().all(stamped), "{text}");
    assert!(text.lines().any(|l| l.contains(" DEBUG ")), "{text}");
}

#[test]
fn litefleet_log_overrides_the_configured_level() {
    need::fuse();
    need::sqlite3();
    let text = node_log("log-env", "  debug: true\n", Some("info"));
    assert!(text.lines().any(|l| l.trim_start().starts_with("INFO")), "{text}");
    assert!(!text.contains("DEBUG"), "LITEFLEET_LOG=info wins over log.debug: {text}");
}
