//! Reassembling an LTX file from LTX_BEGIN, LTX_CHUNK… and LTX_END (`protocol.md` §LTX
//! transfer).
//!
//! The assembler counts bytes against the size LTX_BEGIN announced: a chunk that would exceed
//! it, an END before every byte arrived, a chunk or END without a BEGIN, or a BEGIN in the
//! middle of a transfer are errors. It reserves at most [`PREALLOC_CAP`] up front, so an
//! announced size never forces an allocation the bytes themselves don't pay for. It does not
//! verify the file: hand the result to `core::ltx::verify`.

use bytes::{Bytes, BytesMut};

use super::error::ErrorCode;
use super::frame::{Frame, LtxBegin};
use crate::core::types::Checksum;

/// Most bytes reserved before any chunk arrives.
pub const PREALLOC_CAP: u64 = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssembleError {
    #[error("LTX_BEGIN for {name:?} while a transfer of {current:?} is in progress")]
    BeginDuringTransfer { name: String, current: String },
    #[error("{0} without LTX_BEGIN")]
    NoTransfer(&'static str),
    #[error("chunk brings {got} bytes past the announced {size}")]
    Overflow { size: u64, got: u64 },
    #[error("LTX_END after {got} of {size} announced bytes")]
    Short { size: u64, got: u64 },
    #[error("LTX_END checksum {end} differs from the file trailer's {trailer}")]
    ChecksumMismatch { end: Checksum, trailer: Checksum },
    #[error("{0} is not part of an LTX transfer")]
    NotTransferFrame(&'static str),
}

/// `protocol.md` §5: counting errors are malformed transfers, ordering errors unexpected frames.
impl From<&AssembleError> for ErrorCode {
    fn from(e: &AssembleError) -> ErrorCode {
        match e {
            AssembleError::Overflow { .. }
            | AssembleError::Short { .. }
            | AssembleError::ChecksumMismatch { .. } => ErrorCode::MalformedFrame,
            AssembleError::BeginDuringTransfer { .. }
            | AssembleError::NoTransfer(_)
            | AssembleError::NotTransferFrame(_) => ErrorCode::UnexpectedFrame,
        }
    }
}

/// A whole LTX file received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub begin: LtxBegin,
    pub file: Bytes,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct LtxAssembler {
    current: Option<(LtxBegin, BytesMut)>,
}

impl LtxAssembler {
    pub fn new() -> LtxAssembler {
        LtxAssembler::default()
    }

    /// Whether a transfer is in progress.
    pub fn in_progress(&self) -> bool {
        self.current.is_some()
    }

    /// Feeds one transfer frame. Returns the file when LTX_END completes it. After an error
    /// the partial transfer is dropped.
    pub fn handle(&mut self, frame: Frame) -> Result<Option<Received>, AssembleError> {
        let res = self.step(frame);
        if res.is_err() {
            self.current = None;
        }
        res
    }

    fn step(&mut self, frame: Frame) -> Result<Option<Received>, AssembleError> {
        match frame {
            Frame::LtxBegin(begin) => {
                if let Some((cur, _)) = &self.current {
                    return Err(AssembleError::BeginDuringTransfer {
                        name: begin.name,
                        current: cur.name.clone(),
                    });
                }
                // invariant: PREALLOC_CAP fits in usize on every supported target.
                let cap = begin.size.min(PREALLOC_CAP) as usize;
                self.current = Some((begin, BytesMut::with_capacity(cap)));
                Ok(None)
            }
            Frame::LtxChunk(data) => {
                let Some((begin, buf)) = self.current.as_mut() else {
                    return Err(AssembleError::NoTransfer("LTX_CHUNK"));
                };
                let got = buf.len() as u64 + data.len() as u64;
                if got > begin.size {
                    return Err(AssembleError::Overflow { size: begin.size, got });
                }
                buf.extend_from_slice(&data);
                Ok(None)
            }
            Frame::LtxEnd { file_checksum } => {
                let Some((begin, buf)) = self.current.take() else {
                    return Err(AssembleError::NoTransfer("LTX_END"));
                };
                let got = buf.len() as u64;
                if got != begin.size {
                    return Err(AssembleError::Short { size: begin.size, got });
                }
                // The file checksum is the last 8 bytes of an LTX file. Files too short to
                // have one are left for the LTX decoder to reject.
                if buf.len() >= 8 {
                    let mut t = [0u8; 8];
                    t.copy_from_slice(&buf[buf.len() - 8..]);
                    let trailer = Checksum(u64::from_be_bytes(t));
                    if trailer != file_checksum {
                        return Err(AssembleError::ChecksumMismatch {
                            end: file_checksum,
                            trailer,
                        });
                    }
                }
                Ok(Some(Received { begin, file: buf.freeze() }))
            }
            other => Err(AssembleError::NotTransferFrame(other.name())),
        }
    }
}
