//! Wire errors and the codes carried by the ERROR frame (`protocol.md` §Errors).

/// Why a frame could not be decoded. Each variant maps to exactly one [`ErrorCode`] that the
/// receiver sends before closing the stream. "Need more bytes" is not an error: decoders
/// return `Ok(None)` for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge { len: usize, max: usize },
    #[error("empty frame (length 0)")]
    EmptyFrame,
    #[error("unknown frame type 0x{0:02x}")]
    UnknownFrameType(u8),
    #[error("{frame} frame truncated reading {what}")]
    Truncated { frame: &'static str, what: &'static str },
    #[error("{frame} frame has {extra} trailing bytes")]
    Trailing { frame: &'static str, extra: usize },
    #[error("{frame} frame: invalid {what}: {reason}")]
    InvalidField { frame: &'static str, what: &'static str, reason: &'static str },
    #[error("bad HELLO magic {0:02x?}")]
    BadMagic([u8; 4]),
}

/// Why a frame could not be encoded: a field out of the protocol's bounds. Encoding checks
/// the same limits decoding does, so we never send what a peer must reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode {frame}: {what} {reason}")]
pub struct EncodeError {
    pub frame: &'static str,
    pub what: &'static str,
    pub reason: &'static str,
}

/// Code carried by an ERROR frame. Unknown codes from a newer peer are kept as `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// No protocol version in common.
    UnsupportedVersion,
    /// The peer belongs to another cluster.
    ClusterMismatch,
    /// A frame carried a lease epoch older than one already seen (fencing).
    StaleEpoch,
    /// A frame exceeded the maximum frame length.
    FrameTooLarge,
    /// A frame was truncated, had trailing bytes or an invalid field.
    MalformedFrame,
    /// A frame type this version does not know.
    UnknownFrameType,
    /// The node asked to act as primary is not the primary.
    NotPrimary,
    /// A transferred LTX file failed verification.
    InvalidLtx,
    /// An LTX file does not apply at the receiver's position.
    PositionMismatch,
    /// A well-formed frame arrived in a state where it is not allowed.
    UnexpectedFrame,
    /// The sender hit an internal error.
    Internal,
    /// A code this version does not know.
    Other(u16),
}

impl ErrorCode {
    pub fn to_u16(self) -> u16 {
        match self {
            ErrorCode::UnsupportedVersion => 0x0001,
            ErrorCode::ClusterMismatch => 0x0002,
            ErrorCode::StaleEpoch => 0x0003,
            ErrorCode::FrameTooLarge => 0x0004,
            ErrorCode::MalformedFrame => 0x0005,
            ErrorCode::UnknownFrameType => 0x0006,
            ErrorCode::NotPrimary => 0x0007,
            ErrorCode::InvalidLtx => 0x0008,
            ErrorCode::PositionMismatch => 0x0009,
            ErrorCode::UnexpectedFrame => 0x000a,
            ErrorCode::Internal => 0x00ff,
            ErrorCode::Other(c) => c,
        }
    }

    pub fn from_u16(c: u16) -> ErrorCode {
        match c {
            0x0001 => ErrorCode::UnsupportedVersion,
            0x0002 => ErrorCode::ClusterMismatch,
            0x0003 => ErrorCode::StaleEpoch,
            0x0004 => ErrorCode::FrameTooLarge,
            0x0005 => ErrorCode::MalformedFrame,
            0x0006 => ErrorCode::UnknownFrameType,
            0x0007 => ErrorCode::NotPrimary,
            0x0008 => ErrorCode::InvalidLtx,
            0x0009 => ErrorCode::PositionMismatch,
            0x000a => ErrorCode::UnexpectedFrame,
            0x00ff => ErrorCode::Internal,
            c => ErrorCode::Other(c),
        }
    }
}

impl From<&DecodeError> for ErrorCode {
    fn from(e: &DecodeError) -> ErrorCode {
        match e {
            DecodeError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            DecodeError::UnknownFrameType(_) => ErrorCode::UnknownFrameType,
            DecodeError::EmptyFrame
            | DecodeError::Truncated { .. }
            | DecodeError::Trailing { .. }
            | DecodeError::InvalidField { .. }
            | DecodeError::BadMagic(_) => ErrorCode::MalformedFrame,
        }
    }
}
