//! Streaming LTX encoder.
//!
//! [`LtxWriter`] writes the header at once, then pages as they are given, then the trailer
//! in [`LtxWriter::finish`]. It enforces the same page rules the decoder checks (strictly
//! increasing, within commit, never the lock page, snapshots complete), so it cannot produce a
//! file the decoder rejects. With [`super::header::FLAG_COMPRESS_LZ4`] the page block goes out
//! as one LZ4 frame with 64 KiB independent blocks and a content checksum, the parameters
//! LiteFS's writer uses.

use std::io::{self, Write};

use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};

use super::checksum::{CRC64, Crc64Digest, page_checksum};
use super::error::LtxError;
use super::header::{Header, Trailer};
use super::reader::next_snapshot_page;
use crate::core::types::{Checksum, PageNo};

enum Body<W: Write> {
    Plain(W),
    Lz4(Box<FrameEncoder<W>>),
}

impl<W: Write> Body<W> {
    fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        match self {
            Body::Plain(w) => w.write_all(b),
            Body::Lz4(e) => e.write_all(b),
        }
    }
}

/// Encodes one LTX file. See the module docs.
pub struct LtxWriter<W: Write> {
    header: Header,
    body: Body<W>,
    digest: Crc64Digest,
    prev: PageNo,
    /// XOR of page checksums for snapshots, whose post-apply checksum must match their pages.
    snapshot_xor: Option<u64>,
}

impl<W: Write> LtxWriter<W> {
    /// Validates and writes the header.
    pub fn new(mut w: W, header: Header) -> Result<Self, LtxError> {
        header.validate()?;
        let hb = header.encode();
        w.write_all(&hb)?;
        let mut digest = CRC64.digest();
        digest.update(&hb);
        let body = if header.is_compressed() {
            let mut info = FrameInfo::new();
            info.block_size = BlockSize::Max64KB;
            info.block_mode = BlockMode::Independent;
            info.content_checksum = true;
            Body::Lz4(Box::new(FrameEncoder::with_frame_info(info, w)))
        } else {
            Body::Plain(w)
        };
        let snapshot_xor = (header.is_snapshot() || header.is_deletion()).then_some(0);
        Ok(LtxWriter { header, body, digest, prev: PageNo(0), snapshot_xor })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Appends one page. Pages must come in strictly increasing order.
    pub fn write_page(&mut self, pgno: PageNo, data: &[u8]) -> Result<(), LtxError> {
        let h = &self.header;
        if data.len() != h.page_size as usize {
            return Err(LtxError::Misuse("page length differs from the header's page size"));
        }
        if pgno.0 == 0 || pgno <= self.prev {
            return Err(LtxError::Misuse("pages must be written in strictly increasing order"));
        }
        if pgno.0 > h.commit {
            return Err(LtxError::Misuse("page beyond commit"));
        }
        let lock = PageNo::lock_page(h.page_size);
        if pgno == lock {
            return Err(LtxError::Misuse("the lock page is never stored"));
        }
        if h.is_snapshot() && pgno != next_snapshot_page(self.prev, lock) {
            return Err(LtxError::Misuse("snapshot pages must be contiguous from page 1"));
        }
        let pb = pgno.0.to_be_bytes();
        self.body.write_all(&pb)?;
        self.body.write_all(data)?;
        self.digest.update(&pb);
        self.digest.update(data);
        if let Some(x) = self.snapshot_xor.as_mut() {
            *x ^= page_checksum(pgno, data).0;
        }
        self.prev = pgno;
        Ok(())
    }

    /// Writes the terminator and trailer and returns the inner writer (not flushed or synced:
    /// durability is the caller's business). `post_apply` is the database checksum after the
    /// file applies; for snapshots and deletions it must equal what the pages give.
    pub fn finish(mut self, post_apply: Checksum) -> Result<(W, Trailer), LtxError> {
        let h = self.header;
        if h.is_snapshot()
            && next_snapshot_page(self.prev, PageNo::lock_page(h.page_size)).0 <= h.commit
        {
            return Err(LtxError::Misuse("snapshot is missing pages up to commit"));
        }
        if let Some(x) = self.snapshot_xor
            && Checksum(Checksum::FLAG | x) != post_apply
        {
            return Err(LtxError::Misuse("post-apply checksum differs from the snapshot's pages"));
        }
        if !post_apply.is_flagged() {
            return Err(LtxError::Misuse("post-apply checksum lacks the 1<<63 flag"));
        }
        self.body.write_all(&[0; 4])?;
        self.digest.update(&[0; 4]);
        let mut w = match self.body {
            Body::Plain(w) => w,
            Body::Lz4(e) => e.finish().map_err(|e| io::Error::other(e.to_string()))?,
        };
        self.digest.update(&post_apply.0.to_be_bytes());
        let trailer = Trailer {
            post_apply_checksum: post_apply,
            file_checksum: Checksum(Checksum::FLAG | self.digest.finalize()),
        };
        w.write_all(&trailer.encode())?;
        Ok((w, trailer))
    }
}
