//! Streaming LTX decoder.
//!
//! [`LtxReader`] reads a file front to back from any [`Read`] whose total length is known
//! (a file, a `Bytes` buffer, a fully received transfer). It yields pages one at a time from a
//! reused buffer, so memory stays at one page plus the LZ4 window however large the file is.
//! While pages pass it checks their order against the header and feeds the file checksum; at
//! the terminator it reads the trailer and verifies the file checksum and, for snapshots and
//! deletions, the post-apply checksum. A file is only known good once [`LtxReader::next_page`]
//! has returned `Ok(None)` (or [`LtxReader::finish`] returned).
//!
//! It does not check a file against a database; see [`super::apply`].

use std::io::{self, Read, Take};

use lz4_flex::frame::FrameDecoder;

use super::checksum::{CRC64, Crc64Digest, page_checksum};
use super::error::LtxError;
use super::header::{HEADER_SIZE, Header, TRAILER_SIZE, Trailer};
use crate::core::types::{Checksum, PageNo};

/// Smallest possible file: header, zero terminator, trailer.
pub const MIN_FILE_SIZE: u64 = (HEADER_SIZE + 4 + TRAILER_SIZE) as u64;

enum Body<R: Read> {
    Plain(Take<R>),
    Lz4(Box<FrameDecoder<Take<R>>>),
    /// The body has been consumed; the reader is positioned at the trailer or past it.
    Done(R),
    /// Transient state while moving between variants; never observed outside `finish_body`.
    Poisoned,
}

/// Decodes and verifies one LTX file. See the module docs.
pub struct LtxReader<R: Read> {
    header: Header,
    body: Body<R>,
    digest: Crc64Digest,
    /// Logical (uncompressed) offset of the next byte to read, for error messages.
    offset: u64,
    /// Last page number returned; 0 before the first page.
    prev: PageNo,
    /// The page returned by the last `next_page`.
    page: Vec<u8>,
    /// XOR of page checksums, kept only for snapshots and deletions, whose post-apply checksum
    /// the file alone determines.
    snapshot_xor: Option<u64>,
    trailer: Option<Trailer>,
    /// Set once an error has been returned: the stream position is unknown from then on.
    failed: bool,
}

/// A decoded page borrowed from the reader's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page<'a> {
    pub pgno: PageNo,
    pub data: &'a [u8],
}

