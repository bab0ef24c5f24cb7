//! The updater's side: a bundle from the coordinator, checked by tough against the pinned
//! root (or the newest root this updater already trusts) and the metadata it trusted
//! before, kept in `datastore`. Whatever the coordinator did to the bundle, the answer is
//! either metadata the release keys signed, current and not older than before, or a
//! refusal with its code.

use std::{collections::BTreeMap, path::Path, sync::Arc};

use drover_rules::ReasonCode;
use futures::stream;
use tough::{
    ExpirationEnforcement, IntoVec, Limits, RepositoryLoader, TargetName, Transport,
    TransportError, TransportErrorKind, TransportStream, error::Error as TufError,
};
use url::Url;

use crate::{
    Bundle, Policy, Refusal,
    bundle::{MAX_FILE_BYTES, policy_file_name},
    layout::{ArtifactTarget, POLICY_TARGET},
};

/// Metadata that verified: what an updater may install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub timestamp_version: u64,
    /// The earliest expiry of root, timestamp, snapshot and targets (ms since the epoch):
    /// past it, nothing installs and the updater raises `release_metadata_expired`.
    pub expires_ms: i64,
    pub artifacts: Vec<ArtifactTarget>,
    pub policy: Policy,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The coordinator's bundle is not acceptable.
    #[error(transparent)]
    Refused(Refusal),
    /// This host could not keep its trusted copy (disk); nothing is known about the bundle.
    #[error("cannot keep the trusted release metadata in {0}")]
    Local(String),
}

const METADATA_BASE: &str = "drover-bundle:///metadata/";
const TARGETS_BASE: &str = "drover-bundle:///targets/";
/// Where tough keeps the newest trusted root; it is where the next check starts.
const TRUSTED_ROOT: &str = "root.json";

/// Verifies `bundle`; `pinned_root` is the root the updater was installed with,
/// `datastore` a directory of this updater's own (created if missing).
pub async fn verify(
    bundle: &Bundle,
    pinned_root: &[u8],
    datastore: &Path,
) -> Result<Verified, VerifyError> {
    tokio::fs::create_dir_all(datastore)
        .await
        .map_err(|err| VerifyError::Local(format!("{}: {err}", datastore.display())))?;
    let trusted = match tokio::fs::read(datastore.join(TRUSTED_ROOT)).await {
        Ok(bytes) => Some(bytes),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => {
            return Err(VerifyError::Local(format!(
                "{}: {err}",
                datastore.display()
            )));
        }
    };
    let root = newest_root(pinned_root, trusted.as_deref());
    let transport = BundleTransport {
        files: Arc::new(bundle.files.clone()),
    };
    let limits = Limits {
        max_root_size: MAX_FILE_BYTES as u64,
        max_targets_size: MAX_FILE_BYTES as u64,
        max_timestamp_size: 64 << 10,
        max_snapshot_size: MAX_FILE_BYTES as u64,
        max_root_updates: 32,
    };
    let repo = RepositoryLoader::new(&root, base(METADATA_BASE), base(TARGETS_BASE))
        .transport(transport)
        .datastore(datastore)
        .limits(limits)
        .expiration_enforcement(ExpirationEnforcement::Safe)
        .load()
        .await
        .map_err(classify)?;
    let policy = read_policy(&repo).await?;
    let signed = &repo.targets().signed;
    let artifacts = signed
        .targets
        .iter()
        .filter_map(|(name, target)| {
            let (kind, version, file) = ArtifactTarget::parse_name(name.raw())?;
            Some(ArtifactTarget {
                kind,
                version,
                file,
                sha256: hex::encode(&*target.hashes.sha256),
                length: target.length,
            })
        })
        .collect();
    let expires = [
        repo.root().signed.expires,
        repo.timestamp().signed.expires,
        repo.snapshot().signed.expires,
        signed.expires,
    ]
    .into_iter()
    .min()
    .map_or(0, |t| t.as_millisecond());
    Ok(Verified {
        timestamp_version: repo.timestamp().signed.version.get(),
        expires_ms: expires,
        artifacts,
        policy,
    })
}

/// After a rotation the older root's keys may be the compromised ones: start from the
/// newer of the pinned root and the newest one already trusted (tough verifies whichever it
/// is), so a bundle that leaves the new roots out cannot go back, and an operator who pins
/// a newer root is followed.
fn newest_root<'a>(pinned: &'a [u8], trusted: Option<&'a [u8]>) -> &'a [u8] {
    let version = |bytes: &[u8]| {
        serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .and_then(|root| root["signed"]["version"].as_u64())
    };
    match trusted {
        Some(trusted) if version(trusted) > version(pinned) => trusted,
        _ => pinned,
    }
}

fn base(url: &str) -> Url {
    Url::parse(url).expect("a constant URL")
}

