//! Versions in the coordinator: the shared rules (`drover-rules`) with errors mapped to ours.

pub use drover_rules::version::{ConstraintViolation, check_constraints};

use crate::error::{DroverError, Result};

/// Parses `1.2.3` or `v1.2.3`; anything else is refused with a message that shows the form.
pub fn parse_version(text: &str) -> Result<semver::Version> {
    drover_rules::parse_version(text).map_err(DroverError::InvalidArgument)
}
