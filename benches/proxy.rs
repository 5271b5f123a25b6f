//! Proxy benchmark, one run on this machine (`cargo bench --bench proxy`; needs root,
//! /dev/fuse and python3): the latency of a write (`POST /rows` of the example app, one
//! SQLite INSERT) sent to the primary's app directly, through the primary's proxy, and
//! through a replica's proxy (forwarded to the primary on the cluster's QUIC connection),
//! with the replica on loopback and behind a UDP relay that delays every datagram by 25 ms
//! each way; and how long a read carrying the write's `__txid` cookie waits on the replica.
//!
//! Targets (issue 16): forwarded ≤ on the primary's proxy + one round trip + 1 ms.

#[allow(dead_code)]
#[path = "../tests/it/common/app.rs"]
mod app;
#[allow(dead_code)]
#[path = "../tests/it/common/cluster.rs"]
mod cluster;
#[allow(dead_code)]
#[path = "../tests/it/common/relay.rs"]
mod relay;

use std::time::{Duration, Instant};

use cluster::{Cluster, dev_certs, free_port, static_nets, wait_for};
use relay::Relay;

/// Requests per row of the table.
const N: usize = 300;

struct Client {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl Client {
    fn new() -> Client {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        Client { rt, http: reqwest::Client::new() }
    }

    /// Sends one request; returns its status, its `__txid` cookie and the time it took.
    #[allow(clippy::disallowed_methods)]
    fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<String>,
        cookie: Option<&str>,
    ) -> (u16, Option<String>, f64) {
        self.rt.block_on(async {
            let mut rb = self.http.request(method, url);
            if let Some(b) = body {
                rb = rb.header("content-type", "application/json").body(b);
            }
            if let Some(c) = cookie {
                rb = rb.header("cookie", c);
            }
            let t = Instant::now();
            let r = rb.send().await.unwrap();
            let status = r.status().as_u16();
            let cookie = r
                .headers()
                .get_all("set-cookie")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find(|v| v.starts_with("__txid="))
                .map(|v| v.split(';').next().unwrap_or_default().to_owned());
            let _ = r.bytes().await.unwrap();
            (status, cookie, t.elapsed().as_secs_f64() * 1e3)
        })
    }

    /// `N` rounds of one POST of a fresh row to each of `a`, `b`, `c` in turn (after ten
    /// rounds of warm-up); the latencies in ms of each.
    fn interleaved(&self, a: &str, b: &str, c: &str, tag: &str) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let mut out = (Vec::with_capacity(N), Vec::with_capacity(N), Vec::with_capacity(N));
        for i in 0..N + 10 {
            let one = |base: &str, k: usize| {
                let body = format!("{{\"id\": \"{tag}-{k}-{i}\", \"value\": \"x\"}}");
                let url = format!("{base}/rows");
                let (status, _, ms) = self.send(reqwest::Method::POST, &url, Some(body), None);
                assert_eq!(status, 201, "POST {base}");
                ms
            };
            let (x, y, z) = (one(a, 0), one(b, 1), one(c, 2));
            if i >= 10 {
                out.0.push(x);
                out.1.push(y);
                out.2.push(z);
            }
        }
        out
    }
}

fn stats(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let p = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    (p(0.5), p(0.99), v.iter().sum::<f64>() / v.len() as f64)
}

