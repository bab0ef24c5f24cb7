//! Codes that cross the system — in the store, on the wire as text, in the CLI and the API —
//! defined once, each with a one-line explanation for people.

use std::fmt;

/// Defines a closed code enum with its stable text, its explanation, `ALL` and `parse`.
macro_rules! codes {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal : $explain:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $(#[doc = $explain] $variant,)+
        }

        impl $name {
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];

            /// The stable text stored and sent on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }

            /// One line for people: what the code means.
            pub fn explain(self) -> &'static str {
                match self {
                    $(Self::$variant => $explain,)+
                }
            }

            pub fn parse(text: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|code| code.as_str() == text)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        /// As its stable text, like everywhere else.
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        /// A string with exactly the codes' texts, each explained in the description.
        #[cfg(feature = "schema")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                let texts: Vec<&'static str> = Self::ALL.iter().map(|code| code.as_str()).collect();
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some(texts))
                    .description(Some(
                        Self::ALL
                            .iter()
                            .map(|code| format!("`{code}`: {}", code.explain()))
                            .collect::<Vec<_>>()
                            .join("\n"),
                    ))
                    .into()
            }
        }

        #[cfg(feature = "schema")]
        impl utoipa::ToSchema for $name {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed(stringify!($name))
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                Self::parse(&text).ok_or_else(|| {
                    serde::de::Error::custom(format!(concat!("unknown ", stringify!($name), " '{}'"), text))
                })
            }
        }
    };
}

codes! {
    /// Why an agent should (or should not) run a version now: every decision, on either side,
    /// carries one, so "why hasn't agent X updated?" always has an answer.
    ReasonCode {
        // The coordinator's, for what it serves.
        ChannelTarget => "channel_target": "the agent's channel serves this version",
        FollowsControlPlane => "follows_control_plane": "the channel follows the control-plane version",
        UnknownChannel => "unknown_channel": "the agent's channel does not exist",
        ChannelHasNoVersion => "channel_has_no_version": "the agent's channel has no version set",
        NoControlPlaneVersion => "no_control_plane_version": "no control-plane version is set, so no target can be checked",
        ConstraintAboveControlPlane => "constraint_above_control_plane": "the version is above the control plane's; it is never served",
        ConstraintBelowControlPlane => "constraint_below_control_plane": "the version is more than one major below the control plane's",
        RolloutPending => "rollout_pending": "a rollout governs the channel and has not decided for this agent yet",
        GroupUnstarted => "group_unstarted": "the agent's rollout group has not started (its turn or window has not come)",
        Canary => "canary": "the agent is a canary of its group and updates first",
        CanaryPending => "canary_pending": "the group waits for its canaries to be healthy on the target",
        CanaryWaiting => "canary_waiting": "the group waits for enough connected, healthy agents to pick canaries",
        GroupActive => "group_active": "the agent's group is updating",
        JoinedAfterStart => "joined_after_start": "the agent enrolled after its group started; it follows once the group is done",
        MaxInFlight => "max_in_flight": "the group updates a limited number of agents at a time",
        OutsideWindow => "outside_window": "outside the maintenance window; it waits for the window",
        GroupHalted => "group_halted": "the group halted after failures; nobody new is updated",
        UpdateFailed => "update_failed": "the update to the target failed on this agent",
        GroupDone => "group_done": "the group is done; the agent catches up",
        OnTarget => "on_target": "the agent already runs the target",
        Rolledback => "rolledback": "the group was rolled back to the start version",
        RolloutPaused => "rollout_paused": "the rollout is paused; nobody moves until it resumes",
        Pinned => "pinned": "an admin pinned the agent to its version",
        StratumHeld => "stratum_held": "the agent's stratum (its kind of host) failed in this rollout and is held; the other strata go on",
        // The updater's own, for what it does.
        InWindow => "in_window": "inside the maintenance window: it installs",
        AgentUnhealthy => "agent_unhealthy": "the agent is unhealthy: it installs at once",
        Critical => "critical": "the update is critical: it installs at once",
        NoSchedule => "no_schedule": "no maintenance schedule is known: it installs as soon as it can",
        ScheduleExpired => "schedule_expired": "the saved schedule expired: it installs as soon as it can",
        VersionBroken => "version_broken": "this version failed its health gate here and is not retried",
        CurrentVersionBroken => "current_version_broken": "the running version failed its health gate: it reverts",
        RevertFailed => "revert_failed": "going back to the previous version failed; it retries with backoff, and an operator should look at the host",
        DiskFull => "disk_full": "the host's disk is full; it retries when space returns",
        InstallRefused => "install_refused": "the release failed its authenticity checks; nothing was installed",
        RetryPending => "retry_pending": "the last attempt failed; it retries later",
        VersionNotFound => "version_not_found": "the release or package repository has no such version (yet); it retries later",
        PackageConflict => "package_conflict": "the package manager refused the install: it conflicts with the host's packages; it retries later",
        PackageManagerBusy => "package_manager_busy": "another process holds the package manager's lock; it retries later",
        InstallTimedOut => "install_timed_out": "an install step did not finish within its timeout; it retries later",
        UpToDate => "up_to_date": "the agent runs the target",
        NoDirective => "no_directive": "no directive received yet",
        NoTarget => "no_target": "the coordinator serves no target for this agent",
        InvalidTarget => "invalid_target": "the served target breaks the version constraints; it is refused",
        // The updater's, from the signed release metadata (#28): each one means nothing was installed.
        ReleaseNotListed => "release_not_listed": "the target is not in the signed release metadata for this installer; it is refused",
        ReleaseBelowFloor => "release_below_floor": "the target is below the signed version floor and no signed rollback allows it; it is refused",
        ReleaseArtifactMismatch => "release_artifact_mismatch": "the artifact's digest or size differs from the signed release metadata; it is refused",
        ReleaseMetadataMissing => "release_metadata_missing": "the coordinator serves no release metadata, so nothing can be installed",
        ReleaseMetadataUnsigned => "release_metadata_unsigned": "the release metadata lacks a threshold of valid signatures from the pinned keys, or is malformed",
        ReleaseMetadataInconsistent => "release_metadata_inconsistent": "the release metadata files disagree with each other (mixed versions); it is refused",
        ReleaseMetadataRollback => "release_metadata_rollback": "the release metadata is older than metadata this updater already trusts (a replay); it is refused",
        ReleaseMetadataExpired => "release_metadata_expired": "the release metadata has expired: the fleet may be frozen on old versions; the release team must re-sign it",
        ReleaseMetadataTooLarge => "release_metadata_too_large": "the release metadata is larger than any honest one (endless data); it is refused",
    }
}

