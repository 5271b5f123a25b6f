//! `litefleet run [-url U] [-promote] [-if-candidate] [-with-halt-lock-on PATH] -- CMD ARGS`:
//! LiteFS's `litefs run`. Runs a command next to a node, typically a migration:
//! `-if-candidate` skips it (exit 0) on a node that can never be the primary, `-promote`
//! first makes the local node the primary (`POST /promote`: a graceful handoff) and runs
//! the command once it is. The command inherits the terminal; its exit code is `run`'s.
//!
//! `-with-halt-lock-on` (LiteFS's HALT lock, `protocol.md` §16.1) is not built: it is refused
//! with that reason before anything runs.

use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context, bail};

pub struct RunArgs {
    pub url: String,
    pub promote: bool,
    pub if_candidate: bool,
    pub halt_lock_on: Option<std::path::PathBuf>,
    pub verbose: bool,
    pub cmd: Vec<String>,
}

pub fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    let Some((prog, args)) = a.cmd.split_first() else { bail!("no command given (after --)") };
    if a.halt_lock_on.is_some() {
        if a.promote {
            bail!("-promote and -with-halt-lock-on cannot be used together (as with LiteFS)");
        }
        bail!(
            "-with-halt-lock-on: writes through a replica's mount (the HALT lock) are not \
             built yet (protocol.md §16.1); run the command on the primary (-promote), or \
             write through the proxy"
        );
    }
    let say = |m: String| {
        if a.verbose {
            eprintln!("litefleet run: {m}");
        }
    };
    if a.if_candidate || a.promote {
        let info = super::status::fetch_info(&a.url)?;
        let flag = |k: &str| info.get(k).and_then(|v| v.as_bool());
        let (Some(is_primary), Some(candidate)) = (flag("isPrimary"), flag("candidate")) else {
            bail!("{}/info: no isPrimary and candidate fields", a.url.trim_end_matches('/'));
        };
        if a.if_candidate && !candidate {
            say("this node is not a candidate: the command is skipped".into());
            return Ok(ExitCode::SUCCESS);
        }
        if a.promote && !is_primary {
            say("promoting this node".into());
            let base = a.url.trim_end_matches('/');
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?;
            rt.block_on(async {
                // The node answers once it is the primary (or why it is not).
                let c =
                    reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).build()?;
                let r = c
                    .post(format!("{base}/promote"))
                    .send()
                    .await
                    .with_context(|| format!("{base}/promote"))?;
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                if !status.is_success() {
                    bail!("promoting {base}: {status}: {}", body.trim());
                }
                anyhow::Ok(())
            })?;
            say("this node is the primary".into());
        }
    }
    say(format!("running {prog}"));
    let status =
        Command::new(prog).args(args).status().with_context(|| format!("running {prog}"))?;
    Ok(match status.code() {
        Some(c) => ExitCode::from(c.clamp(0, 255) as u8),
        // Killed by a signal: as a shell reports it.
        None => ExitCode::from(
            128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0).clamp(0, 127)
                as u8,
        ),
    })
}
