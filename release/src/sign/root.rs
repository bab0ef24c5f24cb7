//! The root: `init` writes the first, `rotate_root` the next, cross-signed by the old keys.

use std::{
    collections::HashMap,
    num::NonZeroU64,
    path::{Path, PathBuf},
    time::Duration,
};

use aws_lc_rs::rand::SystemRandom;
use serde::Serialize;
use tough::{
    editor::signed::SignedRole,
    schema::{KeyHolder, RoleKeys, RoleType, Root},
};

use super::{
    SPEC_VERSION, SignError, expires_in,
    keys::{KeyFile, check_threshold, ensure_threshold, keys_for, read_keys, role_keys},
    metadata_dir, read_root,
    source::ReleaseSource,
    source_path, write_atomic,
};

/// What `init` wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InitSummary {
    pub root_version: u64,
    pub root_expires: jiff::Timestamp,
    pub root_keys: Vec<String>,
    pub root_threshold: u64,
    pub release_keys: Vec<String>,
    pub release_threshold: u64,
}

/// What `rotate_root` wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RotateSummary {
    pub root_version: u64,
    pub root_expires: jiff::Timestamp,
    pub root_keys: Vec<String>,
    pub root_threshold: u64,
    /// Targets, snapshot or timestamp now have other keys or another threshold.
    pub release_keys_changed: bool,
    /// What to run next, when something must.
    pub next_step: Option<String>,
}

const RELEASE_ROLES: [RoleType; 3] = [RoleType::Targets, RoleType::Snapshot, RoleType::Timestamp];

/// Creates the release directory `dir`: `metadata/1.root.json` (and its copy `root.json`)
/// signed by every root key, and an empty `release.json`. The root role takes `root_keys`
/// and `root_threshold`; targets, snapshot and timestamp take `release_keys` and
/// `release_threshold`. Refuses a directory that already has metadata or a `release.json`.
pub async fn init(
    dir: &Path,
    root_keys: &[PathBuf],
    root_threshold: u64,
    release_keys: &[PathBuf],
    release_threshold: u64,
    root_expires: Duration,
) -> Result<InitSummary, SignError> {
    let metadata = metadata_dir(dir);
    for existing in [metadata.clone(), source_path(dir)] {
        if std::fs::symlink_metadata(&existing).is_ok() {
            return Err(SignError::AlreadyInitialized {
                dir: dir.to_path_buf(),
                existing,
            });
        }
    }
    let root_keys = read_keys(root_keys)?;
    let root_threshold = check_threshold("root", root_threshold, root_keys.len())?;
    let release_keys = read_keys(release_keys)?;
    let release_threshold = check_threshold("release", release_threshold, release_keys.len())?;
    let expires = expires_in("root", root_expires)?;

    let mut root = Root {
        spec_version: SPEC_VERSION.to_string(),
        consistent_snapshot: false,
        version: NonZeroU64::MIN,
        expires,
        keys: HashMap::new(),
        roles: HashMap::new(),
        _extra: HashMap::new(),
    };
    for key in root_keys.iter().chain(&release_keys) {
        root.keys.insert(key.id.clone(), key.key.clone());
    }
    root.roles
        .insert(RoleType::Root, role_keys(&root_keys, root_threshold));
    for role in RELEASE_ROLES {
        root.roles
            .insert(role, role_keys(&release_keys, release_threshold));
    }
    let holder = KeyHolder::Root(root.clone());
    let signed = sign_root(root, &holder, &root_keys).await?;
    root_verifies(&signed, &signed.signed().signed)?;

    std::fs::create_dir_all(dir).map_err(SignError::io("create", dir))?;
    // All of metadata/ appears at once, so a failed init leaves nothing to refuse later.
    let temp = dir.join(format!(".metadata.tmp-{}", std::process::id()));
    std::fs::create_dir(&temp).map_err(SignError::io("create", &temp))?;
    let written = write_root(&temp, &signed).and_then(|()| {
        std::fs::rename(&temp, &metadata).map_err(SignError::io("create", &metadata))
    });
    if let Err(err) = written {
        let _ = std::fs::remove_dir_all(&temp);
        return Err(err);
    }
    write_atomic(&source_path(dir), &ReleaseSource::default().to_bytes()?)?;
    Ok(InitSummary {
        root_version: 1,
        root_expires: expires,
        root_keys: root_keys.iter().map(KeyFile::id_hex).collect(),
        root_threshold: root_threshold.get(),
        release_keys: release_keys.iter().map(KeyFile::id_hex).collect(),
        release_threshold: release_threshold.get(),
    })
}

