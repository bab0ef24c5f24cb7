//! The release side, run offline by the release team: keys, the unsigned working copy
//! (`release.json`), signing it into TUF metadata, and root rotation.
//!
//! A release directory holds:
//! - `metadata/N.root.json` (every root since the first; `root.json` is a copy of the
//!   newest), `targets.json`, `snapshot.json`, `timestamp.json`: what `sign` writes, the
//!   files a bundle carries ([`crate::Bundle::from_dir`]);
//! - `targets/policy.json`: the signed policy, the one target file that travels;
//! - `release.json`: the artifacts (name, sha256, length) and the policy the next `sign`
//!   will sign. Artifacts themselves are not in the directory: updaters fetch them elsewhere
//!   and check them against the signed digests.
//!
//! Roles: the root role has its own keys and threshold; targets, snapshot and timestamp
//! share the release keys and their threshold (a small team signs everything offline).
//! Consistent snapshots are off: the updater gets one bundle at a time, not a mirror.
//!
//! Functions that sign are `async` because tough's signing is; the rest is plain file
//! editing. Every metadata file is written to a temporary file and renamed into place.

mod keys;
mod roles;
mod root;
mod source;
#[cfg(test)]
mod tests;

use std::{
    io::Write,
    path::{Path, PathBuf},
    time::Duration,
};

use tough::schema::{Root, Signed};

pub use keys::generate_key;
pub use roles::{SignSummary, sign};
pub use root::{InitSummary, RotateSummary, init, rotate_root};
pub use source::{
    ARTIFACT_KINDS, ReleaseSource, SourceTarget, add_artifact, allow_rollback, read_source,
    remove_artifact, set_floor,
};

use crate::layout::{METADATA_DIR, SOURCE_FILE};

/// The TUF specification version written into every role (tough accepts only this one).
pub const SPEC_VERSION: &str = "1.0.0";

/// What went wrong on the release side, in words that say what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{} already exists: a key file is never overwritten; choose another path, or move \
         the old key away first",
        .0.display()
    )]
    KeyExists(PathBuf),
    #[error("cannot generate an Ed25519 key: the system's random source failed")]
    KeyGeneration,
    #[error(
        "{} is not a private key that can sign TUF metadata (Ed25519 or ECDSA P-256 as PKCS#8 \
         DER, or RSA as PEM); make one with `droverctl releases keygen --out FILE`",
        .0.display()
    )]
    NotAKey(PathBuf),
    #[error("{} and {} hold the same key (id {id}); give each key once", first.display(), second.display())]
    DuplicateKey {
        first: PathBuf,
        second: PathBuf,
        id: String,
    },
    #[error("{0}")]
    Threshold(String),
    #[error(
        "{} (key id {id}) is not one of the {set} keys of the root in {}; check the key \
         files given",
        path.display(), root.display()
    )]
    UnknownKey {
        path: PathBuf,
        id: String,
        set: &'static str,
        root: PathBuf,
    },
    /// A role would get fewer signatures than its threshold; nothing was written.
    #[error("{0}")]
    NotEnoughKeys(String),
    #[error(
        "{} is already a release directory ({} exists); change its keys with `droverctl \
         releases rotate-root`, sign it with `droverctl releases sign`",
        dir.display(), existing.display()
    )]
    AlreadyInitialized { dir: PathBuf, existing: PathBuf },
    #[error(
        "{} is not a release directory ({} is missing); create one with `droverctl releases \
         init --dir {}`",
        dir.display(), missing.display(), dir.display()
    )]
    NotInitialized { dir: PathBuf, missing: PathBuf },
    #[error("{} is not valid {what} ({message}); restore it from a copy", path.display())]
    Corrupt {
        path: PathBuf,
        what: &'static str,
        message: String,
    },
    #[error("unknown artifact kind '{0}'; use one of: tarball, apt, dnf, zypper, oci")]
    UnknownKind(String),
    #[error("{} cannot be an artifact: {reason}", path.display())]
    BadArtifact { path: PathBuf, reason: String },
    #[error("{} lists no target named '{name}'; the names are the keys of its \"targets\"", source_file.display())]
    NoSuchTarget { name: String, source_file: PathBuf },
    #[error("a rollback goes down: --from {from} must be newer than --to {to}")]
    BadRollback {
        from: semver::Version,
        to: semver::Version,
    },
    #[error(
        "the {what} expiry must be at least one second and at most a few centuries, not {given}"
    )]
    Expiry { what: &'static str, given: String },
    #[error("cannot {action}: {message}")]
    Tuf {
        action: &'static str,
        message: String,
    },
}

impl SignError {
    pub(crate) fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }

    pub(crate) fn tuf(action: &'static str) -> impl FnOnce(tough::error::Error) -> Self {
        move |err| Self::Tuf {
            action,
            message: err.to_string(),
        }
    }
}

pub(crate) fn metadata_dir(dir: &Path) -> PathBuf {
    dir.join(METADATA_DIR)
}

/// The newest root (`metadata/root.json`), as written.
pub(crate) fn read_root(dir: &Path) -> Result<(PathBuf, Signed<Root>), SignError> {
    let path = metadata_dir(dir).join("root.json");
    let bytes = read_required(dir, &path)?;
    let root = serde_json::from_slice(&bytes).map_err(|err| SignError::Corrupt {
        path: path.clone(),
        what: "TUF root metadata",
        message: err.to_string(),
    })?;
    Ok((path, root))
}

/// A file the release directory must have; its absence means the directory is not one.
pub(crate) fn read_required(dir: &Path, path: &Path) -> Result<Vec<u8>, SignError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(bytes),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Err(SignError::NotInitialized {
            dir: dir.to_path_buf(),
            missing: path.to_path_buf(),
        }),
        Err(err) => Err(SignError::io("read", path)(err)),
    }
}

/// Where the working copy lives.
pub(crate) fn source_path(dir: &Path) -> PathBuf {
    dir.join(SOURCE_FILE)
}

/// Writes `bytes` to a temporary file next to `path`, flushes it to disk, then renames it
/// over `path`: readers see the old file or the new one, never a part.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SignError> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let written = (|| {
        let mut file = std::fs::File::create(&temp).map_err(SignError::io("create", &temp))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(SignError::io("write", &temp))?;
        std::fs::rename(&temp, path).map_err(SignError::io("replace", path))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// Now plus `duration`, in whole seconds (what people read in the files).
pub(crate) fn expires_in(
    what: &'static str,
    duration: Duration,
) -> Result<jiff::Timestamp, SignError> {
    let refuse = || SignError::Expiry {
        what,
        given: format!("{duration:?}"),
    };
    if duration < Duration::from_secs(1) {
        return Err(refuse());
    }
    let span = jiff::SignedDuration::try_from(duration).map_err(|_| refuse())?;
    let at = jiff::Timestamp::now()
        .checked_add(span)
        .map_err(|_| refuse())?;
    jiff::Timestamp::from_second(at.as_second()).map_err(|_| refuse())
}