codes! {
    /// What needs an operator's eye in the fleet, inside a rollout or not: each agent is in at
    /// most one, the first that applies in this order.
    AgentCondition {
        Failing => "failing": "its last update to the version it should run failed (or was refused); it keeps what it has",
        Reverted => "reverted": "its last update to the version it should run failed its health gate and was reverted",
        BehindTarget => "behind_target": "it is served a version it does not run yet and is connected: it updates in its window or its turn",
        Stuck => "stuck": "it is served a version it does not run and is not connected, so it cannot update until it comes back",
    }
}

codes! {
    /// What the health verdict watches on each agent after an install, against the agent's
    /// own level before it and against the agents of its group not updated yet.
    HealthSignal {
        Rss => "rss": "the agent's resident memory, relative to its own level before the install",
        Cpu => "cpu": "the agent's CPU use, in percent of one core",
        ProbeLatency => "probe_latency": "how long the agent's health probe takes to answer, in ms",
        ProbeFailures => "probe_failures": "the share of the agent's health probes that fail",
        Restarts => "restarts": "how often the agent restarts or crashes, per agent-hour",
    }
}

codes! {
    /// What the health verdict says about a group's updated agents.
    VerdictOutcome {
        Pending => "pending": "too few updated agents have been watched long enough to judge yet",
        Pass => "pass": "no signal shows a regression beyond its tolerance, with enough agents watched",
        Fail => "fail": "a signal shows a regression beyond its tolerance, beyond doubt at the spec's error rate: the group halts",
        Inconclusive => "inconclusive": "the bake time is over but too few agents reported a signal to judge it: the rollout pauses",
        NotJudged => "not_judged": "no agent of the group has health samples from before and after its install, so only the install gate judges it",
    }
}

codes! {
    /// What a failure stops when a rollout stratifies its fleet (ARCHITECTURE.md, "Strata").
    HaltScope {
        Rollout => "rollout": "a failure halts its group and every other unfinished group: the whole rollout stops",
        Stratum => "stratum": "a failure confined to one stratum holds only that stratum; the others go on",
    }
}

codes! {
    /// Whether an agent's updater has heard a rollout's latest stop (its epoch).
    AckState {
        Acknowledged => "acknowledged": "the updater acknowledged the stop: it starts no install under an older epoch",
        NotYet => "not_yet": "connected, but its updater has not acknowledged the stop yet",
        Unreachable => "unreachable": "not connected: it hears the stop when it reconnects or re-checks; until then it acts on the directive it holds",
    }
}

codes! {
    /// Where a rollout stands as a whole.
    RolloutStatus {
        Active => "active": "the rollout governs its channel and moves group by group",
        RollingBack => "rolling_back": "every group was rolled back; its agents are still returning to the start version",
        Halted => "halted": "a group halted (after failures or a refused target); nobody new is updated until an admin acts",
        Done => "done": "every group finished on the target; the channel serves the target",
        Rolledback => "rolledback": "every group was rolled back to the start version",
    }
}

