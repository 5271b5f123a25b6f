//! Error paths of the reader, writer, apply and compaction, on hand-built files.
//!
//! `raw` builds plain (uncompressed) files byte by byte, bypassing the writer's checks, so
//! each invariant the decoder enforces can be broken on its own.

use super::checksum::CRC64;
use super::*;
use crate::core::types::{Checksum, NodeId, PageNo, Pos, Txid};

const PS: u32 = 512;

fn page(fill: u8) -> Vec<u8> {
    vec![fill; PS as usize]
}

fn hdr(min: u64, max: u64, commit: u32, pre: u64) -> Header {
    Header {
        flags: 0,
        page_size: PS,
        commit,
        min_txid: Txid(min),
        max_txid: Txid(max),
        timestamp: 1_700_000_000_000,
        pre_apply_checksum: Checksum(pre),
        node_id: NodeId(0xabc),
        ..Header::default()
    }
}

fn db_checksum(pages: &[(u32, Vec<u8>)]) -> Checksum {
    let mut c = PageChecksums::new();
    for (p, d) in pages {
        c.set(PageNo(*p), page_checksum(PageNo(*p), d));
    }
    c.checksum()
}

/// A plain file with a correct file checksum over exactly these bytes.
fn raw(h: &Header, pages: &[(u32, Vec<u8>)], post: Checksum) -> Vec<u8> {
    let mut out = h.encode().to_vec();
    for (p, d) in pages {
        out.extend_from_slice(&p.to_be_bytes());
        out.extend_from_slice(d);
    }
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&post.0.to_be_bytes());
    let sum = Checksum::FLAG | CRC64.checksum(&out);
    out.extend_from_slice(&sum.to_be_bytes());
    out
}

fn written(h: Header, pages: &[(u32, Vec<u8>)], post: Checksum) -> Vec<u8> {
    let mut w = LtxWriter::new(Vec::new(), h).unwrap();
    for (p, d) in pages {
        w.write_page(PageNo(*p), d).unwrap();
    }
    w.finish(post).unwrap().0
}

fn rd(b: &[u8]) -> LtxReader<&[u8]> {
    LtxReader::new(b, b.len() as u64).unwrap()
}

fn check(b: &[u8]) -> Result<Summary, LtxError> {
    verify(b, b.len() as u64)
}

fn snapshot3() -> (Vec<(u32, Vec<u8>)>, Checksum) {
    let pages = vec![(1, page(1)), (2, page(2)), (3, page(3))];
    let sum = db_checksum(&pages);
    (pages, sum)
}

#[test]
fn raw_and_writer_agree() {
    let (pages, sum) = snapshot3();
    let h = hdr(1, 1, 3, 0);
    assert_eq!(raw(&h, &pages, sum), written(h, &pages, sum));
    let s = check(&raw(&h, &pages, sum)).unwrap();
    assert_eq!(s.page_count, 3);
    assert_eq!(s.trailer.post_apply_checksum, sum);
}

#[test]
fn compressed_round_trip_and_reader_state() {
    let (pages, sum) = snapshot3();
    let h = Header { flags: FLAG_COMPRESS_LZ4, ..hdr(1, 1, 3, 0) };
    let b = written(h, &pages, sum);
    let mut r = LtxReader::new(&b[..], b.len() as u64).unwrap();
    assert_eq!(r.header(), &h);
    let mut got = vec![];
    while let Some(p) = r.next_page().unwrap() {
        got.push((p.pgno.0, p.data.to_vec()));
    }
    assert_eq!(got, pages);
    assert_eq!(r.trailer().unwrap().post_apply_checksum, sum);
    assert!(r.next_page().unwrap().is_none(), "stays at end");
}

#[test]
fn too_short_and_truncated_header() {
    assert!(matches!(check(&[0; 119]), Err(LtxError::TooShort { len: 119 })));
    let b = [0u8; 150];
    let e = LtxReader::new(&b[..50], 150).err().unwrap();
    assert!(matches!(e, LtxError::Truncated { offset: 0, what: "header" }), "{e}");
}

