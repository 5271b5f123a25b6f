//! The data directory: every database under `dbs/<name>/`, in LiteFS's layout, plus the
//! `clusterid` file.
//!
//! ```text
//! <data.dir>/clusterid              LFSC + 16 hex digits (written once: kept from LiteFS,
//!                                   or adopted from the first primary that has one)
//! <data.dir>/dbs/<name>/database    the SQLite database file
//! <data.dir>/dbs/<name>/journal|wal|shm
//! <data.dir>/dbs/<name>/ltx/%016x-%016x.ltx
//! <data.dir>/local/...              node-local files of the mount (never replicated)
//! ```
//!
//! A LiteFS v0.5 data directory opens as is.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::core::types::ClusterId;
use crate::core::wire::valid_db_name;
use crate::db::{Db, DbError, DbOptions};
use crate::node::NodeCtx;

/// Where node-local files (everything in the mount that is not a database's) live, under
/// the data directory (see `crate::fuse::local`).
pub const LOCAL_DIR: &str = "local";

/// Errors opening the data directory.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("data directory {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("invalid database name {0:?}")]
    BadName(String),
    /// The database failed recovery on this node and is kept out of service.
    #[error("database {name} is quarantined on this node: {reason}")]
    Quarantined { name: String, reason: String },
    /// The `clusterid` file is not `LFSC` and 16 hex digits: refused rather than read as
    /// "no cluster id", which would let this node join any cluster.
    #[error("{path}: not a cluster id ({text:?}); restore it, or delete it to adopt the primary's")]
    BadClusterId { path: PathBuf, text: String },
}

/// All databases of this node.
pub struct Store {
    root: PathBuf,
    opts: DbOptions,
    dbs: RwLock<BTreeMap<String, Arc<Db>>>,
    /// [`ClusterId`]; 0 until one is known. Written once ([`Store::adopt_cluster_id`]).
    cluster_id: AtomicU64,
    /// Runtime the database actors run on.
    rt: tokio::runtime::Handle,
    node: Arc<NodeCtx>,
    created: tokio::sync::broadcast::Sender<String>,
    /// Databases that failed recovery, with the reason: not served, not replicated from this
    /// node, never re-created under the same name (that would hide the failure and let an
    /// empty database overwrite the replicas' copies).
    quarantined: RwLock<BTreeMap<String, String>>,
}

impl Store {
    /// Opens (creating if needed) the data directory and recovers every database in it.
    pub fn open(
        root: &Path,
        opts: DbOptions,
        rt: tokio::runtime::Handle,
        node: Arc<NodeCtx>,
    ) -> Result<Store, StoreError> {
        let io = |source| StoreError::Io { path: root.to_owned(), source };
        fs::create_dir_all(root.join("dbs")).map_err(io)?;
        let path = root.join("clusterid");
        let cluster_id: ClusterId = match fs::read_to_string(&path) {
            Ok(text) => text
                .parse()
                .map_err(|_| StoreError::BadClusterId { path: path.clone(), text: text.clone() })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ClusterId(0),
            Err(source) => return Err(StoreError::Io { path, source }),
        };
        let mut dbs = BTreeMap::new();
        let mut quarantined = BTreeMap::new();
        for e in fs::read_dir(root.join("dbs")).map_err(io)? {
            let e = e.map_err(io)?;
            if !e.file_type().map_err(io)?.is_dir() {
                continue;
            }
            let Some(name) = e.file_name().to_str().map(str::to_owned) else { continue };
            if valid_db_name(&name).is_err() {
                continue;
            }
            match Db::open(&name, e.path(), opts, &rt, node.clone()) {
                Ok(db) => {
                    tracing::info!(db = %name, pos = %db.pos(), "opened database");
                    dbs.insert(name, db);
                }
                // A replica's copy is only a copy: set it aside and start empty, and the
                // primary sends a snapshot.
                Err(err) if !node.writable() => {
                    let aside = root.join("quarantine").join(format!("{name}-{}", now_ms()));
                    tracing::error!(db = %name, error = %err, aside = %aside.display(),
                        "database failed recovery on this replica: set aside, resyncing it \
                         from the primary");
                    set_aside(&e.path(), &aside).map_err(io)?;
                    let db = Db::open(&name, e.path(), opts, &rt, node.clone())?;
                    dbs.insert(name, db);
                }
                Err(err) => {
                    tracing::error!(db = %name, error = %err,
                        "database quarantined: not served and not replicated from this node \
                         (the other databases are); replicas keep their copies");
                    quarantined.insert(name, err.to_string());
                }
            }
        }
        let (created, _) = tokio::sync::broadcast::channel(256);
        Ok(Store {
            root: root.to_owned(),
            opts,
            dbs: RwLock::new(dbs),
            cluster_id: AtomicU64::new(cluster_id.0),
            rt,
            node,
            created,
            quarantined: RwLock::new(quarantined),
        })
    }

