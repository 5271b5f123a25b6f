//! Wire tests: annotated byte fixtures for every frame type, every frame split at every byte
//! offset, every decode error, and the LTX assembler.

use bytes::{BufMut, Bytes, BytesMut};

use super::*;
use crate::core::types::{Checksum, ClusterId, Epoch, NodeId, Pos, Txid};

const MAX: usize = DEFAULT_MAX_FRAME_LEN;

/// One frame of each type with distinctive values, and its exact encoding.
pub(crate) fn fixtures() -> Vec<(Frame, Vec<u8>)> {
    #[rustfmt::skip]
    let v = vec![
        (
            Frame::Hello(Hello {
                version_min: 1,
                version_max: 2,
                cluster_id: ClusterId(0x1122_3344_5566_7788),
                node_id: NodeId(0x99aa_bbcc_ddee_ff00),
                epoch: Epoch(0x0102_0304_0506_0708),
                role: Role::Primary,
                hostname: "n1".into(),
                advertise_url: "http://n1:20202".into(),
            }),
            [
                &[0, 0, 0, 0x3b, 0x01][..],                         // length 59, HELLO
                b"LFLT", &[0, 1, 0, 2],                             // magic, versions 1..2
                &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88],  // cluster id
                &[0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00],  // node id
                &[1, 2, 3, 4, 5, 6, 7, 8],                          // epoch
                &[1], &[0, 0, 0, 0],                                // role primary, flags
                &[0, 2], b"n1",                                     // hostname
                &[0, 15], b"http://n1:20202",                       // advertise url
            ].concat(),
        ),
        (
            Frame::PosMap(vec![
                DbPos { name: "a.db".into(), pos: Pos::new(0x16, 0xde6e_5107_092f_964d) },
                DbPos { name: "b.db".into(), pos: Pos::EMPTY },
            ]),
            [
                &[0, 0, 0, 0x31, 0x02][..],                         // length 49, POS_MAP
                &[0, 0, 0, 2],                                      // count
                &[0, 4], b"a.db", &[0, 0, 0, 0, 0, 0, 0, 0x16],     // name, txid
                &[0xde, 0x6e, 0x51, 0x07, 0x09, 0x2f, 0x96, 0x4d],  // checksum
                &[0, 4], b"b.db", &[0; 16],                         // name, empty pos
            ].concat(),
        ),
        (
            Frame::LtxBegin(LtxBegin {
                name: "app.db".into(),
                epoch: Epoch(7),
                kind: LtxKind::Snapshot,
                min_txid: Txid(1),
                max_txid: Txid(0x0e),
                size: 0x0001_0203,
            }),
            [
                &[0, 0, 0, 0x2a, 0x03][..],                         // length 42, LTX_BEGIN
                &[0, 6], b"app.db",                                 // name
                &[0, 0, 0, 0, 0, 0, 0, 7], &[1],                    // epoch, kind snapshot
                &[0, 0, 0, 0, 0, 0, 0, 1], &[0, 0, 0, 0, 0, 0, 0, 0x0e], // txids
                &[0, 0, 0, 0, 0, 1, 2, 3],                          // size
            ].concat(),
        ),
        (
            Frame::LtxChunk(Bytes::from_static(b"LTX1\xca\xfe")),
            [&[0, 0, 0, 7, 0x04][..], b"LTX1\xca\xfe"].concat(),
        ),
        (
            Frame::LtxEnd { file_checksum: Checksum(0x8123_4567_89ab_cdef) },
            [&[0, 0, 0, 9, 0x05][..], &[0x81, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]].concat(),
        ),
        (
            Frame::Ready { epoch: Epoch(0x2a) },
            [&[0, 0, 0, 9, 0x06][..], &[0, 0, 0, 0, 0, 0, 0, 0x2a]].concat(),
        ),
        (
            Frame::Heartbeat { epoch: Epoch(3), time_ms: -2 },
            [&[0, 0, 0, 17, 0x07][..], &[0, 0, 0, 0, 0, 0, 0, 3], &[0xff; 7], &[0xfe]].concat(),
        ),
        (
            Frame::Ack { name: "x".into(), pos: Pos::new(5, 0x8000_0000_0000_0001) },
            [
                &[0, 0, 0, 20, 0x08][..], &[0, 1], b"x",
                &[0, 0, 0, 0, 0, 0, 0, 5], &[0x80, 0, 0, 0, 0, 0, 0, 1],
            ].concat(),
        ),
        (
            Frame::Handoff { epoch: Epoch(9), target: NodeId(0xabcd), token: "tok".into() },
            [
                &[0, 0, 0, 22, 0x09][..], &[0, 0, 0, 0, 0, 0, 0, 9],
                &[0, 0, 0, 0, 0, 0, 0xab, 0xcd], &[0, 3], b"tok",
            ].concat(),
        ),
        (
            Frame::Error { code: ErrorCode::StaleEpoch, message: "old".into() },
            [&[0, 0, 0, 8, 0x0a][..], &[0, 3], &[0, 3], b"old"].concat(),
        ),
    ];
    v
}

