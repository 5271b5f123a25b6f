//! Replication over QUIC: the primary's server ([`primary`]) and the replica's client
//! ([`replica`]), thin shells around [`crate::core::repl`] and [`crate::core::wire`]. The
//! session and frames are specified in `protocol.md`.

pub mod link;
pub mod primary;
pub mod probe;
pub mod replica;
pub mod supervisor;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::core::ltx::{HEADER_SIZE, Header, TRAILER_SIZE, Trailer};
use crate::core::types::{ClusterId, Epoch, NodeId, Pos};
use crate::core::wire::{
    ErrorCode, Frame, Hello, LtxBegin, LtxKind, MAX_CHUNK, Role, VERSION_MAX, VERSION_MIN,
};
use crate::net::codec::{CodecError, FrameCodec};

/// Errors of a replication session; each ends the session (the replica reconnects).
#[derive(Debug, thiserror::Error)]
pub enum ReplError {
    #[error("QUIC connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("QUIC connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    #[error("QUIC stream: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("frame: {0}")]
    Codec(#[from] CodecError),
    #[error("peer closed the stream")]
    Closed,
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("stale epoch: {0}")]
    StaleEpoch(String),
    #[error("peer reported {code:?}: {message}")]
    Remote { code: ErrorCode, message: String },
    #[error("database: {0}")]
    Db(#[from] crate::db::DbError),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

pub type Reader = FramedRead<quinn::RecvStream, FrameCodec>;
pub type Writer = FramedWrite<quinn::SendStream, FrameCodec>;

pub fn framed(send: quinn::SendStream, recv: quinn::RecvStream) -> (Writer, Reader) {
    (FramedWrite::new(send, FrameCodec::default()), FramedRead::new(recv, FrameCodec::default()))
}

/// The next frame, or an error for end of stream and for ERROR frames.
pub async fn next_frame(rd: &mut Reader) -> Result<Frame, ReplError> {
    match rd.next().await {
        Some(Ok(Frame::Error { code, message })) => Err(ReplError::Remote { code, message }),
        Some(Ok(f)) => Ok(f),
        Some(Err(e)) => Err(e.into()),
        None => Err(ReplError::Closed),
    }
}

/// Who this node is, for HELLO.
#[derive(Debug, Clone)]
pub struct Identity {
    pub cluster_id: ClusterId,
    pub node_id: NodeId,
    pub epoch: Epoch,
    pub role: Role,
    pub hostname: String,
    pub advertise_url: String,
}

impl Identity {
    pub fn hello(&self) -> Frame {
        Frame::Hello(Hello {
            version_min: VERSION_MIN,
            version_max: VERSION_MAX,
            cluster_id: self.cluster_id,
            node_id: self.node_id,
            epoch: self.epoch,
            role: self.role,
            hostname: self.hostname.clone(),
            advertise_url: self.advertise_url.clone(),
        })
    }

    /// Checks a peer's HELLO (`protocol.md` §2 rules 2–4); the error code to send back on
    /// refusal.
    pub fn check(&self, h: &Hello) -> Result<(), (ErrorCode, String)> {
        let lo = h.version_min.max(VERSION_MIN);
        let hi = h.version_max.min(VERSION_MAX);
        if lo > hi {
            return Err((
                ErrorCode::UnsupportedVersion,
                format!(
                    "peer speaks {}..={}, we {VERSION_MIN}..={VERSION_MAX}",
                    h.version_min, h.version_max
                ),
            ));
        }
        if self.cluster_id.0 != 0 && h.cluster_id.0 != 0 && self.cluster_id != h.cluster_id {
            return Err((
                ErrorCode::ClusterMismatch,
                format!("cluster {} is not ours ({})", h.cluster_id, self.cluster_id),
            ));
        }
        // Fencing (`protocol.md` §2 rule 4): a primary's epoch must be the newest either side
        // has seen; a replica that lags in epochs is normal.
        if h.role == Role::Primary && h.epoch < self.epoch {
            return Err((
                ErrorCode::StaleEpoch,
                format!("primary epoch {} is older than {}", h.epoch.0, self.epoch.0),
            ));
        }
        if self.role == Role::Primary && h.epoch > self.epoch {
            return Err((
                ErrorCode::StaleEpoch,
                format!("our epoch {} is older than the peer's {}", self.epoch.0, h.epoch.0),
            ));
        }
        Ok(())
    }
}

/// Position after an LTX file, from its header and trailer.
pub fn file_pos(ltx: &[u8]) -> Option<(Header, Pos)> {
    if ltx.len() < HEADER_SIZE + TRAILER_SIZE {
        return None;
    }
    let h = Header::decode(ltx[..HEADER_SIZE].try_into().ok()?).ok()?;
    let t = Trailer::decode(ltx[ltx.len() - TRAILER_SIZE..].try_into().ok()?);
    Some((h, Pos { txid: h.max_txid, checksum: t.post_apply_checksum }))
}

/// Sends one LTX file as LTX_BEGIN, LTX_CHUNK…, LTX_END; a snapshot as a resync if
/// `resync` (the replica's history is not the primary's).
pub async fn send_ltx(
    wr: &mut Writer,
    name: &str,
    epoch: Epoch,
    ltx: Bytes,
    resync: bool,
) -> Result<(), ReplError> {
    let (h, _) = file_pos(&ltx).ok_or_else(|| ReplError::Protocol("short LTX file".into()))?;
    let kind = if h.commit == 0 {
        LtxKind::Deletion
    } else if h.is_snapshot() && resync {
        LtxKind::Resync
    } else if h.is_snapshot() {
        LtxKind::Snapshot
    } else {
        LtxKind::Incremental
    };
    let begin = LtxBegin {
        name: name.to_owned(),
        epoch,
        kind,
        min_txid: h.min_txid,
        max_txid: h.max_txid,
        size: ltx.len() as u64,
    };
    let mut t = [0u8; 8];
    t.copy_from_slice(&ltx[ltx.len() - 8..]);
    wr.feed(Frame::LtxBegin(begin)).await?;
    let mut off = 0;
    while off < ltx.len() {
        let end = (off + MAX_CHUNK).min(ltx.len());
        wr.feed(Frame::LtxChunk(ltx.slice(off..end))).await?;
        off = end;
    }
    let file_checksum = crate::core::types::Checksum(u64::from_be_bytes(t));
    wr.send(Frame::LtxEnd { file_checksum }).await?;
    Ok(())
}

#[allow(clippy::disallowed_methods)]
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(role: Role, epoch: u64) -> Identity {
        Identity {
            cluster_id: ClusterId(0),
            node_id: NodeId(1),
            epoch: Epoch(epoch),
            role,
            hostname: "h".into(),
            advertise_url: String::new(),
        }
    }

    fn hello(i: &Identity) -> Hello {
        match i.hello() {
            Frame::Hello(h) => h,
            _ => unreachable!(),
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
        assert!(r3.check(&hello(&p5)).is_ok());
        assert!(p5.check(&hello(&r3)).is_ok());
        // A replica that saw a newer term refuses an old primary, and the primary knows
        // it is stale.
        assert_eq!(r7.check(&hello(&p5)).unwrap_err().0, ErrorCode::StaleEpoch);
        assert_eq!(p5.check(&hello(&r7)).unwrap_err().0, ErrorCode::StaleEpoch);
        // Two primaries: the older one loses on both sides.
        assert_eq!(p5.check(&hello(&p4)).unwrap_err().0, ErrorCode::StaleEpoch);
        assert_eq!(p4.check(&hello(&p5)).unwrap_err().0, ErrorCode::StaleEpoch);
    }
}