    /// Databases kept out of service on this node, with the reason.
    pub fn quarantined(&self) -> BTreeMap<String, String> {
        self.quarantined.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn node(&self) -> &Arc<NodeCtx> {
        &self.node
    }

    /// Names of databases created from now on (replication opens a stream for each).
    pub fn subscribe_created(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.created.subscribe()
    }

    /// The runtime the actors run on (FUSE callbacks spawn their waits here).
    pub fn rt(&self) -> &tokio::runtime::Handle {
        &self.rt
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn cluster_id(&self) -> ClusterId {
        ClusterId(self.cluster_id.load(Ordering::Acquire))
    }

    /// A node without a cluster id takes the primary's (`protocol.md` §2 rule 3), durably
    /// (written to a temporary file, synced, renamed), so it refuses other clusters from
    /// now on, restarts included. A no-op when the node has one.
    pub fn adopt_cluster_id(&self, id: ClusterId) -> std::io::Result<()> {
        if id.0 == 0 || self.cluster_id().0 != 0 {
            return Ok(());
        }
        let path = self.root.join("clusterid");
        let tmp = self.root.join("clusterid.tmp");
        {
            use std::io::Write;
            let mut f = fs::File::create(&tmp)?;
            writeln!(f, "{id}")?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        fs::File::open(&self.root)?.sync_all()?;
        self.cluster_id.store(id.0, Ordering::Release);
        Ok(())
    }

    /// The database named `name`, if known (it may be deleted: see [`Db::exists`]).
    pub fn get(&self, name: &str) -> Option<Arc<Db>> {
        self.dbs.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    /// Every known database, by name.
    pub fn list(&self) -> Vec<Arc<Db>> {
        self.dbs.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    /// Returns the database `name`, creating its directory if it is new.
    pub fn create(&self, name: &str) -> Result<Arc<Db>, StoreError> {
        valid_db_name(name).map_err(|_| StoreError::BadName(name.to_owned()))?;
        let mut dbs = self.dbs.write().unwrap_or_else(|e| e.into_inner());
        if let Some(db) = dbs.get(name) {
            return Ok(db.clone());
        }
        let dir = self.root.join("dbs").join(name);
        let mut quarantined = self.quarantined.write().unwrap_or_else(|e| e.into_inner());
        if let Some(reason) = quarantined.get(name) {
            if self.node.writable() {
                return Err(StoreError::Quarantined {
                    name: name.to_owned(),
                    reason: reason.clone(),
                });
            }
            // Following a primary now (a candidate that lost the election): its copy
            // replaces ours, which is kept aside.
            let aside = self.root.join("quarantine").join(format!("{name}-{}", now_ms()));
            tracing::warn!(db = %name, aside = %aside.display(),
                "quarantined database set aside: resyncing it from the primary");
            set_aside(&dir, &aside)
                .map_err(|source| StoreError::Io { path: dir.clone(), source })?;
            quarantined.remove(name);
        }
        drop(quarantined);
        let db = Db::open(name, dir, self.opts, &self.rt, self.node.clone())?;
        dbs.insert(name.to_owned(), db.clone());
        let _ = self.created.send(name.to_owned());
        Ok(db)
    }
}

fn now_ms() -> i64 {
    crate::clock::wall_ms()
}

/// Moves the directory `from` to `to` (creating `to`'s parent), then re-creates `from` empty.
fn set_aside(from: &Path, to: &Path) -> std::io::Result<()> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::rename(from, to)?;
    fs::create_dir_all(from)
}
