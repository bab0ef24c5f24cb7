//! The periodic re-check (rule 2): even with a dead stream or a lost push, the updater asks
//! for its target every recheck interval (jittered ±20% so a fleet does not ask at once),
//! from the coordinator the stream is connected to, or any replica that answers.

use std::{sync::Arc, time::Duration};

use drover_proto::v1::{self as pb, updater_service_client::UpdaterServiceClient};
use rand::Rng;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    backoff::jittered,
    connection::connect_any,
    convert,
    shared::Shared,
    state::{DirectiveRecord, DirectiveSource},
};

const DEFAULT_RECHECK: Duration = Duration::from_secs(600);

pub async fn run(
    shared: Arc<Shared>,
    directives: mpsc::Sender<DirectiveRecord>,
    shutdown: CancellationToken,
) {
    // Signed release metadata (#28) is held from the start, so its expiry is watched even
    // on an agent with nothing to install.
    crate::release::refresh(&shared).await;
    loop {
        let interval = shared
            .config
            .recheck_interval
            .or(*shared.recheck_from_coordinator.lock())
            .unwrap_or(DEFAULT_RECHECK);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(jittered(interval, 0.2, rand::rng().random())) => {}
        }
        crate::release::refresh(&shared).await;
        match check(&shared).await {
            Ok(directive) => {
                if directives.send(directive).await.is_err() {
                    return;
                }
            }
            Err(err) => tracing::warn!(
                error = format!("{err:#}"),
                "periodic target re-check failed"
            ),
        }
    }
}

async fn check(shared: &Shared) -> anyhow::Result<DirectiveRecord> {
    let mut client = UpdaterServiceClient::new(connect_any(shared).await?);
    let state = shared.state.lock().await;
    let request = pb::GetTargetRequest {
        agent_id: state.agent_id.clone(),
        channel: shared.config.channel.clone(),
        group: shared.config.group.clone(),
        agent_version: state.agent_version.clone().unwrap_or_default(),
    };
    drop(state);
    let response = client.get_target(request).await?.into_inner();
    let directive = response.directive.unwrap_or_default();
    Ok(convert::directive_record(directive, DirectiveSource::Poll))
}
