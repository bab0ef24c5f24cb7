//! Version parsing and the control-plane constraints (rule 6): an agent never runs a version
//! above the control plane's, nor more than one major version below it.

use semver::Version;

/// Parses `1.2.3` or `v1.2.3`; the error says what form is expected.
pub fn parse_version(text: &str) -> Result<Version, String> {
    let trimmed = text.trim();
    let bare = trimmed.strip_prefix('v').unwrap_or(trimmed);
    Version::parse(bare).map_err(|err| {
        format!(
            "'{text}' is not a semantic version ({err}); write it as MAJOR.MINOR.PATCH, e.g. 1.4.2"
        )
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConstraintViolation {
    AboveControlPlane {
        target: Version,
        control_plane: Version,
    },
    TooFarBelow {
        target: Version,
        control_plane: Version,
    },
}

impl ConstraintViolation {
    /// The stable reason code used in directives, decisions and the decision log.
    pub fn reason_code(&self) -> crate::ReasonCode {
        match self {
            Self::AboveControlPlane { .. } => crate::ReasonCode::ConstraintAboveControlPlane,
            Self::TooFarBelow { .. } => crate::ReasonCode::ConstraintBelowControlPlane,
        }
    }
}

impl std::fmt::Display for ConstraintViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AboveControlPlane {
                target,
                control_plane,
            } => write!(
                f,
                "version {target} is above the control plane's {control_plane}; agents must never \
                 run ahead of the control plane: upgrade the control plane first, or pick a version \
                 at most {control_plane}"
            ),
            Self::TooFarBelow {
                target,
                control_plane,
            } => write!(
                f,
                "version {target} is more than one major version below the control plane's \
                 {control_plane}; pick a version with major {} or {}",
                control_plane.major.saturating_sub(1),
                control_plane.major
            ),
        }
    }
}

pub fn check_constraints(
    target: &Version,
    control_plane: &Version,
) -> Result<(), ConstraintViolation> {
    // SemVer precedence ignores build metadata (`2.0.0+b1` is not above `2.0.0`); `>` on
    // `semver::Version` would compare it.
    if target.cmp_precedence(control_plane) == std::cmp::Ordering::Greater {
        return Err(ConstraintViolation::AboveControlPlane {
            target: target.clone(),
            control_plane: control_plane.clone(),
        });
    }
    if target.major + 1 < control_plane.major {
        return Err(ConstraintViolation::TooFarBelow {
            target: target.clone(),
            control_plane: control_plane.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(text: &str) -> Version {
        parse_version(text).unwrap()
    }

    #[test]
    fn build_metadata_does_not_change_precedence() {
        assert!(check_constraints(&v("2.0.0+build.7"), &v("2.0.0")).is_ok());
        assert!(check_constraints(&v("2.0.0"), &v("2.0.0+build.1")).is_ok());
        assert!(check_constraints(&v("2.0.1+b"), &v("2.0.0+c")).is_err());
    }

    #[test]
    fn accepts_a_leading_v_and_refuses_garbage_with_a_hint() {
        assert_eq!(v("v1.2.3"), Version::new(1, 2, 3));
        assert!(
            parse_version("1.2")
                .unwrap_err()
                .contains("MAJOR.MINOR.PATCH")
        );
    }

    #[test]
    fn boundaries() {
        let cp = v("15.2.0");
        assert!(check_constraints(&v("15.2.0"), &cp).is_ok());
        assert!(check_constraints(&v("14.0.0"), &cp).is_ok());
        assert!(matches!(
            check_constraints(&v("15.2.1"), &cp),
            Err(ConstraintViolation::AboveControlPlane { .. })
        ));
        assert!(matches!(
            check_constraints(&v("13.9.9"), &cp),
            Err(ConstraintViolation::TooFarBelow { .. })
        ));
        assert!(check_constraints(&v("15.2.0-rc.1"), &cp).is_ok());
    }

    proptest! {
        #[test]
        fn accepted_targets_are_within_one_major_below_and_never_above(
            t in (0u64..30, 0u64..5, 0u64..5), c in (0u64..30, 0u64..5, 0u64..5)
        ) {
            let target = Version::new(t.0, t.1, t.2);
            let cp = Version::new(c.0, c.1, c.2);
            let ok = check_constraints(&target, &cp).is_ok();
            prop_assert_eq!(ok, target <= cp && target.major + 1 >= cp.major);
        }
    }
}
