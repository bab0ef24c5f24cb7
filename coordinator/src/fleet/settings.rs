//! What admins set: channels, the control-plane version, group schedules. Every change is
//! validated, committed, logged as an admin event, and pushed to connected updaters at once.

use drover_rules::MaintenanceSchedule;
use semver::Version;

use super::Fleet;
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
        actor: &str,
    ) -> Result<()> {
        validate::name("group", group)?;
        schedule.validate().map_err(DroverError::InvalidArgument)?;
        let event = self.admin_event(
            actor,
            format!("maintenance window of group {group} set to {schedule}"),
        );
        self.store()
            .set_schedule(group, &schedule, now_ms(), &event)
            .await?;
        self.publish_committed_change().await;
        Ok(())
    }

    pub async fn clear_schedule(&self, group: &str, actor: &str) -> Result<()> {
        validate::name("group", group)?;
        let event = self.admin_event(
            actor,
            format!("maintenance window of group {group} cleared"),
        );
        if !self.store().clear_schedule(group, &event).await? {
            return Err(DroverError::NotFound(format!(
                "group '{group}' has no maintenance schedule; `droverctl schedule list` shows them"
            )));
        }
        self.publish_committed_change().await;
        Ok(())
    }

    pub async fn schedules(&self) -> Result<Vec<crate::store::GroupSchedule>> {
        self.store().list_schedules().await
    }

    pub async fn set_channel_version(
        &self,
        name: &str,
        version: &str,
        actor: &str,
    ) -> Result<Channel> {
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
            return self.channel(name);
        }
        let event = self.admin_event(actor, format!("channel {name} set to {version}"));
        self.store()
            .set_channel_version(name, &version.to_string(), now_ms(), &event)
            .await?;
        drop(_serialized);
        crash_point!("admin.after_commit");
        self.publish_committed_change().await;
        self.channel(name)
    }

    pub async fn set_channel_critical(
        &self,
        name: &str,
        critical: bool,
        actor: &str,
    ) -> Result<Channel> {
        validate::name("channel", name)?;
        let event = self.admin_event(
            actor,
            format!("channel {name} critical flag set to {critical}"),
        );
        self.store()
            .set_channel_critical(name, critical, now_ms(), &event)
            .await?;
        self.publish_committed_change().await;
        self.channel(name)
    }

    pub async fn set_control_plane_version(
        &self,
        version: &str,
        actor: &str,
    ) -> Result<(Version, i64)> {
        let version = parse_version(version)?;
        let view = self.view();
        if view.control_plane.as_ref() == Some(&version) {
            return Ok((version, view.control_plane_updated_ms));
        }
        let now = now_ms();
        let event = self.admin_event(actor, format!("control-plane version set to {version}"));
        self.store()
            .set_control_plane_version(&version.to_string(), now, &event)
            .await?;
        self.publish_committed_change().await;
        self.reconcile_now.notify_one();
        Ok((version, now))
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
