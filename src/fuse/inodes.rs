//! The mount's inode numbers: databases' files (computed from a per-process database id),
//! node-local files (allocated), and the generated files.
//!
//! Invariant: one file has one inode number for as long as the kernel may know it. The
//! kernel keys its POSIX lock table and page cache by inode: were a database reachable under
//! two numbers, two SQLite connections could hold "exclusive" locks at once. So when a
//! node-local file becomes a database file (its first write is a SQLite header, or a
//! database adopts a local `-journal`), it keeps its number and the database's file takes
//! it (`db_at` / `db_ino`).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use crate::db::FileKind;

/// The root directory.
pub const ROOT: u64 = 1;
pub const PRIMARY_INO: u64 = 1 << 62;
pub const LAG_INO: u64 = (1 << 62) + 1;
pub const PROMOTE_INO: u64 = (1 << 62) + 2;
/// Node-local inodes are allocated upwards from here (below the generated files').
const LOCAL_BASE: u64 = 1 << 61;
/// Computed inodes per database: database, journal, wal, shm, pos.
const SLOTS: u64 = 8;
const POS_SLOT: u64 = 4;

/// A file in the mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    Root,
    /// `.primary`: the primary's hostname, on a replica connected to one.
    Primary,
    /// `.lag`: milliseconds behind the primary, `%+010d\n`.
    Lag,
    /// `.promote` (not listed): a write asks the primary for the lease and returns once
    /// this node is the primary; a read says why the last request failed.
    Promote,
    /// A database's file: (database id, kind).
    File(u64, FileKind),
    /// `<db>-pos`.
    Pos(u64),
    /// A node-local file, directory or symlink (see [`super::local`]).
    Local(u64),
}

/// Where a node-local inode is: its parent directory's inode and its name. `None` after
/// an unlink (the inode lives on while open handles do).
#[derive(Debug, Clone)]
struct LocalEntry {
    at: Option<(u64, OsString)>,
}

/// The table. See the module docs.
#[derive(Default)]
pub struct Inodes {
    by_name: HashMap<String, u64>,
    names: Vec<String>,
    local: HashMap<u64, LocalEntry>,
    local_at: HashMap<(u64, OsString), u64>,
    db_at: HashMap<u64, (u64, FileKind)>,
    db_ino: HashMap<(u64, FileKind), u64>,
    next_local: u64,
}

fn slot(kind: FileKind) -> u64 {
    match kind {
        FileKind::Database => 0,
        FileKind::Journal => 1,
        FileKind::Wal => 2,
        FileKind::Shm => 3,
    }
}

impl Inodes {
    /// The database id of `name` (allocated on first use, stable for the process).
    pub fn id(&mut self, name: &str) -> u64 {
        if let Some(id) = self.by_name.get(name) {
            return *id;
        }
        let id = self.names.len() as u64;
        self.names.push(name.to_owned());
        self.by_name.insert(name.to_owned(), id);
        id
    }

    /// The id of `name` if it has one.
    pub fn known_id(&self, name: &str) -> Option<u64> {
        self.by_name.get(name).copied()
    }

    pub fn name_of(&self, id: u64) -> Option<&str> {
        self.names.get(id as usize).map(String::as_str)
    }

    /// The inode number of `node`.
    pub fn ino(&self, node: Node) -> u64 {
        match node {
            Node::Root => ROOT,
            Node::Primary => PRIMARY_INO,
            Node::Lag => LAG_INO,
            Node::Promote => PROMOTE_INO,
            Node::File(id, kind) => {
                self.db_ino.get(&(id, kind)).copied().unwrap_or(2 + id * SLOTS + slot(kind))
            }
            Node::Pos(id) => 2 + id * SLOTS + POS_SLOT,
            Node::Local(ino) => ino,
        }
    }

