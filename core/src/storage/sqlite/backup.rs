//! Backups with SQLite's online backup API, consistent while the server serves,
//! and restores that refuse to overwrite a running server's database.
//!
//! A backup copies every page in one step, under one read transaction of the WAL
//! database, so concurrent writers neither block it nor make it restart; the copy
//! is written beside its target and renamed into place only after
//! `PRAGMA integrity_check` passes on it.

use std::fs::File;
use std::path::{Path, PathBuf};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};
use crate::storage::sqlite::db::open_connection;

/// The lock file a serving process holds on its database.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// Held by `plinth serve` for its lifetime; `restore` refuses while it is held.
pub struct ServerLock(#[allow(dead_code)] File);

pub fn lock_server(db: &Path) -> Result<ServerLock> {
    let file = File::create(lock_path(db)).map_err(Error::internal)?;
    match file.try_lock() {
        Ok(()) => Ok(ServerLock(file)),
        Err(_) => Err(Error::Conflict(format!(
            "another server is already running on {}: it holds the lock {} (one server per SQLite file)",
            db.display(),
            lock_path(db).display()
        ))),
    }
}

fn integrity_ok(conn: &Connection) -> Result<()> {
    let verdict: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if verdict != "ok" {
        return Err(Error::internal(format!("integrity check failed: {verdict}")));
    }
    Ok(())
}

/// Copies `db` to `dest` (a file), consistently, while others may be writing.
pub fn backup(db: &Path, dest: &Path) -> Result<()> {
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(Error::internal)?;
    }
    let src = open_connection(db)?;
    let partial = dest.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    {
        let mut out = Connection::open(&partial)?;
        let copy = Backup::new(&src, &mut out)?;
        // One step copies every page under a single read transaction.
        loop {
            match copy.step(-1)? {
                StepResult::Done => break,
                StepResult::More | StepResult::Busy | StepResult::Locked => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                _ => return Err(Error::internal("unexpected backup step result")),
            }
        }
        drop(copy);
        integrity_ok(&out)?;
    }
    std::fs::rename(&partial, dest).map_err(Error::internal)?;
    Ok(())
}

/// Replaces `db` with the backup at `from`, unless a server holds it. The current
/// file is kept beside it as `<db>.before-restore`.
pub fn restore(from: &Path, db: &Path) -> Result<()> {
    let check = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| Error::BadRequest(format!("{} is not a database: {e}", from.display())))?;
    integrity_ok(&check).map_err(|e| Error::BadRequest(format!("{} is damaged: {e}", from.display())))?;
    drop(check);
    let _lock = lock_server(db).map_err(|_| {
        Error::Conflict(format!(
            "a server is running on {}; stop it before restoring",
            db.display()
        ))
    })?;
    if db.exists() {
        // Fold the WAL into the file first, so the kept copy is complete.
        let conn = open_connection(db)?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        drop(conn);
        let mut kept = db.as_os_str().to_owned();
        kept.push(".before-restore");
        std::fs::rename(db, PathBuf::from(kept)).map_err(Error::internal)?;
    }
    for suffix in ["-wal", "-shm"] {
        let mut side = db.as_os_str().to_owned();
        side.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(side));
    }
    let src = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut dst = Connection::open(db)?;
    Backup::new(&src, &mut dst)?.run_to_completion(1024, std::time::Duration::ZERO, None)?;
    integrity_ok(&dst)?;
    Ok(())
}

/// Takes a timestamped backup into `dir` and keeps only the newest `keep`.
pub fn scheduled(db: &Path, dir: &Path, keep: usize) -> Result<PathBuf> {
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .map_err(Error::internal)?;
    let dest = dir.join(format!(
        "plinth-{stamp}-{}.db",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    ));
    backup(db, &dest)?;
    let mut backups: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(Error::internal)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("plinth-") && n.ends_with(".db"))
        })
        .collect();
    backups.sort();
    let excess = backups.len().saturating_sub(keep.max(1));
    for old in &backups[..excess] {
        let _ = std::fs::remove_file(old);
    }
    Ok(dest)
}