#[test]
fn header_errors_surface_through_the_reader() {
    let (pages, sum) = snapshot3();
    let mut b = raw(&hdr(1, 1, 3, 0), &pages, sum);
    b[0] = b'X';
    assert!(matches!(check(&b), Err(LtxError::Header(HeaderError::BadMagic(_)))));
    let b = raw(&Header { page_size: 1000, ..hdr(1, 1, 3, 0) }, &pages, sum);
    assert!(matches!(check(&b), Err(LtxError::Header(HeaderError::InvalidPageSize(1000)))));
}

#[test]
fn truncated_body() {
    let (pages, sum) = snapshot3();
    let b = raw(&hdr(1, 1, 3, 0), &pages, sum);
    // Claim the full length but supply less: cut inside the page header of page 2.
    let cut = 100 + 516 + 2;
    let e = LtxReader::new(&b[..cut], b.len() as u64).and_then(|r| r.finish()).err().unwrap();
    assert!(matches!(e, LtxError::Truncated { offset: 616, what: "page header" }), "{e}");
    // A shorter file: the page data of page 3 runs into where the trailer must be.
    let short = [&b[..100 + 516 * 2 + 100], &b[b.len() - 20..]].concat();
    let e = check(&short).err().unwrap();
    assert!(matches!(e, LtxError::Truncated { offset: 1136, what: "page data" }), "{e}");
}

#[test]
fn trailing_bytes_after_terminator() {
    let (pages, sum) = snapshot3();
    let b = raw(&hdr(1, 1, 3, 0), &pages, sum);
    let n = b.len();
    let padded = [&b[..n - 16], &[0u8; 5][..], &b[n - 16..]].concat();
    let e = check(&padded).err().unwrap();
    assert!(matches!(e, LtxError::TrailingBody { offset: 1652, extra: 5 }), "{e}");
}

#[test]
fn page_order_commit_lock_and_snapshot_rules() {
    let pre = 0x8000_0000_0000_0001;
    let post = Checksum(0x8000_0000_0000_0002);
    type Pages = Vec<(u32, Vec<u8>)>;
    let cases: Vec<(Header, Pages, &str)> = vec![
        (hdr(2, 2, 5, pre), vec![(3, page(1)), (3, page(1))], "order"),
        (hdr(2, 2, 5, pre), vec![(4, page(1)), (2, page(1))], "order"),
        (hdr(2, 2, 5, pre), vec![(6, page(1))], "commit"),
        (hdr(2, 2, 0, pre), vec![(1, page(1))], "deletion"),
        (hdr(2, 2, 2_097_160, pre), vec![(2_097_153, page(1))], "lock"),
        (hdr(1, 1, 3, 0), vec![(1, page(1)), (3, page(1))], "gap"),
        (hdr(1, 1, 3, 0), vec![(2, page(1))], "gap"),
        (hdr(1, 1, 3, 0), vec![(1, page(1)), (2, page(1))], "incomplete"),
    ];
    for (h, pages, what) in cases {
        let e = check(&raw(&h, &pages, post)).err().unwrap();
        let ok = match what {
            "order" => matches!(e, LtxError::PageOrder { .. }),
            "commit" => matches!(e, LtxError::PageBeyondCommit { pgno: PageNo(6), commit: 5, .. }),
            "deletion" => matches!(e, LtxError::PageInDeletion { pgno: PageNo(1) }),
            "lock" => matches!(e, LtxError::LockPage { offset: 100, pgno: PageNo(2_097_153) }),
            "gap" => matches!(e, LtxError::SnapshotGap { .. }),
            "incomplete" => {
                matches!(e, LtxError::SnapshotIncomplete { last: PageNo(2), commit: 3 })
            }
            _ => unreachable!(),
        };
        assert!(ok, "{what}: {e}");
    }
}

#[test]
fn snapshot_skips_the_lock_page() {
    // 512-byte pages put the lock page at 2097153: a snapshot of 2097154 pages is too big for
    // a unit test, so check the writer and reader agree on the rule through the helper.
    let lock = PageNo::lock_page(PS);
    assert_eq!(reader::next_snapshot_page(PageNo(lock.0 - 1), lock), PageNo(lock.0 + 1));
    assert_eq!(reader::next_snapshot_page(PageNo(1), lock), PageNo(2));
}

