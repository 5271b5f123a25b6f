//! Frames: the message type of the wire protocol, and its byte encoding (`protocol.md`
//! §Frames). Every frame is `u32 length ‖ u8 type ‖ payload`, big-endian, where `length`
//! counts the type byte and the payload.
//!
//! Decoding bounds the frame length before reserving anything, reads fields through a cursor
//! that reports what was truncated, bounds every string and count against both a protocol
//! limit and the bytes actually present, and rejects trailing bytes.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::error::{DecodeError, EncodeError, ErrorCode};
use crate::core::types::{Checksum, ClusterId, Epoch, NodeId, Pos, Txid};

/// Bytes before the payload: length (4) and type (1).
pub const FRAME_HEADER_LEN: usize = 5;
/// Default maximum of the length field: one maximal LTX chunk plus room for the type byte.
pub const DEFAULT_MAX_FRAME_LEN: usize = MAX_CHUNK + 1;
/// Largest LTX_CHUNK payload.
pub const MAX_CHUNK: usize = 256 * 1024;
/// Largest LTX file announced by LTX_BEGIN (1 TiB).
pub const MAX_LTX_SIZE: u64 = 1 << 40;
/// Largest database name, in bytes.
pub const MAX_NAME_LEN: usize = 255;
/// Largest hostname, in bytes.
pub const MAX_HOSTNAME_LEN: usize = 255;
/// Largest advertise URL, in bytes.
pub const MAX_URL_LEN: usize = 1024;
/// Largest ERROR message, in bytes.
pub const MAX_MESSAGE_LEN: usize = 1024;
/// Largest HANDOFF token, in bytes.
pub const MAX_TOKEN_LEN: usize = 255;
/// Most entries in one POS_MAP.
pub const MAX_POS_ENTRIES: usize = 65_536;
/// The HELLO magic.
pub const HELLO_MAGIC: [u8; 4] = *b"LFLT";
/// Protocol versions this build speaks.
pub const VERSION_MIN: u16 = 1;
pub const VERSION_MAX: u16 = 1;

/// Frame type bytes (`protocol.md` §Frame types).
pub mod frame_type {
    pub const HELLO: u8 = 0x01;
    pub const POS_MAP: u8 = 0x02;
    pub const LTX_BEGIN: u8 = 0x03;
    pub const LTX_CHUNK: u8 = 0x04;
    pub const LTX_END: u8 = 0x05;
    pub const READY: u8 = 0x06;
    pub const HEARTBEAT: u8 = 0x07;
    pub const ACK: u8 = 0x08;
    pub const HANDOFF: u8 = 0x09;
    pub const ERROR: u8 = 0x0a;
}

/// The role a node announces in HELLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Replica,
    Primary,
    Candidate,
}

impl Role {
    fn to_u8(self) -> u8 {
        match self {
            Role::Replica => 0,
            Role::Primary => 1,
            Role::Candidate => 2,
        }
    }
}

/// HELLO: the first frame in each direction of a control stream (`protocol.md` §HELLO).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub version_min: u16,
    pub version_max: u16,
    pub cluster_id: ClusterId,
    pub node_id: NodeId,
    pub epoch: Epoch,
    pub role: Role,
    pub hostname: String,
    pub advertise_url: String,
}

/// One database's position in a POS_MAP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbPos {
    pub name: String,
    pub pos: Pos,
}

/// What kind of LTX file an LTX_BEGIN announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LtxKind {
    Incremental,
    Snapshot,
    Deletion,
    /// A snapshot replacing a history that is not the primary's: the replica sets its own
    /// LTX files aside before applying it (`protocol.md` §5.2).
    Resync,
}

