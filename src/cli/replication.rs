//! Starts replication for `litefleet mount`: the QUIC server on the primary, the follower
//! on a replica (static lease).
//!
//! Addresses, so a `litefs.yml` works unchanged: the primary listens on UDP at `quic.addr`,
//! by default the host:port of `http.addr` (`:20202` → `0.0.0.0:20202`); a replica dials
//! `quic.primary-addr`, by default the host:port of `lease.advertise-url` (on a static
//! replica LiteFS sets it to the primary's URL). TLS: `tls.ca`, `tls.cert`, `tls.key`.
//!
//! Startup refusals (before the mount appears): a candidate binds its UDP port here, once,
//! and hands the socket to the listener, so a port in use is an error now rather than a
//! primary retrying forever without replication; a static candidate probes its own
//! advertised address ([`litefleet::repl::probe`]) and refuses to start when another node
//! answers there as the primary, then keeps probing while it runs.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use litefleet::config::Config;
use litefleet::core::lease::Holder;
use litefleet::core::types::NodeId;
use litefleet::core::wire::Role;
use litefleet::lease::consul::{ConsulLease, PositionsFn};
use litefleet::lease::{LeaseBackend, STATIC_EPOCH, StaticLease};
use litefleet::repl::Identity;
use litefleet::repl::probe::{self, Verdict};
use litefleet::repl::replica::Target;
use litefleet::repl::supervisor::{ReplSupervisor, SupArgs, SupMsg, resolve, url_host_port};
use litefleet::store::Store;
use litefleet::tls::{Credentials, TlsFiles};
use ractor::{Actor, ActorRef};

