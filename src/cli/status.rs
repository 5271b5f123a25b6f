//! `litefleet status [-url U] [--json]`: the cluster as one node sees it, from its `GET
//! /info`: the node (role, epoch, primary), each database's position, and on the primary
//! every connected replica with its lag per database.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

/// LiteFS's default API URL.
pub const DEFAULT_URL: &str = "http://localhost:20202";

pub fn run(url: &str, json: bool) -> anyhow::Result<ExitCode> {
    let info = fetch_info(url)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        print!("{}", render(&info));
    }
    Ok(ExitCode::SUCCESS)
}

/// `GET <url>/info` as JSON.
pub fn fetch_info(url: &str) -> anyhow::Result<Value> {
    let base = url.trim_end_matches('/');
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async {
        let c = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
        let r = c
            .get(format!("{base}/info"))
            .send()
            .await
            .with_context(|| format!("{base}/info: is a litefleet node listening there?"))?;
        let status = r.status();
        let body = r.bytes().await?;
        if !status.is_success() {
            bail!("{base}/info: {status}: {}", String::from_utf8_lossy(&body).trim());
        }
        serde_json::from_slice(&body).with_context(|| format!("{base}/info: not JSON"))
    })
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// The text table of an `/info` document.
pub fn render(info: &Value) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let role = s(&info["role"]);
    let primary = if role == "primary" {
        "this node".to_owned()
    } else {
        match s(&info["primary"]["hostname"]) {
            "" => "none known".to_owned(),
            h => format!("{h} ({})", s(&info["primary"]["advertiseURL"])),
        }
    };
    let _ = writeln!(
        out,
        "node {} ({}) {role}, epoch {}, cluster {}, primary: {primary}",
        s(&info["hostname"]),
        s(&info["nodeID"]),
        info["lease"]["epoch"],
        s(&info["clusterID"]),
    );
    let empty = serde_json::Map::new();
    let dbs = info["databases"].as_object().unwrap_or(&empty);
    let _ = writeln!(out, "\n{:<24} {:>16} {:>16}  LAST COMMIT", "DATABASE", "TXID", "CHECKSUM");
    if dbs.is_empty() {
        let _ = writeln!(out, "(none)");
    }
    for (name, d) in dbs {
        let _ = writeln!(
            out,
            "{name:<24} {:>16} {:>16}  {}",
            s(&d["txID"]),
            s(&d["postApplyChecksum"]),
            s(&d["timestamp"])
        );
    }
    if let Some(q) = info["quarantined"].as_object().filter(|q| !q.is_empty()) {
        let _ = writeln!(out, "\nQUARANTINED");
        for (name, why) in q {
            let _ = writeln!(out, "{name:<24} {}", s(why));
        }
    }
    if role == "primary" {
        let replicas = info["replicas"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        let _ = writeln!(
            out,
            "\n{:<16} {:<18} {:<9} {:<22} {:>8}  LAG (database: transactions, ms)",
            "REPLICA", "NODE", "ROLE", "ADDRESS", "RTT ms"
        );
        if replicas.is_empty() {
            let _ = writeln!(out, "(none connected)");
        }
        for r in replicas {
            let lag: Vec<String> = r["databases"]
                .as_object()
                .unwrap_or(&empty)
                .iter()
                .map(|(n, d)| format!("{n}: {} tx, {} ms", d["lagTxns"], d["lagMs"]))
                .collect();
            let _ = writeln!(
                out,
                "{:<16} {:<18} {:<9} {:<22} {:>8.2}  {}",
                s(&r["hostname"]),
                s(&r["nodeID"]),
                if r["candidate"] == true { "candidate" } else { "replica" },
                s(&r["addr"]),
                r["rttMs"].as_f64().unwrap_or(0.0),
                if lag.is_empty() { "-".to_owned() } else { lag.join("; ") },
            );
        }
    }
    if let Some(e) = info["lastError"].as_str().filter(|e| !e.is_empty()) {
        let _ = writeln!(out, "\nlast error: {e}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn a_primary_with_a_lagging_replica() {
        let info = serde_json::json!({
            "clusterID": "LFSC00000000000000AB", "role": "primary", "hostname": "n1",
            "nodeID": "00000000000000A1", "lease": {"epoch": 4, "holder": "n1"},
            "databases": {"a.db": {"txID": "0000000000000007", "postApplyChecksum": "00000000000000ff", "timestamp": "2026-12-04T13:00:00Z"}},
            "quarantined": {},
            "replicas": [{"hostname": "n2", "nodeID": "00000000000000B2", "candidate": true,
                "addr": "10.0.0.2:20202", "rttMs": 0.25,
                "databases": {"a.db": {"txID": "0000000000000005", "lagTxns": 2, "lagMs": 31}}}],
            "lastError": "",
        });
        let t = render(&info);
        assert!(t.starts_with("node n1 (00000000000000A1) primary, epoch 4, cluster LFSC00000000000000AB, primary: this node\n"), "{t}");
        assert!(
            t.contains(
                "a.db                     0000000000000007 00000000000000ff  2026-12-04T13:00:00Z"
            ),
            "{t}"
        );
        assert!(t.contains("n2               00000000000000B2   candidate 10.0.0.2:20202             0.25  a.db: 2 tx, 31 ms"), "{t}");
        assert!(!t.contains("last error"), "{t}");
    }

    #[test]
    fn a_replica_names_its_primary_and_its_last_error() {
        let info = serde_json::json!({
            "role": "replica", "hostname": "n2", "primary": {"hostname": "n1", "advertiseURL": "http://n1:20202"},
            "lease": {"epoch": 4}, "databases": {}, "lastError": "promotion: not following a primary",
        });
        let t = render(&info);
        assert!(
            t.contains("replica, epoch 4") && t.contains("primary: n1 (http://n1:20202)"),
            "{t}"
        );
        assert!(t.contains("(none)") && !t.contains("REPLICA"), "{t}");
        assert!(t.ends_with("last error: promotion: not following a primary\n"), "{t}");
    }
}