codes! {
    /// Where one group of a rollout stands.
    GroupPhase {
        Unstarted => "unstarted": "the group has not started: its turn or its window has not come",
        Canary => "canary": "the group's canaries update first; the rest wait for them to be healthy",
        Active => "active": "the group is updating",
        Done => "done": "enough of the group is healthy on the target; the next group may start",
        Halted => "halted": "too many failures: the group stopped and waits for an admin",
        Rolledback => "rolledback": "the group was sent back to the start version",
    }
}

codes! {
    /// What an admin identity may do; each role may do everything the one before it may.
    AdminRole {
        Viewer => "viewer": "reads everything and changes nothing",
        Operator => "operator": "also runs rollouts and sets channels, schedules and pins",
        Admin => "admin": "also manages tokens, credentials and the control plane",
    }
}

impl ReasonCode {
    /// The signed release metadata's refusals and alarms (#28): each means an attack, a
    /// freeze or a release-side mistake an operator must look at.
    pub const RELEASE: [ReasonCode; 9] = [
        ReasonCode::ReleaseNotListed,
        ReasonCode::ReleaseBelowFloor,
        ReasonCode::ReleaseArtifactMismatch,
        ReasonCode::ReleaseMetadataMissing,
        ReasonCode::ReleaseMetadataUnsigned,
        ReasonCode::ReleaseMetadataInconsistent,
        ReasonCode::ReleaseMetadataRollback,
        ReasonCode::ReleaseMetadataExpired,
        ReasonCode::ReleaseMetadataTooLarge,
    ];
}

impl AdminRole {
    /// Whether this role may do what `needed` may (viewer < operator < admin).
    pub fn allows(self, needed: AdminRole) -> bool {
        fn rank(role: AdminRole) -> u8 {
            match role {
                AdminRole::Viewer => 0,
                AdminRole::Operator => 1,
                AdminRole::Admin => 2,
            }
        }
        rank(self) >= rank(needed)
    }
}

codes! {
    /// Who an audit record's actor was: an admin identity's role, or an updater.
    AuditRole {
        Viewer => "viewer": "an admin identity with the viewer role",
        Operator => "operator": "an admin identity with the operator role",
        Admin => "admin": "an admin identity with the admin role",
        Updater => "updater": "an updater enrolling (with a join token) or renewing its certificate",
    }
}

impl From<AdminRole> for AuditRole {
    fn from(role: AdminRole) -> Self {
        match role {
            AdminRole::Viewer => Self::Viewer,
            AdminRole::Operator => Self::Operator,
            AdminRole::Admin => Self::Admin,
        }
    }
}

codes! {
    /// How an admin's request ended, as the audit log records it.
    AuditResult {
        Ok => "ok": "the change was made (in the same transaction as this record)",
        Refused => "refused": "the request was refused; nothing changed",
        DryRun => "dry_run": "a dry run: the request was checked and nothing changed",
    }
}

codes! {
    /// What an event records.
    EventKind {
        Admin => "admin": "a change an admin made (or a refused attempt)",
        Rollout => "rollout": "a transition the rollout engine made",
        Update => "update": "an update an agent's updater reported",
        Enrolment => "enrolment": "an updater enrolled with a join token and got its certificate",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_unique_round_trip_and_explained() {
        for code in RolloutStatus::ALL {
            assert_eq!(RolloutStatus::parse(code.as_str()), Some(*code));
            assert!(!code.explain().is_empty());
        }
        for code in ReasonCode::ALL {
            assert_eq!(ReasonCode::parse(code.as_str()), Some(*code));
        }
        for code in GroupPhase::ALL {
            assert_eq!(GroupPhase::parse(code.as_str()), Some(*code));
            assert!(!code.explain().is_empty());
        }
        for code in AdminRole::ALL {
            assert_eq!(AdminRole::parse(code.as_str()), Some(*code));
            assert!(code.allows(AdminRole::Viewer) && code.allows(*code));
            assert_eq!(AdminRole::Viewer.allows(*code), *code == AdminRole::Viewer);
        }
        for code in AuditResult::ALL {
            assert_eq!(AuditResult::parse(code.as_str()), Some(*code));
        }
        for code in HealthSignal::ALL {
            assert_eq!(HealthSignal::parse(code.as_str()), Some(*code));
        }
        for code in VerdictOutcome::ALL {
            assert_eq!(VerdictOutcome::parse(code.as_str()), Some(*code));
        }
        for code in AckState::ALL {
            assert_eq!(AckState::parse(code.as_str()), Some(*code));
        }
        for code in HaltScope::ALL {
            assert_eq!(HaltScope::parse(code.as_str()), Some(*code));
        }
        for code in EventKind::ALL {
            assert_eq!(EventKind::parse(code.as_str()), Some(*code));
            assert!(!code.explain().is_empty());
        }
        assert_eq!(RolloutStatus::parse("finished"), None);
    }
}
