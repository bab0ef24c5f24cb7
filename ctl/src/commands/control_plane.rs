//! `droverctl control-plane get|set`.

use clap::Subcommand;
use drover_api as api;
use drover_proto::v1 as pb;

use super::{Client, status_text};
use crate::render::Reply;

#[derive(Subcommand, Debug)]
pub enum ControlPlaneCommand {
    /// Show the control plane's version and when it was set.
    Get,
    /// Record the control plane's version; following channels move with it.
    Set {
        /// The version the control plane runs, e.g. `15.2.0`.
        version: String,
    },
}

pub async fn run(client: &mut Client, command: ControlPlaneCommand) -> Result<Reply, String> {
    let cp = match command {
        ControlPlaneCommand::Get => {
            client
                .get_control_plane_version(pb::GetControlPlaneVersionRequest {})
                .await
        }
        ControlPlaneCommand::Set { version } => {
            client
                .set_control_plane_version(pb::SetControlPlaneVersionRequest { version })
                .await
        }
    }
    .map_err(status_text)?
    .into_inner();
    let data = api::ControlPlane::from(&cp);
    let updated = data.updated_at.clone().unwrap_or_default();
    let text = if cp.version.is_empty() {
        "control plane version: not set (droverctl control-plane set VERSION)".to_string()
    } else {
        format!("control plane version: {} (set {updated})", cp.version)
    };
    Ok(Reply::new(data, text))
}