#[test]
fn checksum_mismatches() {
    let (pages, sum) = snapshot3();
    let mut b = raw(&hdr(1, 1, 3, 0), &pages, sum);
    b[100 + 4 + 10] ^= 0xff; // a byte of page 1
    assert!(matches!(check(&b), Err(LtxError::FileChecksum { .. })));

    let wrong = Checksum(sum.0 ^ 1);
    let b = raw(&hdr(1, 1, 3, 0), &pages, wrong);
    let e = check(&b).err().unwrap();
    assert!(
        matches!(e, LtxError::PostApplyChecksum { expected, actual } if expected == wrong && actual == sum)
    );

    // Deletions must carry the empty-database checksum.
    let b = raw(&hdr(4, 4, 0, 0x8000_0000_0000_0009), &[], Checksum(0x8000_0000_0000_0001));
    assert!(matches!(check(&b), Err(LtxError::PostApplyChecksum { .. })));
    let b = raw(&hdr(4, 4, 0, 0x8000_0000_0000_0009), &[], Checksum::EMPTY);
    assert_eq!(check(&b).unwrap().page_count, 0);
}

#[test]
fn trailer_flags_are_required() {
    let b = raw(&hdr(2, 2, 3, 0x8000_0000_0000_0001), &[(1, page(1))], Checksum(7));
    assert!(matches!(check(&b), Err(LtxError::Trailer(TrailerError::BadPostApply(Checksum(7))))));
    let mut b = raw(&hdr(2, 2, 3, 0x8000_0000_0000_0001), &[], Checksum::EMPTY);
    let n = b.len();
    b[n - 8..].copy_from_slice(&5u64.to_be_bytes());
    assert!(matches!(check(&b), Err(LtxError::Trailer(TrailerError::BadFileChecksum(_)))));
}

#[test]
fn corrupt_and_truncated_lz4() {
    let (pages, sum) = snapshot3();
    let h = Header { flags: FLAG_COMPRESS_LZ4, ..hdr(1, 1, 3, 0) };
    let b = written(h, &pages, sum);
    let n = b.len();
    // Every single-byte corruption of the LZ4 frame is an error, never a panic or success.
    for i in 100..n - 16 {
        let mut c = b.clone();
        c[i] ^= 0x55;
        assert!(check(&c).is_err(), "corruption at {i} accepted");
    }
    // Drop the last compressed byte (content checksum) while keeping the trailer.
    let cut = [&b[..n - 17], &b[n - 16..]].concat();
    assert!(matches!(check(&cut), Err(LtxError::Lz4 { .. })), "{:?}", check(&cut).err());
    // Garbage after the frame.
    let pad = [&b[..n - 16], &[1u8, 2, 3][..], &b[n - 16..]].concat();
    assert!(matches!(check(&pad), Err(LtxError::Lz4 { .. })), "{:?}", check(&pad).err());
}

#[test]
fn reader_refuses_use_after_error() {
    let (pages, sum) = snapshot3();
    let mut b = raw(&hdr(1, 1, 3, 0), &pages, sum);
    b[100] = 0xff; // pgno of the first page becomes huge
    let mut r = LtxReader::new(&b[..], b.len() as u64).unwrap();
    assert!(r.next_page().is_err());
    assert!(matches!(r.next_page(), Err(LtxError::Misuse(_))));
}

