//! Why an install step did not happen, shared by every backend. Kept out of the dispatch
//! (`backend.rs`) so a backend never imports the module that names it.

use drover_rules::ReasonCode;

/// Why an install step did not happen. The text goes into the report, so it says what failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallError {
    /// Worth retrying later: the network, a server error.
    Transient(String),
    /// Never retried for the same directive: authenticity or integrity failed.
    Refused(String),
    /// The release does not exist (yet).
    NotFound(String),
    /// Installing or reverting on the agent failed (a command, a switch, a restart).
    Failed(String),
    /// The package manager refused: the version conflicts with the host's packages.
    Conflict(String),
    /// Another process holds the package manager's lock.
    Busy(String),
    /// A step did not finish within its timeout.
    TimedOut(String),
    /// The host's disk (or quota) is full; retried later, when space may have returned.
    DiskFull(String),
    /// The signed release metadata does not allow it (#28): final for the directive, with the
    /// precise code (`release_below_floor`, `release_metadata_rollback`, …) first in the text.
    Release { code: ReasonCode, message: String },
}

impl InstallError {
    pub fn message(&self) -> &str {
        match self {
            Self::Transient(m)
            | Self::Refused(m)
            | Self::NotFound(m)
            | Self::Failed(m)
            | Self::Conflict(m)
            | Self::Busy(m)
            | Self::TimedOut(m)
            | Self::DiskFull(m)
            | Self::Release { message: m, .. } => m,
        }
    }

    /// A refusal is final for its directive; everything else may be retried later.
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::Refused(_) | Self::Release { .. })
    }

    /// Whether the failure holds for good for its directive. A release refusal does not:
    /// the team may publish what was missing, or a lagging replica catch up, with no new
    /// directive, so it is tried again with backoff (still reported as refused).
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Refused(_))
    }

    /// A refusal by the signed release metadata; the text starts with its code, so the
    /// report an operator reads names it.
    pub fn release(refusal: drover_release::Refusal) -> Self {
        Self::Release {
            code: refusal.code,
            message: refusal.to_string(),
        }
    }

    /// The code the policy gives the next decision after this failure.
    pub fn reason(&self) -> ReasonCode {
        match self {
            Self::Refused(_) => ReasonCode::InstallRefused,
            Self::Transient(_) => ReasonCode::RetryPending,
            Self::NotFound(_) => ReasonCode::VersionNotFound,
            Self::Failed(_) => ReasonCode::UpdateFailed,
            Self::Conflict(_) => ReasonCode::PackageConflict,
            Self::Busy(_) => ReasonCode::PackageManagerBusy,
            Self::TimedOut(_) => ReasonCode::InstallTimedOut,
            Self::DiskFull(_) => ReasonCode::DiskFull,
            Self::Release { code, .. } => *code,
        }
    }

    /// A local I/O failure while `doing` something: a full disk says so (it is neither a bad
    /// artifact nor a network problem); anything else is retried later.
    pub fn io(doing: &str, err: &std::io::Error) -> Self {
        if is_disk_full(err) {
            Self::DiskFull(format!(
                "the disk is full while {doing} ({err}); it retries later: free space on the host"
            ))
        } else {
            Self::Transient(format!("{doing} failed: {err}"))
        }
    }
}

pub fn is_disk_full(err: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        err.kind(),
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded
    )
}

impl std::fmt::Display for InstallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for InstallError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_are_never_retried() {
        let refused = InstallError::Refused("bad signature".into());
        assert_eq!(refused.reason(), ReasonCode::InstallRefused);
        assert!(refused.is_refusal() && refused.is_final());
        let release = InstallError::release(drover_release::Refusal::new(
            ReasonCode::ReleaseBelowFloor,
            "1.0.0 is below the floor",
        ));
        assert_eq!(release.reason(), ReasonCode::ReleaseBelowFloor);
        assert!(release.is_refusal() && !release.is_final());
        assert!(release.message().starts_with("release_below_floor: "));
        for (retried, reason) in [
            (
                InstallError::Transient("503".into()),
                ReasonCode::RetryPending,
            ),
            (
                InstallError::NotFound("404".into()),
                ReasonCode::VersionNotFound,
            ),
            (
                InstallError::Conflict("breaks".into()),
                ReasonCode::PackageConflict,
            ),
            (
                InstallError::Busy("lock".into()),
                ReasonCode::PackageManagerBusy,
            ),
            (
                InstallError::TimedOut("600 s".into()),
                ReasonCode::InstallTimedOut,
            ),
        ] {
            assert_eq!(retried.reason(), reason);
            assert!(!retried.is_refusal());
        }
        let failed = InstallError::Failed("exit 3".into());
        assert_eq!(
            (failed.reason(), failed.to_string().as_str()),
            (ReasonCode::UpdateFailed, "exit 3")
        );
    }
}
