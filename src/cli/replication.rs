//! Starts replication for `litefleet mount`: the QUIC server on the primary, the follower
//! on a replica (static lease).
//!
//! Addresses, so a `litefs.yml` works unchanged: the primary listens on UDP at `quic.addr`,
//! by default the host:port of `http.addr` (`:20202` → `0.0.0.0:20202`); a replica dials
//! `quic.primary-addr`, by default the host:port of `lease.advertise-url` (on a static
//! replica LiteFS sets it to the primary's URL). TLS: `tls.ca`, `tls.cert`, `tls.key`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use anyhow::{Context, bail};
use litefleet::config::Config;
use litefleet::core::types::{Epoch, NodeId};
use litefleet::core::wire::Role;
use litefleet::repl::{Identity, primary, replica};
use litefleet::store::Store;
use litefleet::tls::{Credentials, TlsFiles};

/// `host:port` of a URL like `http://host:port/path`.
fn url_host_port(url: &str) -> Option<(String, u16)> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let hostport = rest.split('/').next()?;
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (hostport, 20202),
    };
    Some((host.trim_start_matches('[').trim_end_matches(']').to_owned(), port))
}

fn resolve(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    (host, port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}:{port}"))?
        .next()
        .with_context(|| format!("{host}:{port} resolves to no address"))
}

/// Starts replication; returns the endpoint (closed at shutdown), or `None` when the config
/// has no TLS keys (a single node).
pub fn start(
    config: &Config,
    store: &Arc<Store>,
    node_id: NodeId,
    primary_role: bool,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<Option<quinn::Endpoint>> {
    let (Some(ca), Some(cert), Some(key)) = (&config.tls.ca, &config.tls.cert, &config.tls.key)
    else {
        if !primary_role {
            bail!("a replica needs tls.ca, tls.cert and tls.key to reach the primary");
        }
        tracing::warn!("no tls.ca/tls.cert/tls.key: replication is off (single node)");
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
    let id = Identity {
        cluster_id: store.cluster_id(),
        node_id,
        epoch: Epoch(1),
        role: if primary_role { Role::Primary } else { Role::Replica },
        hostname,
        advertise_url: config.lease.advertise_url.clone().unwrap_or_default(),
    };
    if primary_role {
        let listen = config.quic.addr.clone().unwrap_or_else(|| config.http.addr.clone());
        let (host, port) = url_host_port(&listen).context("quic.addr / http.addr")?;
        let host = if host.is_empty() { "0.0.0.0".to_owned() } else { host };
        let addr = resolve(&host, port)?;
        let ep = quinn::Endpoint::server(creds.server_config()?, addr)
            .with_context(|| format!("listening on UDP {addr}"))?;
        tracing::info!(%addr, "replication: serving replicas over QUIC");
        rt.spawn(primary::serve(ep.clone(), store.clone(), id));
        Ok(Some(ep))
    } else {
        let url = config
            .quic
            .primary_addr
            .clone()
            .or_else(|| config.lease.advertise_url.clone())
            .context("lease.advertise-url (the primary's URL) or quic.primary-addr")?;
        let (host, port) =
            url_host_port(&url).with_context(|| format!("bad primary address {url:?}"))?;
        let addr = resolve(&host, port)?;
        let bind: SocketAddr =
            if addr.is_ipv4() { "0.0.0.0:0".parse()? } else { "[::]:0".parse()? };
        let mut ep = quinn::Endpoint::client(bind).context("binding a UDP socket")?;
        ep.set_default_client_config(creds.client_config()?);
        tracing::info!(%addr, server = %host, "replication: following the primary");
        let target = replica::Target { addr, server_name: host };
        rt.spawn(replica::follow(ep.clone(), store.clone(), id, target));
        Ok(Some(ep))
    }
}

#[cfg(test)]
mod tests {
    use super::url_host_port;

    #[test]
    fn host_port_of_urls() {
        assert_eq!(url_host_port("http://n1:20202"), Some(("n1".into(), 20202)));
        assert_eq!(url_host_port(":20202"), Some(("".into(), 20202)));
        assert_eq!(url_host_port("127.0.0.1:7000"), Some(("127.0.0.1".into(), 7000)));
        assert_eq!(url_host_port("http://[::1]:9/x"), Some(("::1".into(), 9)));
        assert_eq!(url_host_port("http://host"), Some(("host".into(), 20202)));
    }
}
