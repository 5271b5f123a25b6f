//! The wire codec over a real async byte stream: `FramedWrite` and `FramedRead` on a tokio
//! duplex pipe whose 7-byte buffer splits every frame across many reads.

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use litefleet::core::wire::{ErrorCode, Frame, LtxAssembler, decode, encode};
use litefleet::fuzzing::wire::sample_frames;
use litefleet::net::codec::{CodecError, FrameCodec};
use tokio::io::AsyncWriteExt;
use tokio_util::codec::{FramedRead, FramedWrite};

#[tokio::test]
async fn all_frames_cross_a_tiny_pipe() {
    let (a, b) = tokio::io::duplex(7);
    let frames = sample_frames();
    let sent = frames.clone();
    let writer = tokio::spawn(async move {
        let mut w = FramedWrite::new(a, FrameCodec::default());
        for f in sent {
            w.send(f).await.unwrap();
        }
    });
    let mut r = FramedRead::new(b, FrameCodec::default());
    let mut got = Vec::new();
    while let Some(f) = r.next().await {
        got.push(f.unwrap());
    }
    writer.await.unwrap();
    assert_eq!(got, frames);
}

#[tokio::test]
async fn an_ltx_file_travels_in_chunks() {
    let file = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/litefs-0.5.14/wal.db/snapshot/0000000000000001-000000000000000e.ltx"
    ))
    .unwrap();
    let frames = litefleet_transfer(&file, 1000);
    let (a, b) = tokio::io::duplex(4096);
    let writer = tokio::spawn(async move {
        let mut w = FramedWrite::new(a, FrameCodec::default());
        for f in frames {
            w.send(f).await.unwrap();
        }
    });
    let mut r = FramedRead::new(b, FrameCodec::default());
    let mut asm = LtxAssembler::new();
    let mut received = None;
    while let Some(f) = r.next().await {
        if let Some(done) = asm.handle(f.unwrap()).unwrap() {
            received = Some(done);
        }
    }
    writer.await.unwrap();
    let received = received.expect("transfer completed");
    assert_eq!(&received.file[..], &file[..]);
    litefleet::core::ltx::verify(&received.file[..], received.file.len() as u64).unwrap();
}

/// BEGIN, chunks of `chunk` bytes, END for one LTX file.
fn litefleet_transfer(file: &[u8], chunk: usize) -> Vec<Frame> {
    use litefleet::core::types::{Checksum, Epoch, Txid};
    use litefleet::core::wire::{LtxBegin, LtxKind};
    let mut v = vec![Frame::LtxBegin(LtxBegin {
        name: "wal.db".into(),
        epoch: Epoch(1),
        kind: LtxKind::Snapshot,
        min_txid: Txid(1),
        max_txid: Txid(0xe),
        size: file.len() as u64,
    })];
    v.extend(file.chunks(chunk).map(|c| Frame::LtxChunk(bytes::Bytes::copy_from_slice(c))));
    let sum = u64::from_be_bytes(file[file.len() - 8..].try_into().unwrap());
    v.push(Frame::LtxEnd { file_checksum: Checksum(sum) });
    v
}

#[tokio::test]
async fn garbage_is_a_clean_error_with_a_code() {
    let (mut a, b) = tokio::io::duplex(64);
    tokio::spawn(async move {
        a.write_all(&[0, 0, 0, 3, 0x7f, 1, 2]).await.unwrap();
    });
    let mut r = FramedRead::new(b, FrameCodec::default());
    let e = r.next().await.unwrap().unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::UnknownFrameType), "{e}");
}

#[tokio::test]
async fn oversize_and_truncated_streams_end_with_errors() {
    let (mut a, b) = tokio::io::duplex(64);
    tokio::spawn(async move {
        a.write_all(&[0x10, 0, 0, 0, 0x04]).await.unwrap();
    });
    let mut r = FramedRead::new(b, FrameCodec::new(1024));
    let e = r.next().await.unwrap().unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::FrameTooLarge), "{e}");

    // The peer closes mid-frame: an I/O error, not a frame and not a panic.
    let (mut a, b) = tokio::io::duplex(64);
    let mut buf = BytesMut::new();
    encode(&sample_frames()[0], &mut buf).unwrap();
    let half = buf[..buf.len() / 2].to_vec();
    tokio::spawn(async move {
        a.write_all(&half).await.unwrap();
        drop(a);
    });
    let mut r = FramedRead::new(b, FrameCodec::default());
    assert!(matches!(r.next().await, Some(Err(CodecError::Io(_)))));
    // And the core decoder agrees the half frame is just incomplete.
    let mut partial = BytesMut::from(&buf[..buf.len() / 2]);
    assert_eq!(decode(&mut partial, 1 << 20), Ok(None));
}
