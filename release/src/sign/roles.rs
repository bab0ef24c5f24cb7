//! `sign`: `release.json` and the policy into signed targets, snapshot and timestamp.

use std::{
    collections::HashMap,
    num::NonZeroU64,
    path::{Path, PathBuf},
    time::Duration,
};

use aws_lc_rs::rand::SystemRandom;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tough::{
    editor::signed::SignedRole,
    schema::{
        Hashes, KeyHolder, Metafile, Role, RoleType, Root, Snapshot, Target, Targets, Timestamp,
    },
};

use super::{
    SPEC_VERSION, SignError, expires_in,
    keys::{KeyFile, ensure_threshold, keys_for, read_keys},
    metadata_dir, read_root,
    source::{checked_target, read_source},
    write_atomic,
};
use crate::layout::{POLICY_TARGET, TARGETS_DIR};

/// What `sign` wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignSummary {
    pub targets_version: u64,
    pub snapshot_version: u64,
    pub timestamp_version: u64,
    /// Targets and snapshot expire together.
    pub targets_expires: jiff::Timestamp,
    pub timestamp_expires: jiff::Timestamp,
    /// Every target signed: the artifacts and `policy.json`.
    pub targets: usize,
    pub artifacts: usize,
    /// The key ids that signed (targets, snapshot and timestamp alike, as the root allows).
    pub signed_by: Vec<String>,
}

const ROLES: [(RoleType, &str); 3] = [
    (RoleType::Targets, "targets"),
    (RoleType::Snapshot, "snapshot"),
    (RoleType::Timestamp, "timestamp"),
];

/// Signs `release.json` and its policy: writes `targets/policy.json`, then
/// `metadata/targets.json`, `snapshot.json` and `timestamp.json` (last), each one version
/// above the one before it. Each role is signed by those of `keys` the newest root lists for
/// it; when they are fewer than its threshold nothing is written.
pub async fn sign(
    dir: &Path,
    keys: &[PathBuf],
    targets_expires: Duration,
    timestamp_expires: Duration,
) -> Result<SignSummary, SignError> {
    let (root_path, root) = read_root(dir)?;
    let root = root.signed;
    let keys = read_keys(keys)?;
    for key in &keys {
        if ROLES.iter().all(|(role, _)| {
            !root
                .roles
                .get(role)
                .is_some_and(|r| r.keyids.contains(&key.id))
        }) {
            return Err(SignError::UnknownKey {
                path: key.path.clone(),
                id: key.id_hex(),
                set: "release",
                root: root_path,
            });
        }
    }
    for (role, label) in ROLES {
        let have = keys_for(&root, role, &keys).len();
        let hint = "give more release keys with --key";
        ensure_threshold(&root, role, label, "release", have, hint)?;
    }
    let targets_expires = expires_in("targets", targets_expires)?;
    let timestamp_expires = expires_in("timestamp", timestamp_expires)?;

    let source = read_source(dir)?;
    let mut policy = serde_json::to_vec_pretty(&source.policy).map_err(|err| SignError::Tuf {
        action: "serialize the policy",
        message: err.to_string(),
    })?;
    policy.push(b'\n');

    let metadata = metadata_dir(dir);
    let mut targets = Targets {
        spec_version: SPEC_VERSION.to_string(),
        version: next_version(&metadata.join("targets.json"))?,
        expires: targets_expires,
        targets: HashMap::new(),
        delegations: None,
        _extra: HashMap::new(),
    };
    for (name, target) in &source.targets {
        let (name, sha256) = checked_target(dir, name, target)?;
        targets
            .targets
            .insert(name, tuf_target(sha256, target.length));
    }
    let policy_name =
        tough::TargetName::new(POLICY_TARGET).map_err(SignError::tuf("name the policy"))?;
    let policy_sha256 = Sha256::digest(&policy).to_vec();
    targets
        .targets
        .insert(policy_name, tuf_target(policy_sha256, policy.len() as u64));
    let count = targets.targets.len();

    let rng = SystemRandom::new();
    let holder = KeyHolder::Root(root.clone());
    let signed_targets = sign_role(&root, &holder, targets, &keys, &rng).await?;

    let mut snapshot = Snapshot::new(
        SPEC_VERSION.to_string(),
        next_version(&metadata.join("snapshot.json"))?,
        targets_expires,
    );
    snapshot
        .meta
        .insert("targets.json".to_string(), metafile(&signed_targets));
    let signed_snapshot = sign_role(&root, &holder, snapshot, &keys, &rng).await?;

    let mut timestamp = Timestamp::new(
        SPEC_VERSION.to_string(),
        next_version(&metadata.join("timestamp.json"))?,
        timestamp_expires,
    );
    timestamp
        .meta
        .insert("snapshot.json".to_string(), metafile(&signed_snapshot));
    let signed_timestamp = sign_role(&root, &holder, timestamp, &keys, &rng).await?;

    let targets_dir = dir.join(TARGETS_DIR);
    std::fs::create_dir_all(&targets_dir).map_err(SignError::io("create", &targets_dir))?;
    write_atomic(&targets_dir.join(POLICY_TARGET), &policy)?;
    write_atomic(&metadata.join("targets.json"), signed_targets.buffer())?;
    write_atomic(&metadata.join("snapshot.json"), signed_snapshot.buffer())?;
    write_atomic(&metadata.join("timestamp.json"), signed_timestamp.buffer())?;

    let mut signed_by: Vec<String> = signed_timestamp
        .signed()
        .signatures
        .iter()
        .chain(&signed_targets.signed().signatures)
        .chain(&signed_snapshot.signed().signatures)
        .map(|s| hex::encode(&*s.keyid))
        .collect();
    signed_by.sort();
    signed_by.dedup();
    Ok(SignSummary {
        targets_version: signed_targets.signed().signed.version.get(),
        snapshot_version: signed_snapshot.signed().signed.version.get(),
        timestamp_version: signed_timestamp.signed().signed.version.get(),
        targets_expires,
        timestamp_expires,
        targets: count,
        artifacts: source.targets.len(),
        signed_by,
    })
}

