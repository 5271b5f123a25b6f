//! The HTTP API on real `litefleet mount` processes, over real TCP with a real HTTP client:
//! `/info` on a primary and a replica, `/events` seeing every TXID in order during a load,
//! `/health`, and who may call what (`POST /promote` from loopback, and refused from
//! another network namespace without `http.token`).

use std::time::Duration;

use crate::common::cluster::{Cluster, free_port, static_nets, wait_for};
use crate::common::http::{self, Method};
use crate::common::lan::{End, Lan};
use crate::common::{need, tmp};

const CONVERGE: Duration = Duration::from_secs(30);

#[test]
fn info_shows_roles_positions_and_replicas() {
    need::fuse();
    need::sqlite3();
    let root = tmp("http-info");
    let c = Cluster::start(&root, 2);
    c.sql_ok(0, "a.db", "CREATE TABLE t(x); INSERT INTO t VALUES (1);");
    let pos = c.wait_all_at(0, "a.db", CONVERGE);
    // The replica's acknowledgement reaches the primary just after the replica applied.
    let mut p = serde_json::Value::Null;
    wait_for("the replica's acknowledgement in /info", CONVERGE, || {
        p = http::get(&c.nodes[0].url("/info")).json();
        p["replicas"][0]["databases"]["a.db"]["lagTxns"] == 0
    });
    let txid = format!("{:016x}", pos.txid.0);
    assert_eq!(p["isPrimary"], true);
    assert_eq!(p["candidate"], true);
    assert_eq!(p["role"], "primary");
    assert_eq!(p["hostname"], "n1");
    assert_eq!(p["path"], c.nodes[0].mnt.display().to_string());
    assert!(p["clusterID"].as_str().unwrap().starts_with("LFSC"), "{p}");
    assert!(p.get("primary").is_none(), "LiteFS leaves `primary` out on the primary: {p}");
    assert_eq!(p["databases"]["a.db"]["txID"], txid);
    assert_eq!(p["databases"]["a.db"]["postApplyChecksum"], format!("{:016x}", pos.checksum.0));
    let r = &p["replicas"][0];
    assert_eq!(r["hostname"], "n2", "{p}");
    assert_eq!(r["databases"]["a.db"]["txID"], txid);
    assert_eq!(r["databases"]["a.db"]["lagMs"], 0);

    let resp = http::get(&c.nodes[1].url("/info"));
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("litefs-cluster-id").as_deref(), p["clusterID"].as_str());
    assert!(resp.header("litefs-id").is_some_and(|v| v.len() == 16), "{:?}", resp.headers);
    let q = resp.json();
    assert_eq!(q["isPrimary"], false);
    assert_eq!(q["candidate"], false);
    assert_eq!(q["role"], "replica");
    assert_eq!(q["primary"]["hostname"], "n1");
    assert_eq!(q["clusterID"], p["clusterID"]);
    assert_eq!(q["databases"]["a.db"]["txID"], txid);
    assert_eq!(q["replicas"].as_array().map(Vec::len), Some(0));

    // Unknown paths and methods get HTTP's codes.
    assert_eq!(http::get(&c.nodes[0].url("/nope")).status, 404);
    assert_eq!(http::post(&c.nodes[0].url("/info"), Vec::new()).status, 405);
}