/// Writes root N+1 (`metadata/N+1.root.json` and the copy `root.json`): the root role takes
/// `new_root_keys` and `new_root_threshold`; the release roles take `new_release_keys` if
/// given, else keep theirs. It is signed by every new root key and by those of `old_keys`
/// the current root lists, which must reach the current root threshold: a client that trusts
/// root N accepts N+1 only so. Nothing is written when they fall short.
pub async fn rotate_root(
    dir: &Path,
    old_keys: &[PathBuf],
    new_root_keys: &[PathBuf],
    new_root_threshold: u64,
    new_release_keys: Option<(&[PathBuf], u64)>,
    expires: Duration,
) -> Result<RotateSummary, SignError> {
    let (root_path, old) = read_root(dir)?;
    let old = old.signed;
    let old_keys = read_keys(old_keys)?;
    let listed = keys_for(&old, RoleType::Root, &old_keys);
    if let Some(stranger) = old_keys
        .iter()
        .find(|k| !listed.iter().any(|l| l.id == k.id))
    {
        return Err(SignError::UnknownKey {
            path: stranger.path.clone(),
            id: stranger.id_hex(),
            set: "root",
            root: root_path,
        });
    }
    let hint = "the current root must sign its successor: give more of its keys with --old-key";
    ensure_threshold(
        &old,
        RoleType::Root,
        "the new root",
        "current root",
        listed.len(),
        hint,
    )?;
    let root_keys = read_keys(new_root_keys)?;
    let root_threshold = check_threshold("new root", new_root_threshold, root_keys.len())?;
    let expires = expires_in("root", expires)?;

    let version = old.version.get().checked_add(1).and_then(NonZeroU64::new);
    let version = version.ok_or_else(|| SignError::Corrupt {
        path: root_path.clone(),
        what: "TUF root metadata",
        message: "its version cannot go higher".into(),
    })?;
    let next_file = metadata_dir(dir).join(format!("{version}.root.json"));
    if std::fs::symlink_metadata(&next_file).is_ok() {
        return Err(SignError::Corrupt {
            path: root_path,
            what: "TUF root metadata",
            message: format!(
                "it is version {}, yet {} exists: root.json must be a copy of the newest \
                 N.root.json",
                old.version,
                next_file.display()
            ),
        });
    }
    let mut root = Root {
        spec_version: SPEC_VERSION.to_string(),
        consistent_snapshot: false,
        version,
        expires,
        keys: HashMap::new(),
        roles: HashMap::new(),
        _extra: HashMap::new(),
    };
    for key in &root_keys {
        root.keys.insert(key.id.clone(), key.key.clone());
    }
    root.roles
        .insert(RoleType::Root, role_keys(&root_keys, root_threshold));
    match new_release_keys {
        Some((paths, threshold)) => {
            let release_keys = read_keys(paths)?;
            let threshold = check_threshold("release", threshold, release_keys.len())?;
            for key in &release_keys {
                root.keys.insert(key.id.clone(), key.key.clone());
            }
            for role in RELEASE_ROLES {
                root.roles.insert(role, role_keys(&release_keys, threshold));
            }
        }
        None => keep_release_roles(&old, &mut root)?,
    }
    let release_keys_changed = RELEASE_ROLES
        .iter()
        .any(|role| !same_role(old.roles.get(role), root.roles.get(role)));

    let rng = SystemRandom::new();
    let signed = sign_root(root.clone(), &KeyHolder::Root(root.clone()), &root_keys).await?;
    let old_sources: Vec<_> = listed.iter().map(|k| k.source()).collect();
    let by_old = SignedRole::new(
        root.clone(),
        &KeyHolder::Root(old.clone()),
        &old_sources,
        &rng,
    )
    .await
    .map_err(SignError::tuf(
        "sign the new root with the current root keys",
    ))?;
    let signed = signed
        .add_old_signatures(by_old.signed().signatures.clone())
        .map_err(SignError::tuf("add the current root keys' signatures"))?;
    root_verifies(&signed, &old)?;
    root_verifies(&signed, &root)?;

    write_root(&metadata_dir(dir), &signed)?;
    let next_step = release_keys_changed.then(|| {
        "the release keys changed: run `droverctl releases sign` with the new release keys \
         next; until then updaters refuse the current targets, snapshot and timestamp"
            .to_string()
    });
    Ok(RotateSummary {
        root_version: version.get(),
        root_expires: expires,
        root_keys: root_keys.iter().map(KeyFile::id_hex).collect(),
        root_threshold: root_threshold.get(),
        release_keys_changed,
        next_step,
    })
}

fn keep_release_roles(old: &Root, root: &mut Root) -> Result<(), SignError> {
    for role in RELEASE_ROLES {
        let keys = old.roles.get(&role).ok_or_else(|| SignError::Corrupt {
            path: PathBuf::from("root.json"),
            what: "TUF root metadata",
            message: format!("it has no {role} role"),
        })?;
        for id in &keys.keyids {
            if let Some(key) = old.keys.get(id) {
                root.keys.insert(id.clone(), key.clone());
            }
        }
        root.roles.insert(role, keys.clone());
    }
    Ok(())
}

fn same_role(a: Option<&RoleKeys>, b: Option<&RoleKeys>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => {
            let mut ids_a: Vec<_> = a.keyids.iter().map(|id| id.to_vec()).collect();
            let mut ids_b: Vec<_> = b.keyids.iter().map(|id| id.to_vec()).collect();
            ids_a.sort();
            ids_b.sort();
            a.threshold == b.threshold && ids_a == ids_b
        }
        _ => false,
    }
}

async fn sign_root(
    root: Root,
    holder: &KeyHolder,
    keys: &[KeyFile],
) -> Result<SignedRole<Root>, SignError> {
    let sources: Vec<_> = keys.iter().map(KeyFile::source).collect();
    SignedRole::new(root, holder, &sources, &SystemRandom::new())
        .await
        .map_err(SignError::tuf("sign the root"))
}

/// tough's own check, as a client makes it: a threshold of `by`'s root keys signed it.
fn root_verifies(signed: &SignedRole<Root>, by: &Root) -> Result<(), SignError> {
    by.verify_role(signed.signed())
        .map_err(|err| SignError::Tuf {
            action: "verify the root just signed",
            message: err.to_string(),
        })
}

/// `N.root.json`, then the copy `root.json`.
fn write_root(metadata: &Path, signed: &SignedRole<Root>) -> Result<(), SignError> {
    let version = signed.signed().signed.version;
    write_atomic(
        &metadata.join(format!("{version}.root.json")),
        signed.buffer(),
    )?;
    write_atomic(&metadata.join("root.json"), signed.buffer())
}
