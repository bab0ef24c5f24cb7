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
}

impl InstallError {
    pub fn message(&self) -> &str {
        match self {
            Self::Transient(m) | Self::Refused(m) | Self::NotFound(m) | Self::Failed(m) => m,
        }
    }

    /// The code the policy gives the next decision after this failure.
    pub fn reason(&self) -> ReasonCode {
        match self {
            Self::Refused(_) => ReasonCode::InstallRefused,
            Self::Transient(_) | Self::NotFound(_) => ReasonCode::RetryPending,
            Self::Failed(_) => ReasonCode::UpdateFailed,
        }
    }
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
        for retried in [
            InstallError::Transient("503".into()),
            InstallError::NotFound("404".into()),
        ] {
            assert_eq!(retried.reason(), ReasonCode::RetryPending);
        }
        let failed = InstallError::Failed("exit 3".into());
        assert_eq!(
            (failed.reason(), failed.to_string().as_str()),
            (ReasonCode::UpdateFailed, "exit 3")
        );
    }
}
