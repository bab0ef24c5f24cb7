//! The release gate (#28): before any install, the updater fetches the signed release
//! metadata the coordinator carries, verifies it against its pinned root and what it
//! trusted before (`drover_release::verify`, tough underneath), and installs only an
//! artifact it lists, for this installer, not below the signed floor. The periodic
//! re-check refreshes it, so an expiry (a freeze) raises the alarm in the policy.

use std::collections::BTreeMap;

use drover_proto::v1::{self as pb, updater_service_client::UpdaterServiceClient};
use drover_release::{ArtifactTarget, Bundle, BundleError, Refusal, Verified, verify::VerifyError};
use drover_rules::{ReasonCode, parse_version};

use crate::{
    connection::connect_any,
    installers::{InstallError, Installer, InstallerKind},
    shared::{ReleaseTrust, Shared},
    state::HeldRelease,
};

/// How long a fresh updater may go without verified metadata before it says so: a few
/// re-checks (and an install, which verifies too) at the default ten minutes.
pub const FIRST_VERIFY_GRACE_MS: i64 = 30 * 60 * 1000;
/// A coordinator that never answers must not hold the gate (and the freeze alarm) forever.
const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A bundle is at most 1 MiB of files; a larger answer is refused before it is decoded.
const MAX_ANSWER_BYTES: usize = drover_release::bundle::MAX_TOTAL_BYTES + (64 << 10);

/// The kind of target this installer installs, as the release side names it.
pub fn target_kind(kind: InstallerKind) -> &'static str {
    match kind {
        InstallerKind::Tarball => "tarball",
        InstallerKind::Apt => "apt",
        InstallerKind::Dnf => "dnf",
        InstallerKind::Zypper => "zypper",
        InstallerKind::Kubernetes => "oci",
        InstallerKind::Command => "command",
        InstallerKind::Simulated => "simulated",
    }
}

/// The signed artifacts `target` must be one of (one per architecture, say), or why it may
/// not be installed; empty when the updater was started without `--release-root`.
pub async fn gate(shared: &Shared, target: &str) -> Result<Vec<ArtifactTarget>, InstallError> {
    let Some(trust) = &shared.config.release else {
        return Ok(Vec::new());
    };
    let Some(verified) = fetch_and_verify(shared, trust, 0).await? else {
        return Err(InstallError::release(Refusal::new(
            ReasonCode::ReleaseMetadataMissing,
            "the coordinator serves no release metadata; publish it with `droverctl releases publish`",
        )));
    };
    let version = parse_version(target).map_err(|err| InstallError::Refused(err.to_string()))?;
    let kind = target_kind(shared.config.installer.kind());
    let listed: Vec<ArtifactTarget> = verified
        .artifacts
        .into_iter()
        .filter(|a| a.kind == kind && a.version == version)
        .collect();
    if listed.is_empty() {
        return Err(InstallError::release(Refusal::new(
            ReasonCode::ReleaseNotListed,
            format!(
                "{target} has no {kind} artifact in the signed release metadata (version {}); \
                 the release team never signed it",
                verified.timestamp_version
            ),
        )));
    }
    let current = shared
        .state
        .lock()
        .await
        .agent_version
        .as_deref()
        .and_then(|v| parse_version(v).ok());
    verified
        .policy
        .permits(current.as_ref(), &version)
        .map_err(InstallError::release)?;
    Ok(listed)
}

/// The re-check's part: fetch what is newer than what is held and verify it. A refusal is
/// logged (the coordinator may be hostile) and changes nothing held.
pub async fn refresh(shared: &Shared) {
    let Some(trust) = &shared.config.release else {
        return;
    };
    let have = shared.state.lock().await.release.map_or(0, |r| r.version);
    match fetch_and_verify(shared, trust, have).await {
        Ok(Some(verified)) => {
            tracing::info!(
                version = verified.timestamp_version,
                "release metadata verified"
            )
        }
        Ok(None) => {}
        Err(err) => tracing::error!(
            reason = err.reason().as_str(), error = %err.message(),
            "release metadata from the coordinator refused; keeping the metadata held"
        ),
    }
}

/// `Ok(None)`: the coordinator has nothing newer than `have` (nothing at all when 0).
async fn fetch_and_verify(
    shared: &Shared,
    trust: &ReleaseTrust,
    have: u64,
) -> Result<Option<Verified>, InstallError> {
    let Some(bundle) = fetch(shared, have).await? else {
        return Ok(None);
    };
    // One verification at a time: they share tough's datastore.
    let _one = shared.release_lock.lock().await;
    let verified = drover_release::verify(&bundle, &trust.pinned_root, &trust.datastore)
        .await
        .map_err(|err| match err {
            VerifyError::Refused(refusal) => InstallError::release(refusal),
            VerifyError::Local(text) => InstallError::Transient(text),
        })?;
    let mut state = shared.state.lock().await;
    let held = HeldRelease {
        version: verified.timestamp_version,
        expires_ms: verified.expires_ms,
    };
    if state.release != Some(held) {
        state.release = Some(held);
        shared.save_state(&state).await;
    }
    Ok(Some(verified))
}

async fn fetch(shared: &Shared, have: u64) -> Result<Option<Bundle>, InstallError> {
    let channel = connect_any(shared)
        .await
        .map_err(|err| InstallError::Transient(format!("cannot reach a coordinator: {err:#}")))?;
    let mut client = UpdaterServiceClient::new(channel).max_decoding_message_size(MAX_ANSWER_BYTES);
    let call = client.get_release_metadata(pb::GetReleaseMetadataRequest { have_version: have });
    let answer = tokio::time::timeout(FETCH_TIMEOUT, call)
        .await
        .map_err(|_| {
            InstallError::Transient(format!(
                "the coordinator did not answer for the release metadata within {} s",
                FETCH_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|status| match status.code() {
            // tonic's answer to a message over the limit: endless data from the coordinator.
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted => {
                InstallError::release(Refusal::new(
                    ReasonCode::ReleaseMetadataTooLarge,
                    format!(
                        "the coordinator's release metadata is over {MAX_ANSWER_BYTES} bytes: {}",
                        status.message()
                    ),
                ))
            }
            _ => InstallError::Transient(format!(
                "cannot fetch the release metadata: {}",
                status.message()
            )),
        })?
        .into_inner();
    if answer.files.is_empty() {
        return Ok(None);
    }
    let files: BTreeMap<String, Vec<u8>> = answer
        .files
        .into_iter()
        .map(|file| (file.name, file.content))
        .collect();
    Bundle::new(files).map(Some).map_err(|err| {
        let code = match err {
            BundleError::TooLarge(_) => ReasonCode::ReleaseMetadataTooLarge,
            _ => ReasonCode::ReleaseMetadataUnsigned,
        };
        InstallError::release(Refusal::new(code, err.to_string()))
    })
}
