//! What an agent should run, when it may install it, and why: a pure function of its channel,
//! its group's maintenance schedule and the control plane.
//! The rollout engine will refine this per agent; the contract (a target plus a reason code)
//! stays the same.

use drover_rules::MaintenanceSchedule;
use drover_rules::ReasonCode;
use semver::Version;
use serde::Serialize;

use super::{Channel, version::check_constraints};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Directive {
    /// Equal ids mean equal directives, so re-sending an unchanged directive can be skipped.
    pub directive_id: String,
    pub target_version: Option<Version>,
    pub critical: bool,
    pub reason: ReasonCode,
    pub reason_detail: String,
    pub control_plane_version: Option<Version>,
    /// `None`: no window is known, so the updater installs as soon as it can (rule 4).
    pub schedule: Option<MaintenanceSchedule>,
    /// Set while a rollout governs the agent; also the attempt id (a new rollout is an
    /// explicit new attempt, which lets an updater retry a version that failed before).
    pub rollout_id: String,
    /// The rollout's stop epoch (`RolloutState::stop_epoch`); 0 outside rollouts.
    pub rollout_epoch: u64,
}

/// `channel` is `None` when the agent follows a channel the coordinator does not know.
pub fn directive_for(
    channel_name: &str,
    channel: Option<&Channel>,
    control_plane: Option<&Version>,
    schedule: Option<&MaintenanceSchedule>,
) -> Directive {
    let (target, critical, reason, detail) = match channel {
        None => (
            None,
            false,
            ReasonCode::UnknownChannel,
            format!(
                "channel '{channel_name}' does not exist; create it with \
                 `droverctl channels set {channel_name} VERSION` or move the agent to another channel"
            ),
        ),
        Some(ch) => match (&ch.version, control_plane) {
            (None, _) if ch.follows_control_plane => (
                None,
                ch.critical,
                ReasonCode::NoControlPlaneVersion,
                "the control-plane version is not set; set it with `droverctl control-plane set VERSION`"
                    .to_string(),
            ),
            (None, _) => (
                None,
                ch.critical,
                ReasonCode::ChannelHasNoVersion,
                format!("channel '{}' has no version yet", ch.name),
            ),
            (Some(version), Some(cp)) => match check_constraints(version, cp) {
                Ok(()) if ch.follows_control_plane => (
                    Some(version.clone()),
                    ch.critical,
                    ReasonCode::FollowsControlPlane,
                    format!("channel '{}' follows the control plane at {cp}", ch.name),
                ),
                Ok(()) => (
                    Some(version.clone()),
                    ch.critical,
                    ReasonCode::ChannelTarget,
                    format!("channel '{}' targets {version}", ch.name),
                ),
                Err(violation) => (
                    None,
                    false,
                    violation.reason_code(),
                    format!("not served: {violation}"),
                ),
            },
            (Some(version), None) => (
                None,
                false,
                ReasonCode::NoControlPlaneVersion,
                format!(
                    "channel '{}' targets {version}, but without a control-plane version the \
                     constraints cannot be checked; set it with `droverctl control-plane set VERSION`",
                    ch.name
                ),
            ),
        },
    };
    let directive_id = directive_id(
        target.as_ref(),
        critical,
        reason.as_str(),
        control_plane,
        schedule,
    );
    Directive {
        directive_id,
        target_version: target,
        critical,
        reason,
        reason_detail: detail,
        control_plane_version: control_plane.cloned(),
        schedule: schedule.copied(),
        rollout_id: String::new(),
        rollout_epoch: 0,
    }
}

/// The directive for an agent governed by a rollout. The rollout's group windows are its
/// schedule: the engine serves the target only when the agent may install it, so no local
/// window is sent (one window, not two that might never overlap).
pub fn directive_from_rollout(
    rollout_id: &str,
    rollout_epoch: u64,
    target: Option<&Version>,
    critical: bool,
    reason: ReasonCode,
    detail: String,
    control_plane: Option<&Version>,
) -> Directive {
    // The epoch is in the id: a stop changes every directive of the rollout, so every
    // updater is sent it and can acknowledge it, whether its own target changed or not.
    let id_seed = format!("{rollout_id}|{rollout_epoch}|{reason}");
    Directive {
        directive_id: directive_id(target, critical, &id_seed, control_plane, None),
        target_version: target.cloned(),
        critical,
        reason,
        reason_detail: detail,
        control_plane_version: control_plane.cloned(),
        schedule: None,
        rollout_id: rollout_id.to_string(),
        rollout_epoch,
    }
}

/// A stable content hash (FNV-1a): the same directive gets the same id across restarts and
/// builds, which `std`'s hasher does not promise.
fn directive_id(
    target: Option<&Version>,
    critical: bool,
    reason: &str,
    control_plane: Option<&Version>,
    schedule: Option<&MaintenanceSchedule>,
) -> String {
    let text = format!(
        "{}|{}|{reason}|{}|{}",
        target.map(ToString::to_string).unwrap_or_default(),
        critical,
        control_plane.map(ToString::to_string).unwrap_or_default(),
        schedule.map(ToString::to_string).unwrap_or_default()
    );
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("d-{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(name: &str, version: Option<&str>, follows: bool) -> Channel {
        Channel {
            name: name.into(),
            version: version.map(|v| Version::parse(v).unwrap()),
            critical: false,
            follows_control_plane: follows,
            updated_at_ms: 0,
        }
    }

    #[test]
    fn serves_the_channel_version_within_constraints() {
        let cp = Version::new(2, 0, 0);
        let d = directive_for(
            "prod",
            Some(&channel("prod", Some("1.5.0"), false)),
            Some(&cp),
            None,
        );
        assert_eq!(d.target_version, Some(Version::new(1, 5, 0)));
        assert_eq!(d.reason, ReasonCode::ChannelTarget);
    }

    #[test]
    fn refuses_a_version_above_the_control_plane() {
        let cp = Version::new(2, 0, 0);
        let d = directive_for(
            "prod",
            Some(&channel("prod", Some("2.1.0"), false)),
            Some(&cp),
            None,
        );
        assert_eq!(d.target_version, None);
        assert_eq!(d.reason, ReasonCode::ConstraintAboveControlPlane);
    }

    #[test]
    fn unknown_channel_has_no_target_and_says_how_to_fix_it() {
        let d = directive_for("nope", None, None, None);
        assert_eq!(d.reason, ReasonCode::UnknownChannel);
        assert!(d.reason_detail.contains("droverctl channels set nope"));
    }

    #[test]
    fn ids_change_with_content_and_only_with_content() {
        let cp = Version::new(2, 0, 0);
        let x = channel("x", Some("1.0.0"), false);
        let schedule = drover_rules::MaintenanceSchedule {
            days: drover_rules::Weekdays::ALL,
            start_minute_utc: 120,
            duration_minutes: 60,
        };
        let a = directive_for("x", Some(&x), Some(&cp), None);
        let b = directive_for("x", Some(&x), Some(&cp), None);
        let c = directive_for(
            "x",
            Some(&channel("x", Some("1.0.1"), false)),
            Some(&cp),
            None,
        );
        let d = directive_for("x", Some(&x), Some(&cp), Some(&schedule));
        assert_eq!(a.directive_id, b.directive_id);
        assert_ne!(a.directive_id, c.directive_id);
        assert_ne!(
            a.directive_id, d.directive_id,
            "a schedule change is a new directive"
        );
    }
}