#[test]
fn writer_refuses_invalid_files() {
    let misuse = |h: Header, pages: &[(u32, Vec<u8>)], post: Checksum| {
        let mut w = LtxWriter::new(Vec::new(), h).unwrap();
        for (p, d) in pages {
            w.write_page(PageNo(*p), d)?;
        }
        w.finish(post).map(|_| ())
    };
    let pre = 0x8000_0000_0000_0001;
    let post = Checksum(0x8000_0000_0000_0002);
    let inc = hdr(2, 2, 5, pre);
    for (h, pages, post) in [
        (inc, vec![(2, page(1)), (2, page(1))], post),
        (inc, vec![(0, page(1))], post),
        (inc, vec![(6, page(1))], post),
        (inc, vec![(1, vec![0; 100])], post),
        (hdr(2, 2, 2_097_160, pre), vec![(2_097_153, page(1))], post),
        (hdr(1, 1, 3, 0), vec![(2, page(1))], post),
        (hdr(1, 1, 3, 0), vec![(1, page(1))], post),
        (hdr(1, 1, 1, 0), vec![(1, page(1))], post),
        (inc, vec![], Checksum(2)),
    ] {
        assert!(matches!(misuse(h, &pages, post), Err(LtxError::Misuse(_))), "{h:?} {pages:?}");
    }
    assert!(matches!(
        LtxWriter::new(Vec::new(), Header { page_size: 3, ..inc }),
        Err(LtxError::Header(HeaderError::InvalidPageSize(3)))
    ));
}

fn applied(files: &[Vec<u8>]) -> (MemStore, DbState) {
    let mut store = MemStore::default();
    let mut state = DbState::default();
    for f in files {
        apply(LtxReader::new(&f[..], f.len() as u64).unwrap(), &mut store, &mut state).unwrap();
    }
    (store, state)
}

fn try_apply(f: &[u8], store: &mut MemStore, state: &mut DbState) -> Result<Pos, LtxError> {
    apply(LtxReader::new(f, f.len() as u64)?, store, state)
}

#[test]
fn apply_checks_position_and_checksums() {
    let (pages, sum) = snapshot3();
    let snap = raw(&hdr(1, 1, 3, 0), &pages, sum);
    let next_pages = vec![(2, page(9)), (4, page(4))];
    let all = [(1, page(1)), (2, page(9)), (3, page(3)), (4, page(4))];
    let sum2 = db_checksum(&all);
    let inc = raw(&hdr(2, 2, 4, sum.0), &next_pages, sum2);
    let (store, state) = applied(&[snap.clone(), inc.clone()]);
    assert_eq!(state.pos, Pos { txid: Txid(2), checksum: sum2 });
    assert_eq!(store.bytes, all.iter().flat_map(|(_, d)| d.clone()).collect::<Vec<_>>());

    // Wrong TXID.
    let (mut store, mut state) = applied(std::slice::from_ref(&snap));
    let skip = raw(&hdr(3, 3, 4, sum.0), &next_pages, sum2);
    assert!(matches!(
        try_apply(&skip, &mut store, &mut state),
        Err(LtxError::PositionMismatch { .. })
    ));
    // Right TXID, wrong pre-apply checksum in the file.
    let other = raw(&hdr(2, 2, 4, sum.0 ^ 2), &next_pages, sum2);
    assert!(matches!(
        try_apply(&other, &mut store, &mut state),
        Err(LtxError::PositionMismatch { .. })
    ));
    // The database's checksums disagree with its recorded position (a corrupt cache).
    let mut bad = state.clone();
    bad.checksums.set(PageNo(1), page_checksum(PageNo(1), &page(7)));
    assert!(matches!(
        try_apply(&inc, &mut store.clone(), &mut bad),
        Err(LtxError::PreApplyChecksum { .. })
    ));
    // A page size change must rewrite every page: this file does not.
    let mut big = state.clone();
    big.page_size = 4096;
    assert!(matches!(
        try_apply(&inc, &mut store.clone(), &mut big),
        Err(LtxError::HolePastEnd { .. } | LtxError::CommitPastPages { .. })
    ));
    // Post-apply promise broken (a file whose pages don't give its trailer's checksum).
    let lie = raw(&hdr(2, 2, 4, sum.0), &next_pages, Checksum(sum2.0 ^ 4));
    assert!(matches!(
        try_apply(&lie, &mut store.clone(), &mut state.clone()),
        Err(LtxError::PostApplyMismatch { .. })
    ));
    // Commit far past the pages supplied.
    let grow = raw(&hdr(2, 2, 4_000_000_000, sum.0), &next_pages, sum2);
    assert!(matches!(
        try_apply(&grow, &mut store.clone(), &mut state.clone()),
        Err(LtxError::CommitPastPages { commit: 4_000_000_000, pages: 4 })
    ));
    // A page far past the end.
    let far = raw(&hdr(2, 2, 4_000_000_000, sum.0), &[(3_999_999_999, page(1))], sum2);
    assert!(matches!(
        try_apply(&far, &mut store.clone(), &mut state.clone()),
        Err(LtxError::HolePastEnd { pgno: PageNo(3_999_999_999), pages: 3 })
    ));
}

