//! A copy of the held directive (its target, and its maintenance schedule with the
//! schedule's validity) kept outside the state dir: in a key of a ConfigMap, for the
//! Kubernetes updater. A rescheduled pod starts with an empty state dir; restoring the
//! copy makes it honour the maintenance window before it has heard from the coordinator
//! again. Best effort: a failure is logged and the updater carries on, since the
//! coordinator re-sends the directive and its schedule on every connect.

use crate::{
    kube::KubeApi,
    state::{DirectiveRecord, DirectiveSource},
};

/// The ConfigMap key holding the directive, as JSON (the same as in `state.json`).
pub const KEY: &str = "directive.json";
/// A directive is a few hundred bytes; anything far larger is not ours.
const MAX_BYTES: usize = 64 << 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectiveMirror {
    pub api: KubeApi,
    pub namespace: String,
    /// The ConfigMap's name.
    pub name: String,
}

impl DirectiveMirror {
    /// The mirrored directive, marked as restored; `None` (logged) when there is none or
    /// it cannot be read.
    pub async fn restore(&self) -> Option<DirectiveRecord> {
        let (namespace, name) = (&self.namespace, &self.name);
        let value = match self.api.config_map_value(namespace, name, KEY).await {
            Ok(Some(value)) => value,
            Ok(None) => {
                tracing::info!(config_map = %format!("{namespace}/{name}"), key = KEY, "no mirrored directive to restore");
                return None;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read the mirrored directive; waiting for the coordinator's");
                return None;
            }
        };
        if value.len() > MAX_BYTES {
            tracing::warn!(
                config_map = %format!("{namespace}/{name}"), key = KEY, bytes = value.len(),
                "the mirrored directive is larger than {MAX_BYTES} bytes; ignored"
            );
            return None;
        }
        match serde_json::from_str::<DirectiveRecord>(&value) {
            Ok(mut directive) => {
                directive.source = DirectiveSource::Restored;
                tracing::info!(
                    config_map = %format!("{namespace}/{name}"), directive_id = %directive.directive_id,
                    target_version = ?directive.target_version,
                    schedule = ?directive.schedule.map(|s| s.window.to_string()),
                    "restored the directive and its maintenance schedule from the ConfigMap"
                );
                Some(directive)
            }
            Err(err) => {
                tracing::warn!(
                    config_map = %format!("{namespace}/{name}"), key = KEY, error = %err,
                    "the mirrored directive is not valid JSON of a directive; ignored"
                );
                None
            }
        }
    }

    /// Writes `directive` to the ConfigMap; a failure is logged.
    pub async fn save(&self, directive: &DirectiveRecord) {
        let value = match serde_json::to_string_pretty(directive) {
            Ok(value) => value,
            Err(err) => {
                tracing::error!(error = %err, "cannot serialise the directive to mirror it");
                return;
            }
        };
        let (namespace, name) = (&self.namespace, &self.name);
        match self
            .api
            .set_config_map_value(namespace, name, KEY, &value)
            .await
        {
            Ok(()) => tracing::info!(
                config_map = %format!("{namespace}/{name}"), directive_id = %directive.directive_id,
                "mirrored the directive and its maintenance schedule to the ConfigMap"
            ),
            Err(error) => tracing::warn!(
                %error,
                "cannot mirror the directive to the ConfigMap; a rescheduled pod will wait for the coordinator's"
            ),
        }
    }
}
