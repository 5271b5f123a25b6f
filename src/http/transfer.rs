//! `GET /export?name=DB` and `POST /import?name=DB`: a database as a plain SQLite file, out
//! or in (LiteFS's endpoints; `litefs export` / `litefs import` work against them).
//!
//! Export: the database at one position is spooled to an unlinked file in the data
//! directory (writes wait for that local copy only, see [`crate::db::export`]), then
//! streamed; `Litefleet-Txid` and `Litefleet-Checksum` name the position, and
//! `Litefleet-Locked-Ms` says how long writes waited.
//!
//! Import (primary only, a mutating request): the upload is streamed to an unlinked file in
//! the data directory (never held in memory), checked (header, page size, whole pages, the
//! header's page count, `PRAGMA integrity_check` unless `check=0`), and only then written
//! over the database through the mount by SQLite's backup API: one write transaction,
//! taken under SQLite's own locks, so readers see the old or the new database, and one LTX
//! transaction that every replica receives. Any failure leaves the database as it was.

use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;

use super::auth::Mutating;
use super::{Api, text};
use crate::core::sqlite::{UploadError, check_upload};
use crate::db::DbError;

/// Chunks streamed between the disk thread and the connection.
const CHUNK: usize = 256 << 10;
/// How long an upload may send nothing before it is cut.
const BODY_IDLE: Duration = Duration::from_secs(30);
/// How long an import waits for readers (rollback-journal mode) to let go, by default.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Deserialize)]
pub struct NameQuery {
    name: Option<String>,
    /// Import: `0` skips `PRAGMA integrity_check`.
    check: Option<String>,
    /// Import: how long to wait for SQLite's locks (a duration, `10s` by default).
    #[serde(rename = "busy-timeout")]
    busy_timeout: Option<String>,
}

/// The database name of a request, checked: a plain file name in the mount.
fn db_name(q: &NameQuery) -> Result<String, Box<Response>> {
    let Some(name) = q.name.as_deref().filter(|n| !n.is_empty()) else {
        return Err(Box::new(text(StatusCode::BAD_REQUEST, "name: required (?name=DB)")));
    };
    if let Err(why) = crate::core::wire::valid_db_name(name) {
        return Err(Box::new(text(StatusCode::BAD_REQUEST, format!("name {name:?} {why}"))));
    }
    let reserved = ["-journal", "-wal", "-shm", "-pos"];
    if name.starts_with('.') || reserved.iter().any(|s| name.ends_with(s)) {
        return Err(Box::new(text(
            StatusCode::BAD_REQUEST,
            format!("name {name:?} is not a database name (a leading '.' or a SQLite file suffix)"),
        )));
    }
    Ok(name.to_owned())
}

/// Prefix of the spool files in the data directory (removed at startup: see
/// [`remove_leftovers`]).
const SPOOL_PREFIX: &str = ".transfer-";

/// A file in the data directory, removed when dropped (and at the next start, after a
/// crash).
struct Spool {
    file: File,
    path: std::path::PathBuf,
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn spool(api: &Api, what: &str) -> std::io::Result<Spool> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path =
        api.store.root().join(format!("{SPOOL_PREFIX}{what}-{}-{n}.tmp", std::process::id()));
    let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
    Ok(Spool { file, path })
}

