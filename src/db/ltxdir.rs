//! The `ltx/` directory of one database: naming, atomic writes, listing, retention.

use std::fs::{self, File};
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::core::ltx::{self, LtxReader, Summary, file_name, parse_file_name};
use crate::core::types::Txid;

/// `dbs/<name>/ltx/`.
#[derive(Debug, Clone)]
pub struct LtxDir {
    dir: PathBuf,
}

impl LtxDir {
    pub fn new(dir: PathBuf) -> LtxDir {
        LtxDir { dir }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// `(min, max, path)` of every LTX file, oldest first: sorted by max TXID, then min.
    ///
    /// Invariant: the last entry is the newest file (highest max TXID). Sorting by min would
    /// not say that once a snapshot (min 1) sits beside incremental files, as after recovery
    /// rebuilt a damaged history from the database file, and retention keeps the last one.
    pub fn list(&self) -> io::Result<Vec<(Txid, Txid, PathBuf)>> {
        let mut out = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for e in entries {
            let e = e?;
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some((min, max)) = parse_file_name(name) {
                out.push((min, max, e.path()));
            }
        }
        out.sort_by_key(|a| (a.1, a.0));
        Ok(out)
    }

    /// Removes leftovers of interrupted writes (`*.tmp`).
    pub fn remove_temp_files(&self) -> io::Result<usize> {
        let mut n = 0;
        if let Ok(entries) = fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                if e.path().extension().is_some_and(|x| x == "tmp") {
                    fs::remove_file(e.path())?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// Verifies the file at `path` completely.
    pub fn verify(path: &Path) -> Result<Summary, ltx::LtxError> {
        let f = File::open(path)?;
        let len = f.metadata()?.len();
        ltx::verify(BufReader::with_capacity(256 << 10, f), len)
    }

    /// Header and trailer of the file at `path`, without reading its body (nothing
    /// verified beyond the header's own checks).
    pub fn read_ends(path: &Path) -> Result<Summary, ltx::LtxError> {
        use std::os::unix::fs::FileExt;
        let f = File::open(path)?;
        let len = f.metadata()?.len();
        if len < (ltx::HEADER_SIZE + ltx::TRAILER_SIZE) as u64 {
            return Err(ltx::LtxError::Io(io::Error::other("LTX file too short")));
        }
        let mut h = [0u8; ltx::HEADER_SIZE];
        let mut t = [0u8; ltx::TRAILER_SIZE];
        f.read_exact_at(&mut h, 0)?;
        f.read_exact_at(&mut t, len - ltx::TRAILER_SIZE as u64)?;
        let header = ltx::Header::decode(&h).map_err(ltx::LtxError::from)?;
        Ok(Summary { header, trailer: ltx::Trailer::decode(&t), page_count: 0 })
    }

    /// Opens a reader on the file at `path`.
    pub fn open(path: &Path) -> Result<LtxReader<BufReader<File>>, ltx::LtxError> {
        let f = File::open(path)?;
        let len = f.metadata()?.len();
        LtxReader::new(BufReader::with_capacity(256 << 10, f), len)
    }

    /// Writes the file for `min..=max` under its final name, fdatasyncing it with `sync`.
    ///
    /// No temp file and rename: a file cut short by a crash fails its trailer checksum, and
    /// startup recovery moves it aside and rebuilds it from the WAL or journal (see
    /// `recover`). That saves a directory operation on every commit.
    pub fn write_file(&self, min: Txid, max: Txid, data: &[u8], sync: bool) -> io::Result<PathBuf> {
        let path = self.dir.join(file_name(min, max));
        let mut f = File::create(&path)?;
        f.write_all(data)?;
        if sync {
            f.sync_data()?;
        }
        Ok(path)
    }

    /// fsyncs the directory (makes renames durable).
    pub fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }

    /// Deletes files whose mtime is older than `retention` before `now`, always keeping the
    /// newest. Says what it removed and what is left.
    pub fn enforce_retention(&self, retention: Duration, now: SystemTime) -> io::Result<Retained> {
        let files = self.list()?;
        let mut r = Retained::default();
        let Some(((_, _, newest), keep)) = files.split_last() else { return Ok(r) };
        for (_, _, path) in keep {
            let md = match fs::metadata(path) {
                Ok(md) => md,
                // Moved aside or set aside meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if now.duration_since(md.modified()?).unwrap_or_default() > retention {
                fs::remove_file(path)?;
                r.removed += 1;
            } else {
                r.files += 1;
                r.bytes += md.len();
            }
        }
        if let Ok(md) = fs::metadata(newest) {
            r.files += 1;
            r.bytes += md.len();
        }
        Ok(r)
    }

    /// How many files `ltx/` holds and their total size.
    pub fn usage(&self) -> io::Result<(usize, u64)> {
        let mut n = 0;
        let mut bytes = 0;
        for (_, _, path) in self.list()? {
            if let Ok(md) = fs::metadata(&path) {
                n += 1;
                bytes += md.len();
            }
        }
        Ok((n, bytes))
    }
}

/// What a retention pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retained {
    /// Files removed.
    pub removed: usize,
    /// Files left, and their total size.
    pub files: usize,
    pub bytes: u64,
}