fn enc(f: &Frame) -> Vec<u8> {
    let mut b = BytesMut::new();
    encode(f, &mut b).unwrap();
    b.to_vec()
}

fn dec(bytes: &[u8]) -> Result<Option<Frame>, DecodeError> {
    decode(&mut BytesMut::from(bytes), MAX)
}

#[test]
fn fixtures_encode_and_decode_exactly() {
    let fx = fixtures();
    assert_eq!(fx.len(), 10, "one fixture per frame type");
    for (frame, bytes) in fx {
        assert_eq!(enc(&frame), bytes, "{}", frame.name());
        let mut b = BytesMut::from(&bytes[..]);
        assert_eq!(decode(&mut b, MAX), Ok(Some(frame.clone())), "{}", frame.name());
        assert!(b.is_empty());
    }
}

#[test]
fn every_frame_split_at_every_offset() {
    for (frame, bytes) in fixtures() {
        for cut in 0..=bytes.len() {
            let mut b = BytesMut::from(&bytes[..cut]);
            if cut < bytes.len() {
                assert_eq!(decode(&mut b, MAX), Ok(None), "{} cut {cut}", frame.name());
                assert_eq!(b.len(), cut, "nothing consumed");
            }
            b.extend_from_slice(&bytes[cut..]);
            assert_eq!(decode(&mut b, MAX), Ok(Some(frame.clone())), "{} cut {cut}", frame.name());
            assert!(b.is_empty());
        }
        // Byte by byte.
        let mut b = BytesMut::new();
        let mut got = None;
        for (i, byte) in bytes.iter().enumerate() {
            b.put_u8(*byte);
            let r = decode(&mut b, MAX).unwrap();
            assert_eq!(r.is_some(), i == bytes.len() - 1);
            got = got.or(r);
        }
        assert_eq!(got, Some(frame));
    }
}

#[test]
fn concatenated_frames_decode_in_order() {
    let fx = fixtures();
    let mut b = BytesMut::from(&fx.iter().flat_map(|(_, b)| b.clone()).collect::<Vec<_>>()[..]);
    for (frame, _) in &fx {
        assert_eq!(decode(&mut b, MAX).unwrap().as_ref(), Some(frame));
    }
    assert_eq!(decode(&mut b, MAX), Ok(None));
}

#[test]
fn oversize_length_is_refused_before_allocating() {
    let mut b = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 0x04][..]);
    let cap = b.capacity();
    assert_eq!(decode(&mut b, MAX), Err(DecodeError::FrameTooLarge { len: 0xffff_ffff, max: MAX }));
    assert_eq!(b.capacity(), cap, "no reservation for a refused frame");
    assert_eq!(ErrorCode::from(&decode(&mut b, MAX).unwrap_err()), ErrorCode::FrameTooLarge);
    // A custom, smaller limit applies too.
    let ready = enc(&Frame::Ready { epoch: Epoch(1) });
    assert!(matches!(
        decode(&mut BytesMut::from(&ready[..]), 8),
        Err(DecodeError::FrameTooLarge { len: 9, max: 8 })
    ));
}

#[test]
fn empty_unknown_truncated_and_trailing() {
    assert_eq!(dec(&[0, 0, 0, 0]), Err(DecodeError::EmptyFrame));
    assert_eq!(dec(&[0, 0, 0, 1, 0x7f]), Err(DecodeError::UnknownFrameType(0x7f)));
    assert_eq!(ErrorCode::from(&DecodeError::UnknownFrameType(0x7f)), ErrorCode::UnknownFrameType);
    // READY whose length leaves only 3 of the 8 epoch bytes.
    assert_eq!(
        dec(&[0, 0, 0, 4, 0x06, 0, 0, 0]),
        Err(DecodeError::Truncated { frame: "READY", what: "epoch" })
    );
    // READY with one byte too many.
    assert_eq!(
        dec(&[0, 0, 0, 10, 0x06, 0, 0, 0, 0, 0, 0, 0, 1, 9]),
        Err(DecodeError::Trailing { frame: "READY", extra: 1 })
    );
    // Every fixture with its length shortened by one: truncated, never a panic.
    for (frame, bytes) in fixtures() {
        if matches!(frame, Frame::LtxChunk(_)) {
            continue; // a chunk's payload is opaque: one byte less is a shorter chunk
        }
        let mut b = bytes.clone();
        let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) - 1;
        b[..4].copy_from_slice(&len.to_be_bytes());
        b.pop();
        let e = dec(&b).unwrap_err();
        assert_eq!(ErrorCode::from(&e), ErrorCode::MalformedFrame, "{}: {e}", frame.name());
    }
}

