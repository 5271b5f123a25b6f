//! Starts replication for `litefleet mount`: the QUIC server on the primary, the follower
//! on a replica (static lease).
//!
//! Addresses, so a `litefs.yml` works unchanged: the primary listens on UDP at `quic.addr`,
//! by default the host:port of `http.addr` (`:20202` → `0.0.0.0:20202`); a replica dials
//! `quic.primary-addr`, by default the host:port of `lease.advertise-url` (on a static
//! replica LiteFS sets it to the primary's URL). TLS: `tls.ca`, `tls.cert`, `tls.key`.

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
use litefleet::repl::supervisor::{ReplSupervisor, SupArgs, SupMsg, resolve, url_host_port};
use litefleet::store::Store;
use litefleet::tls::{Credentials, TlsFiles};
use ractor::{Actor, ActorRef};

/// Starts the replication supervisor (lease, QUIC server or follower); `None` when the
/// config has no TLS keys (a single node, writable if it is the candidate).
pub fn start(
    config: &Config,
    store: &Arc<Store>,
    node_id: NodeId,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<Option<ActorRef<SupMsg>>> {
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
        return Ok(None);
    };
    let creds =
        Credentials::load(&TlsFiles { ca: ca.clone(), cert: cert.clone(), key: key.clone() })?;
    let hostname = config
        .lease
        .hostname
        .clone()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
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
    Ok(Some(sup))
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
