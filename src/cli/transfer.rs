//! `litefleet import -name DB [-url U] PATH` and `litefleet export -name DB [-url U] PATH`:
//! LiteFS's commands, over the node's `POST /import` and `GET /export`, with a progress bar
//! when stderr is a terminal.
//!
//! Export writes `PATH.tmp`, fsyncs it, renames it over `PATH` and fsyncs the directory, as
//! LiteFS does; `PATH`'s `-journal`, `-wal` and `-shm` files are removed first, since they
//! belong to the file being replaced.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

fn bar(len: Option<u64>, verb: &str) -> ProgressBar {
    let b = match len {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::no_length(),
    };
    if std::io::stderr().is_terminal() {
        b.set_draw_target(ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .map(|s| s.progress_chars("=> "));
        if let Ok(s) = style {
            b.set_style(s);
        }
        b.set_message(verb.to_owned());
    } else {
        b.set_draw_target(ProgressDrawTarget::hidden());
    }
    b
}

/// `<url>/<path>?name=<name>`, the name escaped.
fn endpoint(url: &str, path: &str, name: &str) -> anyhow::Result<String> {
    let base = format!("{}/{path}", url.trim_end_matches('/'));
    let u = reqwest::Url::parse_with_params(&base, [("name", name)])
        .with_context(|| format!("{base}: not a URL"))?;
    Ok(u.into())
}

pub fn export(url: &str, name: &str, path: &Path) -> anyhow::Result<ExitCode> {
    let u = endpoint(url, "export", name)?;
    for suffix in ["-journal", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("removing {}", Path::new(&p).display()));
            }
        }
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let rt = runtime()?;
    let r = rt.block_on(async {
        let c = reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).build()?;
        let mut resp = c
            .get(&u)
            .send()
            .await
            .with_context(|| format!("{u}: is a litefleet node listening?"))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            bail!("{u}: {status}: {}", body.trim());
        }
        let txid =
            resp.headers().get("litefleet-txid").and_then(|v| v.to_str().ok()).map(str::to_owned);
        // Read before the body: reqwest's length is what is left to read.
        let want = resp.content_length();
        let pb = bar(want, "export");
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut n = 0u64;
        while let Some(chunk) = resp.chunk().await.with_context(|| format!("{u}: reading"))? {
            f.write_all(&chunk).with_context(|| format!("writing {}", tmp.display()))?;
            n += chunk.len() as u64;
            pb.set_position(n);
        }
        if let Some(want) = want
            && want != n
        {
            bail!("{u}: the export ended after {n} of {want} bytes");
        }
        f.sync_all().with_context(|| format!("syncing {}", tmp.display()))?;
        pb.finish_and_clear();
        Ok((n, txid))
    });
    let (n, txid) = match r {
        Ok(x) => x,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, path).with_context(|| format!("renaming over {}", path.display()))?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    match txid {
        Some(t) => println!("Exported {name} at TXID {t}: {n} bytes to {}", path.display()),
        None => println!("Exported {name}: {n} bytes to {}", path.display()),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn import(url: &str, name: &str, path: &Path) -> anyhow::Result<ExitCode> {
    let u = endpoint(url, "import", name)?;
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = file.metadata().with_context(|| format!("reading {}", path.display()))?.len();
    let pb = bar(Some(len), "import");
    // The file is read on a thread and streamed: never whole in memory.
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    let reader = {
        let pb = pb.clone();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut file = file;
            loop {
                let mut buf = vec![0u8; 256 << 10];
                match file.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        buf.truncate(n);
                        pb.inc(n as u64);
                        if tx.blocking_send(Ok(buf.into())).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
        })
    };
    let stream =
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|item| (item, rx)) },
        );
    let rt = runtime()?;
    let r = rt.block_on(async {
        let c = reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).build()?;
        let resp = c
            .post(&u)
            .header("content-length", len.to_string())
            .header("content-type", "application/vnd.sqlite3")
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .with_context(|| format!("{u}: is a litefleet node listening?"))?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{u}: {status}: {}", body.trim());
        }
        Ok(body)
    });
    pb.finish_and_clear();
    let _ = reader.join();
    let body = r?;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    match v["txID"].as_str() {
        Some(t) => println!("Imported {} into {name} at TXID {t}: {len} bytes", path.display()),
        None => println!("Imported {} into {name}: {len} bytes", path.display()),
    }
    Ok(ExitCode::SUCCESS)
}
