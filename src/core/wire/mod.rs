//! The node-to-node wire protocol (`protocol.md`): frames, their byte encoding, error codes
//! and LTX transfer reassembly. Sans-IO: [`decode`] and [`encode`] work on `BytesMut`; the
//! `tokio_util` codec in `crate::net::codec` is a thin wrapper over them.

mod assemble;
mod error;
mod frame;

pub use assemble::{AssembleError, LtxAssembler, PREALLOC_CAP, Received};
pub use error::{DecodeError, EncodeError, ErrorCode};
pub use frame::{
    DEFAULT_MAX_FRAME_LEN, DbPos, FRAME_HEADER_LEN, Frame, HELLO_MAGIC, Hello, LtxBegin, LtxKind,
    MAX_CHUNK, MAX_HOSTNAME_LEN, MAX_LTX_SIZE, MAX_MESSAGE_LEN, MAX_NAME_LEN, MAX_POS_ENTRIES,
    MAX_TOKEN_LEN, MAX_URL_LEN, Role, VERSION_MAX, VERSION_MIN, decode, encode, frame_type,
    negotiate, valid_db_name,
};

#[cfg(test)]
mod tests;