#[test]
fn events_see_every_transaction_in_order_on_both_nodes() {
    need::fuse();
    need::sqlite3();
    let root = tmp("http-events");
    let c = Cluster::start(&root, 2);
    c.sql_ok(0, "e.db", "PRAGMA journal_mode=WAL; CREATE TABLE t(x);");
    let start = c.wait_all_at(0, "e.db", CONVERGE).txid.0;
    let streams: Vec<_> = (0..2).map(|i| http::stream_lines(&c.nodes[i].url("/events"))).collect();
    let init: Vec<serde_json::Value> = streams
        .iter()
        .map(|s| serde_json::from_str(&s.recv_timeout(CONVERGE).unwrap()).unwrap())
        .collect();
    assert_eq!(init[0]["type"], "init");
    assert_eq!(init[0]["data"]["isPrimary"], true);
    assert_eq!(init[1]["data"]["isPrimary"], false);
    assert_eq!(init[1]["data"]["hostname"], "n1");
    const N: u64 = 200;
    let w = c.db(0, "e.db");
    let mut cmd = String::new();
    for i in 0..N {
        cmd.push_str(&format!("INSERT INTO t VALUES ({i});\n"));
    }
    let (ok, out) = crate::common::cluster::sql_at(&w, &cmd);
    assert!(ok, "{out}");
    let end = c.wait_all_at(0, "e.db", CONVERGE);
    assert_eq!(end.txid.0, start + N);
    for (i, s) in streams.iter().enumerate() {
        let mut want = start + 1;
        while want <= end.txid.0 {
            let line = s.recv_timeout(CONVERGE).unwrap_or_else(|e| panic!("n{}: {e}", i + 1));
            let ev: serde_json::Value = serde_json::from_str(&line).unwrap();
            if ev["type"] != "tx" {
                continue;
            }
            assert_eq!(ev["db"], "e.db");
            let got = u64::from_str_radix(ev["data"]["txID"].as_str().unwrap(), 16).unwrap();
            assert_eq!(got, want, "n{}: {line}", i + 1);
            assert_eq!(ev["data"]["pageSize"], 4096);
            if got == end.txid.0 {
                assert_eq!(ev["data"]["postApplyChecksum"], format!("{:016x}", end.checksum.0));
            }
            want += 1;
        }
    }
}

#[test]
fn health_follows_readiness_and_lag() {
    need::fuse();
    need::sqlite3();
    let root = tmp("http-health");
    let mut c = Cluster::start(&root, 2);
    c.sql_ok(0, "h.db", "CREATE TABLE t(x);");
    c.wait_all_at(0, "h.db", CONVERGE);
    let ok = http::get(&c.nodes[0].url("/health"));
    assert_eq!((ok.status, ok.text().trim()), (200, "ok (primary)"));
    wait_for("the replica healthy", CONVERGE, || {
        http::get(&c.nodes[1].url("/health?max-lag=5s")).status == 200
    });
    assert_eq!(http::get(&c.nodes[1].url("/health?max-lag=bogus")).status, 400);
    // The primary goes away: the replica stops being healthy under a max-lag, and says why.
    c.stop_node(0);
    wait_for("the replica unhealthy", CONVERGE, || {
        let r = http::get(&c.nodes[1].url("/health?max-lag=1s"));
        r.status == 503
    });
}