/// Removes spool files a killed process left in the data directory `root`.
pub fn remove_leftovers(root: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(SPOOL_PREFIX) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn io_status(e: &std::io::Error) -> StatusCode {
    match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => StatusCode::INSUFFICIENT_STORAGE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

pub async fn export(State(api): State<Arc<Api>>, Query(q): Query<NameQuery>) -> Response {
    let name = match db_name(&q) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    let Some(db) = api.store.get(&name) else {
        return text(StatusCode::NOT_FOUND, format!("database {name:?} not found"));
    };
    let api2 = api.clone();
    let made = tokio::task::spawn_blocking(move || -> Result<_, DbError> {
        let f = spool(&api2, "export")?;
        let e = db.export(&f.file, &f.path)?;
        Ok((f, e))
    })
    .await;
    let (file, e) = match made {
        Ok(Ok(x)) => x,
        Ok(Err(DbError::NotFound(_))) => {
            return text(StatusCode::NOT_FOUND, format!("database {name:?} has no content"));
        }
        Ok(Err(DbError::Io(e))) => {
            return text(io_status(&e), format!("exporting {name:?}: {e}"));
        }
        Ok(Err(e)) => {
            return text(StatusCode::INTERNAL_SERVER_ERROR, format!("exporting {name:?}: {e}"));
        }
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("export task: {e}")),
    };
    tracing::info!(db = %name, pos = %e.pos, bytes = e.len(), locked_ms = e.locked.as_millis() as u64,
        "export");
    let len = e.len();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    // The disk side: ends when the file is sent or the client went away (send fails).
    std::thread::spawn(move || {
        use std::os::unix::fs::FileExt;
        let mut off = 0u64;
        while off < len {
            let n = CHUNK.min((len - off) as usize);
            let mut buf = vec![0u8; n];
            let r = file.file.read_exact_at(&mut buf, off).map(|()| Bytes::from(buf));
            let failed = r.is_err();
            if tx.blocking_send(r).is_err() || failed {
                return;
            }
            off += n as u64;
        }
    });
    let stream =
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|item| (item, rx)) },
        );
    let headers = [
        ("content-type", "application/vnd.sqlite3".to_owned()),
        ("content-length", len.to_string()),
        ("litefleet-txid", format!("{:016x}", e.pos.txid.0)),
        ("litefleet-checksum", format!("{:016x}", e.pos.checksum.0)),
        ("litefleet-locked-ms", format!("{:.3}", e.locked.as_secs_f64() * 1000.0)),
    ];
    let mut resp = Body::from_stream(stream).into_response();
    for (k, v) in headers {
        if let Ok(v) = axum::http::HeaderValue::from_str(&v) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

/// Why an import failed, with its status.
#[derive(Debug, thiserror::Error)]
enum ImportError {
    #[error("{0}")]
    Upload(#[from] UploadError),
    #[error("the upload fails PRAGMA integrity_check (send ?check=0 to skip): {0}")]
    Integrity(String),
    #[error("the upload cannot be opened by SQLite: {0}")]
    Unreadable(String),
    #[error("storing the upload: {0}")]
    Spool(std::io::Error),
    #[error("the upload sent nothing for {} s", BODY_IDLE.as_secs())]
    Idle,
    #[error("reading the upload: {0}")]
    Body(String),
    #[error("database {name:?} is busy (SQLite's locks were held for {waited_ms} ms): {msg}")]
    Busy { name: String, waited_ms: u64, msg: String },
    #[error("cannot replace {name:?}: {msg}")]
    Incompatible { name: String, msg: String },
    #[error("writing {name:?}: {msg}")]
    Write { name: String, msg: String, full: bool },
    #[error("import task: {0}")]
    Task(String),
}

impl ImportError {
    fn status(&self) -> StatusCode {
        match self {
            ImportError::Upload(_)
            | ImportError::Integrity(_)
            | ImportError::Unreadable(_)
            | ImportError::Body(_) => StatusCode::BAD_REQUEST,
            ImportError::Idle => StatusCode::REQUEST_TIMEOUT,
            ImportError::Spool(e) => io_status(e),
            ImportError::Busy { .. } | ImportError::Incompatible { .. } => StatusCode::CONFLICT,
            ImportError::Write { full: true, .. } => StatusCode::INSUFFICIENT_STORAGE,
            ImportError::Write { .. } | ImportError::Task(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

pub async fn import(
    _: Mutating,
    State(api): State<Arc<Api>>,
    Query(q): Query<NameQuery>,
    body: Body,
) -> Response {
    let name = match db_name(&q) {
        Ok(n) => n,
        Err(r) => return super::refuse_unread(body, *r).await,
    };
    let (is_primary, primary) = api.primary_view();
    if !is_primary {
        let who = if primary.is_empty() { "unknown".to_owned() } else { primary };
        let r = text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("this node is not the primary; import on the primary: {who}"),
        );
        return super::refuse_unread(body, r).await;
    }
    let check = !matches!(q.check.as_deref(), Some("0" | "false"));
    let busy = match q.busy_timeout.as_deref().map(crate::config::parse_duration) {
        None => BUSY_TIMEOUT,
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            let r = text(StatusCode::BAD_REQUEST, format!("busy-timeout: {e}"));
            return super::refuse_unread(body, r).await;
        }
    };
    match run_import(&api, &name, body, check, busy).await {
        Ok(done) => {
            tracing::info!(db = %name, bytes = done.bytes, txid = %done.txid,
                upload_ms = done.upload.as_millis() as u64, check_ms = done.check.as_millis() as u64,
                write_ms = done.write.as_millis() as u64, "import");
            let json = serde_json::json!({
                "name": name,
                "txID": format!("{:016x}", done.txid.0),
                "pageSize": done.page_size,
                "pages": done.bytes / u64::from(done.page_size),
                "bytes": done.bytes,
                "uploadMs": done.upload.as_millis() as u64,
                "checkMs": done.check.as_millis() as u64,
                "writeMs": done.write.as_millis() as u64,
            });
            (StatusCode::OK, axum::Json(json)).into_response()
        }
        Err(e) => {
            tracing::warn!(db = %name, error = %e, "import refused");
            text(e.status(), e)
        }
    }
}

struct Imported {
    txid: crate::core::types::Txid,
    page_size: u32,
    bytes: u64,
    /// Receiving the upload, checking it, writing it through the mount.
    upload: Duration,
    check: Duration,
    write: Duration,
}

async fn run_import(
    api: &Arc<Api>,
    name: &str,
    body: Body,
    check: bool,
    busy: Duration,
) -> Result<Imported, ImportError> {
    let t0 = crate::clock::now();
    let file = spool(api, "import").map_err(ImportError::Spool)?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    let writer = {
        let mut f = file.file.try_clone().map_err(ImportError::Spool)?;
        std::thread::spawn(move || -> std::io::Result<u64> {
            let mut n = 0u64;
            while let Some(b) = rx.blocking_recv() {
                f.write_all(&b)?;
                n += b.len() as u64;
            }
            Ok(n)
        })
    };
    let mut stream = body.into_data_stream();
    let received: Result<(), ImportError> = async {
        loop {
            match tokio::time::timeout(BODY_IDLE, stream.next()).await {
                Err(_) => return Err(ImportError::Idle),
                Ok(None) => return Ok(()),
                Ok(Some(Err(e))) => return Err(ImportError::Body(e.to_string())),
                Ok(Some(Ok(b))) => {
                    // A failed send: the writer stopped on an error (reported below). The
                    // rest of the body is read and dropped, so that the client, still
                    // sending, gets the answer instead of a reset connection.
                    let _ = tx.send(b).await;
                }
            }
        }
    }
    .await;
    drop(tx);
    let written = writer.join().map_err(|_| ImportError::Task("upload writer panicked".into()))?;
    received?;
    let len = written.map_err(ImportError::Spool)?;
    let upload = t0.elapsed();
    let mount = api.cfg.mount.join(name);
    let name = name.to_owned();
    let store = api.store.clone();
    let st = store.clone();
    let n = name.clone();
    let job = Job { spool: file, len, mount, name: n, check, busy, upload };
    let mut done = tokio::task::spawn_blocking(move || apply(job))
        .await
        .map_err(|e| ImportError::Task(e.to_string()))??;
    // The commit is the database actor's once the write returned: its position, once the
    // actor took it.
    if let Some(db) = st.get(&name) {
        done.txid = db
            .flush()
            .await
            .map_err(|e| ImportError::Write {
                name: name.clone(),
                msg: e.to_string(),
                full: false,
            })?
            .txid;
    }
    Ok(done)
}

/// An upload received, to be checked and written.
struct Job {
    spool: Spool,
    len: u64,
    /// The database's path in the mount.
    mount: std::path::PathBuf,
    name: String,
    check: bool,
    busy: Duration,
    upload: Duration,
}

/// Checks the spooled upload and writes it over the database through the mount.
fn apply(job: Job) -> Result<Imported, ImportError> {
    use std::os::unix::fs::FileExt;
    let Job { spool, len, mount, name, check, busy, upload } = job;
    let name = name.as_str();
    let t0 = crate::clock::now();
    let mut head = [0u8; 100];
    let n = (len as usize).min(head.len());
    spool.file.read_exact_at(&mut head[..n], 0).map_err(ImportError::Spool)?;
    let h = check_upload(&head[..n], len)?;
    let mut uri = "file:".to_owned();
    uri.push_str(
        &spool.path.to_string_lossy().replace('%', "%25").replace('?', "%3f").replace('#', "%23"),
    );
    uri.push_str("?immutable=1");
    let src = rusqlite::Connection::open_with_flags(
        uri,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(|e| ImportError::Unreadable(e.to_string()))?;
    if check {
        let mut stmt = src
            .prepare("PRAGMA integrity_check(20)")
            .map_err(|e| ImportError::Integrity(e.to_string()))?;
        let rows: Vec<String> = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| ImportError::Integrity(e.to_string()))?;
        if rows != ["ok"] {
            return Err(ImportError::Integrity(rows.join("; ")));
        }
    }
    let check_time = t0.elapsed();
    let started = crate::clock::now();
    let write_err = |e: rusqlite::Error| {
        let busy_code = matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        );
        if busy_code {
            return ImportError::Busy {
                name: name.to_owned(),
                waited_ms: started.elapsed().as_millis() as u64,
                msg: e.to_string(),
            };
        }
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ReadOnly) {
            // SQLite's backup cannot change the page size of a database in WAL mode.
            return ImportError::Incompatible {
                name: name.to_owned(),
                msg: format!(
                    "{e} (a database in WAL mode keeps its page size: delete it first, or \
                     upload a file with its page size)"
                ),
            };
        }
        let full = e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull);
        ImportError::Write { name: name.to_owned(), msg: e.to_string(), full }
    };
    let mut dst = rusqlite::Connection::open(&mount).map_err(write_err)?;
    dst.busy_timeout(busy).map_err(write_err)?;
    // 64 MiB of page cache: fewer spills (each one syncs the journal) on large imports.
    dst.pragma_update(None, "cache_size", -65536).map_err(write_err)?;
    {
        let b = rusqlite::backup::Backup::new(&src, &mut dst).map_err(write_err)?;
        // One step of every page: a single write transaction on the destination.
        match b.step(-1).map_err(write_err)? {
            rusqlite::backup::StepResult::Done => {}
            rusqlite::backup::StepResult::Busy | rusqlite::backup::StepResult::Locked => {
                return Err(ImportError::Busy {
                    name: name.to_owned(),
                    waited_ms: started.elapsed().as_millis() as u64,
                    msg: "the database stayed locked".into(),
                });
            }
            other => {
                return Err(ImportError::Write {
                    name: name.to_owned(),
                    msg: format!("backup stopped: {other:?}"),
                    full: false,
                });
            }
        }
    }
    drop(dst);
    Ok(Imported {
        txid: crate::core::types::Txid::ZERO,
        page_size: h.page_size,
        bytes: len,
        upload,
        check: check_time,
        write: started.elapsed(),
    })
}