    /// What inode `ino` is, if anything.
    pub fn node(&self, ino: u64) -> Option<Node> {
        match ino {
            ROOT => return Some(Node::Root),
            PRIMARY_INO => return Some(Node::Primary),
            LAG_INO => return Some(Node::Lag),
            PROMOTE_INO => return Some(Node::Promote),
            _ => {}
        }
        if self.local.contains_key(&ino) {
            return Some(Node::Local(ino));
        }
        if let Some(&(id, kind)) = self.db_at.get(&ino) {
            return Some(Node::File(id, kind));
        }
        if ino >= LOCAL_BASE {
            return None;
        }
        let n = ino.checked_sub(2)?;
        let (id, s) = (n / SLOTS, n % SLOTS);
        if id >= self.names.len() as u64 {
            return None;
        }
        Some(match s {
            0 => Node::File(id, FileKind::Database),
            1 => Node::File(id, FileKind::Journal),
            2 => Node::File(id, FileKind::Wal),
            3 => Node::File(id, FileKind::Shm),
            POS_SLOT => Node::Pos(id),
            _ => return None,
        })
    }

    /// The inode of the local entry `name` in `parent`, allocating one.
    pub fn local(&mut self, parent: u64, name: &OsStr) -> u64 {
        let key = (parent, name.to_owned());
        if let Some(ino) = self.local_at.get(&key) {
            return *ino;
        }
        let ino = LOCAL_BASE + self.next_local;
        self.next_local += 1;
        self.local.insert(ino, LocalEntry { at: Some(key.clone()) });
        self.local_at.insert(key, ino);
        ino
    }

    /// The inode already allocated to the local entry `name` in `parent`.
    pub fn local_known(&self, parent: u64, name: &OsStr) -> Option<u64> {
        self.local_at.get(&(parent, name.to_owned())).copied()
    }

    /// The backing path of a local inode, relative to the local root (empty for the root).
    /// `None` for an unlinked inode.
    pub fn path(&self, ino: u64) -> Option<PathBuf> {
        let mut parts = Vec::new();
        let mut cur = ino;
        while cur != ROOT {
            let (parent, name) = self.local.get(&cur)?.at.as_ref()?;
            parts.push(name.clone());
            cur = *parent;
            if parts.len() > 4096 {
                return None; // a cycle cannot be built by rename (checked there); be safe
            }
        }
        Some(parts.iter().rev().collect())
    }

    /// Parent and name of a local inode.
    pub fn place(&self, ino: u64) -> Option<(u64, OsString)> {
        self.local.get(&ino)?.at.clone()
    }

    /// The entry `name` in `parent` is gone (unlink, rmdir, or replaced by a rename).
    pub fn forget_entry(&mut self, parent: u64, name: &OsStr) {
        if let Some(ino) = self.local_at.remove(&(parent, name.to_owned()))
            && let Some(e) = self.local.get_mut(&ino)
        {
            e.at = None;
        }
    }

    /// A rename of local entries: whatever was at the target is unlinked.
    pub fn moved(&mut self, from: (u64, &OsStr), to: (u64, &OsStr)) {
        self.forget_entry(to.0, to.1);
        if let Some(ino) = self.local_at.remove(&(from.0, from.1.to_owned())) {
            let key = (to.0, to.1.to_owned());
            if let Some(e) = self.local.get_mut(&ino) {
                e.at = Some(key.clone());
            }
            self.local_at.insert(key, ino);
        }
    }

    /// `renameat2(RENAME_EXCHANGE)` of two local entries: they swap places.
    pub fn exchanged(&mut self, a: (u64, &OsStr), b: (u64, &OsStr)) {
        let ka = (a.0, a.1.to_owned());
        let kb = (b.0, b.1.to_owned());
        let ia = self.local_at.remove(&ka);
        let ib = self.local_at.remove(&kb);
        if let Some(i) = ia {
            if let Some(e) = self.local.get_mut(&i) {
                e.at = Some(kb.clone());
            }
            self.local_at.insert(kb, i);
        }
        if let Some(i) = ib {
            if let Some(e) = self.local.get_mut(&i) {
                e.at = Some(ka.clone());
            }
            self.local_at.insert(ka, i);
        }
    }

    /// Whether `dir` is `ino` or one of its descendants (a rename of `ino` into `dir`
    /// would build a cycle).
    pub fn is_within(&self, dir: u64, ino: u64) -> bool {
        let mut cur = dir;
        for _ in 0..4096 {
            if cur == ino {
                return true;
            }
            if cur == ROOT {
                return false;
            }
            match self.local.get(&cur).and_then(|e| e.at.as_ref()) {
                Some((p, _)) => cur = *p,
                None => return false,
            }
        }
        true
    }

