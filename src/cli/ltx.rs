//! `litefleet ltx …`: LTX files on disk, through the core codec.

use std::fs::{self, File};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use litefleet::core::ltx::{
    self, DbState, FLAG_COMPRESS_LZ4, LtxReader, Summary, check_chain, page_checksum,
    parse_file_name,
};
use litefleet::core::types::Pos;
use litefleet::storage::FileStore;

use super::LtxCommand;

pub fn run(cmd: LtxCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        LtxCommand::Verify { paths } => verify(&paths),
        LtxCommand::Dump { file, pages } => dump(&file, pages),
        LtxCommand::Apply { paths, out } => apply(&paths, &out),
        LtxCommand::Compact { paths, out, no_compress } => compact(&paths, &out, !no_compress),
    }
}

/// Expands directories into their `.ltx` files (sorted by TXID range); files pass through.
/// Returns groups: one per directory argument, one per file argument.
fn expand(paths: &[PathBuf]) -> anyhow::Result<Vec<Vec<PathBuf>>> {
    let mut groups = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut files = Vec::new();
            for e in fs::read_dir(p).with_context(|| format!("reading {}", p.display()))? {
                let path = e?.path();
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                if let Some(range) = parse_file_name(name) {
                    files.push((range, path));
                }
            }
            files.sort();
            groups.push(files.into_iter().map(|(_, p)| p).collect());
        } else {
            groups.push(vec![p.clone()]);
        }
    }
    Ok(groups)
}

fn open(path: &Path) -> anyhow::Result<LtxReader<BufReader<File>>> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = f.metadata()?.len();
    LtxReader::new(BufReader::with_capacity(1 << 20, f), len)
        .with_context(|| format!("{}", path.display()))
}

fn verify_file(path: &Path) -> anyhow::Result<Summary> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = f.metadata()?.len();
    let s = ltx::verify(BufReader::with_capacity(1 << 20, f), len)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if let Some((min, max)) = parse_file_name(name)
        && (min, max) != (s.header.min_txid, s.header.max_txid)
    {
        bail!(
            "file name says TXIDs {min}..{max}, header says {}..{}",
            s.header.min_txid,
            s.header.max_txid
        );
    }
    Ok(s)
}

fn verify(paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut bad = 0usize;
    let mut total = 0usize;
    println!(
        "{:<40} {:>17} {:>8} {:>7} {:>4} {:>16}  STATUS",
        "FILE", "TXIDS", "COMMIT", "PAGES", "LZ4", "POST-APPLY"
    );
    for group in expand(paths)? {
        let mut good = Vec::new();
        for path in &group {
            total += 1;
            let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
            match verify_file(path) {
                Ok(s) => {
                    println!(
                        "{:<40} {:>17} {:>8} {:>7} {:>4} {:>16}  ok",
                        name,
                        format!("{:x}..{:x}", s.header.min_txid.0, s.header.max_txid.0),
                        s.header.commit,
                        s.page_count,
                        if s.header.is_compressed() { "yes" } else { "no" },
                        s.trailer.post_apply_checksum,
                    );
                    good.push(s);
                }
                Err(e) => {
                    bad += 1;
                    println!(
                        "{name:<40} {:>17} {:>8} {:>7} {:>4} {:>16}  FAILED: {e:#}",
                        "", "", "", "", ""
                    );
                }
            }
        }
        if group.len() > 1 {
            let (breaks, end) = check_chain(&good);
            for b in &breaks {
                println!("chain break: {b}");
            }
            bad += breaks.len();
            if let Some(end) = end {
                let (first, last) = (&good[0].header, &good[good.len() - 1].header);
                println!(
                    "chain: {} files, TXID {}..{}, {}; position after the last file: {end}",
                    good.len(),
                    first.min_txid,
                    last.max_txid,
                    if breaks.is_empty() { "unbroken" } else { "BROKEN" },
                );
            }
        }
    }
    println!("{total} files checked, {bad} problems");
    Ok(if bad == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn dump(path: &Path, pages: bool) -> anyhow::Result<ExitCode> {
    let mut r = open(path)?;
    let h = *r.header();
    println!("file:        {}", path.display());
    println!("flags:       0x{:08x}{}", h.flags, if h.is_compressed() { " (lz4)" } else { "" });
    println!("page size:   {}", h.page_size);
    println!("commit:      {}", h.commit);
    println!("min txid:    {}", h.min_txid);
    println!("max txid:    {}", h.max_txid);
    println!("timestamp:   {} ms", h.timestamp);
    println!("pre-apply:   {}", h.pre_apply_checksum);
    println!("wal offset:  {}", h.wal_offset);
    println!("wal size:    {}", h.wal_size);
    println!("wal salts:   {:08x} {:08x}", h.wal_salt1, h.wal_salt2);
    println!("node id:     {}", h.node_id);
    let mut n = 0u32;
    while let Some(p) = r.next_page()? {
        n += 1;
        if pages {
            println!("page {:>10}  {}", p.pgno, page_checksum(p.pgno, p.data));
        }
    }
    let t = r.trailer().copied().context("no trailer")?;
    println!("pages:       {n}");
    println!("post-apply:  {}", t.post_apply_checksum);
    println!("file sum:    {} (verified)", t.file_checksum);
    Ok(ExitCode::SUCCESS)
}

fn apply(paths: &[PathBuf], out: &Path) -> anyhow::Result<ExitCode> {
    let files: Vec<PathBuf> = expand(paths)?.into_iter().flatten().collect();
    let mut store = FileStore::open(out).with_context(|| format!("opening {}", out.display()))?;
    let mut state = DbState::default();
    if !store.is_empty()? {
        let first = files.first().map(|f| open(f)).transpose()?;
        if !first.is_some_and(|r| r.header().is_snapshot()) {
            bail!("{} is not empty and the first file is not a snapshot", out.display());
        }
    }
    for f in &files {
        // Verify the whole file before touching the database: apply writes as it reads.
        verify_file(f)?;
        let pos = ltx::apply(open(f)?, &mut store, &mut state)
            .with_context(|| format!("applying {}", f.display()))?;
        tracing::debug!(file = %f.display(), %pos, "applied");
    }
    println!("{}", state.pos);
    Ok(ExitCode::SUCCESS)
}

fn compact(paths: &[PathBuf], out: &Path, compress: bool) -> anyhow::Result<ExitCode> {
    let files: Vec<PathBuf> = expand(paths)?.into_iter().flatten().collect();
    let inputs = files.iter().map(|f| open(f)).collect::<anyhow::Result<Vec<_>>>()?;
    let tmp = out.with_extension("tmp");
    let w = std::io::BufWriter::new(File::create(&tmp)?);
    let flags = if compress { FLAG_COMPRESS_LZ4 } else { 0 };
    let (w, h) = ltx::compact(inputs, flags, w)?;
    let f = w.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    fs::rename(&tmp, out)?;
    let pos = Pos { txid: h.max_txid, checksum: verify_file(out)?.trailer.post_apply_checksum };
    println!(
        "{} files -> {} (TXID {}..{}), position {pos}",
        files.len(),
        out.display(),
        h.min_txid,
        h.max_txid
    );
    Ok(ExitCode::SUCCESS)
}