fn hello_bytes(mutate: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
    let mut b = fixtures()[0].1.clone();
    mutate(&mut b);
    b
}

#[test]
fn hello_field_errors() {
    let e = dec(&hello_bytes(|b| b[5] = b'X')).unwrap_err();
    assert_eq!(e, DecodeError::BadMagic(*b"XFLT"));
    let e = dec(&hello_bytes(|b| b[10] = 9)).unwrap_err(); // version_min 9 > max 2
    assert!(matches!(e, DecodeError::InvalidField { what: "versions", .. }), "{e}");
    let e = dec(&hello_bytes(|b| b[37] = 3)).unwrap_err();
    assert!(matches!(e, DecodeError::InvalidField { what: "role", .. }), "{e}");
    let e = dec(&hello_bytes(|b| b[41] = 1)).unwrap_err();
    assert!(matches!(e, DecodeError::InvalidField { what: "flags", .. }), "{e}");
    let e = dec(&hello_bytes(|b| b[44] = 0xff)).unwrap_err(); // hostname bytes "n\xff"
    assert!(matches!(
        e,
        DecodeError::InvalidField { what: "hostname", reason: "is not UTF-8", .. }
    ));
    // Hostname length beyond the protocol limit, with the bytes present.
    let mut long = hello_bytes(|_| ());
    long.truncate(42);
    long.extend_from_slice(&256u16.to_be_bytes());
    long.extend_from_slice(&[b'h'; 256]);
    long.extend_from_slice(&[0, 0]);
    let len = (long.len() - 4) as u32;
    long[..4].copy_from_slice(&len.to_be_bytes());
    let e = dec(&long).unwrap_err();
    assert!(matches!(e, DecodeError::InvalidField { what: "hostname", reason: "is too long", .. }));
}

fn pos_map(entries: &[(&[u8], u64)]) -> Vec<u8> {
    let mut p = vec![0x02];
    p.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for (name, txid) in entries {
        p.extend_from_slice(&(name.len() as u16).to_be_bytes());
        p.extend_from_slice(name);
        p.extend_from_slice(&txid.to_be_bytes());
        p.extend_from_slice(&[0; 8]);
    }
    [&(p.len() as u32).to_be_bytes()[..], &p].concat()
}

#[test]
fn pos_map_errors() {
    assert!(dec(&pos_map(&[(b"a", 1), (b"b", 2)])).is_ok());
    for (entries, what) in [
        (&[(&b"b"[..], 1u64), (b"a", 2)][..], "entries"),
        (&[(b"a", 1), (b"a", 2)], "entries"),
        (&[(b"", 1)], "database name"),
        (&[(b"x/y", 1)], "database name"),
        (&[(b"..", 1)], "database name"),
        (&[(b"a\0", 1)], "database name"),
    ] {
        let e = dec(&pos_map(entries)).unwrap_err();
        assert!(matches!(e, DecodeError::InvalidField { what: w, .. } if w == what), "{e}");
    }
    // A count the bytes can't back is refused before allocating for it.
    let mut b = pos_map(&[(b"a", 1)]);
    b[5..9].copy_from_slice(&60_000u32.to_be_bytes());
    assert!(matches!(dec(&b), Err(DecodeError::Truncated { what: "entries", .. })));
    b[5..9].copy_from_slice(&70_000u32.to_be_bytes());
    assert!(matches!(dec(&b), Err(DecodeError::InvalidField { what: "entry count", .. })));
}

#[test]
fn ltx_begin_and_chunk_errors() {
    let begin = fixtures()[2].1.clone();
    let mut b = begin.clone();
    b[4 + 1 + 2 + 6 + 8] = 5; // kind
    assert!(matches!(dec(&b), Err(DecodeError::InvalidField { what: "kind", .. })));
    let mut b = begin.clone();
    b[4 + 1 + 2 + 6 + 8 + 1 + 7] = 0; // min txid 0
    assert!(matches!(dec(&b), Err(DecodeError::InvalidField { what: "txids", .. })));
    let mut b = begin.clone();
    let n = b.len();
    b[n - 8] = 0x01; // size 2^56
    assert!(matches!(dec(&b), Err(DecodeError::InvalidField { what: "size", .. })));
    assert!(matches!(
        dec(&[0, 0, 0, 1, 0x04]),
        Err(DecodeError::InvalidField { what: "chunk", .. })
    ));
    let mut big = BytesMut::new();
    big.put_u32((MAX_CHUNK + 2) as u32);
    big.put_u8(0x04);
    big.put_bytes(0, MAX_CHUNK + 1);
    assert!(matches!(decode(&mut big, MAX_CHUNK + 2), Err(DecodeError::InvalidField { .. })));
}