fn extends_ok(end: u32, pgno: u32) -> bool {
    apply::extends(end, PageNo(pgno), PageNo::lock_page(PS))
}

#[test]
fn growth_may_skip_only_the_lock_page() {
    let lock = PageNo::lock_page(PS).0;
    assert!(extends_ok(3, 4) && !extends_ok(3, 5));
    assert!(extends_ok(lock - 1, lock + 1));
    assert!(!extends_ok(lock - 1, lock + 2));
    assert!(extends_ok(lock + 1, lock + 2));
}

#[test]
fn apply_truncates_and_deletes() {
    let (pages, sum) = snapshot3();
    let snap = raw(&hdr(1, 1, 3, 0), &pages, sum);
    let shrunk = db_checksum(&pages[..1]);
    let shrink = raw(&hdr(2, 2, 1, sum.0), &[], shrunk);
    let (store, state) = applied(&[snap.clone(), shrink]);
    assert_eq!(store.bytes, page(1));
    assert_eq!(state.pos.checksum, shrunk);
    let del = raw(&hdr(2, 2, 0, sum.0), &[], Checksum::EMPTY);
    let (store, state) = applied(&[snap, del]);
    assert!(store.bytes.is_empty());
    assert_eq!(state.pos, Pos { txid: Txid(2), checksum: Checksum::EMPTY });
    assert_eq!(state.page_size, 0);
}

#[test]
fn compaction_rules() {
    let (pages, sum) = snapshot3();
    let snap = raw(&hdr(1, 1, 3, 0), &pages, sum);
    let sum2 = db_checksum(&[(1, page(1)), (2, page(8)), (3, page(3))]);
    let inc2 = raw(&hdr(2, 2, 3, sum.0), &[(2, page(8))], sum2);
    let sum3 = db_checksum(&[(1, page(1)), (2, page(8))]);
    let inc3 = raw(&hdr(3, 3, 2, sum2.0), &[(1, page(1))], sum3);

    let (out, h) = compact(vec![rd(&snap), rd(&inc2), rd(&inc3)], 0, Vec::new()).unwrap();
    assert_eq!((h.min_txid, h.max_txid, h.commit), (Txid(1), Txid(3), 2));
    let mut r = rd(&out);
    let mut got = vec![];
    while let Some(p) = r.next_page().unwrap() {
        got.push((p.pgno.0, p.data.to_vec()));
    }
    assert_eq!(got, vec![(1, page(1)), (2, page(8))], "newest wins, page 3 dropped");
    assert_eq!(r.trailer().unwrap().post_apply_checksum, sum3);

    assert!(matches!(
        compact(vec![rd(&snap), rd(&inc3)], 0, Vec::new()),
        Err(LtxError::Compaction(_))
    ));
    let broken = raw(&hdr(3, 3, 2, sum.0), &[(1, page(1))], sum3);
    assert!(matches!(
        compact(vec![rd(&snap), rd(&inc2), rd(&broken)], 0, Vec::new()),
        Err(LtxError::Compaction(_))
    ));
    let other_size = raw(&Header { page_size: 1024, ..hdr(2, 2, 3, sum.0) }, &[], sum2);
    assert!(matches!(
        compact(vec![rd(&snap), rd(&other_size)], 0, Vec::new()),
        Err(LtxError::Compaction(_))
    ));
    assert!(matches!(
        compact(Vec::<LtxReader<&[u8]>>::new(), 0, Vec::new()),
        Err(LtxError::Compaction(_))
    ));
    assert_eq!(merged_range(&[(Txid(1), Txid(2)), (Txid(3), Txid(3))]), Some((Txid(1), Txid(3))));
    assert_eq!(merged_range(&[(Txid(1), Txid(2)), (Txid(4), Txid(4))]), None);
}
