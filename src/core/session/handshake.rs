//! The HELLO exchange (`protocol.md` §2 rules 1–4): the version both sides speak, whether the
//! peer belongs to this cluster, and whether its lease epoch may be followed (fencing).

use crate::core::types::{ClusterId, Epoch, NodeId};
use crate::core::wire::{ErrorCode, Hello, Role, VERSION_MAX, VERSION_MIN};

/// Who this node is, for HELLO. `epoch` is the primary's own term on a primary, and the
/// newest epoch this node has seen on a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub cluster_id: ClusterId,
    pub node_id: NodeId,
    pub epoch: Epoch,
    pub role: Role,
    pub hostname: String,
    pub advertise_url: String,
}

impl Identity {
    pub fn hello(&self) -> Hello {
        Hello {
            version_min: VERSION_MIN,
            version_max: VERSION_MAX,
            cluster_id: self.cluster_id,
            node_id: self.node_id,
            epoch: self.epoch,
            role: self.role,
            hostname: self.hostname.clone(),
            advertise_url: self.advertise_url.clone(),
        }
    }
}

/// Why a peer's HELLO is refused. Each is answered with ERROR [`Refusal::code`] and the
/// connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No protocol version in common (§8).
    #[error("peer speaks {min}..={max}, we {VERSION_MIN}..={VERSION_MAX}")]
    Version { min: u16, max: u16 },
    /// Both cluster ids are set and differ (§2 rule 3).
    #[error("cluster {peer} is not ours ({ours})")]
    Cluster { peer: ClusterId, ours: ClusterId },
    /// A primary from an older term than this node has seen (§2 rule 4): deposed.
    #[error("primary epoch {peer} is older than {seen}")]
    StalePrimary { peer: Epoch, seen: Epoch },
    /// This node is a primary and the peer has seen a newer term: this node is deposed.
    #[error("our epoch {ours} is older than the peer's {peer}")]
    StaleSelf { ours: Epoch, peer: Epoch },
}

impl Refusal {
    /// The ERROR code sent for it.
    pub fn code(&self) -> ErrorCode {
        match self {
            Refusal::Version { .. } => ErrorCode::UnsupportedVersion,
            Refusal::Cluster { .. } => ErrorCode::ClusterMismatch,
            Refusal::StalePrimary { .. } | Refusal::StaleSelf { .. } => ErrorCode::StaleEpoch,
        }
    }
}

/// What a HELLO accepted settles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    /// The highest version both speak.
    pub version: u16,
    /// This node has no cluster id and the peer has one: it adopts it (§2 rule 3) and keeps
    /// it (the shell writes `clusterid`).
    pub adopt_cluster: Option<ClusterId>,
}

/// Checks the peer's HELLO against this node's identity (`protocol.md` §2 rules 2–4).
pub fn check(local: &Identity, peer: &Hello) -> Result<Agreed, Refusal> {
    let lo = peer.version_min.max(VERSION_MIN);
    let hi = peer.version_max.min(VERSION_MAX);
    if lo > hi {
        return Err(Refusal::Version { min: peer.version_min, max: peer.version_max });
    }
    let (ours, theirs) = (local.cluster_id, peer.cluster_id);
    if ours.0 != 0 && theirs.0 != 0 && ours != theirs {
        return Err(Refusal::Cluster { peer: theirs, ours });
    }
    // Fencing: a primary's epoch must be the newest either side has seen; a replica that
    // lags in epochs is normal (it has not heard of the newest term yet).
    if peer.role == Role::Primary && peer.epoch < local.epoch {
        return Err(Refusal::StalePrimary { peer: peer.epoch, seen: local.epoch });
    }
    if local.role == Role::Primary && peer.epoch > local.epoch {
        return Err(Refusal::StaleSelf { ours: local.epoch, peer: peer.epoch });
    }
    let adopt_cluster = (ours.0 == 0 && theirs.0 != 0).then_some(theirs);
    Ok(Agreed { version: hi, adopt_cluster })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn id(role: Role, epoch: u64) -> Identity {
        Identity {
            cluster_id: ClusterId(0),
            node_id: NodeId(1),
            epoch: Epoch(epoch),
            role,
            hostname: "h".into(),
            advertise_url: String::new(),
        }
    }

    #[test]
    fn fencing_rules() {
        let (p5, r3, r7, p4) = (
            id(Role::Primary, 5),
            id(Role::Replica, 3),
            id(Role::Replica, 7),
            id(Role::Primary, 4),
        );
        // A replica behind in epochs follows the primary; the primary accepts it.
        assert!(check(&r3, &p5.hello()).is_ok());
        assert!(check(&p5, &r3.hello()).is_ok());
        // A replica that saw a newer term refuses an old primary, and the primary knows
        // it is stale.
        assert_eq!(check(&r7, &p5.hello()).unwrap_err().code(), ErrorCode::StaleEpoch);
        assert_eq!(check(&p5, &r7.hello()).unwrap_err().code(), ErrorCode::StaleEpoch);
        // Two primaries: the older one loses on both sides.
        assert_eq!(check(&p5, &p4.hello()).unwrap_err().code(), ErrorCode::StaleEpoch);
        assert_eq!(check(&p4, &p5.hello()).unwrap_err().code(), ErrorCode::StaleEpoch);
    }

    #[test]
    fn versions_and_clusters() {
        let r = id(Role::Replica, 1);
        let mut h = id(Role::Primary, 1).hello();
        assert_eq!(check(&r, &h).unwrap().version, VERSION_MAX);
        h.version_min = VERSION_MAX + 1;
        h.version_max = VERSION_MAX + 3;
        assert_eq!(check(&r, &h).unwrap_err().code(), ErrorCode::UnsupportedVersion);
        // Cluster ids: both set and different is refused; an unset one adopts the peer's.
        let mut h = id(Role::Primary, 1).hello();
        h.cluster_id = ClusterId(7);
        assert_eq!(check(&r, &h).unwrap().adopt_cluster, Some(ClusterId(7)));
        let ours = Identity { cluster_id: ClusterId(7), ..r.clone() };
        assert_eq!(check(&ours, &h).unwrap().adopt_cluster, None);
        let other = Identity { cluster_id: ClusterId(8), ..r.clone() };
        assert_eq!(check(&other, &h).unwrap_err().code(), ErrorCode::ClusterMismatch);
        h.cluster_id = ClusterId(0);
        assert_eq!(check(&other, &h).unwrap().adopt_cluster, None);
    }
}
