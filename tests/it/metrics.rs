//! `GET /metrics` on real processes: LiteFS's names with values equal to the `-pos` files,
//! litefleet's counters and histograms moving with the replication they count, `promtool
//! check metrics` on the page, and a real Prometheus server scraping two nodes whose query
//! of `litefs_db_txid` matches the positions.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::cluster::{Cluster, free_port, wait_for};
use crate::common::http;
use crate::common::{need, tmp};

const CONVERGE: Duration = Duration::from_secs(30);

/// The value of the sample `series` (name and labels, exactly as rendered) on `page`.
pub fn value(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?;
        rest.starts_with(' ').then(|| rest.trim().parse().ok())?
    })
}

/// `promtool check metrics` on `page`: its findings, one per line (empty when clean).
fn promtool(page: &str) -> Vec<String> {
    use std::io::Write;
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let findings: Vec<String> =
        text.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect();
    assert_eq!(out.status.success(), findings.is_empty(), "{text}");
    findings
}

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn metrics_match_positions_and_prometheus_scrapes_them() {
    need::fuse();
    need::sqlite3();
    need::prometheus();
    let root = tmp("metrics");
    let c = Cluster::start(&root, 2);
    c.sql_ok(0, "a.db", "PRAGMA journal_mode=WAL; CREATE TABLE t(x);");
    c.sql_ok(0, "b.db", "CREATE TABLE t(x);");
    for i in 0..20 {
        c.sql_ok(0, "a.db", &format!("INSERT INTO t VALUES ({i});"));
    }
    let pos = c.wait_all_at(0, "a.db", CONVERGE);
    let pos_b = c.wait_all_at(0, "b.db", CONVERGE);
    let page = |i: usize| http::get(&c.nodes[i].url("/metrics")).text();
    // The replica's acknowledgement reaches the primary just after it applied.
    wait_for("the replica's acknowledgement in /metrics", CONVERGE, || {
        value(&page(0), "litefleet_replica_lag_txns{db=\"a.db\",replica=\"n2\"}") == Some(0.0)
    });
    let (p, r) = (page(0), page(1));
    for (i, m) in [(0, &p), (1, &r)] {
        let want = c.pos(i, "a.db").unwrap().txid.0 as f64;
        assert_eq!(value(m, "litefs_db_txid{db=\"a.db\"}"), Some(want), "n{}: {m}", i + 1);
        assert_eq!(value(m, "litefs_db_txid{db=\"b.db\"}"), Some(pos_b.txid.0 as f64));
        assert_eq!(value(m, "litefs_db_count"), Some(2.0));
        // LTX files on disk, as listed.
        let files = std::fs::read_dir(c.nodes[i].data.join("dbs/a.db/ltx")).unwrap().count();
        assert_eq!(value(m, "litefs_db_ltx_count{db=\"a.db\"}"), Some(files as f64), "{m}");
    }
    assert_eq!(value(&p, "litefs_is_primary"), Some(1.0));
    assert_eq!(value(&r, "litefs_is_primary"), Some(0.0));
    assert_eq!(value(&p, "litefs_subscriber_count"), Some(1.0));
    assert_eq!(value(&p, "litefs_lag_seconds"), Some(0.0));
    // Every transaction was committed on the primary and applied on the replica.
    assert_eq!(value(&p, "litefs_db_commit_count{db=\"a.db\"}"), Some(pos.txid.0 as f64));
    assert_eq!(value(&r, "litefs_db_commit_count{db=\"a.db\"}"), Some(pos.txid.0 as f64));
    assert!(value(&p, "litefs_db_wal_write_count{db=\"a.db\"}") >= Some(20.0), "{p}");
    assert!(value(&p, "litefleet_commit_seconds_count{db=\"a.db\"}") >= Some(20.0), "{p}");
    assert!(value(&p, "litefleet_ltx_sent_bytes_total{db=\"a.db\"}") > Some(0.0), "{p}");
    assert!(value(&p, "litefleet_snapshots_sent_total{db=\"a.db\"}") >= Some(1.0), "{p}");
    assert!(value(&r, "litefleet_snapshots_applied_total{db=\"a.db\"}") >= Some(1.0), "{r}");
    assert!(value(&r, "litefleet_apply_lag_seconds_count{db=\"a.db\"}") > Some(0.0), "{r}");
    assert!(
        value(&p, "litefleet_replication_lag_seconds_count{db=\"a.db\",replica=\"n2\"}")
            > Some(0.0),
        "{p}"
    );
    assert!(value(&p, "litefleet_replica_rtt_seconds{replica=\"n2\"}").is_some(), "{p}");
    assert!(value(&p, "litefleet_fuse_ops_total{op=\"write\"}") > Some(0.0), "{p}");

    // promtool: litefleet's own page is clean; the full page's findings are all about
    // LiteFS's names, kept as LiteFS wrote them for existing dashboards.
    let clean = http::get(&c.nodes[0].url("/metrics?compat=0")).text();
    assert!(!clean.contains("litefs_"));
    assert_eq!(promtool(&clean), Vec::<String>::new());
    let findings = promtool(&p);
    assert!(!findings.is_empty());
    for f in &findings {
        assert!(f.starts_with("litefs_"), "a finding about litefleet's names: {f}");
    }
    assert_eq!(http::get(&c.nodes[0].url("/metrics?compat=maybe")).status, 400);

    // A real Prometheus server scrapes both nodes; its view of litefs_db_txid is theirs.
    let port = free_port();
    let cfg = root.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: \
             litefleet\n    static_configs:\n      - targets: [\"{}\", \"{}\"]\n",
            c.nodes[0].http, c.nodes[1].http
        ),
    )
    .unwrap();
    let log = std::fs::File::create(root.join("prometheus.log")).unwrap();
    let _prom = Prometheus(
        Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", root.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let query = |q: &str| -> serde_json::Value {
        let url = format!("http://127.0.0.1:{port}/api/v1/query?query={q}");
        match http::request(http::Method::GET, &url, &[], Vec::new()) {
            Ok(r) if r.status == 200 => r.json(),
            _ => serde_json::Value::Null,
        }
    };
    let want = pos.txid.0.to_string();
    let mut last = serde_json::Value::Null;
    wait_for(
        "Prometheus to scrape litefs_db_txid from both nodes",
        Duration::from_secs(60),
        || {
            last = query("litefs_db_txid%7Bdb%3D%22a.db%22%7D");
            let res = last["data"]["result"].as_array().cloned().unwrap_or_default();
            res.len() == 2 && res.iter().all(|s| s["value"][1] == want.as_str())
        },
    );
    let instances: Vec<&str> = last["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["metric"]["instance"].as_str().unwrap())
        .collect();
    assert!(instances.contains(&c.nodes[0].http.as_str()), "{last}");
    assert!(instances.contains(&c.nodes[1].http.as_str()), "{last}");
    let up = query("litefs_is_primary");
    let primaries: f64 = up["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["value"][1].as_str().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(primaries, 1.0, "{up}");
}