    /// The local inode `ino` becomes the database file (`id`, `kind`), keeping its number.
    pub fn make_db(&mut self, ino: u64, id: u64, kind: FileKind) {
        if let Some(e) = self.local.remove(&ino)
            && let Some(key) = e.at
        {
            self.local_at.remove(&key);
        }
        if let Some(old) = self.db_ino.insert((id, kind), ino) {
            self.db_at.remove(&old);
        }
        self.db_at.insert(ino, (id, kind));
    }
}

impl Inodes {
    /// The database file `ino` (of `id`, `kind`) becomes the local entry `name` in
    /// `parent`, keeping its number; the database's file gets a fresh number if it is made
    /// again.
    pub fn make_local(&mut self, ino: u64, parent: u64, name: &OsStr, id: u64, kind: FileKind) {
        self.db_at.remove(&ino);
        let fresh = LOCAL_BASE + self.next_local;
        self.next_local += 1;
        self.db_ino.insert((id, kind), fresh);
        self.db_at.insert(fresh, (id, kind));
        self.forget_entry(parent, name);
        let key = (parent, name.to_owned());
        self.local.insert(ino, LocalEntry { at: Some(key.clone()) });
        self.local_at.insert(key, ino);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_file_that_becomes_a_database_keeps_its_number() {
        let mut t = Inodes::default();
        let l = t.local(ROOT, OsStr::new("a.db"));
        assert_eq!(t.node(l), Some(Node::Local(l)));
        let id = t.id("a.db");
        let computed = t.ino(Node::File(id, FileKind::Database));
        assert_ne!(computed, l);
        t.make_db(l, id, FileKind::Database);
        assert_eq!(t.node(l), Some(Node::File(id, FileKind::Database)));
        assert_eq!(t.ino(Node::File(id, FileKind::Database)), l);
        assert_eq!(t.local_known(ROOT, OsStr::new("a.db")), None);
        // The journal keeps its computed number.
        let j = t.ino(Node::File(id, FileKind::Journal));
        assert_eq!(t.node(j), Some(Node::File(id, FileKind::Journal)));
    }

    #[test]
    fn paths_follow_renames_of_directories() {
        let mut t = Inodes::default();
        let d = t.local(ROOT, OsStr::new("d"));
        let f = t.local(d, OsStr::new("f"));
        assert_eq!(t.path(f), Some(PathBuf::from("d/f")));
        t.moved((ROOT, OsStr::new("d")), (ROOT, OsStr::new("e")));
        assert_eq!(t.path(f), Some(PathBuf::from("e/f")));
        assert!(t.is_within(f, d));
        assert!(!t.is_within(ROOT, d));
        // A rename over an existing entry unlinks it.
        let g = t.local(ROOT, OsStr::new("g"));
        t.moved((ROOT, OsStr::new("e")), (ROOT, OsStr::new("g")));
        assert_eq!(t.path(g), None);
        assert_eq!(t.path(f), Some(PathBuf::from("g/f")));
        assert_eq!(t.node(g), Some(Node::Local(g)));
    }

    #[test]
    fn a_database_file_that_becomes_local_keeps_its_number() {
        let mut t = Inodes::default();
        let id = t.id("c.db");
        let d = t.ino(Node::File(id, FileKind::Database));
        t.make_local(d, ROOT, OsStr::new("c.db"), id, FileKind::Database);
        assert_eq!(t.node(d), Some(Node::Local(d)));
        assert_eq!(t.local_known(ROOT, OsStr::new("c.db")), Some(d));
        let again = t.ino(Node::File(id, FileKind::Database));
        assert_ne!(again, d);
        assert_eq!(t.node(again), Some(Node::File(id, FileKind::Database)));
    }

    #[test]
    fn unknown_numbers_are_nothing() {
        let t = Inodes::default();
        assert_eq!(t.node(2), None);
        assert_eq!(t.node(LOCAL_BASE + 7), None);
    }
}