async fn read_policy(repo: &tough::Repository) -> Result<Policy, VerifyError> {
    let unsigned = |detail: String| {
        VerifyError::Refused(Refusal::new(ReasonCode::ReleaseMetadataUnsigned, detail))
    };
    let name = TargetName::new(POLICY_TARGET).map_err(|err| unsigned(err.to_string()))?;
    // tough checks the file's length and sha256 against the signed targets.
    let stream = repo
        .read_target(&name)
        .await
        .map_err(classify)?
        .ok_or_else(|| unsigned(format!("the signed targets list no {POLICY_TARGET}")))?;
    let bytes = stream.into_vec().await.map_err(|err| {
        VerifyError::Refused(Refusal::new(
            ReasonCode::ReleaseMetadataInconsistent,
            format!("{POLICY_TARGET} does not match its signed digest: {err}"),
        ))
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|err| unsigned(format!("the signed {POLICY_TARGET} is not a policy: {err}")))
}

/// tough's error, as the attack or fault it means.
fn classify(error: TufError) -> VerifyError {
    use ReasonCode as C;
    let code = match &error {
        TufError::ExpiredMetadata { .. } => C::ReleaseMetadataExpired,
        TufError::SystemTimeSteppedBackward { .. } => {
            return VerifyError::Local(format!(
                "{error}; this host's clock went back: fix it (NTP), or remove the datastore's \
                 latest_known_time.json if the clock was wrong before"
            ));
        }
        TufError::ParseTrustedMetadata { .. } | TufError::VerifyTrustedMetadata { .. } => {
            return VerifyError::Local(format!(
                "{error}; the trusted root is unreadable or not self-signed: check \
                 --release-root (the release team's metadata/1.root.json)"
            ));
        }
        TufError::OlderMetadata { .. }
        | TufError::OlderSnapshotInTimestamp { .. }
        | TufError::SnapshotRoleRollback { .. } => C::ReleaseMetadataRollback,
        TufError::HashMismatch { .. }
        | TufError::VersionMismatch { .. }
        | TufError::MetaMissing { .. }
        | TufError::SnapshotTargetsMetaMissing { .. }
        | TufError::SnapshotRoleMissing { .. }
        | TufError::MissingSnapshotMeta { .. }
        | TufError::TimestampMetaLength { .. } => C::ReleaseMetadataInconsistent,
        TufError::MaxSizeExceeded { .. } | TufError::MaxUpdatesExceeded { .. } => {
            C::ReleaseMetadataTooLarge
        }
        TufError::Transport { source, .. } => transport_code(source),
        TufError::DatastoreInit { .. }
        | TufError::DatastoreCreate { .. }
        | TufError::DatastoreOpen { .. }
        | TufError::DatastoreRemove { .. }
        | TufError::DatastoreSerialize { .. } => return VerifyError::Local(error.to_string()),
        _ => C::ReleaseMetadataUnsigned,
    };
    VerifyError::Refused(Refusal::new(code, error.to_string()))
}

/// A fetch that failed inside tough: a file missing, more bytes than our own limits
/// (endless data), or a file that disagrees with the length or hash another role signed
/// for it (mixed metadata).
fn transport_code(error: &TransportError) -> ReasonCode {
    use ReasonCode as C;
    if error.kind() == TransportErrorKind::FileNotFound {
        return C::ReleaseMetadataMissing;
    }
    let cause = std::error::Error::source(error).and_then(|cause| cause.downcast_ref::<TufError>());
    match cause {
        // Our limits are named "max_…_size argument"; a length another role signed is not.
        Some(TufError::MaxSizeExceeded { specifier, .. }) if specifier.ends_with("argument") => {
            C::ReleaseMetadataTooLarge
        }
        Some(TufError::MaxSizeExceeded { .. } | TufError::HashMismatch { .. }) => {
            C::ReleaseMetadataInconsistent
        }
        _ => C::ReleaseMetadataUnsigned,
    }
}

/// Serves tough the bundle's files; anything else does not exist.
#[derive(Debug, Clone)]
struct BundleTransport {
    files: Arc<BTreeMap<String, Vec<u8>>>,
}

#[tough::async_trait]
impl Transport for BundleTransport {
    async fn fetch(&self, url: Url) -> Result<TransportStream, TransportError> {
        let path = url.path();
        let name = if let Some(name) = path.strip_prefix("/metadata/") {
            name.to_string()
        } else if path.strip_prefix("/targets/") == Some(POLICY_TARGET) {
            policy_file_name()
        } else {
            return Err(TransportError::new(TransportErrorKind::FileNotFound, url));
        };
        let Some(content) = self.files.get(&name) else {
            return Err(TransportError::new(TransportErrorKind::FileNotFound, url));
        };
        let chunk = tough::Bytes::from(content.clone());
        Ok(Box::pin(stream::iter([Ok(chunk)])))
    }
}

#[cfg(test)]
mod tests;