#[test]
fn mutating_requests_need_loopback_or_the_token() {
    need::fuse();
    need::sqlite3();
    need::netns();
    need::python3();
    let root = tmp("http-auth");
    let certs = crate::common::cluster::dev_certs(&root, 2);
    let port = free_port();
    // n1 listens on every address (so a namespace can reach it); n2 has a token.
    let mut nets = static_nets(2, port, |_| port, "");
    nets[0].listen = format!("0.0.0.0:{port}");
    let c = Cluster::start_custom(&root, nets, &certs);
    let lan = Lan::new(1, "ha");
    let host = lan.addr(End::Host);
    // From loopback: allowed. A static replica is no candidate: 409, as LiteFS.
    let r = http::post(&c.nodes[1].url("/promote"), Vec::new());
    assert_eq!(r.status, 409, "{}", r.text());
    let r = http::post(&c.nodes[0].url("/promote"), Vec::new());
    assert_eq!(r.status, 200, "{}", r.text());
    // From another network namespace: reads are open, changes are refused naming http.token.
    let url = |p: &str| format!("http://{host}:{port}{p}");
    let (status, body) = from_namespace(&lan.names[0], "GET", &url("/info"), None);
    assert_eq!(status, 200, "{body}");
    let (status, body) = from_namespace(&lan.names[0], "POST", &url("/promote"), None);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("http.token"), "{body}");
    let (status, _) = from_namespace(&lan.names[0], "POST", &url("/promote"), Some("guess"));
    assert_eq!(status, 403);
    // Import too (its body is never read: the database is untouched).
    let (status, body) = from_namespace(&lan.names[0], "POST", &url("/import?name=x.db"), None);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("http.token"), "{body}");
    assert!(!c.nodes[0].data.join("dbs/x.db").exists());

    // With `http.token` set, the token admits the same request; a wrong one still does not.
    let mut c = c;
    c.stop_node(0);
    let cfg = std::fs::read_to_string(&c.nodes[0].cfg).unwrap();
    let cfg = cfg.replacen("http:\n", "http:\n  token: \"s3cret-token\"\n", 1);
    std::fs::write(&c.nodes[0].cfg, cfg).unwrap();
    c.start_node(0);
    wait_for("n1's API", CONVERGE, || {
        http::request(Method::GET, &c.nodes[0].url("/health"), &[], Vec::new())
            .is_ok_and(|r| r.status == 200)
    });
    let (status, body) = from_namespace(&lan.names[0], "POST", &url("/promote"), Some("nope"));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("did not match"), "{body}");
    let (status, body) =
        from_namespace(&lan.names[0], "POST", &url("/promote"), Some("s3cret-token"));
    assert_eq!(status, 200, "{body}");
}

/// Sends a request with Python's `urllib` from inside network namespace `ns`; returns the
/// status and body (errors included: a 403 is an answer, not a failure).
fn from_namespace(ns: &str, method: &str, url: &str, token: Option<&str>) -> (u16, String) {
    let script = r#"
import sys, urllib.request, urllib.error
method, url, token = sys.argv[1], sys.argv[2], sys.argv[3]
req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
if token:
    req.add_header("Authorization", "Bearer " + token)
try:
    r = urllib.request.urlopen(req, timeout=30)
    print(r.status); sys.stdout.write(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); sys.stdout.write(e.read().decode())
"#;
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", script, method, url, token.unwrap_or("")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (status, body) = text.split_once('\n').unwrap_or((&text, ""));
    (status.trim().parse().unwrap_or_else(|_| panic!("{text}")), body.to_owned())
}

