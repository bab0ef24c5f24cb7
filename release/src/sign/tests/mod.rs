//! The release side against tough's own client: what `sign` and `rotate_root` write must
//! load with `RepositoryLoader` exactly as an updater loads it.

mod rotation;
mod signing;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use semver::Version;
use tempfile::TempDir;
use tough::{
    ExpirationEnforcement, FilesystemTransport, IntoVec, Repository, RepositoryLoader, TargetName,
    key_source::{KeySource, LocalKeySource},
};

use super::*;

pub const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
pub const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);

/// A release directory and the team's keys: `root` and `release` key files.
pub struct Team {
    _temp: TempDir,
    pub dir: PathBuf,
    pub keys: PathBuf,
    pub root: Vec<PathBuf>,
    pub release: Vec<PathBuf>,
}

pub fn keys(dir: &Path, prefix: &str, n: usize) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let path = dir.join(format!("{prefix}{i}.pk8"));
            generate_key(&path).unwrap();
            path
        })
        .collect()
}

/// `init` with 2-of-3 root keys and 2-of-3 release keys.
pub async fn team() -> Team {
    let temp = TempDir::new().unwrap();
    let keys_dir = temp.path().join("keys");
    std::fs::create_dir(&keys_dir).unwrap();
    let root = keys(&keys_dir, "root", 3);
    let release = keys(&keys_dir, "release", 3);
    let dir = temp.path().join("release");
    init(&dir, &root, 2, &release, 2, YEAR).await.unwrap();
    Team {
        dir,
        keys: keys_dir,
        root,
        release,
        _temp: temp,
    }
}

pub fn v(text: &str) -> Version {
    Version::parse(text).unwrap()
}

/// Loads `dir` as an updater does: from a pinned root, expiry enforced.
pub async fn load(
    dir: &Path,
    pinned_root: &[u8],
    datastore: Option<&Path>,
) -> Result<Repository, tough::error::Error> {
    let metadata = url::Url::from_directory_path(dir.join("metadata")).unwrap();
    let targets = url::Url::from_directory_path(dir.join("targets")).unwrap();
    let mut loader = RepositoryLoader::new(&pinned_root, metadata, targets)
        .transport(FilesystemTransport)
        .expiration_enforcement(ExpirationEnforcement::Safe);
    if let Some(datastore) = datastore {
        loader = loader.datastore(datastore);
    }
    loader.load().await
}

pub async fn read_target(repo: &Repository, name: &str) -> Vec<u8> {
    let name = TargetName::new(name).unwrap();
    let stream = repo.read_target(&name).await.unwrap().expect("listed");
    stream.into_vec().await.unwrap()
}

/// Every file under `dir` with its content, to show that nothing changed.
pub fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                files.insert(entry.path(), std::fs::read(entry.path()).unwrap());
            }
        }
    }
    files
}

pub fn pinned(team: &Team) -> Vec<u8> {
    std::fs::read(team.dir.join("metadata/1.root.json")).unwrap()
}

#[tokio::test]
async fn a_generated_key_loads_with_tough_and_is_never_overwritten() {
    let temp = TempDir::new().unwrap();
    let path = temp.path().join("k.pk8");
    let id = generate_key(&path).unwrap();
    assert_eq!(id.len(), 64, "{id}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let signer = LocalKeySource { path: path.clone() }
        .as_sign()
        .await
        .unwrap();
    assert_eq!(hex::encode(&*signer.tuf_key().key_id().unwrap()), id);

    let before = std::fs::read(&path).unwrap();
    assert!(matches!(generate_key(&path), Err(SignError::KeyExists(_))));
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[tokio::test]
async fn init_checks_thresholds_and_keys_and_refuses_a_second_time() {
    let temp = TempDir::new().unwrap();
    let k = keys(temp.path(), "k", 3);
    let dir = temp.path().join("release");
    let bad = [
        init(&dir, &k[..2], 0, &k[2..], 1, YEAR).await,
        init(&dir, &k[..2], 3, &k[2..], 1, YEAR).await,
        init(&dir, &k[..2], 1, &[], 1, YEAR).await,
    ];
    for result in bad {
        assert!(matches!(result, Err(SignError::Threshold(_))), "{result:?}");
    }
    let twice = [k[0].clone(), k[0].clone()];
    let result = init(&dir, &twice, 1, &k[2..], 1, YEAR).await;
    assert!(
        matches!(result, Err(SignError::DuplicateKey { .. })),
        "{result:?}"
    );
    let result = init(&dir, &k[..1], 1, &k[2..], 1, Duration::ZERO).await;
    assert!(
        matches!(result, Err(SignError::Expiry { .. })),
        "{result:?}"
    );
    assert!(!dir.exists(), "a refused init writes nothing");

    let summary = init(&dir, &k[..2], 2, &k[2..], 1, YEAR).await.unwrap();
    assert_eq!((summary.root_version, summary.root_threshold), (1, 2));
    let first = std::fs::read(dir.join("metadata/1.root.json")).unwrap();
    assert_eq!(
        std::fs::read(dir.join("metadata/root.json")).unwrap(),
        first
    );
    assert_eq!(read_source(&dir).unwrap(), ReleaseSource::default());
    let again = init(&dir, &k[..2], 2, &k[2..], 1, YEAR).await;
    assert!(
        matches!(again, Err(SignError::AlreadyInitialized { .. })),
        "{again:?}"
    );
    assert_eq!(
        std::fs::read(dir.join("metadata/1.root.json")).unwrap(),
        first
    );
}

#[tokio::test]
async fn release_json_records_artifacts_and_the_policy() {
    let team = team().await;
    let file = team.keys.join("agent-1.4.0.tar.gz");
    std::fs::write(&file, b"the agent").unwrap();

    let refused = add_artifact(&team.dir, "zip", &v("1.4.0"), &file);
    assert!(
        matches!(refused, Err(SignError::UnknownKind(_))),
        "{refused:?}"
    );
    let name = add_artifact(&team.dir, "tarball", &v("1.4.0"), &file).unwrap();
    assert_eq!(name, "tarball/1.4.0/agent-1.4.0.tar.gz");
    std::fs::write(&file, b"the agent, rebuilt").unwrap();
    assert_eq!(
        add_artifact(&team.dir, "tarball", &v("1.4.0"), &file).unwrap(),
        name
    );
    let source = read_source(&team.dir).unwrap();
    assert_eq!(source.targets.len(), 1, "the same name is replaced");
    let sha256 = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b"the agent, rebuilt"))
    };
    assert_eq!(source.targets[&name], SourceTarget { sha256, length: 18 });

    remove_artifact(&team.dir, &name).unwrap();
    let missing = remove_artifact(&team.dir, &name);
    assert!(
        matches!(missing, Err(SignError::NoSuchTarget { .. })),
        "{missing:?}"
    );

    set_floor(&team.dir, Some(v("1.2.0"))).unwrap();
    let upward = allow_rollback(&team.dir, v("1.1.0"), v("1.3.0"));
    assert!(
        matches!(upward, Err(SignError::BadRollback { .. })),
        "{upward:?}"
    );
    allow_rollback(&team.dir, v("1.3.0"), v("1.1.0")).unwrap();
    let policy = allow_rollback(&team.dir, v("1.3.0"), v("1.1.0")).unwrap();
    assert_eq!(policy.rollbacks.len(), 1, "a rollback is listed once");
    assert_eq!(read_source(&team.dir).unwrap().policy, policy);
    assert_eq!(set_floor(&team.dir, None).unwrap().floor, None);
}