impl LtxKind {
    /// The kind an LTX file with header `h` is sent as: a deletion (Commit 0), a snapshot
    /// (MinTXID 1; a resync when `resync`: the replica's history is not the primary's), or
    /// an incremental file. The receiver checks that it agrees with the header (§5 rule 5).
    pub fn of(h: &crate::core::ltx::Header, resync: bool) -> LtxKind {
        if h.is_deletion() {
            LtxKind::Deletion
        } else if h.is_snapshot() && resync {
            LtxKind::Resync
        } else if h.is_snapshot() {
            LtxKind::Snapshot
        } else {
            LtxKind::Incremental
        }
    }

    /// Whether the file is a snapshot (MinTXID 1, every page).
    pub fn is_snapshot(self) -> bool {
        matches!(self, LtxKind::Snapshot | LtxKind::Resync)
    }
}

/// LTX_BEGIN: starts the transfer of one LTX file on a database stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LtxBegin {
    pub name: String,
    pub epoch: Epoch,
    pub kind: LtxKind,
    pub min_txid: Txid,
    pub max_txid: Txid,
    /// Exact length of the LTX file in bytes.
    pub size: u64,
}

/// A protocol message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Hello(Hello),
    /// The replica's positions, sorted by name, no duplicates.
    PosMap(Vec<DbPos>),
    LtxBegin(LtxBegin),
    /// 1..=[`MAX_CHUNK`] bytes of the file announced by the last LTX_BEGIN.
    LtxChunk(Bytes),
    /// Ends a transfer; carries the LTX trailer's file checksum.
    LtxEnd {
        file_checksum: Checksum,
    },
    /// The primary has sent every database once: the replica is in sync.
    Ready {
        epoch: Epoch,
    },
    Heartbeat {
        epoch: Epoch,
        time_ms: i64,
    },
    /// The replica has durably applied `pos` of database `name`.
    Ack {
        name: String,
        pos: Pos,
    },
    /// The primary hands its lease to `target`.
    Handoff {
        epoch: Epoch,
        target: NodeId,
        token: String,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
}

impl Frame {
    pub fn type_byte(&self) -> u8 {
        use frame_type::*;
        match self {
            Frame::Hello(_) => HELLO,
            Frame::PosMap(_) => POS_MAP,
            Frame::LtxBegin(_) => LTX_BEGIN,
            Frame::LtxChunk(_) => LTX_CHUNK,
            Frame::LtxEnd { .. } => LTX_END,
            Frame::Ready { .. } => READY,
            Frame::Heartbeat { .. } => HEARTBEAT,
            Frame::Ack { .. } => ACK,
            Frame::Handoff { .. } => HANDOFF,
            Frame::Error { .. } => ERROR,
        }
    }

    pub fn name(&self) -> &'static str {
        type_name(self.type_byte())
    }
}

fn type_name(t: u8) -> &'static str {
    use frame_type::*;
    match t {
        HELLO => "HELLO",
        POS_MAP => "POS_MAP",
        LTX_BEGIN => "LTX_BEGIN",
        LTX_CHUNK => "LTX_CHUNK",
        LTX_END => "LTX_END",
        READY => "READY",
        HEARTBEAT => "HEARTBEAT",
        ACK => "ACK",
        HANDOFF => "HANDOFF",
        ERROR => "ERROR",
        _ => "UNKNOWN",
    }
}

/// The highest version both ranges contain.
pub fn negotiate(local: (u16, u16), peer: (u16, u16)) -> Option<u16> {
    let hi = local.1.min(peer.1);
    let lo = local.0.max(peer.0);
    (lo <= hi).then_some(hi)
}

/// Whether `name` may name a database: 1..=255 bytes, no `/` or NUL, not `.` or `..`.
pub fn valid_db_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("is longer than 255 bytes");
    }
    if name.contains(['/', '\0']) {
        return Err("contains '/' or NUL");
    }
    if name == "." || name == ".." {
        return Err("is '.' or '..'");
    }
    Ok(())
}

// ===== Encoding ===== //