impl<R: Read> LtxReader<R> {
    /// Reads and validates the header. `file_len` is the total length of the file, trailer
    /// included; the reader never reads past it.
    pub fn new(mut r: R, file_len: u64) -> Result<Self, LtxError> {
        if file_len < MIN_FILE_SIZE {
            return Err(LtxError::TooShort { len: file_len });
        }
        let mut hb = [0u8; HEADER_SIZE];
        r.read_exact(&mut hb).map_err(|e| eof_as(e, 0, "header"))?;
        let header = Header::decode(&hb)?;
        header.validate()?;
        let mut digest = CRC64.digest();
        digest.update(&hb);
        let body_len = file_len - (HEADER_SIZE + TRAILER_SIZE) as u64;
        let body = r.take(body_len);
        let body = if header.is_compressed() {
            Body::Lz4(Box::new(FrameDecoder::new(body)))
        } else {
            Body::Plain(body)
        };
        let snapshot_xor = (header.is_snapshot() || header.is_deletion()).then_some(0);
        Ok(LtxReader {
            header,
            body,
            digest,
            offset: HEADER_SIZE as u64,
            prev: PageNo(0),
            page: vec![0; header.page_size as usize],
            snapshot_xor,
            trailer: None,
            failed: false,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The data of the page last returned by [`LtxReader::next_page`].
    pub fn current_page(&self) -> &[u8] {
        &self.page
    }

    /// The trailer, once the whole file has been read and verified.
    pub fn trailer(&self) -> Option<&Trailer> {
        self.trailer.as_ref()
    }

    /// The next page, or `None` after the terminator once the trailer is verified.
    pub fn next_page(&mut self) -> Result<Option<Page<'_>>, LtxError> {
        if self.failed {
            return Err(LtxError::Misuse("reader used after an error"));
        }
        if self.trailer.is_some() {
            return Ok(None);
        }
        match self.read_page() {
            Ok(true) => Ok(Some(Page { pgno: self.prev, data: &self.page })),
            Ok(false) => Ok(None),
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    /// Reads the rest of the file, verifying it, and returns the trailer and the inner reader
    /// positioned just after the file.
    pub fn finish(mut self) -> Result<(Trailer, R), LtxError> {
        while self.next_page()?.is_some() {}
        let trailer = self.trailer.ok_or(LtxError::Misuse("no trailer after the last page"))?;
        match self.body {
            Body::Done(r) => Ok((trailer, r)),
            _ => Err(LtxError::Misuse("body not consumed after the trailer")),
        }
    }

    /// Returns `Ok(true)` with a page in `self.page`, or `Ok(false)` after the trailer.
    fn read_page(&mut self) -> Result<bool, LtxError> {
        let offset = self.offset;
        let mut pb = [0u8; 4];
        self.read_body(&mut pb, "page header")?;
        let pgno = PageNo(u32::from_be_bytes(pb));
        if pgno.0 == 0 {
            self.finish_body()?;
            return Ok(false);
        }
        self.check_pgno(offset, pgno)?;
        let mut page = std::mem::take(&mut self.page);
        let res = self.read_body(&mut page, "page data");
        self.page = page;
        res?;
        if let Some(x) = self.snapshot_xor.as_mut() {
            *x ^= page_checksum(pgno, &self.page).0;
        }
        self.prev = pgno;
        Ok(true)
    }

    fn check_pgno(&self, offset: u64, pgno: PageNo) -> Result<(), LtxError> {
        let h = &self.header;
        if h.is_deletion() {
            return Err(LtxError::PageInDeletion { pgno });
        }
        if pgno <= self.prev {
            return Err(LtxError::PageOrder { offset, pgno, prev: self.prev });
        }
        if pgno.0 > h.commit {
            return Err(LtxError::PageBeyondCommit { offset, pgno, commit: h.commit });
        }
        let lock = PageNo::lock_page(h.page_size);
        if pgno == lock {
            return Err(LtxError::LockPage { offset, pgno });
        }
        if h.is_snapshot() {
            let expected = next_snapshot_page(self.prev, lock);
            if pgno != expected {
                return Err(LtxError::SnapshotGap { offset, pgno, expected });
            }
        }
        Ok(())
    }

    /// Called after the zero terminator: checks the body ends there, reads and verifies the
    /// trailer.
    fn finish_body(&mut self) -> Result<(), LtxError> {
        let h = self.header;
        if h.is_snapshot()
            && next_snapshot_page(self.prev, PageNo::lock_page(h.page_size)).0 <= h.commit
        {
            return Err(LtxError::SnapshotIncomplete { last: self.prev, commit: h.commit });
        }
        let end = self.offset;
        let mut r = match std::mem::replace(&mut self.body, Body::Poisoned) {
            Body::Plain(t) => {
                if t.limit() != 0 {
                    return Err(LtxError::TrailingBody { offset: end, extra: t.limit() });
                }
                t.into_inner()
            }
            Body::Lz4(mut d) => {
                // Reading on makes the decoder consume the end mark and verify the content
                // checksum; any decompressed byte or compressed byte left is trailing garbage.
                let mut probe = [0u8; 1];
                match d.read(&mut probe) {
                    Ok(0) => {}
                    Ok(_) => {
                        return Err(LtxError::TrailingBody { offset: end, extra: 1 });
                    }
                    Err(e) => {
                        return Err(LtxError::Lz4 { offset: end, reason: e.to_string() });
                    }
                }
                let t = d.into_inner();
                if t.limit() != 0 {
                    return Err(LtxError::Lz4 {
                        offset: end,
                        reason: format!("{} bytes after the end of the LZ4 frame", t.limit()),
                    });
                }
                t.into_inner()
            }
            Body::Done(_) | Body::Poisoned => {
                return Err(LtxError::Misuse("body finished twice"));
            }
        };
        let mut tb = [0u8; TRAILER_SIZE];
        r.read_exact(&mut tb).map_err(|e| eof_as(e, end, "trailer"))?;
        self.body = Body::Done(r);
        let trailer = Trailer::decode(&tb);
        trailer.validate()?;
        self.digest.update(&tb[..8]);
        let actual = Checksum(Checksum::FLAG | self.digest.clone().finalize());
        if actual != trailer.file_checksum {
            return Err(LtxError::FileChecksum { expected: trailer.file_checksum, actual });
        }
        if let Some(x) = self.snapshot_xor {
            let actual = Checksum(Checksum::FLAG | x);
            if actual != trailer.post_apply_checksum {
                return Err(LtxError::PostApplyChecksum {
                    expected: trailer.post_apply_checksum,
                    actual,
                });
            }
        }
        self.trailer = Some(trailer);
        Ok(())
    }

    fn read_body(&mut self, buf: &mut [u8], what: &'static str) -> Result<(), LtxError> {
        let offset = self.offset;
        let res = match &mut self.body {
            Body::Plain(t) => t.read_exact(buf).map_err(|e| eof_as(e, offset, what)),
            Body::Lz4(d) => d
                .read_exact(buf)
                .map_err(|e| LtxError::Lz4 { offset, reason: format!("reading {what}: {e}") }),
            Body::Done(_) | Body::Poisoned => Err(LtxError::Misuse("read after the trailer")),
        };
        res?;
        self.digest.update(buf);
        self.offset += buf.len() as u64;
        Ok(())
    }
}

/// The page a snapshot must hold after `prev`, skipping the lock page.
pub(crate) fn next_snapshot_page(prev: PageNo, lock: PageNo) -> PageNo {
    let n = PageNo(prev.0.saturating_add(1));
    if n == lock { PageNo(n.0.saturating_add(1)) } else { n }
}

fn eof_as(e: io::Error, offset: u64, what: &'static str) -> LtxError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        LtxError::Truncated { offset, what }
    } else {
        LtxError::Io(e)
    }
}

/// What [`verify`] learned about a good file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub header: Header,
    pub trailer: Trailer,
    pub page_count: u32,
}

/// Reads a whole file and verifies everything the file alone can prove.
pub fn verify<R: Read>(r: R, file_len: u64) -> Result<Summary, LtxError> {
    let mut rd = LtxReader::new(r, file_len)?;
    let mut page_count = 0u32;
    while rd.next_page()?.is_some() {
        page_count += 1;
    }
    let header = *rd.header();
    let (trailer, _) = rd.finish()?;
    Ok(Summary { header, trailer, page_count })
}
