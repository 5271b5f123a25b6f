//! A real Consul agent (`consul agent -dev`, 1.8.7 from Debian bullseye, fetched by
//! `scripts/fetch-consul.sh`) on loopback ports of its own. Every test starts its own agent:
//! `-dev` keeps its state in memory (no data directory to share), its ports come from
//! [`free_port`], and each agent is a cluster of one that joins no other.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::cluster::free_port;

pub struct Consul {
    child: Option<Child>,
    pub http: u16,
    pub dir: PathBuf,
}

/// The consul binary: `$LITEFLEET_CONSUL`, or `target/consul/consul`, fetched there by
/// `scripts/fetch-consul.sh` the first time a test needs it (so `cargo test` works on a
/// fresh machine). Tests run two at a time in this one process: the fetch is serialised,
/// so two never write one directory. (This file is also included by the benches.)
pub fn binary() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("LITEFLEET_CONSUL") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("needs Consul at LITEFLEET_CONSUL={}: no such file", p.display()))
        };
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin = root.join("target/consul/consul");
    if !bin.is_file() {
        static FETCH: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = FETCH.lock().unwrap_or_else(|e| e.into_inner());
        if !bin.is_file() {
            eprintln!("fetching Consul once: scripts/fetch-consul.sh target/consul");
            let _ = std::process::Command::new(root.join("scripts/fetch-consul.sh"))
                .arg(root.join("target/consul"))
                .status();
        }
    }
    if bin.is_file() {
        Ok(bin)
    } else {
        Err("needs Consul at target/consul/consul: scripts/fetch-consul.sh target/consul \
             failed (see above; it needs Debian's package mirrors)"
            .into())
    }
}

impl Consul {
    pub fn start(dir: PathBuf) -> Consul {
        Consul::start_on(dir, &[])
    }

    /// An agent whose HTTP API also listens on `addrs` (besides 127.0.0.1).
    #[allow(clippy::disallowed_methods)]
    pub fn start_on(dir: PathBuf, addrs: &[&str]) -> Consul {
        std::fs::create_dir_all(&dir).unwrap();
        let bin = binary().unwrap_or_else(|e| panic!("{e}"));
        let (http, serf, server) = (free_port(), free_port(), free_port());
        let hcl = format!(
            "ports {{ http = {http}, dns = -1, grpc = -1, serf_lan = {serf}, serf_wan = -1, server = {server} }}"
        );
        // A space-separated list is what Consul's -client takes.
        let client =
            std::iter::once("127.0.0.1").chain(addrs.iter().copied()).collect::<Vec<_>>().join(" ");
        let log = std::fs::File::create(dir.join("consul.log")).unwrap();
        let child = Command::new(bin)
            .args(["agent", "-dev", "-bind", "127.0.0.1", "-client", &client, "-hcl", &hcl])
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let c = Consul { child: Some(child), http, dir };
        let t = Instant::now();
        while !c.kv_ready() {
            assert!(t.elapsed() < Duration::from_secs(30), "consul did not start: {}", c.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("consul.log")).unwrap_or_default()
    }

    /// Ready when the KV store answers (a leader was elected) and the agent's node is
    /// registered (before that, creating a session fails: "Missing node registration").
    fn kv_ready(&self) -> bool {
        // 404 = the KV store works and the key is absent; 500 = no leader yet.
        self.get("/v1/kv/litefleet-probe").is_some_and(|(code, _)| code == 404)
            && self
                .get("/v1/catalog/nodes")
                .is_some_and(|(code, b)| code == 200 && b.contains("\"Node\""))
    }

    /// A plain HTTP/1.0 GET: status code and body.
    fn get(&self, path: &str) -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.http)).ok()?;
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).ok()?;
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let code = out.split(' ').nth(1)?.parse().ok()?;
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        Some((code, body))
    }

    /// Stops the agent (kill -9).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Consul {
    fn drop(&mut self) {
        self.kill();
    }
}
