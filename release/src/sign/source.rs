//! `release.json`: the release team's unsigned working copy, what the next `sign` signs.

use std::{
    collections::BTreeMap,
    io::Read,
    path::{Path, PathBuf},
};

use semver::Version;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{SignError, read_required, source_path, write_atomic};
use crate::{
    layout::{ArtifactTarget, POLICY_TARGET, target_name},
    policy::{Policy, Rollback},
};

/// The kinds of artifact a target name may start with.
pub const ARTIFACT_KINDS: [&str; 5] = ["tarball", "apt", "dnf", "zypper", "oci"];

/// `release.json`: `{ "targets": { NAME: {"sha256", "length"} }, "policy": POLICY }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseSource {
    #[serde(default)]
    pub targets: BTreeMap<String, SourceTarget>,
    #[serde(default)]
    pub policy: Policy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceTarget {
    /// Lower-case hex.
    pub sha256: String,
    pub length: u64,
}

impl ReleaseSource {
    pub(crate) fn to_bytes(&self) -> Result<Vec<u8>, SignError> {
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|err| SignError::Corrupt {
            path: PathBuf::from(crate::layout::SOURCE_FILE),
            what: "release source",
            message: err.to_string(),
        })?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}

/// Reads `dir/release.json`.
pub fn read_source(dir: &Path) -> Result<ReleaseSource, SignError> {
    let path = source_path(dir);
    let bytes = read_required(dir, &path)?;
    serde_json::from_slice(&bytes).map_err(|err| SignError::Corrupt {
        path,
        what: "release source (release.json)",
        message: err.to_string(),
    })
}

fn edit<T>(
    dir: &Path,
    change: impl FnOnce(&mut ReleaseSource) -> Result<T, SignError>,
) -> Result<T, SignError> {
    let mut source = read_source(dir)?;
    let out = change(&mut source)?;
    write_atomic(&source_path(dir), &source.to_bytes()?)?;
    Ok(out)
}

/// Records `file` (its sha256 and length) as `{kind}/{version}/{file name}` in
/// `release.json`, replacing an entry of the same name. Returns the target name.
pub fn add_artifact(
    dir: &Path,
    kind: &str,
    version: &Version,
    file: &Path,
) -> Result<String, SignError> {
    if !ARTIFACT_KINDS.contains(&kind) {
        return Err(SignError::UnknownKind(kind.to_string()));
    }
    let bad = |reason: &str| SignError::BadArtifact {
        path: file.to_path_buf(),
        reason: reason.to_string(),
    };
    let file_name = file
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| bad("its name is not UTF-8 text"))?;
    if file_name.chars().any(|c| c.is_control() || c == '\\') || file_name.starts_with('.') {
        return Err(bad(
            "its name has control characters, a backslash or a leading dot",
        ));
    }
    let name = target_name(kind, &version.to_string(), file_name);
    let parsed = ArtifactTarget::parse_name(&name);
    if parsed.as_ref().map(|(k, v, f)| (k.as_str(), v, f.as_str()))
        != Some((kind, version, file_name))
        || tough::TargetName::new(name.as_str()).is_err()
    {
        return Err(bad(
            "it does not make a target name that reads back the same",
        ));
    }
    let (sha256, length) = digest(file)?;
    edit(dir, |source| {
        source
            .targets
            .insert(name.clone(), SourceTarget { sha256, length });
        Ok(())
    })?;
    Ok(name)
}

fn digest(file: &Path) -> Result<(String, u64), SignError> {
    let mut reader = std::fs::File::open(file).map_err(SignError::io("open", file))?;
    let metadata = reader.metadata().map_err(SignError::io("inspect", file))?;
    if !metadata.is_file() {
        return Err(SignError::BadArtifact {
            path: file.to_path_buf(),
            reason: "it is not a regular file".into(),
        });
    }
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 << 10];
    let mut length = 0u64;
    loop {
        let n = reader
            .read(&mut buffer)
            .map_err(SignError::io("read", file))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        length += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), length))
}

/// Removes a target from `release.json`; it leaves the signed metadata at the next `sign`.
pub fn remove_artifact(dir: &Path, name: &str) -> Result<(), SignError> {
    edit(dir, |source| match source.targets.remove(name) {
        Some(_) => Ok(()),
        None => Err(SignError::NoSuchTarget {
            name: name.to_string(),
            source_file: source_path(dir),
        }),
    })
}

/// Sets (or with `None` clears) the version floor; returns the policy as it now is.
pub fn set_floor(dir: &Path, floor: Option<Version>) -> Result<Policy, SignError> {
    edit(dir, |source| {
        source.policy.floor = floor;
        Ok(source.policy.clone())
    })
}

/// Allows the one downgrade `from` → `to` below the floor (once; repeating it changes
/// nothing); returns the policy as it now is.
pub fn allow_rollback(dir: &Path, from: Version, to: Version) -> Result<Policy, SignError> {
    if from <= to {
        return Err(SignError::BadRollback { from, to });
    }
    edit(dir, |source| {
        let rollback = Rollback { from, to };
        if !source.policy.rollbacks.contains(&rollback) {
            source.policy.rollbacks.push(rollback);
        }
        Ok(source.policy.clone())
    })
}

/// The sha256 of a target in `release.json`, as bytes; the name is checked as tough will.
pub(crate) fn checked_target(
    dir: &Path,
    name: &str,
    target: &SourceTarget,
) -> Result<(tough::TargetName, Vec<u8>), SignError> {
    let corrupt = |message: String| SignError::Corrupt {
        path: source_path(dir),
        what: "release source (release.json)",
        message,
    };
    if name == POLICY_TARGET {
        return Err(corrupt(format!(
            "'{POLICY_TARGET}' is the policy's name; it cannot be an artifact"
        )));
    }
    let sha256 = hex::decode(&target.sha256)
        .ok()
        .filter(|bytes| bytes.len() == 32)
        .ok_or_else(|| corrupt(format!("the sha256 of '{name}' is not 64 hex digits")))?;
    let target_name = tough::TargetName::new(name)
        .map_err(|err| corrupt(format!("'{name}' is not a valid target name: {err}")))?;
    Ok((target_name, sha256))
}
