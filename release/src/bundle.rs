//! A bundle: the signed metadata files the coordinator stores and hands to updaters, as
//! they were written (the signatures cover exact bytes). Bounded everywhere, because it
//! arrives from a coordinator that may be hostile.

use std::{collections::BTreeMap, path::Path};

use crate::layout::{METADATA_DIR, POLICY_TARGET, TARGETS_DIR};

/// Root versions a bundle may carry (every rotation since the pinned root).
pub const MAX_FILES: usize = 40;
/// Far above an honest file (a targets.json listing hundreds of releases is ~100 KiB).
pub const MAX_FILE_BYTES: usize = 512 << 10;
pub const MAX_TOTAL_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bundle {
    /// `N.root.json`, `timestamp.json`, `snapshot.json`, `targets.json`, `targets/policy.json`.
    pub files: BTreeMap<String, Vec<u8>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BundleError {
    #[error("the release metadata is too large: {0}")]
    TooLarge(String),
    #[error("the release metadata holds an unexpected file '{0}'")]
    UnexpectedFile(String),
    #[error("cannot read the release directory: {0}")]
    Read(String),
}

/// A file name a bundle may hold.
pub fn is_bundle_file(name: &str) -> bool {
    if let Some(version) = name.strip_suffix(".root.json") {
        return !version.is_empty()
            && version.len() <= 10
            && version.bytes().all(|b| b.is_ascii_digit());
    }
    matches!(name, "timestamp.json" | "snapshot.json" | "targets.json")
        || name == policy_file_name()
}

pub fn policy_file_name() -> String {
    format!("{TARGETS_DIR}/{POLICY_TARGET}")
}

impl Bundle {
    /// Checks names and sizes: what the updater does first with anything it is given.
    pub fn new(files: BTreeMap<String, Vec<u8>>) -> Result<Self, BundleError> {
        if files.len() > MAX_FILES {
            return Err(BundleError::TooLarge(format!(
                "{} files (at most {MAX_FILES})",
                files.len()
            )));
        }
        let mut total = 0usize;
        for (name, content) in &files {
            if !is_bundle_file(name) {
                return Err(BundleError::UnexpectedFile(
                    name.chars().take(64).collect::<String>(),
                ));
            }
            if content.len() > MAX_FILE_BYTES {
                return Err(BundleError::TooLarge(format!(
                    "{name} is {} bytes (at most {MAX_FILE_BYTES})",
                    content.len()
                )));
            }
            total += content.len();
        }
        if total > MAX_TOTAL_BYTES {
            return Err(BundleError::TooLarge(format!(
                "{total} bytes in all (at most {MAX_TOTAL_BYTES})"
            )));
        }
        Ok(Self { files })
    }

    /// The bundle of a release directory written by `droverctl releases sign`.
    pub fn from_dir(dir: &Path) -> Result<Self, BundleError> {
        let read_err = |path: &Path, err: std::io::Error| {
            BundleError::Read(format!("{}: {err}", path.display()))
        };
        let mut files = BTreeMap::new();
        let metadata = dir.join(METADATA_DIR);
        let entries = std::fs::read_dir(&metadata).map_err(|err| read_err(&metadata, err))?;
        for entry in entries {
            let entry = entry.map_err(|err| read_err(&metadata, err))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // `root.json` is a copy of the newest `N.root.json`; the chain is what travels.
            // (`targets.json` starts with "targets" too: only the policy's path is excluded.)
            if is_bundle_file(&name) && name != policy_file_name() {
                let content =
                    std::fs::read(entry.path()).map_err(|err| read_err(&entry.path(), err))?;
                files.insert(name, content);
            }
        }
        let policy = dir.join(TARGETS_DIR).join(POLICY_TARGET);
        let content = std::fs::read(&policy).map_err(|err| read_err(&policy, err))?;
        files.insert(policy_file_name(), content);
        Self::new(files)
    }

    /// The timestamp's version, read without verifying it: for ordering and display only
    /// (the coordinator's forward-only check); updaters trust nothing before `verify`.
    pub fn claimed_version(&self) -> Option<u64> {
        let timestamp = self.files.get("timestamp.json")?;
        let value: serde_json::Value = serde_json::from_slice(timestamp).ok()?;
        value.get("signed")?.get("version")?.as_u64()
    }

    pub fn total_bytes(&self) -> usize {
        self.files.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_metadata_names_and_bounded_sizes_are_accepted() {
        for good in [
            "1.root.json",
            "12.root.json",
            "timestamp.json",
            "targets/policy.json",
        ] {
            assert!(is_bundle_file(good), "{good}");
        }
        for bad in [
            "root.json",
            "../x.json",
            "x.root.json",
            "targets/other.json",
            "",
        ] {
            assert!(!is_bundle_file(bad), "{bad}");
        }
        let big = BTreeMap::from([("targets.json".to_string(), vec![b' '; MAX_FILE_BYTES + 1])]);
        assert!(matches!(Bundle::new(big), Err(BundleError::TooLarge(_))));
        let odd = BTreeMap::from([("evil.sh".to_string(), vec![])]);
        assert!(matches!(
            Bundle::new(odd),
            Err(BundleError::UnexpectedFile(_))
        ));
    }

    #[test]
    fn the_claimed_version_is_the_timestamps() {
        let files = BTreeMap::from([(
            "timestamp.json".to_string(),
            br#"{"signed":{"version":7},"signatures":[]}"#.to_vec(),
        )]);
        assert_eq!(Bundle::new(files).unwrap().claimed_version(), Some(7));
    }
}