/// A running replication: the supervisor, and the static candidate's probe for a second
/// primary (stopped when this is dropped).
pub struct Replication {
    pub sup: ActorRef<SupMsg>,
    _probe: Option<AbortOnDrop>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the replication supervisor (lease, QUIC server or follower); `None` when the
/// config has no TLS keys (a single node, writable if it is the candidate).
pub fn start(
    config: &Config,
    store: &Arc<Store>,
    node_id: NodeId,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<Option<Replication>> {
    let candidate = config.lease.candidate;
    let (Some(ca), Some(cert), Some(key)) = (&config.tls.ca, &config.tls.cert, &config.tls.key)
    else {
        if !candidate || config.lease.kind != "static" {
            bail!(
                "tls.ca, tls.cert and tls.key are needed to replicate (a replica, or any node \
                 with a Consul lease)"
            );
        }
        tracing::warn!("no tls.ca/tls.cert/tls.key: replication is off (single node)");
        store.node().set_writable(true);
        store
            .node()
            .hub()
            .set_lease(litefleet::observe::LeaseState { is_primary: true, ..Default::default() });
        return Ok(None);
    };
    let creds =
        Credentials::load(&TlsFiles { ca: ca.clone(), cert: cert.clone(), key: key.clone() })?;
    let hostname = hostname(config);
    let advertise_url = config.lease.advertise_url.clone().unwrap_or_default();
    let id = Identity {
        cluster_id: store.cluster_id(),
        node_id,
        epoch: STATIC_EPOCH,
        role: if candidate { Role::Primary } else { Role::Replica },
        hostname,
        advertise_url: advertise_url.clone(),
    };
    let listen = config.quic.addr.clone().unwrap_or_else(|| config.http.addr.clone());
    let (host, port) = url_host_port(&listen).context("quic.addr / http.addr")?;
    let host = if host.is_empty() { "0.0.0.0".to_owned() } else { host };
    let listen =
        resolve(&host, port).with_context(|| format!("quic.addr / http.addr {host}:{port}"))?;
    let listen_key = if config.quic.addr.is_some() { "quic.addr" } else { "http.addr" };
    // Only a candidate ever listens (a replica never becomes the primary).
    let listen_socket = if candidate { Some(bind_listen(listen_key, listen)?) } else { None };
    // On a static replica, lease.advertise-url is the primary's URL (as in LiteFS).
    let primary_url = config.quic.primary_addr.clone().unwrap_or(advertise_url.clone());
    let primary_host = url_host_port(&primary_url).map(|(h, _)| h).unwrap_or_default();
    let backend: Arc<dyn LeaseBackend> = match config.lease.kind.as_str() {
        "consul" => {
            let c = config.lease.consul.as_ref().context("lease.consul")?;
            // LiteFS's default advertise URL: http://<hostname>:<http port>.
            let url = match &config.lease.advertise_url {
                Some(u) => u.clone(),
                None => format!("http://{}:{}", id.hostname, listen.port()),
            };
            let me = Holder { hostname: id.hostname.clone(), advertise_url: url };
            // The election prefers up-to-date candidates: each publishes the epoch of the
            // primary it followed and its databases' TXIDs before acquiring.
            let st = store.clone();
            let positions: PositionsFn = Arc::new(move || {
                let round = st.node().max_epoch().0;
                (round, st.list().iter().map(|d| (d.name().to_owned(), d.pos().txid.0)).collect())
            });
            Arc::new(
                ConsulLease::new(&c.url, &c.key, c.ttl, c.lock_delay, c.failover_quorum, me)?
                    .prefer_up_to_date(positions),
            )
        }
        _ => {
            if !candidate {
                url_host_port(&primary_url)
                    .with_context(|| format!("bad primary address {primary_url:?}"))?;
            }
            Arc::new(StaticLease::new(candidate, primary_host, primary_url))
        }
    };
    let static_primary = candidate && config.lease.kind == "static";
    // The address replicas dial, which a static candidate probes for another primary.
    let probe = if static_primary { probe_target(config) } else { None };
    let probe_creds = creds.clone();
    let probe_id = probe::probe_identity(&id);
    let failover_after = match (&config.lease.consul, config.lease.kind.as_str()) {
        (Some(c), "consul") if candidate && !c.failover_timeout.is_zero() => {
            Some(c.failover_timeout)
        }
        _ => None,
    };
    let args = SupArgs {
        failover_after,
        store: store.clone(),
        creds,
        id,
        listen,
        listen_socket,
        primary_override: config.quic.primary_addr.clone(),
        backend,
        candidate,
        promote: config.lease.promote && candidate && config.lease.kind == "consul",
    };
    let (sup, _) = rt
        .block_on(Actor::spawn(Some("replication".into()), ReplSupervisor, args))
        .context("starting the replication supervisor")?;
    if static_primary {
        // The static lease is granted at once: be writable before the mount appears.
        #[allow(clippy::disallowed_methods)] // the shell owns the clock
        let t0 = std::time::Instant::now();
        while !store.node().writable() && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let Some((key, url, target)) = probe else {
        return Ok(Some(Replication { sup, _probe: None }));
    };
    // After the listener started: a probe that comes back to this node (through a relay or
    // NAT) then meets this node's own HELLO, not a silent socket.
    if probe::is_own_address(target.addr, listen) {
        tracing::debug!(%key, %url, "the advertised address is this node's own");
        return Ok(Some(Replication { sup, _probe: None }));
    }
    let endpoint = match probe::client_endpoint(&probe_creds, target.addr.is_ipv6()) {
        Ok(ep) => ep,
        Err(e) => {
            let _ = rt.block_on(sup.stop_and_wait(Some("startup failed".into()), None));
            bail!("QUIC client endpoint for the primary probe: {e}");
        }
    };
    let answer = rt.block_on(probe::hello_at(&endpoint, &probe_id, &target, probe::PROBE_TIMEOUT));
    match probe::verdict(node_id, answer) {
        Verdict::Conflict(other) => {
            tracing::error!(addr = %target.addr, %key, %url, %other,
                "another node answers as the primary at this node's advertised address");
            let _ = rt.block_on(sup.stop_and_wait(Some("two primaries".into()), Some(SHUTDOWN)));
            bail!(
                "{other} already answers as the primary at {addr} ({key} {url}, the address \
                 replicas dial): two static candidates would both accept writes. Set \
                 `lease.candidate: false` on all but one node, and point their \
                 `lease.advertise-url` at that node",
                addr = target.addr,
            );
        }
        Verdict::Itself => return Ok(Some(Replication { sup, _probe: None })),
        Verdict::NotPrimary(p) => {
            tracing::warn!(addr = %target.addr, %key, peer = %p,
                "a node that is not the primary answers at this node's advertised address");
        }
        Verdict::Nobody(why) => {
            tracing::info!(addr = %target.addr, %key, reason = %why,
                "no other primary answers at this node's advertised address");
        }
    }
    let watch = probe::Watch { endpoint, id: probe_id, target, key, store: store.clone() };
    let task = rt.spawn(probe::watch(watch));
    Ok(Some(Replication { sup, _probe: Some(AbortOnDrop(task)) }))
}

/// `lease.hostname`, else the machine's.
pub fn hostname(config: &Config) -> String {
    config
        .lease
        .hostname
        .clone()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// This node's own API URL: `lease.advertise-url` under Consul (LiteFS's default
/// `http://<hostname>:<http port>`); under a static lease that key names the primary, so a
/// replica's own URL is built from its hostname and port.
pub fn own_url(config: &Config) -> String {
    let port = url_host_port(&config.http.addr).map_or(20202, |(_, p)| p);
    match (&config.lease.advertise_url, config.lease.kind.as_str(), config.lease.candidate) {
        (Some(u), "consul", _) | (Some(u), _, true) => u.clone(),
        _ => format!("http://{}:{port}", hostname(config)),
    }
}

/// How long a refused startup waits for the replication actors.
const SHUTDOWN: Duration = Duration::from_secs(5);

/// Binds the UDP socket the QUIC server will serve on (handed to the supervisor), so a port
/// in use fails startup with a clear error.
fn bind_listen(key: &str, addr: SocketAddr) -> anyhow::Result<UdpSocket> {
    UdpSocket::bind(addr).map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => anyhow::anyhow!(
            "{key} {addr}: address already in use (another process holds UDP port {}; QUIC \
             replication needs it)",
            addr.port()
        ),
        _ => anyhow::anyhow!("{key} {addr}: cannot bind the UDP socket: {e}"),
    })
}

/// The address replicas dial, for the probe: `quic.primary-addr`, else the host:port of
/// `lease.advertise-url`; `None` when neither is set or it does not resolve (logged).
fn probe_target(config: &Config) -> Option<(&'static str, String, Target)> {
    let (key, url) = match (&config.quic.primary_addr, &config.lease.advertise_url) {
        (Some(a), _) => ("quic.primary-addr", a.clone()),
        (None, Some(u)) => ("lease.advertise-url", u.clone()),
        (None, None) => return None,
    };
    let resolved = url_host_port(&url).ok_or_else(|| format!("bad address {url:?}")).and_then(
        |(host, port)| {
            let addr = resolve(&host, port).map_err(|e| e.to_string())?;
            Ok(Target { addr, server_name: host })
        },
    );
    match resolved {
        Ok(t) => Some((key, url, t)),
        Err(e) => {
            tracing::warn!(%key, %url, error = %e,
                "cannot probe this node's advertised address for another primary");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use litefleet::repl::supervisor::url_host_port;

    #[test]
    fn host_port_of_urls() {
        assert_eq!(url_host_port("http://n1:20202"), Some(("n1".into(), 20202)));
        assert_eq!(url_host_port(":20202"), Some(("".into(), 20202)));
        assert_eq!(url_host_port("127.0.0.1:7000"), Some(("127.0.0.1".into(), 7000)));
        assert_eq!(url_host_port("http://[::1]:9/x"), Some(("::1".into(), 9)));
        assert_eq!(url_host_port("http://host"), Some(("host".into(), 20202)));
    }
}
