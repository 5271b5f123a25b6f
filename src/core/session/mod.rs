//! Replication sessions, sans IO (`protocol.md` §2, §5, §12): what each side of a QUIC
//! connection between a replica and its primary decides, driven by `handle_*` calls and
//! drained by `poll_*` calls, quinn-style.
//!
//! - [`handshake`]: HELLO checks (version, cluster, epoch fencing).
//! - [`replica::ReplicaSession`]: the replica's control stream: HELLO, POS_MAP, heartbeats,
//!   ACKs, handoff requests; [`replica::Run`] batches the files of one database stream.
//! - [`handoff::Handoff`]: the graceful handoff's steps on the primary (catch up, stop
//!   writes, final ACK, lease transaction) and when writes resume.
//! - [`primary::PrimarySession`]: the primary's control stream for one replica: HELLO,
//!   POS_MAP and the streams it starts, ACKs, heartbeats (silent once fenced), handoff
//!   requests; [`primary::Feed`] decides, per database stream, whether a live transaction
//!   goes out or the stream goes back to catch-up ([`crate::core::repl::plan`]).
//!
//! The shells (`src/repl/`) own the QUIC streams, the store and the clock: they feed frames
//! and time in, send what `poll_transmit` returns, act on `poll_event`, and call
//! `handle_timeout` at `poll_timeout`. A `handle_*` call that returns an error ends the
//! session: the shell first sends whatever `poll_transmit` still holds (the ERROR frame the
//! machine queued, if any), then closes the connection.

pub mod handoff;
pub mod handshake;
pub mod primary;
pub mod replica;
pub mod role;

use crate::core::types::Epoch;
use crate::core::wire::ErrorCode;

pub use handshake::{Agreed, Identity, Refusal, check};

/// Why a session ends. [`SessionError::code`] is the ERROR code this side sent for it, if
/// any.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// This side refused the peer's HELLO.
    #[error("HELLO refused: {0}")]
    Refused(#[from] Refusal),
    /// The peer sent ERROR.
    #[error("peer reported {code:?}: {message}")]
    Remote { code: ErrorCode, message: String },
    /// A frame not allowed in the session's state (§2 rule 8).
    #[error("unexpected {frame} {state}")]
    Unexpected { frame: &'static str, state: &'static str },
    /// A frame from an older term than this node has seen (§2 rule 4).
    #[error("frame from epoch {frame}, but epoch {seen} was seen")]
    StaleEpoch { frame: Epoch, seen: Epoch },
    /// The replica could not use a received file: `code` is INVALID_LTX, POSITION_MISMATCH
    /// or INTERNAL (its own failure).
    #[error("{message}")]
    Apply { code: ErrorCode, message: String },
    /// This node lost the lease: it cannot serve a replica (§2 rule 9).
    #[error("this node is not the primary")]
    NotPrimary,
    /// Two databases' files on one database stream (§1).
    #[error("a database stream carried {got} after {first}")]
    MixedStream { first: String, got: String },
}

impl SessionError {
    /// The ERROR code this side sends when the session ends with this error (`None`: the
    /// peer ended it, nothing to send).
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            SessionError::Refused(r) => Some(r.code()),
            SessionError::Remote { .. } => None,
            SessionError::Unexpected { .. } | SessionError::MixedStream { .. } => {
                Some(ErrorCode::UnexpectedFrame)
            }
            SessionError::StaleEpoch { .. } => Some(ErrorCode::StaleEpoch),
            SessionError::NotPrimary => Some(ErrorCode::NotPrimary),
            SessionError::Apply { code, .. } => Some(*code),
        }
    }
}

/// Fencing of frames that carry an epoch (LTX_BEGIN, HEARTBEAT, HANDOFF): one from a term
/// older than `seen`, the newest this node knows, comes from a deposed primary.
pub fn fence(frame: Epoch, seen: Epoch) -> Result<(), SessionError> {
    if frame < seen {
        return Err(SessionError::StaleEpoch { frame, seen });
    }
    Ok(())
}
