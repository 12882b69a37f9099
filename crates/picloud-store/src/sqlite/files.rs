//! The database's directory and file on disk, kept private to the user PiCloud runs as.
//!
//! - On Unix, a directory PiCloud creates is `0700` and a database file it creates is `0600`,
//!   both given their mode as they are created: there is no moment when they are open to others,
//!   and the umask, which is process-wide, is left alone. SQLite gives the `-wal` and `-shm` files
//!   it creates the mode of the database file, so they are `0600` too.
//! - A directory or file that already exists keeps its mode: it may be shared on purpose, or not
//!   be PiCloud's at all (`sqlite://./picloud.db` names the working directory), and a database
//!   made by an earlier version is `0644`. A warning says so, with the `chmod` that closes it,
//!   when other users can read or change the database file, or change the directory's entries.

use std::io::ErrorKind;
use std::path::Path;

use crate::{StoreError, StoreResult};

/// The mode of a data directory PiCloud creates.
#[cfg(unix)]
const PRIVATE_DIR: u32 = 0o700;
/// The mode of a database file PiCloud creates.
#[cfg(unix)]
const PRIVATE_FILE: u32 = 0o600;

/// Creates the database file at `path`, and its directory, when missing; warns about either when
/// it exists and other users can reach it (see the module's doc).
pub(super) async fn prepare(path: &Path) -> StoreResult<()> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        match tokio::fs::metadata(dir).await {
            Ok(found) => warn_if_shared(dir, &found),
            Err(err) if err.kind() == ErrorKind::NotFound => create_dir(dir).await?,
            Err(err) => return Err(unusable("data directory", dir, &err)),
        }
    }
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(PRIVATE_FILE);
    // An empty file is an empty database to SQLite, which then opens what was created here.
    match options.open(path).await {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == ErrorKind::AlreadyExists => {
            let found = tokio::fs::metadata(path)
                .await
                .map_err(|err| unusable("database file", path, &err))?;
            warn_if_shared(path, &found);
            Ok(())
        }
        Err(err) => Err(unusable("database file", path, &err)),
    }
}

async fn create_dir(dir: &Path) -> StoreResult<()> {
    let mut builder = tokio::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(PRIVATE_DIR);
    builder
        .create(dir)
        .await
        .map_err(|err| unusable("data directory", dir, &err))
}

fn unusable(what: &str, path: &Path, err: &std::io::Error) -> StoreError {
    StoreError::Unavailable(format!(
        "the {what} {} cannot be created or opened: {err}",
        path.display()
    ))
}

/// Warns when other users can read or change the database file, or add, remove and rename the
/// files in its directory. A directory others may only list is fine: the files in it are private.
#[cfg(unix)]
fn warn_if_shared(path: &Path, found: &std::fs::Metadata) {
    use std::os::unix::fs::PermissionsExt as _;

    let mode = found.permissions().mode() & 0o777;
    let (exposed, private, why) = if found.is_dir() {
        (
            0o022,
            PRIVATE_DIR,
            "other users can replace the database's files in this directory",
        )
    } else {
        (
            0o077,
            PRIVATE_FILE,
            "other users can read or change this database file",
        )
    };
    if mode & exposed != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = %format_args!("{mode:04o}"),
            "{why}; make it private with chmod {private:o}"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_path: &Path, _found: &std::fs::Metadata) {}
