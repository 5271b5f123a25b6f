//! The proxy (`proxy:`, `protocol.md` §16) through real `litefleet mount` processes, each
//! running the example app (`examples/app.py`, Python's `sqlite3` on the mount) under `exec`
//! behind its proxy, with real HTTP clients:
//!
//! - writes sent to any node run once, on the primary; a read carrying the `__txid` cookie
//!   sees the client's last write on whichever node serves it; `X-Forwarded-*` set,
//!   hop-by-hop headers dropped; bad input (malformed requests, huge heads, slow clients)
//!   gets clear answers; a write while no primary is known gets 503 and does not run;
//! - a 100 MB upload, a streamed download, server-sent events and a WebSocket echo through
//!   a replica;
//! - the primary killed (-9) and the lease handed over while clients write through every
//!   node: each POST either succeeded once or failed and did not run, or was answered 502
//!   (may have run), and none ran twice.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::app::with_app;
use crate::common::cluster::{
    Cluster, consul_nets, dev_certs, free_port, holds_for, static_nets, wait_for,
};
use crate::common::consul::Consul;
use crate::common::http::{Method, Resp, request};
use crate::common::{need, tmp};

/// Paths every test cluster forwards even for GET (to exercise forwarded responses).
const ALWAYS_FORWARD: &str =
    "  always-forward: [\"/headers\", \"/download*\", \"/sse*\", \"/ws*\"]\n";

fn url(proxy: &str, path: &str) -> String {
    format!("http://{proxy}{path}")
}

/// Waits until every node's app serves the table (created by the primary's app,
/// replicated to the others).
fn wait_apps(proxies: &[String]) {
    for p in proxies {
        wait_for(&format!("the app behind {p}"), Duration::from_secs(60), || {
            request(Method::GET, &url(p, "/rows"), &[], Vec::new()).is_ok_and(|r| r.status == 200)
        });
    }
}

fn post_row(proxy: &str, id: &str, cookie: Option<&str>) -> Result<Resp, String> {
    let body = serde_json::json!({"id": id, "value": format!("v-{id}")}).to_string();
    let mut h = vec![("content-type", "application/json")];
    if let Some(c) = cookie {
        h.push(("cookie", c));
    }
    request(Method::POST, &url(proxy, "/rows"), &h, body.into_bytes())
}

/// The `__txid=...` pair of a response's `Set-Cookie`.
fn txid_cookie(r: &Resp) -> Option<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("__txid="))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
}

