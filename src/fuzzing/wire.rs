//! Fuzz entry points for the wire protocol.

use bytes::{Bytes, BytesMut};

use crate::core::types::{Checksum, ClusterId, Epoch, NodeId, Pos, Txid};
use crate::core::wire::{
    DEFAULT_MAX_FRAME_LEN, DbPos, ErrorCode, Frame, Hello, LtxAssembler, LtxBegin, LtxKind, Role,
    decode, encode,
};

/// Decodes frames from arbitrary bytes until the input runs out or an error, feeding LTX
/// transfer frames to an assembler. Must never panic or allocate without bound.
pub fn frame_decode(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    let mut asm = LtxAssembler::new();
    while let Ok(Some(frame)) = decode(&mut buf, DEFAULT_MAX_FRAME_LEN) {
        if matches!(frame, Frame::LtxBegin(_) | Frame::LtxChunk(_) | Frame::LtxEnd { .. }) {
            let _ = asm.handle(frame);
        }
    }
}

/// If `data` starts with a valid frame, its re-encoding must be exactly the bytes consumed,
/// and decoding that must give the same frame.
pub fn frame_roundtrip(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    let Ok(Some(frame)) = decode(&mut buf, DEFAULT_MAX_FRAME_LEN) else { return };
    let consumed = data.len() - buf.len();
    let mut out = BytesMut::new();
    encode(&frame, &mut out).expect("a decoded frame re-encodes");
    assert_eq!(&out[..], &data[..consumed], "re-encoding differs from the input");
    let again = decode(&mut out, DEFAULT_MAX_FRAME_LEN).expect("re-encoding decodes");
    assert_eq!(again.as_ref(), Some(&frame));
    assert!(out.is_empty());
}

/// One valid frame of every type (used for the seed corpus and tests).
pub fn sample_frames() -> Vec<Frame> {
    vec![
        Frame::Hello(Hello {
            version_min: 1,
            version_max: 1,
            cluster_id: ClusterId(0x1122_3344_5566_7788),
            node_id: NodeId(0x99aa_bbcc_ddee_ff00),
            epoch: Epoch(3),
            role: Role::Replica,
            hostname: "node-1".into(),
            advertise_url: "http://node-1:20202".into(),
        }),
        Frame::PosMap(vec![
            DbPos { name: "app.db".into(), pos: Pos::new(0x16, 0xde6e_5107_092f_964d) },
            DbPos { name: "legacy.db".into(), pos: Pos::new(3, 0xef2d_09dd_080c_7cdf) },
        ]),
        Frame::LtxBegin(LtxBegin {
            name: "app.db".into(),
            epoch: Epoch(3),
            kind: LtxKind::Incremental,
            min_txid: Txid(0x17),
            max_txid: Txid(0x17),
            size: 16,
        }),
        Frame::LtxChunk(Bytes::from_static(b"LTX1\0\0\0\x01\x80\0\0\0\0\0\0\x01")),
        Frame::LtxEnd { file_checksum: Checksum(0x8000_0000_0000_0001) },
        Frame::Ready { epoch: Epoch(3) },
        Frame::Heartbeat { epoch: Epoch(3), time_ms: 1_700_000_000_000 },
        Frame::Ack { name: "app.db".into(), pos: Pos::new(0x17, 0x8123_4567_89ab_cdef) },
        Frame::Handoff { epoch: Epoch(3), target: NodeId(0x42), token: "session-1".into() },
        Frame::Error {
            code: ErrorCode::PositionMismatch,
            message: "at 16, file applies at 17".into(),
        },
    ]
}

/// Encodings of [`sample_frames`], plus one buffer holding a whole LTX transfer.
pub fn seed_frames() -> Vec<Vec<u8>> {
    let frames = sample_frames();
    let mut seeds: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let mut b = BytesMut::new();
            // invariant: sample frames are within every protocol bound.
            encode(f, &mut b).expect("sample frame encodes");
            b.to_vec()
        })
        .collect();
    seeds.push(seeds[2..5].concat());
    seeds
}