/// Appends the encoding of `frame` to `dst`.
pub fn encode(frame: &Frame, dst: &mut BytesMut) -> Result<(), EncodeError> {
    let start = dst.len();
    dst.put_u32(0); // patched below
    dst.put_u8(frame.type_byte());
    let res = encode_payload(frame, dst);
    if let Err(e) = res {
        dst.truncate(start);
        return Err(e);
    }
    let len = dst.len() - start - 4;
    // invariant: payloads are bounded far below u32::MAX by the checks in encode_payload.
    dst[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

fn put_str(
    dst: &mut BytesMut,
    s: &str,
    max: usize,
    frame: &'static str,
    what: &'static str,
) -> Result<(), EncodeError> {
    if s.len() > max {
        return Err(EncodeError { frame, what, reason: "is too long" });
    }
    dst.put_u16(s.len() as u16);
    dst.put_slice(s.as_bytes());
    Ok(())
}

fn put_name(dst: &mut BytesMut, name: &str, frame: &'static str) -> Result<(), EncodeError> {
    valid_db_name(name).map_err(|reason| EncodeError { frame, what: "database name", reason })?;
    put_str(dst, name, MAX_NAME_LEN, frame, "database name")
}

fn encode_payload(frame: &Frame, dst: &mut BytesMut) -> Result<(), EncodeError> {
    let f = frame.name();
    match frame {
        Frame::Hello(h) => {
            dst.put_slice(&HELLO_MAGIC);
            dst.put_u16(h.version_min);
            dst.put_u16(h.version_max);
            dst.put_u64(h.cluster_id.0);
            dst.put_u64(h.node_id.0);
            dst.put_u64(h.epoch.0);
            dst.put_u8(h.role.to_u8());
            dst.put_u32(0); // flags: none defined in version 1
            put_str(dst, &h.hostname, MAX_HOSTNAME_LEN, f, "hostname")?;
            put_str(dst, &h.advertise_url, MAX_URL_LEN, f, "advertise URL")?;
        }
        Frame::PosMap(entries) => {
            if entries.len() > MAX_POS_ENTRIES {
                return Err(EncodeError { frame: f, what: "entry count", reason: "exceeds 65536" });
            }
            if entries.windows(2).any(|w| w[0].name.as_bytes() >= w[1].name.as_bytes()) {
                return Err(EncodeError {
                    frame: f,
                    what: "entries",
                    reason: "are not sorted by name without duplicates",
                });
            }
            dst.put_u32(entries.len() as u32);
            for e in entries {
                put_name(dst, &e.name, f)?;
                dst.put_u64(e.pos.txid.0);
                dst.put_u64(e.pos.checksum.0);
            }
        }
        Frame::LtxBegin(b) => {
            if b.size > MAX_LTX_SIZE {
                return Err(EncodeError { frame: f, what: "size", reason: "exceeds 1 TiB" });
            }
            put_name(dst, &b.name, f)?;
            dst.put_u64(b.epoch.0);
            dst.put_u8(match b.kind {
                LtxKind::Incremental => 0,
                LtxKind::Snapshot => 1,
                LtxKind::Deletion => 2,
                LtxKind::Resync => 3,
            });
            dst.put_u64(b.min_txid.0);
            dst.put_u64(b.max_txid.0);
            dst.put_u64(b.size);
        }
        Frame::LtxChunk(data) => {
            if data.is_empty() || data.len() > MAX_CHUNK {
                return Err(EncodeError {
                    frame: f,
                    what: "chunk",
                    reason: "is empty or over 256 KiB",
                });
            }
            dst.put_slice(data);
        }
        Frame::LtxEnd { file_checksum } => dst.put_u64(file_checksum.0),
        Frame::Ready { epoch } => dst.put_u64(epoch.0),
        Frame::Heartbeat { epoch, time_ms } => {
            dst.put_u64(epoch.0);
            dst.put_i64(*time_ms);
        }
        Frame::Ack { name, pos } => {
            put_name(dst, name, f)?;
            dst.put_u64(pos.txid.0);
            dst.put_u64(pos.checksum.0);
        }
        Frame::Handoff { epoch, target, token } => {
            dst.put_u64(epoch.0);
            dst.put_u64(target.0);
            put_str(dst, token, MAX_TOKEN_LEN, f, "token")?;
        }
        Frame::Error { code, message } => {
            dst.put_u16(code.to_u16());
            put_str(dst, message, MAX_MESSAGE_LEN, f, "message")?;
        }
    }
    Ok(())
}

// ===== Decoding ===== //

/// Decodes one frame from the front of `src`.
///
/// - `Ok(None)`: `src` holds less than one frame. Nothing is consumed; `src` may have been
///   reserved up to the announced frame size, which is at most `max_frame_len + 4`.
/// - `Ok(Some(frame))`: exactly that frame's bytes were consumed.
/// - `Err(_)`: the stream is unusable; the caller sends ERROR with the mapped code and
///   closes it.
pub fn decode(src: &mut BytesMut, max_frame_len: usize) -> Result<Option<Frame>, DecodeError> {
    if src.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
    if len == 0 {
        return Err(DecodeError::EmptyFrame);
    }
    // Bound before reserving: a hostile length must not make us allocate.
    if len > max_frame_len {
        return Err(DecodeError::FrameTooLarge { len, max: max_frame_len });
    }
    if src.len() < 4 + len {
        src.reserve(4 + len - src.len());
        return Ok(None);
    }
    src.advance(4);
    let mut body = src.split_to(len).freeze();
    let t = body.get_u8();
    decode_payload(t, body).map(Some)
}

/// A cursor over one frame's payload that names what it failed to read.
struct Reader {
    buf: Bytes,
    frame: &'static str,
}

impl Reader {
    fn need(&self, n: usize, what: &'static str) -> Result<(), DecodeError> {
        if self.buf.remaining() < n {
            return Err(DecodeError::Truncated { frame: self.frame, what });
        }
        Ok(())
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        self.need(1, what)?;
        Ok(self.buf.get_u8())
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        self.need(2, what)?;
        Ok(self.buf.get_u16())
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        self.need(4, what)?;
        Ok(self.buf.get_u32())
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        self.need(8, what)?;
        Ok(self.buf.get_u64())
    }

    fn invalid(&self, what: &'static str, reason: &'static str) -> DecodeError {
        DecodeError::InvalidField { frame: self.frame, what, reason }
    }

    /// `u16 len ‖ UTF-8 bytes`, at most `max` bytes.
    fn string(&mut self, max: usize, what: &'static str) -> Result<String, DecodeError> {
        let len = self.u16(what)? as usize;
        if len > max {
            return Err(self.invalid(what, "is too long"));
        }
        self.need(len, what)?;
        let bytes = self.buf.split_to(len);
        String::from_utf8(bytes.to_vec()).map_err(|_| self.invalid(what, "is not UTF-8"))
    }

    fn name(&mut self) -> Result<String, DecodeError> {
        let name = self.string(MAX_NAME_LEN, "database name")?;
        valid_db_name(&name).map_err(|reason| self.invalid("database name", reason))?;
        Ok(name)
    }

    fn pos(&mut self) -> Result<Pos, DecodeError> {
        Ok(Pos { txid: Txid(self.u64("txid")?), checksum: Checksum(self.u64("checksum")?) })
    }

    fn end(self) -> Result<(), DecodeError> {
        match self.buf.remaining() {
            0 => Ok(()),
            extra => Err(DecodeError::Trailing { frame: self.frame, extra }),
        }
    }
}

fn decode_payload(t: u8, buf: Bytes) -> Result<Frame, DecodeError> {
    use frame_type::*;
    let mut r = Reader { buf, frame: type_name(t) };
    let frame = match t {
        HELLO => {
            r.need(4, "magic")?;
            let mut magic = [0u8; 4];
            r.buf.copy_to_slice(&mut magic);
            if magic != HELLO_MAGIC {
                return Err(DecodeError::BadMagic(magic));
            }
            let version_min = r.u16("version min")?;
            let version_max = r.u16("version max")?;
            if version_min > version_max {
                return Err(r.invalid("versions", "min is above max"));
            }
            let cluster_id = ClusterId(r.u64("cluster id")?);
            let node_id = NodeId(r.u64("node id")?);
            let epoch = Epoch(r.u64("epoch")?);
            let role = match r.u8("role")? {
                0 => Role::Replica,
                1 => Role::Primary,
                2 => Role::Candidate,
                _ => return Err(r.invalid("role", "is not 0, 1 or 2")),
            };
            if r.u32("flags")? != 0 {
                return Err(r.invalid("flags", "has bits no version-1 flag defines"));
            }
            let hostname = r.string(MAX_HOSTNAME_LEN, "hostname")?;
            let advertise_url = r.string(MAX_URL_LEN, "advertise URL")?;
            Frame::Hello(Hello {
                version_min,
                version_max,
                cluster_id,
                node_id,
                epoch,
                role,
                hostname,
                advertise_url,
            })
        }
        POS_MAP => {
            let count = r.u32("entry count")? as usize;
            if count > MAX_POS_ENTRIES {
                return Err(r.invalid("entry count", "exceeds 65536"));
            }
            // Each entry takes at least 2 + 16 bytes: bound the allocation by what is here.
            if count > r.buf.remaining() / 18 {
                return Err(DecodeError::Truncated { frame: r.frame, what: "entries" });
            }
            let mut entries: Vec<DbPos> = Vec::with_capacity(count);
            for _ in 0..count {
                let name = r.name()?;
                if entries.last().is_some_and(|p| p.name.as_bytes() >= name.as_bytes()) {
                    return Err(r.invalid("entries", "are not sorted by name without duplicates"));
                }
                let pos = r.pos()?;
                entries.push(DbPos { name, pos });
            }
            Frame::PosMap(entries)
        }
        LTX_BEGIN => {
            let name = r.name()?;
            let epoch = Epoch(r.u64("epoch")?);
            let kind = match r.u8("kind")? {
                0 => LtxKind::Incremental,
                1 => LtxKind::Snapshot,
                2 => LtxKind::Deletion,
                3 => LtxKind::Resync,
                _ => return Err(r.invalid("kind", "is not 0, 1 or 2")),
            };
            let min_txid = Txid(r.u64("min txid")?);
            let max_txid = Txid(r.u64("max txid")?);
            if min_txid.0 == 0 || min_txid > max_txid {
                return Err(r.invalid("txids", "min is zero or above max"));
            }
            let size = r.u64("size")?;
            if size > MAX_LTX_SIZE {
                return Err(r.invalid("size", "exceeds 1 TiB"));
            }
            Frame::LtxBegin(LtxBegin { name, epoch, kind, min_txid, max_txid, size })
        }
        LTX_CHUNK => {
            let n = r.buf.remaining();
            if n == 0 || n > MAX_CHUNK {
                return Err(r.invalid("chunk", "is empty or over 256 KiB"));
            }
            Frame::LtxChunk(r.buf.split_to(n))
        }
        LTX_END => Frame::LtxEnd { file_checksum: Checksum(r.u64("file checksum")?) },
        READY => Frame::Ready { epoch: Epoch(r.u64("epoch")?) },
        HEARTBEAT => {
            Frame::Heartbeat { epoch: Epoch(r.u64("epoch")?), time_ms: r.u64("time")? as i64 }
        }
        ACK => {
            let name = r.name()?;
            Frame::Ack { name, pos: r.pos()? }
        }
        HANDOFF => Frame::Handoff {
            epoch: Epoch(r.u64("epoch")?),
            target: NodeId(r.u64("target")?),
            token: r.string(MAX_TOKEN_LEN, "token")?,
        },
        ERROR => Frame::Error {
            code: ErrorCode::from_u16(r.u16("code")?),
            message: r.string(MAX_MESSAGE_LEN, "message")?,
        },
        t => return Err(DecodeError::UnknownFrameType(t)),
    };
    r.end()?;
    Ok(frame)
}
