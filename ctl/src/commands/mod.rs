//! One module per noun. Each verb calls the coordinator and returns a [`Reply`]; printing is
//! the renderer's job.

pub mod agent_history;
pub mod agents;
pub mod audit;
pub mod channels;
pub mod completion;
pub mod control_plane;
pub mod events;
pub mod fleet;
pub mod rollout;
pub mod schedule;

use drover_proto::v1::{self as pb, admin_service_client::AdminServiceClient};
use tonic::transport::Channel;

use crate::{cli::Command, render::Reply};

pub type Client = AdminServiceClient<Channel>;

/// Runs one command against the coordinator at `address`.
pub async fn run(address: &str, command: Command) -> Result<Reply, String> {
    let mut client = connect(address).await?;
    let client = &mut client;
    match command {
        Command::Agents(command) => agents::run(client, command).await,
        Command::Fleet(command) => fleet::run(client, command).await,
        Command::Channels(command) => channels::run(client, command).await,
        Command::ControlPlane(command) => control_plane::run(client, command).await,
        Command::Schedule(command) => schedule::run(client, command).await,
        Command::Rollout(command) => rollout::run(client, command).await,
        Command::Events(args) => events::run(client, args).await,
        Command::Audit(args) => audit::run(client, args).await,
        Command::Completion { shell } => {
            // main prints completions without connecting; this keeps the match exhaustive.
            Ok(Reply::new(
                serde_json::Value::Null,
                completion::script(shell)?,
            ))
        }
    }
}

async fn connect(address: &str) -> Result<Client, String> {
    let endpoint = Channel::from_shared(address.to_string())
        .map_err(|err| {
            format!(
                "'{address}' is not a valid coordinator address ({err}); use e.g. http://127.0.0.1:7400"
            )
        })?
        .connect_timeout(std::time::Duration::from_secs(5));
    let channel = endpoint.connect().await.map_err(|err| {
        format!(
            "cannot reach the coordinator at {address} ({err}); is it running? \
             Point droverctl at it with --coordinator or DROVER_COORDINATOR"
        )
    })?;
    Ok(AdminServiceClient::new(channel))
}

/// A mutating verb's effect; `dry_run: true` means the coordinator changed nothing.
/// One line saying what a verb changed, or for a dry run what it would change.
pub fn effect_text(e: Option<&pb::Effect>) -> Option<String> {
    let e = e?;
    Some(if e.dry_run {
        format!(
            "dry run: nothing changed. It would do: {}; {} agent(s) would get a new directive",
            e.summary, e.agents_affected
        )
    } else {
        format!(
            "{}; {} agent(s) get a new directive",
            e.summary, e.agents_affected
        )
    })
}

/// The coordinator's refusal as one line for stderr (the output helper cleans it).
pub fn status_text(status: tonic::Status) -> String {
    format!("{} ({:?})", status.message(), status.code())
}
