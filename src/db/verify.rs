//! `litefleet verify`: an offline check of one database directory (`dbs/<name>/`), read
//! only. Every LTX file is verified completely, and the database as SQLite reads it (the
//! file, then the WAL's committed frames) is compared with the newest intact file's
//! position. Nothing is changed: startup recovery is what repairs (see `recover`).

use std::fs::File;
use std::path::{Path, PathBuf};

use super::pages::{Backing, read_header, scan_db};
use super::waltxn::{self, TxnFiles};
use super::{FileKind, LtxDir};
use crate::core::commit::WalTracker;
use crate::core::types::{Checksum, Pos};

/// What [`verify_dir`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub name: String,
    /// LTX files that verified.
    pub intact: usize,
    /// Files that failed, with the reason.
    pub bad: Vec<(PathBuf, String)>,
    /// Position after the newest intact file.
    pub pos: Option<Pos>,
    /// Checksum of the database as SQLite reads it (`None`: no database file).
    pub actual: Option<Checksum>,
    /// Why the database needs attention (empty: it matches its position).
    pub problems: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.bad.is_empty()
    }
}

/// Verifies the database directory `dir`.
pub fn verify_dir(name: &str, dir: &Path) -> std::io::Result<Report> {
    let ltx = LtxDir::new(dir.join("ltx"));
    let mut r = Report {
        name: name.to_owned(),
        intact: 0,
        bad: Vec::new(),
        pos: None,
        actual: None,
        problems: Vec::new(),
    };
    let mut newest = None;
    for (_, _, path) in ltx.list()? {
        match LtxDir::verify(&path) {
            Ok(s) => {
                r.intact += 1;
                newest = Some(s);
            }
            Err(e) => r.bad.push((path, e.to_string())),
        }
    }
    r.pos = newest
        .as_ref()
        .map(|s| Pos { txid: s.header.max_txid, checksum: s.trailer.post_apply_checksum });
    let deleted = newest.as_ref().is_some_and(|s| s.header.is_deletion());
    let db_path = dir.join(FileKind::Database.backing_name());
    let Ok(dbf) = File::open(&db_path) else {
        if !deleted && r.pos.is_some() {
            r.problems.push("the database file is missing".into());
        }
        return Ok(r);
    };
    let Some(header) = read_header(&dbf)? else {
        if dbf.metadata()?.len() > 0 || (r.pos.is_some() && !deleted) {
            r.problems.push("the database file has no valid SQLite header".into());
        }
        return Ok(r);
    };
    let ps = header.page_size;
    let mut sums = scan_db(&dbf, &db_path, ps)?;
    let wal_path = dir.join(FileKind::Wal.backing_name());
    if let Ok(w) = File::open(&wal_path) {
        let files =
            TxnFiles { wal: Backing::new(&w, &wal_path), db: Some(Backing::new(&dbf, &db_path)) };
        let mut wal = WalTracker::new();
        for txn in wal.scan(&w, ps)? {
            waltxn::apply(&mut sums, files, &txn, ps)?;
        }
    }
    let actual = sums.checksum();
    r.actual = Some(actual);
    if dir.join(FileKind::Journal.backing_name()).exists() {
        let j = std::fs::read(dir.join(FileKind::Journal.backing_name()))?;
        if crate::core::sqlite::journal_records(&j, ps).is_some() {
            r.problems.push(
                "a hot journal: a transaction was cut off (the next start recovers it)".into(),
            );
        }
    }
    match r.pos {
        None => r.problems.push("no intact LTX file (the next start writes a snapshot)".into()),
        Some(p) if p.checksum != actual => r
            .problems
            .push(format!("the database's checksum {actual} differs from its position {p}")),
        Some(_) => {}
    }
    Ok(r)
}
