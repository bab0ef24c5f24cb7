//! Renews the agent's certificate when two thirds of its lifetime have passed. Supervised
//! here: each attempt runs in its own task, so an error or a panic is logged and retried
//! with jittered backoff; the updater never stops because of a renewal.

use std::{path::PathBuf, sync::Arc, time::Duration};

use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::{
    connection::connect_any,
    enrol,
    identity::{self, ClientIdentity, IdentityRecord},
    shared::{Shared, now_ms},
};

/// Long waits are cut into steps, so a suspended host or a clock jump is noticed.
const MAX_STEP: Duration = Duration::from_secs(3600);

pub async fn run(shared: Arc<Shared>, shutdown: CancellationToken) {
    let ClientIdentity::Files { dir } = &shared.config.identity else {
        return;
    };
    let dir = dir.clone();
    let mut failures = 0u32;
    loop {
        let record = match read(&dir).await {
            Ok(record) => record,
            Err(err) => {
                failures = failures.saturating_add(1);
                tracing::warn!(
                    error = format!("{err:#}"),
                    "cannot read the agent's identity for renewal; will retry"
                );
                let delay = identity::retry_delay(failures, random());
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => continue,
                }
            }
        };
        let delay = identity::renewal_delay(now_ms(), &record, failures, random());
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay.min(MAX_STEP)) => {}
        }
        if delay > MAX_STEP {
            continue; // not due yet: look again
        }
        let attempt = tokio::spawn(renew_once(shared.clone(), dir.clone()));
        match attempt.await {
            Ok(Ok(renewed)) => {
                failures = 0;
                tracing::info!(
                    not_after = %drover_rules::time::rfc3339(renewed.not_after_ms),
                    "renewed the agent's certificate"
                );
            }
            Ok(Err(err)) => {
                failures = failures.saturating_add(1);
                tracing::warn!(
                    error = enrol::refusal(&err),
                    expired = record.not_after_ms <= now_ms(),
                    "cannot renew the agent's certificate; will retry (once it has expired, \
                     enrol again with `drover-updater enroll --force`)"
                );
            }
            Err(panic) => {
                failures = failures.saturating_add(1);
                tracing::error!(error = %panic, "the certificate renewal panicked; will retry");
            }
        }
    }
}

async fn read(dir: &std::path::Path) -> anyhow::Result<IdentityRecord> {
    let owned = dir.to_path_buf();
    tokio::task::spawn_blocking(move || identity::read_record(&owned))
        .await??
        .ok_or_else(|| anyhow::anyhow!("identity.json is missing in {}", dir.display()))
}

fn random() -> f64 {
    rand::rng().random()
}

/// One renewal: a new key, `Renew` over mTLS with the current certificate, then the files.
async fn renew_once(shared: Arc<Shared>, dir: PathBuf) -> anyhow::Result<IdentityRecord> {
    // Any replica renews: they share the CA that issued the certificate.
    let channel = connect_any(&shared).await?;
    let agent_id = shared.state.lock().await.agent_id.clone();
    let issued = enrol::renew(channel, &agent_id).await?;
    tokio::task::spawn_blocking(move || {
        identity::replace_credentials(
            &dir,
            &issued.cert_pem,
            &issued.key_pem,
            issued.issued_at_ms,
            issued.not_after_ms,
        )
    })
    .await?
}
