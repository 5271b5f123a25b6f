//! Probing for a second primary under a static lease.
//!
//! A static lease has no arbiter: every node configured with `lease.candidate: true` acts as
//! the primary. The usual mistake is a copied config: node2's `litefs.yml` is node1's, with
//! `candidate: true` and node1's `lease.advertise-url`. So a static candidate dials the
//! address replicas dial (`quic.primary-addr`, else the host:port of `lease.advertise-url`)
//! and reads the HELLO of whoever answers there: itself or nobody is fine; another node that
//! says it is the primary is a conflict, and this node is the one whose address points
//! elsewhere (the caller refuses to start, or goes read-only while running).
//!
//! The probe speaks the replica's handshake (`protocol.md` §2) up to the primary's HELLO and
//! then finishes its stream: a primary sends nothing on a session before the replica's
//! POS_MAP, which never comes, so it streams nothing and ends the session as closed by the
//! peer. The probe's HELLO carries cluster id 0 and epoch 0, which [`crate::core::session::check`] lets
//! through whatever cluster and term the primary is in, and the role of a replica.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use futures_util::SinkExt;

use super::replica::Target;
use super::{Identity, ReplError, framed, next_frame};
use crate::core::types::{ClusterId, Epoch, NodeId};
use crate::core::wire::{Frame, Hello, Role};
use crate::store::Store;
use crate::tls::Credentials;

/// How long a probe waits for the primary's HELLO (nothing listening costs this much).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a running static candidate probes again.
pub const REPROBE_EVERY: Duration = Duration::from_secs(5);
/// After a conflict, how often the ERROR is repeated (without probing again).
const REMIND_EVERY: Duration = Duration::from_secs(60);
/// How long the probe lets the primary end the session before closing the connection.
const LINGER: Duration = Duration::from_millis(500);

/// Errors of one probe; every one means "nobody of this cluster answered as the primary".
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("TLS client config: {0}")]
    Tls(String),
    #[error(transparent)]
    Repl(#[from] ReplError),
}

/// Who answered a probe, from its HELLO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub node_id: NodeId,
    pub hostname: String,
    pub advertise_url: String,
    pub epoch: Epoch,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "node {} (host {:?}", self.node_id, self.hostname)?;
        if !self.advertise_url.is_empty() {
            write!(f, ", advertising {}", self.advertise_url)?;
        }
        write!(f, ")")
    }
}

/// What a probe means for the prober.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// This node answered: the address is its own.
    Itself,
    /// Another node answered as the primary: two primaries.
    Conflict(Peer),
    /// Another node answered, not as the primary.
    NotPrimary(Peer),
    /// Nobody of this cluster answered; why.
    Nobody(String),
}

/// The verdict on a probe's outcome for node `me`.
pub fn verdict(me: NodeId, answer: Result<Hello, ProbeError>) -> Verdict {
    let h = match answer {
        Ok(h) => h,
        Err(e) => return Verdict::Nobody(e.to_string()),
    };
    let peer = Peer {
        node_id: h.node_id,
        hostname: h.hostname,
        advertise_url: h.advertise_url,
        epoch: h.epoch,
    };
    match (h.node_id == me, h.role) {
        (true, _) => Verdict::Itself,
        (false, Role::Primary) => Verdict::Conflict(peer),
        (false, _) => Verdict::NotPrimary(peer),
    }
}

/// The identity a probe announces: this node's, as a replica of no cluster and no term.
pub fn probe_identity(me: &Identity) -> Identity {
    Identity { cluster_id: ClusterId(0), epoch: Epoch(0), role: Role::Replica, ..me.clone() }
}

/// Whether `target` is this node's own listening socket `listen`, without dialing it.
/// Precondition: this process holds `listen` bound, so no other process can answer there.
/// An unspecified `listen` (0.0.0.0) covers every local address; an address is local when
/// a socket can be bound to it.
pub fn is_own_address(target: SocketAddr, listen: SocketAddr) -> bool {
    if target.port() != listen.port() {
        return false;
    }
    if target.ip() == listen.ip() {
        return true;
    }
    let family_ok = target.is_ipv4() == listen.is_ipv4() || listen.is_ipv6();
    listen.ip().is_unspecified()
        && family_ok
        && (target.ip().is_loopback() || UdpSocket::bind((target.ip(), 0)).is_ok())
}

/// A QUIC client endpoint for probes, of the address family of the targets it will dial.
pub fn client_endpoint(creds: &Credentials, ipv6: bool) -> Result<quinn::Endpoint, ProbeError> {
    let bind: SocketAddr =
        if ipv6 { SocketAddr::from(([0u16; 8], 0)) } else { SocketAddr::from(([0, 0, 0, 0], 0)) };
    let mut ep = quinn::Endpoint::client(bind).map_err(ReplError::from)?;
    ep.set_default_client_config(
        creds.client_config().map_err(|e| ProbeError::Tls(e.to_string()))?,
    );
    Ok(ep)
}