/// Sends `raw` on a new connection to `addr` and returns everything the proxy answers
/// until it closes the connection.
fn raw_exchange(addr: &str, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(raw).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The ids in the primary's table, each with how often it is there.
fn ids_on(c: &Cluster, i: usize) -> std::collections::HashMap<String, usize> {
    let mut m = std::collections::HashMap::new();
    for l in c.sql_ok(i, "app.db", "SELECT id FROM rows;").lines() {
        *m.entry(l.trim().to_owned()).or_insert(0) += 1;
    }
    m
}

#[test]
#[allow(clippy::disallowed_methods)]
fn writes_at_any_node_run_once_on_the_primary_and_reads_see_them() {
    need::fuse();
    need::sqlite3();
    need::python3();
    let root = tmp("proxy-rw");
    // n1..n3 from the cluster's CA; n4's certificate is from another CA (it trusts the
    // cluster's, so only the primary's check keeps it out).
    let certs = dev_certs(&root, 4);
    let other = dev_certs(&root.join("other"), 4);
    for f in ["n4.pem", "n4-key.pem"] {
        std::fs::copy(other.join(f), certs.join(f)).unwrap();
    }
    let port = free_port();
    let mut nets = static_nets(4, port, |_| port, "");
    let extra =
        format!("{ALWAYS_FORWARD}  primary-redirect-timeout: 2s\n  read-header-timeout: 1s\n");
    let mut proxies = with_app(&root, &mut nets, &extra);
    let mut c = Cluster::start_custom(&root, nets, &certs);
    let foreign = proxies.pop().unwrap();
    wait_apps(&proxies);

    // Every node takes writes; each runs on the primary's app, and the next read, on
    // another node, sees it with the cookie the write returned.
    let mut cookie: Option<String> = None;
    for k in 0..45 {
        let (at, read_at) = (k % 3, (k + 1) % 3);
        let id = format!("r{k}");
        let r = post_row(&proxies[at], &id, cookie.as_deref()).unwrap();
        assert_eq!(r.status, 201, "POST via n{}: {}", at + 1, r.text());
        assert_eq!(r.header("x-app-node").as_deref(), Some("n1"), "ran on the primary");
        cookie = Some(txid_cookie(&r).expect("a write's response sets __txid"));
        let h = [("cookie", cookie.as_deref().unwrap())];
        let r = request(Method::GET, &url(&proxies[read_at], &format!("/rows/{id}")), &h, vec![])
            .unwrap();
        assert_eq!(r.status, 200, "read-your-writes on n{}: {}", read_at + 1, r.text());
        assert_eq!(r.header("x-app-node"), Some(format!("n{}", read_at + 1)), "a local read");
    }
    let ids = ids_on(&c, 0);
    assert_eq!(ids.len(), 45);
    assert!(ids.values().all(|&n| n == 1));
    // The proxies count what they did: n2 forwarded its 15 POSTs (and served 15 reads
    // after the writes made through n1), n1 served 30 forwarded ones.
    let metric = |i: usize, name: &str, labels: &str| -> f64 {
        let text = request(Method::GET, &c.nodes[i].url("/metrics"), &[], vec![]).unwrap().text();
        text.lines()
            .find(|l| {
                let head = if labels.is_empty() {
                    format!("{name} ")
                } else {
                    format!("{name}{{{labels}}}")
                };
                l.starts_with(&head)
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name}{{{labels}}} on n{}", i + 1))
    };
    let total = "litefleet_proxy_requests_total";
    assert_eq!(metric(1, total, "route=\"forwarded\",status=\"201\""), 15.0);
    assert_eq!(metric(0, total, "route=\"from-replica\",status=\"201\""), 30.0);
    assert_eq!(metric(0, total, "route=\"local\",status=\"201\""), 15.0);
    assert!(metric(1, "litefleet_proxy_forward_seconds_count", "") >= 15.0);
    // A cookie this node cannot reach in time: 504.
    let far = "__txid=00000000ffffffff";
    let r = request(Method::GET, &url(&proxies[1], "/rows"), &[("cookie", far)], vec![]).unwrap();
    assert_eq!(r.status, 504, "{}", r.text());

    // Forwarded with X-Forwarded-*, without hop-by-hop headers.
    let h = [("connection", "keep-alive, x-hop"), ("x-hop", "1"), ("x-end", "2")];
    let r = request(Method::GET, &url(&proxies[2], "/headers"), &h, vec![]).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-app-node").as_deref(), Some("n1"), "always-forward");
    let seen = r.json();
    assert_eq!(seen["x-forwarded-for"][0], "127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"][0], "http");
    assert_eq!(seen["x-forwarded-host"][0], proxies[2].as_str());
    assert_eq!(seen["x-end"][0], "2");
    assert!(seen.get("x-hop").is_none() && seen.get("keep-alive").is_none(), "{seen}");
    // The proxy's own health check.
    for p in &proxies {
        let r = request(Method::GET, &url(p, "/litefs/health"), &[], vec![]).unwrap();
        assert_eq!((r.status, r.text().trim()), (200, "OK"));
    }

    // Bad input: a malformed request, a huge head, a client too slow to send its head.
    let out = raw_exchange(&proxies[1], b"NOT HTTP AT ALL\r\n\r\n");
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    let huge = format!("GET /rows HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(200_000));
    let out = raw_exchange(&proxies[1], huge.as_bytes());
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    let t = Instant::now();
    let out = raw_exchange(&proxies[1], b"GET /rows HTTP/1.1\r\nHost: x\r\n");
    assert!(out.is_empty() || out.starts_with("HTTP/1.1 408"), "{out}");
    eprintln!("a slow client was cut after {:?}", t.elapsed());
    // The proxy still serves.
    assert_eq!(request(Method::GET, &url(&proxies[1], "/rows"), &[], vec![]).unwrap().status, 200);

    // A node whose certificate is from another CA never gets a connection to forward on.
    wait_for("the primary to refuse n4", Duration::from_secs(30), || {
        c.log(0).contains("QUIC handshake failed")
    });
    let r = post_row(&foreign, "foreign", None).unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(!ids_on(&c, 0).contains_key("foreign"));

    // No primary: a write waits primary-redirect-timeout, then 503, and did not run.
    c.stop_node(0);
    wait_for("n2 to lose its primary", Duration::from_secs(30), || {
        request(Method::GET, &url(&proxies[1], "/litefs/health"), &[], vec![])
            .is_ok_and(|r| r.status == 503)
    });
    let t = Instant::now();
    let r = post_row(&proxies[1], "orphan", None).unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(t.elapsed() >= Duration::from_secs(2), "answered before the timeout");
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
    assert!(r.text().contains("did not run"), "{}", r.text());
    c.start_node(0);
    wait_apps(&proxies[..1]);
    let r = post_row(&proxies[1], "after", None).unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let ids = ids_on(&c, 0);
    assert!(!ids.contains_key("orphan") && ids.contains_key("after"));
    assert!(!c.log(3).contains("following the primary"), "n4 got in");
}

#[test]
#[allow(clippy::disallowed_methods)]
fn large_bodies_event_streams_and_websockets_cross_a_replica() {
    need::fuse();
    need::sqlite3();
    need::python3();
    let root = tmp("proxy-bodies");
    let certs = dev_certs(&root, 2);
    let port = free_port();
    let mut nets = static_nets(2, port, |_| port, "");
    let proxies = with_app(&root, &mut nets, ALWAYS_FORWARD);
    let c = Cluster::start_custom(&root, nets, &certs);
    wait_apps(&proxies);
    let replica = &proxies[1];

    // 100 MB up, forwarded (a write), streamed: the primary's app hashes what it got.
    let data: Vec<u8> =
        (0..100_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let file = root.join("upload.bin");
    std::fs::write(&file, &data).unwrap();
    let sum = std::process::Command::new("sha256sum").arg(&file).output().unwrap();
    let want = String::from_utf8_lossy(&sum.stdout).split_whitespace().next().unwrap().to_owned();
    let t = Instant::now();
    let r = request(Method::POST, &url(replica, "/upload"), &[], data).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-app-node").as_deref(), Some("n1"));
    let got = r.json();
    assert_eq!(got["bytes"], 100_000_000u64);
    assert_eq!(got["sha256"], want.as_str());
    eprintln!("100 MB forwarded upload: {:?}", t.elapsed());

    // A chunked response streamed back (always-forward: /download*).
    let n = 20_000_000usize;
    let r =
        request(Method::GET, &url(replica, &format!("/download?bytes={n}")), &[], vec![]).unwrap();
    assert_eq!((r.status, r.body.len()), (200, n));
    assert_eq!(r.header("x-app-node").as_deref(), Some("n1"));
    assert!(r.body.iter().enumerate().all(|(i, b)| *b as usize == i % 251));

    // Server-sent events arrive as they are sent, not when the stream ends.
    // (3 s from the first to the last; a burst would take milliseconds, and only a reader
    // stalled for 2 s could make it look like one.)
    let events = crate::common::http::stream_lines(&url(replica, "/sse?n=4&interval_ms=1000"));
    let mut at = Vec::new();
    while let Ok(line) = events.recv_timeout(Duration::from_secs(30)) {
        if let Some(i) = line.strip_prefix("data: ") {
            at.push((i.to_owned(), Instant::now()));
        }
    }
    let order: Vec<&str> = at.iter().map(|(i, _)| i.as_str()).collect();
    assert_eq!(order, ["0", "1", "2", "3"]);
    let spread = at[3].1 - at[0].1;
    assert!(spread >= Duration::from_secs(1), "events came in one burst ({spread:?})");

    // A WebSocket echo through the replica's proxy.
    let mut s = TcpStream::connect(replica.as_str()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    write!(
        s,
        "GET /ws HTTP/1.1\r\nHost: {replica}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // RFC 6455's own example key and answer.
    assert!(
        head.to_ascii_lowercase().contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    for (op, payload) in [(1u8, b"hello".to_vec()), (2, vec![7u8; 300]), (9, b"ping".to_vec())] {
        s.write_all(&ws_frame(op, &payload)).unwrap();
        let (rop, rpayload) = read_frame(&mut s);
        let want = if op == 9 { 10 } else { op };
        assert_eq!((rop, rpayload), (want, payload));
    }
    s.write_all(&ws_frame(8, &1000u16.to_be_bytes())).unwrap();
    assert_eq!(read_frame(&mut s).0, 8, "close answered");
    drop(c);
}

#[test]
fn slow_bodies_and_long_responses_are_cut_by_the_timeouts() {
    need::fuse();
    need::sqlite3();
    need::python3();
    let root = tmp("proxy-timeouts");
    let certs = dev_certs(&root, 2);
    let port = free_port();
    let mut nets = static_nets(2, port, |_| port, "");
    let extra = format!(
        "{ALWAYS_FORWARD}  read-timeout: 1s\n  write-timeout: 2s\n  idle-timeout: 1s\n  \
         read-header-timeout: 20s\n"
    );
    let proxies = with_app(&root, &mut nets, &extra);
    let c = Cluster::start_custom(&root, nets, &certs);
    wait_apps(&proxies);
    // A body that stops short: 408 on the primary (local app) and on the replica
    // (forwarded), and the request did not run.
    for p in &proxies {
        let head = format!(
            "POST /rows HTTP/1.1\r\nHost: {p}\r\nContent-Type: application/json\r\n\
             Content-Length: 1000\r\n\r\n{{\"id\": \"slow\""
        );
        let out = raw_exchange(p, head.as_bytes());
        assert!(out.starts_with("HTTP/1.1 408"), "{p}: {out}");
    }
    assert!(!ids_on(&c, 0).contains_key("slow"));
    // A response longer than write-timeout is cut: 20 events 300 ms apart, forwarded.
    let events = crate::common::http::stream_lines(&url(&proxies[1], "/sse?n=20&interval_ms=300"));
    let mut got = 0;
    while let Ok(line) = events.recv_timeout(Duration::from_secs(30)) {
        got += usize::from(line.starts_with("data: "));
    }
    assert!((1..20).contains(&got), "{got} of 20 events before write-timeout");

    // A kept-alive connection with no request is closed after idle-timeout (1 s here), long
    // before read-header-timeout (20 s) would.
    let mut s = TcpStream::connect(proxies[0].as_str()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    write!(s, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
        })
        .and_then(|v| v.parse().ok())
        .unwrap();
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    let mut rest = Vec::new();
    let closed = s.read_to_end(&mut rest);
    assert!(closed.is_ok() && rest.is_empty(), "the idle connection was not closed: {closed:?}");
    // A WebSocket is not an idle HTTP connection: quiet past idle-timeout, it still echoes.
    let mut ws = TcpStream::connect(proxies[1].as_str()).unwrap();
    ws.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        ws,
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    assert!(read_head(&mut ws).starts_with("HTTP/1.1 101"));
    ws.set_nonblocking(true).unwrap();
    holds_for("a quiet WebSocket", Duration::from_millis(2500), || {
        let mut b = [0u8; 1];
        matches!(ws.peek(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    });
    ws.set_nonblocking(false).unwrap();
    ws.write_all(&ws_frame(1, b"still here")).unwrap();
    assert_eq!(read_frame(&mut ws), (1, b"still here".to_vec()));
    drop(c);
}

/// Reads an HTTP response head (up to the blank line).
fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A masked client frame with FIN set.
fn ws_frame(op: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut f = vec![0x80 | op];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Reads one unmasked server frame: (opcode, payload).
fn read_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).unwrap();
    let len = match h[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            s.read_exact(&mut l).unwrap();
            u16::from_be_bytes(l) as usize
        }
        127 => {
            let mut l = [0u8; 8];
            s.read_exact(&mut l).unwrap();
            u64::from_be_bytes(l) as usize
        }
        n => n as usize,
    };
    let mut p = vec![0u8; len];
    s.read_exact(&mut p).unwrap();
    (h[0] & 0x0f, p)
}

/// What one client POST came to.
#[derive(Debug, Clone)]
struct Post {
    id: String,
    node: usize,
    /// The status, or `None` when no response came (the node was down).
    status: Option<u16>,
    text: String,
}

#[test]
fn posts_through_every_node_survive_a_kill_and_a_handoff_without_running_twice() {
    need::fuse();
    need::sqlite3();
    need::python3();
    need::consul();
    const N: usize = 3;
    let root = tmp("proxy-failover");
    let consul = Consul::start(root.join("consul"));
    let certs = dev_certs(&root, N);
    let mut nets =
        consul_nets(N, &consul.url(), "litefleet/proxy-failover", "  sync-replicas: 2\n");
    let proxies = with_app(&root, &mut nets, "  primary-redirect-timeout: 10s\n");
    let mut c = Cluster::start_custom(&root, nets, &certs);
    let p = c.wait_new_primary(&[0; N], None, Duration::from_secs(30));
    wait_apps(&proxies);

    // One client per node, each POSTing unique ids as fast as it is answered.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Post>::new()));
    let clients: Vec<_> = (0..N)
        .map(|node| {
            let (stop, log, proxy) = (stop.clone(), log.clone(), proxies[node].clone());
            std::thread::spawn(move || {
                let mut k = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let id = format!("c{node}-{k}");
                    k += 1;
                    let (status, text) = match post_row(&proxy, &id, None) {
                        Ok(r) => (Some(r.status), r.text()),
                        Err(e) => (None, e),
                    };
                    if status.is_none() {
                        // The node is down: try again shortly.
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    log.lock().unwrap().push(Post { id, node, status, text });
                }
            })
        })
        .collect();
    let acked = || log.lock().unwrap().iter().filter(|p| p.status == Some(201)).count();
    wait_for("posts before the kill", Duration::from_secs(60), || acked() >= 60);

    // kill -9 the primary; its app dies with it.
    let before: Vec<usize> = (0..N).map(|i| c.terms(i)).collect();
    c.kill_node(p);
    let next = c.wait_new_primary(&before, Some(p), Duration::from_secs(60));
    // With sync-replicas: 2 the new primary needs the old one back as a replica.
    c.start_node(p);
    let so_far = acked();
    wait_for("posts after the failover", Duration::from_secs(60), || acked() >= so_far + 60);

    // A graceful handoff while the clients write.
    let target = (next + 1) % N;
    let before: Vec<usize> = (0..N).map(|i| c.terms(i)).collect();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_litefleet"))
        .args(["promote", "--mount"])
        .arg(&c.nodes[target].mnt)
        .output()
        .unwrap();
    assert!(out.status.success(), "promote: {}", String::from_utf8_lossy(&out.stderr));
    wait_for("the handoff", Duration::from_secs(30), || c.terms(target) > before[target]);
    let so_far = acked();
    wait_for("posts after the handoff", Duration::from_secs(60), || acked() >= so_far + 60);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for cl in clients {
        cl.join().unwrap();
    }

    let posts = log.lock().unwrap().clone();
    let ids = ids_on(&c, target);
    let mut by_status = std::collections::BTreeMap::<String, usize>::new();
    for post in &posts {
        let key = post.status.map_or("no response".to_owned(), |s| s.to_string());
        *by_status.entry(key).or_default() += 1;
        let n = ids.get(&post.id).copied().unwrap_or(0);
        assert!(n <= 1, "{} is there {n} times", post.id);
        match post.status {
            Some(201) => assert_eq!(n, 1, "acknowledged but missing: {post:?}"),
            // The proxy's 503s say the request did not run; the app's 503 is a write it
            // could not make (its node was read-only).
            Some(503) => assert_eq!(n, 0, "a 503 ran: {post:?}"),
            // Ran twice: the retry met the first run's row.
            Some(409) => panic!("a POST ran twice: {post:?}"),
            // 502: may have run (the primary died with it); no response: the node was down.
            Some(502) | None => {}
            Some(s) => panic!("unexpected status {s}: {post:?}"),
        }
    }
    let acked_by_node: Vec<usize> = (0..N)
        .map(|i| posts.iter().filter(|p| p.node == i && p.status == Some(201)).count())
        .collect();
    eprintln!("acknowledged POSTs by the node that took them: {acked_by_node:?}");
    let unknown: Vec<&Post> = posts.iter().filter(|p| p.status == Some(502)).collect();
    let ran = unknown.iter().filter(|p| ids.contains_key(&p.id)).count();
    eprintln!(
        "{} POSTs through {N} proxies: {by_status:?}; of the {} answered 502, {ran} ran",
        posts.len(),
        unknown.len()
    );
    for post in &unknown {
        assert!(post.text.contains("may have run"), "{post:?}");
    }
    drop(c);
    drop(consul);
}
