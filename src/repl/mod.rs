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
use crate::core::session::SessionError;
use std::time::Duration;

use crate::core::types::{Epoch, Millis, Pos};
use crate::core::wire::{ErrorCode, Frame, LtxBegin, LtxKind, MAX_CHUNK};
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
    #[error("LTX transfer: {0}")]
    Assemble(#[from] crate::core::wire::AssembleError),
    #[error("peer closed the stream")]
    Closed,
    /// A task of the session (a stream, a blocking file read) panicked or was cancelled.
    #[error("{what} task: {source}")]
    Task { what: &'static str, source: tokio::task::JoinError },
    /// The primary's address does not resolve, or is not a URL.
    #[error("primary address {0}")]
    Address(String),
    /// An LTX file to send is shorter than a header and trailer (read from disk).
    #[error("LTX file of {0} bytes is too short to send")]
    ShortFile(usize),
    /// A database on this node needs a snapshot: the session reconnects so the primary
    /// plans again without its position.
    #[error("a database needs a snapshot from the primary; reconnecting")]
    ResyncWanted,
    /// Database creations were announced faster than this session could follow: the
    /// replica reconnects and gets a stream for each.
    #[error("database creations missed; reconnect")]
    CreationsMissed,
    /// A probe's peer answered something other than HELLO.
    #[error("expected HELLO, got {0}")]
    NotHello(&'static str),
    /// The TLS configuration could not be built.
    #[error("TLS: {0}")]
    Tls(String),
    /// The session machine ended the session (`crate::core::session`).
    #[error("{0}")]
    Session(#[from] SessionError),
    #[error("peer reported {code:?}: {message}")]
    Remote { code: ErrorCode, message: String },
    #[error("database: {0}")]
    Db(#[from] crate::db::DbError),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl ReplError {
    /// The ERROR code this side sends the peer when a session ends with this error
    /// (`protocol.md` §6); `None` when the peer or the connection ended it.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ReplError::Codec(e) => e.code(),
            ReplError::Assemble(e) => Some(ErrorCode::from(e)),
            ReplError::Session(e) => e.code(),
            // A received file that does not continue this database: the histories differ.
            ReplError::Db(crate::db::DbError::Diverged(_)) => Some(ErrorCode::PositionMismatch),
            ReplError::Db(_) => Some(ErrorCode::InvalidLtx),
            ReplError::Task { .. }
            | ReplError::Address(_)
            | ReplError::ShortFile(_)
            | ReplError::ResyncWanted
            | ReplError::CreationsMissed
            | ReplError::Tls(_)
            | ReplError::Store(_)
            | ReplError::Io(_) => Some(ErrorCode::Internal),
            ReplError::NotHello(_) => Some(ErrorCode::UnexpectedFrame),
            ReplError::Connection(_)
            | ReplError::Connect(_)
            | ReplError::Write(_)
            | ReplError::Closed
            | ReplError::Remote { .. } => None,
        }
    }
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

pub use crate::core::session::Identity;

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
    db: &crate::db::Db,
    epoch: Epoch,
    ltx: Bytes,
    resync: bool,
) -> Result<(), ReplError> {
    let (h, _) = file_pos(&ltx).ok_or(ReplError::ShortFile(ltx.len()))?;
    let kind = LtxKind::of(&h, resync);
    db.metrics().sent(ltx.len(), matches!(kind, LtxKind::Snapshot | LtxKind::Resync));
    let begin = LtxBegin {
        name: db.name().to_owned(),
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

/// Unix milliseconds ([`crate::clock::wall_ms`]).
pub fn now_ms() -> i64 {
    crate::clock::wall_ms()
}

/// Sends every frame a session machine queued (`next` is its `poll_transmit`), then flushes.
pub(crate) async fn send_queued(
    wr: &mut Writer,
    mut next: impl FnMut() -> Option<Frame>,
) -> Result<(), ReplError> {
    let mut any = false;
    while let Some(f) = next() {
        wr.feed(f).await?;
        any = true;
    }
    if any {
        SinkExt::<Frame>::flush(wr).await?;
    }
    Ok(())
}

/// Sleeps until the node's monotonic clock reads `at` (forever for `None`).
pub(crate) async fn sleep_until(node: &crate::node::NodeCtx, at: Option<Millis>) {
    match at {
        Some(at) => {
            tokio::time::sleep(Duration::from_millis(at.since(Millis(node.now_ms())))).await
        }
        None => std::future::pending().await,
    }
}

/// Ends the session on `e`: sends the frames the machine still queued (the ERROR it decided
/// on), or else ERROR with the code for a failure of this side (a file it could not apply,
/// a malformed frame); best effort.
///
/// Hazard: closing the connection right after writing discards what the peer has not
/// received yet, so it would see "connection lost" instead of the reason. After an ERROR the
/// stream is finished and the peer, which closes on ERROR, is given up to a second to do so.
pub(crate) async fn end_with(
    conn: &quinn::Connection,
    mut frames: Vec<Frame>,
    wr: &mut Writer,
    e: &ReplError,
) {
    if !frames.iter().any(|f| matches!(f, Frame::Error { .. }))
        && let Some(code) = e.code()
    {
        frames.push(Frame::Error { code, message: e.to_string() });
    }
    let error = frames.iter().any(|f| matches!(f, Frame::Error { .. }));
    for f in frames {
        if wr.feed(f).await.is_err() {
            return;
        }
    }
    if SinkExt::<Frame>::flush(wr).await.is_err() || !error {
        return;
    }
    let _ = wr.get_mut().finish();
    let _ = tokio::time::timeout(ERROR_LINGER, conn.closed()).await;
}

/// How long a side that sent ERROR waits for its peer to close (see [`end_with`]).
const ERROR_LINGER: Duration = Duration::from_secs(1);
