//! Names shared by the release side and the updaters: where files live in a release
//! directory and in a bundle, and how an artifact is named as a TUF target.

use std::fmt;

/// The release directory's signed metadata (`N.root.json`, `timestamp.json`, …).
pub const METADATA_DIR: &str = "metadata";
/// The release directory's target files that travel in the bundle (only the policy).
pub const TARGETS_DIR: &str = "targets";
/// The policy (floor and allowed rollbacks), a TUF target so its hash is signed.
pub const POLICY_TARGET: &str = "policy.json";
/// The release team's unsigned working copy: what the next `sign` will sign.
pub const SOURCE_FILE: &str = "release.json";

/// The TUF target name of an artifact: `{kind}/{version}/{file}`, for example
/// `tarball/1.4.0/agent-1.4.0.tar.gz` or `apt/1.4.0/drover-agent_1.4.0_all.deb`.
pub fn target_name(kind: &str, version: &str, file: &str) -> String {
    format!("{kind}/{version}/{file}")
}

/// An artifact the signed metadata lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactTarget {
    pub kind: String,
    pub version: semver::Version,
    pub file: String,
    /// Lower-case hex.
    pub sha256: String,
    pub length: u64,
}

impl ArtifactTarget {
    /// Reads a target name back; `None` for names that are not artifacts (the policy).
    pub fn parse_name(name: &str) -> Option<(String, semver::Version, String)> {
        let mut parts = name.splitn(3, '/');
        let (kind, version, file) = (parts.next()?, parts.next()?, parts.next()?);
        if kind.is_empty() || file.is_empty() || file.contains('/') {
            return None;
        }
        let version = semver::Version::parse(version.trim_start_matches('v')).ok()?;
        Some((kind.to_string(), version, file.to_string()))
    }
}

impl fmt::Display for ArtifactTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&target_name(
            &self.kind,
            &self.version.to_string(),
            &self.file,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_the_policy_is_not_an_artifact() {
        let name = target_name("tarball", "1.4.0", "agent-1.4.0.tar.gz");
        let (kind, version, file) = ArtifactTarget::parse_name(&name).unwrap();
        assert_eq!(
            (kind.as_str(), version.to_string(), file.as_str()),
            ("tarball", "1.4.0".into(), "agent-1.4.0.tar.gz")
        );
        assert_eq!(ArtifactTarget::parse_name(POLICY_TARGET), None);
        assert_eq!(ArtifactTarget::parse_name("apt/not-a-version/x.deb"), None);
    }
}