/// Under the Consul lease: `/info` shows the lease's epoch and holder on both candidates,
/// and `POST /promote` on the replica runs the graceful handoff, which both nodes' `/events`
/// streams report as a `primaryChange`, with the epoch moving forward in `/info`.
#[test]
fn consul_promote_over_http_is_a_primary_change_in_events() {
    need::fuse();
    need::sqlite3();
    need::consul();
    let root = tmp("http-consul");
    let consul = crate::common::consul::Consul::start(root.join("consul"));
    let c = Cluster::start_consul(&root, 2, &consul.url(), "litefleet/http-consul", "");
    let p = c.wait_new_primary(&[0; 2], None, CONVERGE);
    let r = 1 - p;
    c.sql_ok(p, "c.db", "CREATE TABLE t(x); INSERT INTO t VALUES (1);");
    c.wait_all_at(p, "c.db", CONVERGE);
    let (pi, ri) = (
        || http::get(&c.nodes[p].url("/info")).json(),
        || http::get(&c.nodes[r].url("/info")).json(),
    );
    wait_for("the replica to know its primary", CONVERGE, || {
        ri()["primary"]["hostname"] == c.nodes[p].name.as_str()
    });
    let before = pi();
    assert_eq!(before["isPrimary"], true);
    assert_eq!(before["lease"]["holder"], c.nodes[p].name.as_str());
    let epoch = before["lease"]["epoch"].as_u64().unwrap();
    assert!(epoch > 0, "{before}");
    assert_eq!(ri()["lease"]["epoch"], epoch);
    let streams: Vec<_> =
        [p, r].iter().map(|&i| http::stream_lines(&c.nodes[i].url("/events"))).collect();
    for s in &streams {
        let init: serde_json::Value =
            serde_json::from_str(&s.recv_timeout(CONVERGE).unwrap()).unwrap();
        assert_eq!(init["type"], "init");
        assert_eq!(init["data"]["hostname"], c.nodes[p].name.as_str());
    }

    let resp = http::post(&c.nodes[r].url("/promote"), Vec::new());
    assert_eq!(resp.status, 200, "{}", resp.text());
    for (s, now_primary) in streams.iter().zip([false, true]) {
        let change = loop {
            let line = s.recv_timeout(CONVERGE).expect("a primaryChange event");
            let ev: serde_json::Value = serde_json::from_str(&line).unwrap();
            if ev["type"] == "primaryChange" && ev["data"]["isPrimary"] == now_primary {
                break ev;
            }
        };
        if !now_primary {
            // The old primary now follows the node that asked (or, for a moment, nobody).
            let host = change["data"]["hostname"].as_str().unwrap();
            assert!(host == c.nodes[r].name || host.is_empty(), "{change}");
        }
    }
    wait_for("the new primary's /info", CONVERGE, || {
        let i = ri();
        i["isPrimary"] == true && i["lease"]["epoch"].as_u64().unwrap() > epoch
    });
    wait_for("the old primary to follow", CONVERGE, || {
        pi()["primary"]["hostname"] == c.nodes[r].name.as_str()
    });
    // The metrics count the election and the demotion, and the epochs agree with /info.
    let m = |i: usize, name: &str| {
        crate::metrics::value(&http::get(&c.nodes[i].url("/metrics")).text(), name)
    };
    let new_epoch = ri()["lease"]["epoch"].as_u64().unwrap() as f64;
    assert_eq!(m(r, "litefleet_elections_total"), Some(1.0));
    assert_eq!(m(r, "litefs_is_primary"), Some(1.0));
    assert_eq!(m(r, "litefleet_lease_epoch"), Some(new_epoch));
    assert_eq!(m(p, "litefleet_demotions_total"), Some(1.0));
    assert_eq!(m(p, "litefs_is_primary"), Some(0.0));
    assert!(m(p, "litefleet_elections_total") >= Some(1.0));
}

/// Malformed and hostile HTTP gets HTTP's answers and the node goes on serving: garbage is
/// 400, a head over 64 KiB is 431, a client that never finishes its head is cut off.
#[test]
fn malformed_oversized_and_slow_requests_are_refused() {
    use std::io::{Read, Write};
    need::fuse();
    need::sqlite3();
    let root = tmp("http-bad");
    let c = Cluster::start(&root, 1);
    let addr = c.nodes[0].http.clone();
    let exchange = |bytes: &[u8]| -> String {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(CONVERGE)).unwrap();
        s.write_all(bytes).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    let r = exchange(b"NOT HTTP AT ALL\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let big = format!("GET /info HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(70 * 1024));
    let r = exchange(big.as_bytes());
    assert!(r.starts_with("HTTP/1.1 431"), "{r:.200}");
    // A head that never ends: the server closes the connection (10 s head timeout).
    #[allow(clippy::disallowed_methods)]
    let t = std::time::Instant::now();
    let r = exchange(b"GET /info HTTP/1.1\r\nHost: x\r\n");
    assert!(!r.contains("200 OK"), "{r}");
    assert!(t.elapsed() < CONVERGE, "cut off after {:?}", t.elapsed());
    let ok = http::get(&c.nodes[0].url("/info"));
    assert_eq!(ok.status, 200);
}

