//! Fuzz entry points for the LTX codec.

use crate::core::ltx::{
    DbState, FLAG_COMPRESS_LZ4, Header, LtxError, LtxReader, LtxWriter, MemStore, apply,
    page_checksum, verify,
};
use crate::core::types::{Checksum, NodeId, PageNo, Txid};

/// Decodes and verifies arbitrary bytes as an LTX file, then applies it to an empty database.
/// Must never panic or allocate without bound.
pub fn ltx_decode(data: &[u8]) {
    let _ = verify(data, data.len() as u64);
    if let Ok(r) = LtxReader::new(data, data.len() as u64) {
        let _ = apply(r, &mut MemStore::default(), &mut DbState::default());
    }
}

/// If `data` is a valid LTX file, re-encoding its header and pages must give a file that
/// decodes to the same pages and the same trailer, and, uncompressed, the very same bytes.
pub fn ltx_roundtrip(data: &[u8]) {
    let Ok(summary) = verify(data, data.len() as u64) else { return };
    let Ok(mut r) = LtxReader::new(data, data.len() as u64) else {
        panic!("verified file failed to open");
    };
    let mut w = LtxWriter::new(Vec::new(), *r.header()).expect("valid header re-encodes");
    let mut pages = Vec::new();
    while let Some(p) = r.next_page().expect("verified file decodes") {
        w.write_page(p.pgno, p.data).expect("decoded page re-encodes");
        pages.push((p.pgno, p.data.to_vec()));
    }
    let (out, trailer) =
        w.finish(summary.trailer.post_apply_checksum).expect("verified file re-encodes");
    assert_eq!(trailer, summary.trailer, "re-encoding changed the checksums");
    if !summary.header.is_compressed() {
        assert_eq!(out, data, "uncompressed re-encoding differs");
    }
    let mut r2 = LtxReader::new(&out[..], out.len() as u64).expect("re-encoding opens");
    for (pgno, page) in &pages {
        let p = r2.next_page().expect("re-encoding decodes").expect("same page count");
        assert_eq!((p.pgno, p.data), (*pgno, &page[..]));
    }
    assert!(r2.next_page().expect("re-encoding verifies").is_none());
}

/// Interprets `data` as a script for the writer: whatever it accepts must decode to exactly
/// what was written, with the checksums the writer reported.
///
/// Layout: byte 0 picks page size (512 << (b & 3)), compression (b & 4) and snapshot (b & 8);
/// byte 1 is Commit; then repeated `[pgno delta][fill byte]` pairs.
pub fn ltx_encode(data: &[u8]) {
    let [b0, commit, rest @ ..] = data else { return };
    let page_size = 512u32 << (b0 & 3);
    let snapshot = b0 & 8 != 0;
    let header = Header {
        flags: if b0 & 4 != 0 { FLAG_COMPRESS_LZ4 } else { 0 },
        page_size,
        commit: u32::from(*commit),
        min_txid: Txid(if snapshot { 1 } else { 7 }),
        max_txid: Txid(9),
        timestamp: 1,
        pre_apply_checksum: Checksum(if snapshot { 0 } else { Checksum::FLAG | 0x55 }),
        node_id: NodeId(3),
        ..Header::default()
    };
    let Ok(mut w) = LtxWriter::new(Vec::new(), header) else { return };
    let mut pgno = 0u32;
    let mut written = Vec::new();
    let mut xor = 0u64;
    for pair in rest.chunks_exact(2) {
        pgno += u32::from(pair[0]);
        let page = vec![pair[1]; page_size as usize];
        match w.write_page(PageNo(pgno), &page) {
            Ok(()) => {
                xor ^= page_checksum(PageNo(pgno), &page).0;
                written.push((PageNo(pgno), pair[1]));
            }
            Err(LtxError::Misuse(_)) => return,
            Err(e) => panic!("writer failed on a Vec: {e}"),
        }
    }
    let post = Checksum(Checksum::FLAG | xor);
    let (out, trailer) = match w.finish(post) {
        Ok(x) => x,
        Err(LtxError::Misuse(_)) => return,
        Err(e) => panic!("writer failed on a Vec: {e}"),
    };
    let mut r = LtxReader::new(&out[..], out.len() as u64).expect("writer output opens");
    for (pgno, fill) in &written {
        let p = r.next_page().expect("writer output decodes").expect("same page count");
        assert_eq!(p.pgno, *pgno);
        assert!(p.data.iter().all(|b| b == fill));
    }
    assert!(r.next_page().expect("writer output verifies").is_none());
    assert_eq!(r.trailer(), Some(&trailer));
}
