//! Command-line definitions and dispatch.

mod certs;
mod demo;
mod ltx;
mod mount;
mod replication;
mod run;
mod status;
mod transfer;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// SQLite replicated across a fleet of Linux machines.
#[derive(Debug, Parser)]
#[command(name = "litefleet", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node in the foreground: mount `fuse.dir`, serve its databases, run `exec`.
    Mount {
        /// Config file (default: ./litefleet.yml, ./litefs.yml, ~/litefs.yml, /etc/litefs.yml).
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        /// Do not expand $VAR / ${VAR} in the config file.
        #[arg(long)]
        no_expand_env: bool,
        /// Do not unmount a stale mount at fuse.dir before mounting.
        #[arg(long)]
        skip_unmount: bool,
        /// FUSE dispatch threads.
        #[arg(long, default_value_t = 4)]
        threads: usize,
        /// Command to run once the node is ready (overrides `exec`).
        #[arg(last = true)]
        exec: Vec<String>,
    },
    /// Start a local cluster (primary + replicas over QUIC, temporary directories), write on
    /// the primary and show every node's position and lag live; Ctrl-C stops and cleans up.
    Demo {
        /// Number of nodes (the first is the primary).
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Directory for the demo's nodes (default: a new one under the temp dir).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        duration: Option<f64>,
        /// Pause between the writer's commits, in milliseconds.
        #[arg(long, default_value_t = 100)]
        interval_ms: u64,
    },
    /// Make this node the primary: the running node asks the current primary to hand the
    /// lease over (Consul lease; the primary stops writes, waits until this node has its
    /// exact position, and moves the lease to it). Returns once this node is the primary.
    Promote {
        /// The node's config file (for `fuse.dir`).
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        /// The node's mount directory (instead of reading the config).
        #[arg(long)]
        mount: Option<PathBuf>,
    },
    /// Check every database of a stopped node's data directory: each LTX file verified
    /// completely, each database compared with its position's checksum. Read only; exits 1
    /// if anything is wrong. (A running node scrubs itself: `data.scrub-interval`.)
    Verify {
        /// The node's config file (for `data.dir`).
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        /// The data directory (instead of reading the config).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// The cluster as one node sees it (from its HTTP API's `/info`): the node's role and
    /// epoch, each database's position, and on the primary every replica with its lag.
    Status {
        /// The node's HTTP API.
        #[arg(long, default_value = status::DEFAULT_URL)]
        url: String,
        /// Print `/info`'s JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Download a database as a plain SQLite file at one position (`GET /export`): written to
    /// PATH.tmp, synced and renamed over PATH.
    Export {
        /// The database's name.
        #[arg(long)]
        name: String,
        /// The node's HTTP API (any node).
        #[arg(long, default_value = status::DEFAULT_URL)]
        url: String,
        path: PathBuf,
    },
    /// Create or replace a database from a SQLite file (`POST /import`, on the primary): the
    /// node checks it first, then writes it as one transaction that every replica receives.
    Import {
        /// The database's name.
        #[arg(long)]
        name: String,
        /// The primary's HTTP API.
        #[arg(long, default_value = status::DEFAULT_URL)]
        url: String,
        path: PathBuf,
    },
    /// Run a command next to a node, as LiteFS's `litefs run`: with `--if-candidate` only on
    /// a candidate, with `--promote` once this node is the primary (a graceful handoff).
    Run {
        /// The local node's HTTP API.
        #[arg(long, default_value = status::DEFAULT_URL)]
        url: String,
        /// Make this node the primary first (`POST /promote`), then run the command.
        #[arg(long)]
        promote: bool,
        /// Skip the command (exit 0) unless this node is a candidate (`lease.candidate`).
        #[arg(long)]
        if_candidate: bool,
        /// LiteFS's HALT lock on a database (not built yet: refused).
        #[arg(long, value_name = "DB_PATH")]
        with_halt_lock_on: Option<PathBuf>,
        /// Say what it does on stderr.
        #[arg(long, short = 'v')]
        verbose: bool,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Cluster certificates for mutual TLS between nodes.
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// Inspect, verify, replay and compact LTX transaction files (LiteFS-compatible).
    #[command(subcommand)]
    Ltx(LtxCommand),
}

#[derive(Debug, Subcommand)]
pub enum LtxCommand {
    /// Verify LTX files: every checksum, every header and page invariant, and, per directory,
    /// that the files form one unbroken chain. Exits 1 if anything is wrong.
    Verify {
        /// LTX files or directories of them (`<min>-<max>.ltx`, as in `dbs/<db>/ltx/`).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Print an LTX file's header, trailer and page numbers.
    Dump {
        file: PathBuf,
        /// Also list every page with its checksum.
        #[arg(long)]
        pages: bool,
    },
    /// Replay LTX files in TXID order onto a database file, checking every pre- and post-apply
    /// checksum, and print the resulting position.
    Apply {
        /// LTX files or directories of them.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The database file to write (created if missing; must be empty unless the first file
        /// is a snapshot).
        #[arg(long)]
        out: PathBuf,
    },
    /// Merge a contiguous run of LTX files into one.
    Compact {
        /// LTX files or directories of them.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The LTX file to write.
        #[arg(long)]
        out: PathBuf,
        /// Write the page block uncompressed (LiteFS's `data.compress: false`).
        #[arg(long)]
        no_compress: bool,
    },
}

/// LiteFS's commands take Go-style flags with one dash (`litefs import -name db -url U`):
/// those flag names, given with one dash, are rewritten to clap's two (`--name`, `--url=U`).
/// Only whole known names are rewritten, so short flags and values are left alone.
pub fn go_flags(args: impl IntoIterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    const GO_FLAGS: [&str; 9] = [
        "name",
        "url",
        "config",
        "json",
        "no-expand-env",
        "skip-unmount",
        "promote",
        "if-candidate",
        "with-halt-lock-on",
    ];
    // Nothing after `--` is rewritten: it is a command's own arguments (`litefleet run`).
    let mut rest = false;
    args.into_iter()
        .map(|a| {
            if rest || a == "--" {
                rest = true;
                return a;
            }
            let Some(t) = a.to_str() else { return a };
            let Some(rest) = t.strip_prefix('-').filter(|r| !r.starts_with('-')) else {
                return a;
            };
            let name = rest.split_once('=').map_or(rest, |(n, _)| n);
            if GO_FLAGS.contains(&name) { format!("-{t}").into() } else { a }
        })
        .collect()
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Ltx(cmd) => ltx::run(cmd),
        Command::Certs(cmd) => certs::run(cmd),
        Command::Demo { nodes, dir, duration, interval_ms } => demo::run(demo::DemoArgs {
            nodes,
            dir,
            duration: duration.map(std::time::Duration::from_secs_f64),
            interval: std::time::Duration::from_millis(interval_ms),
        }),
        Command::Promote { config, mount } => promote(config, mount),
        Command::Status { url, json } => status::run(&url, json),
        Command::Export { name, url, path } => transfer::export(&url, &name, &path),
        Command::Import { name, url, path } => transfer::import(&url, &name, &path),
        Command::Run { url, promote, if_candidate, with_halt_lock_on, verbose, cmd } => {
            run::run(run::RunArgs {
                url,
                promote,
                if_candidate,
                halt_lock_on: with_halt_lock_on,
                verbose,
                cmd,
            })
        }
        Command::Verify { config, data_dir } => verify(config, data_dir),
        Command::Mount { config, no_expand_env, skip_unmount, threads, exec } => {
            mount::run(mount::MountArgs { config, no_expand_env, skip_unmount, exec, threads })
        }
    }
}

/// `litefleet verify`: one line per database, then problems; exit 1 if any.
fn verify(config: Option<PathBuf>, data_dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    let dir = match data_dir {
        Some(d) => d,
        None => {
            let path = litefleet::config::Config::find(config.as_deref())
                .context("no config file: pass --config or --data-dir")?;
            litefleet::config::Config::load(&path, true)?.data.dir
        }
    };
    let dbs = dir.join("dbs");
    let mut names: Vec<String> = std::fs::read_dir(&dbs)
        .with_context(|| format!("reading {}", dbs.display()))?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    names.sort();
    let mut bad = 0;
    println!("{:<24} {:>6} {:>5} {:<34} status", "database", "ltx ok", "bad", "position");
    for name in names {
        let r = litefleet::db::verify::verify_dir(&name, &dbs.join(&name))
            .with_context(|| format!("verifying {name}"))?;
        let pos = r.pos.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        let status = if r.ok() { "ok" } else { "DAMAGED" };
        println!("{:<24} {:>6} {:>5} {:<34} {status}", r.name, r.intact, r.bad.len(), pos);
        for (f, why) in &r.bad {
            println!("  bad LTX file {}: {why}", f.display());
        }
        for p in &r.problems {
            println!("  {p}");
        }
        bad += usize::from(!r.ok());
    }
    Ok(if bad == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `litefleet promote`: a write to the mount's `.promote` file does the work (see
/// `crate::fuse`); on failure the file says why.
fn promote(config: Option<PathBuf>, mount: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    let dir = match mount {
        Some(m) => m,
        None => {
            let path = litefleet::config::Config::find(config.as_deref())
                .context("no config file: pass --config or --mount")?;
            litefleet::config::Config::load(&path, true)?.fuse.dir
        }
    };
    let file = dir.join(".promote");
    #[allow(clippy::disallowed_methods)] // the CLI measures for its own message
    let t = std::time::Instant::now();
    match std::fs::write(&file, b"promote\n") {
        Ok(()) => {
            println!("this node is the primary ({} ms)", t.elapsed().as_millis());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let why = std::fs::read_to_string(&file).unwrap_or_default();
            let why = if why.trim().is_empty() { e.to_string() } else { why.trim().to_owned() };
            anyhow::bail!("promotion failed: {why}")
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn go_style_flags_become_clap_flags() {
        let args =
            ["litefleet", "status", "-url", "http://n1:20202", "-json", "-c", "x", "-name=a"];
        let got: Vec<String> = super::go_flags(args.map(std::ffi::OsString::from))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(
            got,
            ["litefleet", "status", "--url", "http://n1:20202", "--json", "-c", "x", "--name=a"]
        );
        // A command's own arguments after `--` are left alone.
        let args = ["litefleet", "run", "-promote", "--", "sqlite3", "-json", "db"];
        let got: Vec<String> = super::go_flags(args.map(std::ffi::OsString::from))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(got, ["litefleet", "run", "--promote", "--", "sqlite3", "-json", "db"]);
    }
}
