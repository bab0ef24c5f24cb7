//! Why an install did not happen, shared by every install backend (kept apart from
//! `install.rs` so a backend never imports the module that dispatches to it).

/// Why an install did not happen. The text goes into the report, so it says what failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallError {
    /// Worth retrying later: the network, a server error.
    Transient(String),
    /// Never retried for the same directive: authenticity or integrity failed.
    Refused(String),
    /// The release does not exist (yet).
    NotFound(String),
}

impl InstallError {
    pub fn message(&self) -> &str {
        match self {
            Self::Transient(m) | Self::Refused(m) | Self::NotFound(m) => m,
        }
    }
}

impl std::fmt::Display for InstallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}
