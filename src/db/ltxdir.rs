//! The `ltx/` directory of one database: naming, atomic writes, listing, retention.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Write};
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

    /// `(min, max, path)` of every LTX file, sorted by TXID.
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
        out.sort();
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

    /// Opens a reader on the file at `path`.
    pub fn open(path: &Path) -> Result<LtxReader<BufReader<File>>, ltx::LtxError> {
        let f = File::open(path)?;
        let len = f.metadata()?.len();
        LtxReader::new(BufReader::with_capacity(256 << 10, f), len)
    }

    /// Writes a file atomically: `write` fills a temp file, which is renamed into place.
    /// With `sync`, the file and the directory are fsynced before returning.
    ///
    /// Hazard: without `sync` the rename may reach disk before the data; the startup check
    /// (verify the newest file) catches such a torn file.
    pub fn write_atomic<F>(&self, min: Txid, max: Txid, sync: bool, write: F) -> io::Result<PathBuf>
    where
        F: FnOnce(&mut BufWriter<File>) -> io::Result<()>,
    {
        let final_path = self.dir.join(file_name(min, max));
        let tmp = self.dir.join(format!("{}.tmp", file_name(min, max)));
        let f = File::create(&tmp)?;
        let mut w = BufWriter::with_capacity(256 << 10, f);
        write(&mut w)?;
        w.flush()?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        if sync {
            f.sync_data()?;
        }
        drop(f);
        fs::rename(&tmp, &final_path)?;
        if sync {
            self.sync_dir()?;
        }
        Ok(final_path)
    }

    /// fsyncs the directory (makes renames durable).
    pub fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }

    /// Deletes files whose mtime is older than `retention` before `now`, always keeping the
    /// newest. Returns how many were removed.
    pub fn enforce_retention(&self, retention: Duration, now: SystemTime) -> io::Result<usize> {
        let files = self.list()?;
        let mut n = 0;
        let Some((_, keep)) = files.split_last() else { return Ok(0) };
        for (_, _, path) in keep {
            let mtime = fs::metadata(path)?.modified()?;
            if now.duration_since(mtime).unwrap_or_default() > retention {
                fs::remove_file(path)?;
                n += 1;
            }
        }
        Ok(n)
    }
}
