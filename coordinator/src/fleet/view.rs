//! A read-mostly snapshot of what admins set (channels, the control-plane version, group
//! schedules), so computing a directive on the hot paths (hello, re-check, push) never
//! touches the store.

use std::collections::HashMap;

use drover_rules::MaintenanceSchedule;
use semver::Version;

use crate::{
    domain::{
        Channel,
        directive::{Directive, directive_for},
        follows_control_plane,
        version::parse_version,
    },
    error::Result,
    store::Store,
};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SettingsView {
    pub control_plane: Option<Version>,
    pub control_plane_updated_ms: i64,
    pub channels: HashMap<String, Channel>,
    pub schedules: HashMap<String, MaintenanceSchedule>,
}

impl SettingsView {
    pub async fn load(store: &Store) -> Result<Self> {
        let (control_plane, control_plane_updated_ms) = match store.control_plane_version().await? {
            Some((text, at)) => (parse_version(&text).ok(), at),
            None => (None, 0),
        };
        let channels = store
            .list_channels()
            .await?
            .into_iter()
            .map(|row| {
                let follows = follows_control_plane(&row.name);
                let version = if follows {
                    control_plane.clone()
                } else {
                    row.version.as_deref().and_then(|v| parse_version(v).ok())
                };
                let channel = Channel {
                    name: row.name.clone(),
                    version,
                    critical: row.critical,
                    follows_control_plane: follows,
                    updated_at_ms: row.updated_at_ms.max(if follows {
                        control_plane_updated_ms
                    } else {
                        0
                    }),
                };
                (row.name, channel)
            })
            .collect();
        let schedules = store
            .list_schedules()
            .await?
            .into_iter()
            .map(|s| (s.group, s.schedule))
            .collect();
        Ok(Self {
            control_plane,
            control_plane_updated_ms,
            channels,
            schedules,
        })
    }

    pub fn directive_for(&self, channel: &str, group: &str) -> Directive {
        directive_for(
            channel,
            self.channels.get(channel),
            self.control_plane.as_ref(),
            self.schedules.get(group),
        )
    }
}