#[test]
fn encode_refuses_what_decode_would_reject() {
    let bad = [
        Frame::LtxChunk(Bytes::new()),
        Frame::LtxChunk(Bytes::from(vec![0; MAX_CHUNK + 1])),
        Frame::Ack { name: "a/b".into(), pos: Pos::EMPTY },
        Frame::Ack { name: "n".repeat(256), pos: Pos::EMPTY },
        Frame::Error { code: ErrorCode::Internal, message: "m".repeat(1025) },
        Frame::PosMap(vec![
            DbPos { name: "b".into(), pos: Pos::EMPTY },
            DbPos { name: "a".into(), pos: Pos::EMPTY },
        ]),
    ];
    for f in bad {
        let mut b = BytesMut::from(&b"keep"[..]);
        assert!(encode(&f, &mut b).is_err(), "{f:?}");
        assert_eq!(&b[..], b"keep", "a failed encode leaves the buffer as it was");
    }
}

#[test]
fn error_codes_round_trip() {
    for c in 0..=0x0100u16 {
        assert_eq!(ErrorCode::from_u16(c).to_u16(), c);
    }
    assert_eq!(ErrorCode::from_u16(0x1234), ErrorCode::Other(0x1234));
}

#[test]
fn version_negotiation() {
    assert_eq!(negotiate((1, 1), (1, 1)), Some(1));
    assert_eq!(negotiate((1, 3), (2, 5)), Some(3));
    assert_eq!(negotiate((1, 1), (2, 3)), None);
    assert_eq!(negotiate((VERSION_MIN, VERSION_MAX), (1, 9)), Some(VERSION_MAX));
}

fn begin(size: u64) -> Frame {
    Frame::LtxBegin(LtxBegin {
        name: "db".into(),
        epoch: Epoch(1),
        kind: LtxKind::Incremental,
        min_txid: Txid(2),
        max_txid: Txid(2),
        size,
    })
}

fn chunk(b: &[u8]) -> Frame {
    Frame::LtxChunk(Bytes::copy_from_slice(b))
}

#[test]
fn assembler_reassembles_and_counts() {
    let file: Vec<u8> = (0..20u8).collect();
    let sum = Checksum(u64::from_be_bytes(file[12..].try_into().unwrap()));
    let mut a = LtxAssembler::new();
    assert_eq!(a.handle(begin(20)), Ok(None));
    assert!(a.in_progress());
    assert_eq!(a.handle(chunk(&file[..7])), Ok(None));
    assert_eq!(a.handle(chunk(&file[7..])), Ok(None));
    let r = a.handle(Frame::LtxEnd { file_checksum: sum }).unwrap().unwrap();
    assert_eq!(&r.file[..], &file[..]);
    assert!(!a.in_progress());

    let mut a = LtxAssembler::new();
    a.handle(begin(5)).unwrap();
    let e = a.handle(chunk(&[0; 6])).unwrap_err();
    assert_eq!(e, AssembleError::Overflow { size: 5, got: 6 });
    assert_eq!(ErrorCode::from(&e), ErrorCode::MalformedFrame);
    assert_eq!(ErrorCode::from(&AssembleError::NoTransfer("x")), ErrorCode::UnexpectedFrame);
    assert!(!a.in_progress(), "errors drop the transfer");
    a.handle(begin(5)).unwrap();
    a.handle(chunk(&[0; 4])).unwrap();
    assert_eq!(
        a.handle(Frame::LtxEnd { file_checksum: sum }),
        Err(AssembleError::Short { size: 5, got: 4 })
    );
    a.handle(begin(20)).unwrap();
    assert!(matches!(a.handle(begin(20)), Err(AssembleError::BeginDuringTransfer { .. })));
    assert_eq!(a.handle(chunk(&[1])), Err(AssembleError::NoTransfer("LTX_CHUNK")));
    assert_eq!(
        a.handle(Frame::LtxEnd { file_checksum: sum }),
        Err(AssembleError::NoTransfer("LTX_END"))
    );
    a.handle(begin(20)).unwrap();
    a.handle(chunk(&file)).unwrap();
    assert!(matches!(
        a.handle(Frame::LtxEnd { file_checksum: Checksum(1) }),
        Err(AssembleError::ChecksumMismatch { .. })
    ));
    assert_eq!(
        a.handle(Frame::Ready { epoch: Epoch(1) }),
        Err(AssembleError::NotTransferFrame("READY"))
    );
    // A huge announced size reserves only the cap.
    let mut a = LtxAssembler::new();
    a.handle(begin(MAX_LTX_SIZE)).unwrap();
    assert_eq!(a.handle(chunk(&[1, 2, 3])), Ok(None));
}
