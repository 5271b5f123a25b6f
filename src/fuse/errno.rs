//! The one table mapping database errors to the errno an application sees.

use fuser::Errno;

use crate::db::DbError;

/// The errno for `e`. A write refused on a read-only node is `EROFS`, which SQLite reports as
/// "attempt to write a readonly database", never as a disk I/O error.
pub fn errno(e: &DbError) -> Errno {
    match e {
        DbError::Io(io) => io.raw_os_error().map(Errno::from_i32).unwrap_or(Errno::EIO),
        DbError::NotFound(_) => Errno::ENOENT,
        DbError::UnalignedWrite { .. } | DbError::NotSqlite => Errno::EINVAL,
        DbError::ReadOnly => Errno::EROFS,
        DbError::OutsideTransaction(_) => Errno::EPERM,
        DbError::Log(f) => f.os.map(Errno::from_i32).unwrap_or(Errno::EIO),
        DbError::Ltx(_)
        | DbError::Damaged(_)
        | DbError::Recovery { .. }
        | DbError::ActorGone
        | DbError::Rejected(_)
        | DbError::Diverged(_)
        | DbError::Unreplicated { .. } => Errno::EIO,
    }
}
