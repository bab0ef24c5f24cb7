//! What admins set: channels, the control-plane version, group schedules. Every change is
//! validated, committed, logged as an admin event, and pushed to connected updaters at once.

use drover_rules::MaintenanceSchedule;
use semver::Version;

use super::{Caller, Fleet, effects::Effect};
use crate::{
    domain::{
        Channel, follows_control_plane, now_ms, validate,
        version::{check_constraints, parse_version},
    },
    error::{DroverError, Result},
    failpoint::crash_point,
};

impl Fleet {
    pub async fn set_schedule(
        &self,
        group: &str,
        schedule: MaintenanceSchedule,
        caller: &Caller,
        dry_run: bool,
    ) -> Result<Effect> {
        validate::name("group", group)?;
        schedule.validate().map_err(DroverError::InvalidArgument)?;
        if self.view().schedules.get(group) == Some(&schedule) {
            // A retry or a second admin: nothing to write.
            let text = format!("maintenance window of group {group} already is {schedule}");
            return Ok(Effect::new(dry_run, text, 0));
        }
        let text = format!("maintenance window of group {group} set to {schedule}");
        let mut next = (*self.view()).clone();
        next.schedules.insert(group.to_string(), schedule);
        let effect = Effect::new(
            dry_run,
            text.clone(),
            self.settings_effect(&next, |_, g| g == group),
        );
        if dry_run {
            return Ok(effect);
        }
        let event = self.admin_event(caller, text);
        self.store()
            .set_schedule(group, &schedule, now_ms(), &event)
            .await?;
        self.publish_committed_change().await;
        Ok(effect)
    }

    pub async fn clear_schedule(
        &self,
        group: &str,
        caller: &Caller,
        dry_run: bool,
    ) -> Result<Effect> {
        validate::name("group", group)?;
        let no_schedule = || {
            DroverError::NotFound(format!(
                "group '{group}' has no maintenance schedule; `droverctl schedule list` shows them"
            ))
        };
        let text = format!("maintenance window of group {group} cleared");
        let mut next = (*self.view()).clone();
        let had = next.schedules.remove(group).is_some();
        let effect = Effect::new(
            dry_run,
            text.clone(),
            self.settings_effect(&next, |_, g| g == group),
        );
        if dry_run {
            return if had { Ok(effect) } else { Err(no_schedule()) };
        }
        let event = self.admin_event(caller, text);
        if !self.store().clear_schedule(group, &event).await? {
            return Err(no_schedule());
        }
        self.publish_committed_change().await;
        Ok(effect)
    }

    pub async fn schedules(&self) -> Result<Vec<crate::store::GroupSchedule>> {
        self.store().list_schedules().await
    }

    pub async fn set_channel_version(
        &self,
        name: &str,
        version: &str,
        caller: &Caller,
        dry_run: bool,
    ) -> Result<(Channel, Effect)> {
        validate::name("channel", name)?;
        let version = parse_version(version)?;
        if follows_control_plane(name) {
            return Err(DroverError::FailedPrecondition(format!(
                "channel '{name}' follows the control-plane version; change that with \
                 `droverctl control-plane set VERSION`, or put agents on a channel of their own"
            )));
        }
        // Held to the commit: a rollout created meanwhile would start from a version the
        // channel no longer serves.
        let _serialized = self.rollout_lock.lock().await;
        if let Some(rollout) = self.rollout_for(name) {
            return Err(DroverError::FailedPrecondition(format!(
                "channel '{name}' is being rolled out by {} ({} → {}); steer the rollout, or roll it \
                 back, instead of setting the channel",
                rollout.spec.rollout_id, rollout.spec.start_version, rollout.spec.target_version
            )));
        }
        let control_plane = self.view().control_plane.clone().ok_or_else(|| {
            DroverError::FailedPrecondition(
                "the control-plane version is not set, so the version constraints cannot be \
                 checked; set it first with `droverctl control-plane set VERSION`"
                    .into(),
            )
        })?;
        check_constraints(&version, &control_plane)
            .map_err(|violation| DroverError::FailedPrecondition(violation.to_string()))?;
        if self
            .view()
            .channels
            .get(name)
            .and_then(|c| c.version.as_ref())
            == Some(&version)
        {
            // Already so: a retried call changes nothing and writes no second event.
            let effect = Effect::new(
                dry_run,
                format!("channel {name} already serves {version}"),
                0,
            );
            return Ok((self.channel(name)?, effect));
        }
        let text = format!("channel {name} set to {version}");
        let mut next = (*self.view()).clone();
        let would = next
            .channels
            .entry(name.to_string())
            .or_insert_with(|| Channel {
                name: name.to_string(),
                version: None,
                critical: false,
                follows_control_plane: false,
                updated_at_ms: 0,
            });
        would.version = Some(version.clone());
        would.updated_at_ms = now_ms();
        let would = would.clone();
        let effect = Effect::new(
            dry_run,
            text.clone(),
            self.settings_effect(&next, |c, _| c == name),
        );
        if dry_run {
            return Ok((would, effect));
        }
        let event = self.admin_event(caller, text);
        self.store()
            .set_channel_version(name, &version.to_string(), now_ms(), &event)
            .await?;
        drop(_serialized);
        crash_point!("admin.after_commit");
        self.publish_committed_change().await;
        // Committed: the answer is what was written, even if the view has not caught up.
        Ok((self.channel(name).unwrap_or(would), effect))
    }