/// Dials `target` as `id` (see [`probe_identity`]) and returns the HELLO of whoever answers,
/// ending the session right after it (see the module doc).
pub async fn hello_at(
    endpoint: &quinn::Endpoint,
    id: &Identity,
    target: &Target,
    timeout: Duration,
) -> Result<Hello, ProbeError> {
    let dial = async {
        let conn = endpoint.connect(target.addr, &target.server_name)?.await?;
        let (send, recv) = conn.open_bi().await?;
        let (mut wr, mut rd) = framed(send, recv);
        wr.send(Frame::Hello(id.hello())).await?;
        let hello: Result<Hello, ReplError> = match next_frame(&mut rd).await {
            Ok(Frame::Hello(h)) => Ok(h),
            Ok(other) => Err(ReplError::NotHello(other.name())),
            Err(e) => Err(e),
        };
        Ok::<_, ReplError>((conn, wr, hello))
    };
    let (conn, mut wr, hello) =
        tokio::time::timeout(timeout, dial).await.map_err(|_| ProbeError::Timeout(timeout))??;
    // No POS_MAP: finish the stream, and let the primary end its side first so it sees a
    // closed session rather than a lost connection (bounded: this is outside `timeout`).
    let _ = tokio::time::timeout(LINGER, async {
        let _ = SinkExt::<Frame>::close(&mut wr).await;
        let _ = conn.closed().await;
    })
    .await;
    conn.close(0u32.into(), b"probe done");
    Ok(hello?)
}

/// What [`watch`] needs.
pub struct Watch {
    pub endpoint: quinn::Endpoint,
    /// The probe's identity ([`probe_identity`]); its node id is this node's.
    pub id: Identity,
    pub target: Target,
    /// The config key the target came from, for messages.
    pub key: &'static str,
    pub store: Arc<Store>,
}

/// Probes `w.target` every [`REPROBE_EVERY`] while the node runs. Stops once the probe
/// reaches this node itself (its own listener answers there: no other node can). On a
/// conflict the node goes read-only for good (until restarted): its advertised address
/// reaches another primary, so it is the misconfigured one, and its writes reach no
/// replica. The ERROR is repeated every [`REMIND_EVERY`] without probing again (each probe
/// costs the other primary two log lines), and each reminder makes the node read-only
/// again should anything have made it writable.
pub async fn watch(w: Watch) {
    let peer = loop {
        tokio::time::sleep(REPROBE_EVERY).await;
        match verdict(w.id.node_id, hello_at(&w.endpoint, &w.id, &w.target, PROBE_TIMEOUT).await) {
            Verdict::Itself => {
                tracing::debug!(addr = %w.target.addr, "the probe reached this node: done");
                return;
            }
            Verdict::Conflict(peer) => break peer,
            Verdict::NotPrimary(_) | Verdict::Nobody(_) => {}
        }
    };
    let mut reminders = 0u64;
    loop {
        w.store.node().set_writable(false);
        tracing::error!(
            addr = %w.target.addr,
            key = w.key,
            other = %peer,
            reminders,
            "another node answers as the primary at this node's advertised address: this node \
             is now read-only until restarted. Set `lease.candidate: false` on all but one \
             node (static lease)"
        );
        tokio::time::sleep(REMIND_EVERY).await;
        reminders += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::wire::{VERSION_MAX, VERSION_MIN};

    fn hello(node: u64, role: Role) -> Hello {
        Hello {
            version_min: VERSION_MIN,
            version_max: VERSION_MAX,
            cluster_id: ClusterId(9),
            node_id: NodeId(node),
            epoch: Epoch(1),
            role,
            hostname: "n1".into(),
            advertise_url: "http://n1:20202".into(),
        }
    }

    #[test]
    fn verdicts() {
        let me = NodeId(2);
        assert_eq!(verdict(me, Ok(hello(2, Role::Primary))), Verdict::Itself);
        assert!(matches!(
            verdict(me, Ok(hello(1, Role::Primary))),
            Verdict::Conflict(Peer { node_id: NodeId(1), .. })
        ));
        assert!(matches!(verdict(me, Ok(hello(1, Role::Replica))), Verdict::NotPrimary(_)));
        let timeout = Err(ProbeError::Timeout(PROBE_TIMEOUT));
        assert!(matches!(verdict(me, timeout), Verdict::Nobody(_)));
    }

    #[test]
    fn the_probe_passes_any_primarys_checks() {
        let me = Identity {
            cluster_id: ClusterId(5),
            node_id: NodeId(2),
            epoch: Epoch(7),
            role: Role::Primary,
            hostname: "n2".into(),
            advertise_url: String::new(),
        };
        let probe = probe_identity(&me);
        let h = probe.hello();
        for (cluster, epoch) in [(0, 0), (5, 1), (6, 9)] {
            let primary = Identity {
                cluster_id: ClusterId(cluster),
                epoch: Epoch(epoch),
                node_id: NodeId(1),
                ..me.clone()
            };
            let r = crate::core::session::check(&primary, &h);
            assert!(r.is_ok(), "cluster {cluster} epoch {epoch}");
        }
    }

    #[test]
    fn own_addresses() {
        let a = |s: &str| s.parse::<SocketAddr>().expect("literal address");
        assert!(is_own_address(a("127.0.0.1:5000"), a("127.0.0.1:5000")));
        assert!(is_own_address(a("127.0.0.1:5000"), a("0.0.0.0:5000")));
        assert!(!is_own_address(a("127.0.0.1:5001"), a("0.0.0.0:5000")));
        assert!(!is_own_address(a("127.0.0.1:5000"), a("127.0.0.2:5000")));
        // TEST-NET-1 is nobody's local address.
        assert!(!is_own_address(a("192.0.2.1:5000"), a("0.0.0.0:5000")));
    }
}