/// A reader of `/events` that stops reading never holds commits back, and is dropped with a
/// last line that says so once it has fallen a ring's length behind.
#[test]
fn a_stalled_events_reader_is_dropped_and_commits_go_on() {
    use std::io::{BufRead, Write};
    need::fuse();
    need::sqlite3();
    let root = tmp("http-slow");
    let c = Cluster::start(&root, 1);
    c.sql_ok(0, "s.db", "PRAGMA journal_mode=WAL; CREATE TABLE t(x);");
    let mut s = std::net::TcpStream::connect(&c.nodes[0].http).unwrap();
    // A small receive buffer, so the kernel holds few of the unread events.
    let small: libc::c_int = 4096;
    // SAFETY: setsockopt on an open socket with a c_int option value.
    unsafe {
        use std::os::fd::AsRawFd;
        let p = &small as *const libc::c_int as *const libc::c_void;
        let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        libc::setsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, p, len);
    }
    s.write_all(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    // Far more events than the ring and the sockets' buffers hold, while nobody reads.
    let n = 20_000u64;
    let start = c.pos(0, "s.db").unwrap().txid.0;
    let mut cmd = String::from("PRAGMA synchronous=NORMAL;\n");
    for i in 0..n {
        cmd.push_str(&format!("INSERT INTO t VALUES ({i});\n"));
    }
    let mut sqlite = std::process::Command::new("sqlite3")
        .arg(c.db(0, "s.db"))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    sqlite.stdin.take().unwrap().write_all(cmd.as_bytes()).unwrap();
    assert!(sqlite.wait().unwrap().success());
    assert_eq!(c.pos(0, "s.db").unwrap().txid.0, start + n);
    // Now read: events up to some TXID, then the error line, then the end of the stream.
    s.set_read_timeout(Some(CONVERGE)).unwrap();
    let lines: Vec<String> = std::io::BufReader::new(s)
        .lines()
        .map_while(Result::ok)
        .filter(|l| l.starts_with('{'))
        .collect();
    let last: serde_json::Value = serde_json::from_str(lines.last().expect("some lines")).unwrap();
    assert_eq!(last["type"], "error", "{last}");
    assert!(last["data"]["error"].as_str().unwrap().contains("reconnect"), "{last}");
    assert!((lines.len() as u64) < n, "{} lines: the reader was not dropped", lines.len());
}

/// `POST /handoff?nodeID=` on the primary hands the lease to that replica (Consul lease);
/// an unknown or malformed node id, and the request on a replica, get their codes.
#[test]
fn handoff_over_http_moves_the_lease_to_the_named_replica() {
    need::fuse();
    need::sqlite3();
    need::consul();
    let root = tmp("http-handoff");
    let consul = crate::common::consul::Consul::start(root.join("consul"));
    let c = Cluster::start_consul(&root, 2, &consul.url(), "litefleet/http-handoff", "");
    let p = c.wait_new_primary(&[0; 2], None, CONVERGE);
    let r = 1 - p;
    c.sql_ok(p, "h.db", "CREATE TABLE t(x); INSERT INTO t VALUES (1);");
    c.wait_all_at(p, "h.db", CONVERGE);
    let mut target = String::new();
    wait_for("the replica in the primary's /info", CONVERGE, || {
        let i = http::get(&c.nodes[p].url("/info")).json();
        target = i["replicas"][0]["nodeID"].as_str().unwrap_or("").to_owned();
        !target.is_empty()
    });
    assert_eq!(target, http::get(&c.nodes[r].url("/info")).json()["nodeID"].as_str().unwrap());
    let post = |i: usize, q: &str| http::post(&c.nodes[i].url(&format!("/handoff{q}")), Vec::new());
    assert_eq!(post(p, "").status, 400);
    assert_eq!(post(p, "?nodeID=zz").status, 400);
    assert_eq!(post(p, "?nodeID=0000000000000001").status, 404);
    assert_eq!(post(r, &format!("?nodeID={target}")).status, 503);
    let before = c.terms(r);
    let resp = post(p, &format!("?nodeID={target}"));
    assert_eq!(resp.status, 200, "{}", resp.text());
    wait_for("the replica to be the primary", CONVERGE, || c.terms(r) > before);
    c.sql_ok(r, "h.db", "INSERT INTO t VALUES (2);");
    assert!(!c.log(p).contains("diverged"), "nothing is set aside after a handoff");
}