    pub async fn set_channel_critical(
        &self,
        name: &str,
        critical: bool,
        caller: &Caller,
        dry_run: bool,
    ) -> Result<(Channel, Effect)> {
        validate::name("channel", name)?;
        let text = format!("channel {name} critical flag set to {critical}");
        let mut next = (*self.view()).clone();
        let Some(would) = next.channels.get_mut(name) else {
            return Err(DroverError::NotFound(format!(
                "channel '{name}' does not exist; create it with `droverctl channels set {name} VERSION`"
            )));
        };
        if would.critical == critical {
            // A retry or a second admin: nothing to write.
            let text = format!("channel {name}'s critical flag already is {critical}");
            return Ok((would.clone(), Effect::new(dry_run, text, 0)));
        }
        would.critical = critical;
        let would = would.clone();
        let effect = Effect::new(
            dry_run,
            text.clone(),
            self.settings_effect(&next, |c, _| c == name),
        );
        if dry_run {
            return Ok((would, effect));
        }
        let event = self.admin_event(caller, text);
        self.store()
            .set_channel_critical(name, critical, now_ms(), &event)
            .await?;
        self.publish_committed_change().await;
        // Committed: the answer is what was written, even if the view has not caught up.
        Ok((self.channel(name).unwrap_or(would), effect))
    }

    pub async fn set_control_plane_version(
        &self,
        version: &str,
        caller: &Caller,
        dry_run: bool,
    ) -> Result<(Version, i64, Effect)> {
        let version = parse_version(version)?;
        let view = self.view();
        if view.control_plane.as_ref() == Some(&version) {
            let effect = Effect::new(
                dry_run,
                format!("the control-plane version already is {version}"),
                0,
            );
            return Ok((version, view.control_plane_updated_ms, effect));
        }
        let now = now_ms();
        let text = format!("control-plane version set to {version}");
        let mut next = (*view).clone();
        next.control_plane = Some(version.clone());
        // Following channels resolve to the control plane's version when read.
        for channel in next.channels.values_mut() {
            if channel.follows_control_plane {
                channel.version = Some(version.clone());
            }
        }
        let effect = Effect::new(
            dry_run,
            text.clone(),
            self.settings_effect(&next, |_, _| true),
        );
        if dry_run {
            return Ok((version, now, effect));
        }
        let event = self.admin_event(caller, text);
        self.store()
            .set_control_plane_version(&version.to_string(), now, &event)
            .await?;
        self.publish_committed_change().await;
        self.reconcile_now.notify_one();
        Ok((version, now, effect))
    }

    fn channel(&self, name: &str) -> Result<Channel> {
        self.view()
            .channels
            .get(name)
            .cloned()
            .ok_or_else(|| DroverError::NotFound(format!("channel '{name}' does not exist")))
    }

    pub fn channels(&self) -> Vec<Channel> {
        let mut channels: Vec<Channel> = self.view().channels.values().cloned().collect();
        channels.sort_by(|a, b| a.name.cmp(&b.name));
        channels
    }
}
