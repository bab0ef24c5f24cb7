//! The release policy, signed as the `policy.json` target: a version floor, and the exact
//! downgrades the release team allows below it. Pure.

use drover_rules::ReasonCode;
use semver::Version;
use serde::{Deserialize, Serialize};

use crate::Refusal;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// No install goes below it (a known-vulnerable release stays out for good).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<Version>,
    /// The only ways below the floor: from exactly `from` to exactly `to`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollbacks: Vec<Rollback>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    pub from: Version,
    pub to: Version,
}

impl Policy {
    /// Whether an agent running `current` may install `target`.
    pub fn permits(&self, current: Option<&Version>, target: &Version) -> Result<(), Refusal> {
        let Some(floor) = &self.floor else {
            return Ok(());
        };
        if target >= floor {
            return Ok(());
        }
        let allowed = current.is_some_and(|current| {
            self.rollbacks
                .iter()
                .any(|r| &r.from == current && &r.to == target)
        });
        if allowed {
            return Ok(());
        }
        let from = current.map_or("nothing".to_string(), Version::to_string);
        Err(Refusal::new(
            ReasonCode::ReleaseBelowFloor,
            format!(
                "{target} is below the signed floor {floor}, and no signed rollback allows \
                 {from} -> {target}"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    #[test]
    fn below_the_floor_only_by_an_exact_signed_rollback() {
        let policy = Policy {
            floor: Some(v("1.2.0")),
            rollbacks: vec![Rollback {
                from: v("1.3.0"),
                to: v("1.1.0"),
            }],
        };
        assert!(policy.permits(Some(&v("1.3.0")), &v("1.2.0")).is_ok());
        assert!(policy.permits(Some(&v("1.3.0")), &v("1.1.0")).is_ok());
        let refused = policy.permits(Some(&v("1.3.1")), &v("1.1.0")).unwrap_err();
        assert_eq!(refused.code, ReasonCode::ReleaseBelowFloor);
        assert!(policy.permits(None, &v("1.1.0")).is_err());
        assert!(policy.permits(Some(&v("1.3.0")), &v("1.0.0")).is_err());
    }

    proptest! {
        #[test]
        fn without_rollbacks_exactly_the_versions_at_or_above_the_floor_pass(
            floor in (0u64..5, 0u64..5), target in (0u64..5, 0u64..5), current in (0u64..5, 0u64..5),
        ) {
            let (floor, target, current) = (
                Version::new(1, floor.0, floor.1),
                Version::new(1, target.0, target.1),
                Version::new(1, current.0, current.1),
            );
            let policy = Policy { floor: Some(floor.clone()), rollbacks: vec![] };
            prop_assert_eq!(policy.permits(Some(&current), &target).is_ok(), target >= floor);
        }
    }
}