#[allow(clippy::disallowed_methods)]
fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let base = std::env::temp_dir().join(format!("litefleet-bench-proxy-{}", std::process::id()));
    let client = Client::new();
    let mut rows: Vec<(String, Vec<f64>)> = Vec::new();
    let mut rtts: Vec<(String, f64)> = Vec::new();
    for delay in [None, Some(Duration::from_millis(25))] {
        let tag = delay.map_or("loopback".to_owned(), |d| format!("{} ms away", d.as_millis()));
        let root = base.join(delay.map_or("0".into(), |d| d.as_millis().to_string()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let certs = dev_certs(&root, 2);
        let port = free_port();
        let (dial, relay) = match delay {
            Some(d) => {
                let rport = free_port();
                let r = Relay::start(
                    format!("127.0.0.1:{rport}").parse().unwrap(),
                    format!("127.0.0.1:{port}").parse().unwrap(),
                    d,
                    0.0,
                );
                (rport, Some(r))
            }
            None => (port, None),
        };
        let mut nets = static_nets(2, port, |i| if i == 0 { port } else { dial }, "");
        let proxies = app::with_app(&root, &mut nets, "");
        let c = Cluster::start_custom(&root, nets, &certs);
        for p in &proxies {
            wait_for("the app", Duration::from_secs(60), || {
                let r = client.rt.block_on(client.http.get(format!("http://{p}/rows")).send());
                r.is_ok_and(|r| r.status() == 200)
            });
        }
        // The app's own port: the target in n1's config.
        let cfg = std::fs::read_to_string(&c.nodes[0].cfg).unwrap();
        let target = cfg.split("target: \"").nth(1).unwrap().split('"').next().unwrap().to_owned();
        // Interleaved, so that the app's own speed (it drifts) weighs the same on each.
        let (direct, prim, fwd) = client.interleaved(
            &format!("http://{target}"),
            &format!("http://{}", proxies[0]),
            &format!("http://{}", proxies[1]),
            &format!("t{}", tag.len()),
        );
        rows.push((format!("primary's app, no proxy ({tag})"), direct));
        rows.push((format!("primary's proxy ({tag})"), prim));
        rows.push((format!("replica's proxy, forwarded ({tag})"), fwd));
        // The QUIC round trip the replica measures, from its /info.
        let info = client.rt.block_on(async {
            let r =
                client.http.get(format!("http://{}/info", c.nodes[0].http)).send().await.unwrap();
            r.text().await.unwrap()
        });
        let rtt = serde_json::from_str::<serde_json::Value>(&info)
            .ok()
            .and_then(|v| v.pointer("/replicas/0/rttMs").and_then(|x| x.as_f64()));
        let rtt = rtt.unwrap_or(f64::NAN);
        rtts.push((tag.clone(), rtt));
        // Read-your-writes: a POST through the replica, then at once a GET there with its
        // cookie; the GET's time.
        let (mut waits, mut plain) = (Vec::with_capacity(N), Vec::with_capacity(N));
        for i in 0..N {
            let body = format!("{{\"id\": \"ryw-{}-{i}\", \"value\": \"x\"}}", tag.len());
            let url = format!("http://{}/rows", proxies[1]);
            let (status, cookie, _) = client.send(reqwest::Method::POST, &url, Some(body), None);
            assert_eq!(status, 201);
            let url = format!("http://{}/rows/ryw-{}-{i}", proxies[1], tag.len());
            let (status, _, ms) = client.send(reqwest::Method::GET, &url, None, cookie.as_deref());
            assert_eq!(status, 200, "read-your-writes");
            waits.push(ms);
            // The same read once the row is there, without a cookie: what the wait adds to.
            let (status, _, ms) = client.send(reqwest::Method::GET, &url, None, None);
            assert_eq!(status, 200);
            plain.push(ms);
        }
        rows.push((format!("replica: GET with the cookie right after its POST ({tag})"), waits));
        rows.push((format!("replica: the same GET again, no cookie ({tag})"), plain));
        drop(c);
        drop(relay);
    }
    println!("| request (example app, one INSERT per POST) | p50 ms | p99 ms | mean ms |");
    println!("|---|---|---|---|");
    for (label, v) in &mut rows {
        let (p50, p99, mean) = stats(v);
        println!("| {label} | {p50:.3} | {p99:.3} | {mean:.3} |");
    }
    for (tag, rtt) in &rtts {
        println!("QUIC round trip replica↔primary ({tag}): {rtt:.3} ms");
    }
    let mut p50 = |label: &str| rows.iter_mut().find(|(l, _)| l == label).map(|(_, v)| stats(v).0);
    for (tag, rtt) in &rtts {
        if let (Some(prim), Some(fwd)) = (
            p50(&format!("primary's proxy ({tag})")),
            p50(&format!("replica's proxy, forwarded ({tag})")),
        ) {
            println!(
                "forwarding cost ({tag}, p50): {:+.3} ms over the primary's proxy = one round \
                 trip ({rtt:.3} ms) {:+.3} ms",
                fwd - prim,
                fwd - prim - rtt
            );
        }
    }
    let _ = std::fs::remove_dir_all(&base);
}
