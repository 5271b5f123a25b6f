//! `tokio_util` codec over [`crate::core::wire`]: put a `FramedRead`/`FramedWrite` on a QUIC
//! (or any `AsyncRead`/`AsyncWrite`) stream. All decisions live in the core functions.

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::core::wire::{self, DEFAULT_MAX_FRAME_LEN, DecodeError, EncodeError, ErrorCode, Frame};

/// Errors of a framed stream. A decode error ends the stream; [`CodecError::code`] gives the
/// code to send in the ERROR frame before closing.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed frame: {0}")]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

impl CodecError {
    /// The ERROR frame code for this failure, if the peer should be told.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            CodecError::Decode(e) => Some(ErrorCode::from(e)),
            CodecError::Io(_) | CodecError::Encode(_) => None,
        }
    }
}

/// Frames over a byte stream.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    max_frame_len: usize,
}

impl FrameCodec {
    pub fn new(max_frame_len: usize) -> FrameCodec {
        FrameCodec { max_frame_len }
    }
}

impl Default for FrameCodec {
    fn default() -> FrameCodec {
        FrameCodec::new(DEFAULT_MAX_FRAME_LEN)
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        Ok(wire::decode(src, self.max_frame_len)?)
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        Ok(wire::encode(&frame, dst)?)
    }
}

impl Encoder<&Frame> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        Ok(wire::encode(frame, dst)?)
    }
}
