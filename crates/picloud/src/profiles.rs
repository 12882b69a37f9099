//! The sessions of `picloud login`, by profile name, in `profiles.json`: a file only its owner
//! may read (`0600`, in a `0700` directory when the directory is new), replaced whole on each
//! change so that it is never half-written.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use reqwest::Url;
use serde::{Deserialize, Serialize};

use crate::client::UsageError;
use crate::config::ProfileArgs;

/// One session: where, who, and its token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    /// The admin listener the session belongs to; its token goes nowhere else.
    pub url: String,
    pub username: String,
    pub token: String,
}

impl Profile {
    pub fn url(&self) -> anyhow::Result<Url> {
        Url::parse(&self.url).with_context(|| format!("the profile's URL '{}' is no URL", self.url))
    }
}

#[derive(Default, Serialize, Deserialize)]
struct File {
    profiles: BTreeMap<String, Profile>,
}

/// The profiles file, as read.
pub struct Profiles {
    path: PathBuf,
    file: File,
}

impl Profiles {
    /// Reads the file of `args`; a missing file holds no profiles.
    pub fn load(args: &ProfileArgs) -> anyhow::Result<Self> {
        let path = match &args.config_dir {
            Some(dir) => dir.join(FILE_NAME),
            None => default_dir()
                .ok_or_else(|| {
                    UsageError(
                        "neither XDG_CONFIG_HOME nor HOME is set: set PICLOUD_CONFIG_DIR, the \
                         directory of the profiles"
                            .to_owned(),
                    )
                })?
                .join(FILE_NAME),
        };
        let file = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a profiles file", path.display()))?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => File::default(),
            Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
        };
        Ok(Self { path, file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.file.profiles.get(name)
    }

    pub fn set(&mut self, name: &str, profile: Profile) {
        self.file.profiles.insert(name.to_owned(), profile);
    }

    pub fn remove(&mut self, name: &str) -> Option<Profile> {
        self.file.profiles.remove(name)
    }

    /// Writes the file: a new file of mode `0600` beside it, renamed over it.
    pub fn save(&self) -> anyhow::Result<()> {
        let dir = self
            .path
            .parent()
            .context("the profiles file has no directory")?;
        private_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let json = serde_json::to_vec_pretty(&self.file).context("cannot write the profiles")?;
        let temporary = dir.join(format!(".{FILE_NAME}.{}", std::process::id()));
        let written = private_file(&temporary).and_then(|mut file| {
            file.write_all(&json)?;
            file.sync_all()
        });
        written
            .and_then(|()| std::fs::rename(&temporary, &self.path))
            .inspect_err(|_| {
                let _ = std::fs::remove_file(&temporary);
            })
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

const FILE_NAME: &str = "profiles.json";

/// `$XDG_CONFIG_HOME/picloud`, else `$HOME/.config/picloud` (relative values are ignored, as
/// the XDG specification says).
fn default_dir() -> Option<PathBuf> {
    let absolute = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|path| path.is_absolute())
    };
    absolute("XDG_CONFIG_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".config")))
        .map(|dir| dir.join("picloud"))
}

/// Creates `dir` and its missing parents, `0700` on Unix; an existing one keeps its mode.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// A new file at `path`, `0600` on Unix (one left by an interrupted write is replaced).
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}
