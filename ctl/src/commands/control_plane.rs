//! `droverctl control-plane get|set`.

use clap::Subcommand;
use drover_api as api;
use drover_proto::v1 as pb;

use super::{Client, effect_text, status_text};
use crate::render::Reply;

#[derive(Subcommand, Debug)]
pub enum ControlPlaneCommand {
    /// Show the control plane's version and when it was set.
    Get,
    /// Record the control plane's version; following channels move with it.
    Set {
        /// The version the control plane runs, e.g. `15.2.0`.
        version: String,
        /// Check the change and show how many agents would get a new directive; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(client: &mut Client, command: ControlPlaneCommand) -> Result<Reply, String> {
    let cp = match command {
        ControlPlaneCommand::Get => {
            client
                .get_control_plane_version(pb::GetControlPlaneVersionRequest {})
                .await
        }
        ControlPlaneCommand::Set { version, dry_run } => {
            client
                .set_control_plane_version(pb::SetControlPlaneVersionRequest { version, dry_run })
                .await
        }
    }
    .map_err(status_text)?
    .into_inner();
    let data = api::ControlPlane::from(&cp);
    let updated = data.updated_at.clone().unwrap_or_default();
    let mut text = if cp.version.is_empty() {
        "control plane version: not set (droverctl control-plane set VERSION)".to_string()
    } else if cp.effect.as_ref().is_some_and(|e| e.dry_run) {
        format!("control plane version would be: {}", cp.version)
    } else {
        format!("control plane version: {} (set {updated})", cp.version)
    };
    if let Some(line) = effect_text(cp.effect.as_ref()) {
        text = format!("{line}\n{text}");
    }
    Ok(Reply::new(data, text))
}