fn tuf_target(sha256: Vec<u8>, length: u64) -> Target {
    Target {
        length,
        hashes: Hashes {
            sha256: sha256.into(),
            _extra: HashMap::new(),
        },
        custom: HashMap::new(),
        _extra: HashMap::new(),
    }
}

fn metafile<T: Role + Serialize>(role: &SignedRole<T>) -> Metafile {
    Metafile {
        length: Some(*role.length()),
        hashes: Some(Hashes {
            sha256: role.sha256().to_vec().into(),
            _extra: HashMap::new(),
        }),
        version: role.signed().signed.version(),
        _extra: HashMap::new(),
    }
}

/// Signs with the given keys the root lists for the role, then checks the result as a
/// client will (tough's own threshold check).
async fn sign_role<T: Role + Serialize>(
    root: &Root,
    holder: &KeyHolder,
    role: T,
    keys: &[KeyFile],
    rng: &SystemRandom,
) -> Result<SignedRole<T>, SignError> {
    let sources: Vec<_> = keys_for(root, T::TYPE, keys)
        .into_iter()
        .map(KeyFile::source)
        .collect();
    let signed = SignedRole::new(role, holder, &sources, rng)
        .await
        .map_err(SignError::tuf("sign the metadata"))?;
    root.verify_role(signed.signed())
        .map_err(|err| SignError::Tuf {
            action: "verify what was just signed",
            message: err.to_string(),
        })?;
    Ok(signed)
}

/// One above the version in the file at `path`, or 1 without a file. A file that cannot be
/// read is an error: starting again at 1 would look like a rollback to every updater.
fn next_version(path: &Path) -> Result<NonZeroU64, SignError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(NonZeroU64::MIN),
        Err(err) => return Err(SignError::io("read", path)(err)),
    };
    let corrupt = |message: String| SignError::Corrupt {
        path: path.to_path_buf(),
        what: "TUF metadata",
        message,
    };
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|err| corrupt(err.to_string()))?;
    let version = value
        .get("signed")
        .and_then(|signed| signed.get("version"))
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| corrupt("it has no signed.version".into()))?;
    version
        .checked_add(1)
        .and_then(NonZeroU64::new)
        .ok_or_else(|| corrupt("its version cannot go higher".into()))
}
