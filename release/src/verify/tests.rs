//! Each attack on the metadata, made from files the real release side signed, gets its own
//! code from `verify`, and an honest bundle passes with what it lists.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use drover_rules::ReasonCode;
use tempfile::TempDir;

use super::*;
use crate::sign;

const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);

struct Team {
    temp: TempDir,
    dir: PathBuf,
    root: Vec<PathBuf>,
    release: Vec<PathBuf>,
}

fn keys(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    (0..3)
        .map(|i| {
            let path = dir.join(format!("{prefix}{i}.pk8"));
            sign::generate_key(&path).unwrap();
            path
        })
        .collect()
}

/// 2-of-3 root and release keys, one tarball artifact at 1.0.0 and 1.1.0.
async fn team() -> Team {
    let temp = TempDir::new().unwrap();
    let root = keys(temp.path(), "root");
    let release = keys(temp.path(), "release");
    let dir = temp.path().join("release");
    sign::init(&dir, &root, 2, &release, 2, YEAR).await.unwrap();
    for version in ["1.0.0", "1.1.0"] {
        let file = temp.path().join(format!("agent-{version}.tar.gz"));
        std::fs::write(&file, version).unwrap();
        let version = semver::Version::parse(version).unwrap();
        sign::add_artifact(&dir, "tarball", &version, &file).unwrap();
    }
    Team {
        temp,
        dir,
        root,
        release,
    }
}

impl Team {
    async fn sign(&self, timestamp_expires: Duration) -> Bundle {
        sign::sign(&self.dir, &self.release[..2], YEAR, timestamp_expires)
            .await
            .unwrap();
        Bundle::from_dir(&self.dir).unwrap()
    }

    fn pinned(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("metadata/1.root.json")).unwrap()
    }

    fn datastore(&self) -> PathBuf {
        self.temp.path().join("datastore")
    }

    async fn verify(&self, bundle: &Bundle) -> Result<Verified, VerifyError> {
        verify(bundle, &self.pinned(), &self.datastore()).await
    }
}

fn code(result: Result<Verified, VerifyError>) -> ReasonCode {
    match result {
        Err(VerifyError::Refused(refusal)) => refusal.code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn with(bundle: &Bundle, name: &str, content: Vec<u8>) -> Bundle {
    let mut files = bundle.files.clone();
    files.insert(name.to_string(), content);
    Bundle { files }
}

#[tokio::test]
async fn a_signed_bundle_lists_its_artifacts_and_policy() {
    let team = team().await;
    sign::set_floor(&team.dir, Some(semver::Version::new(1, 1, 0))).unwrap();
    let verified = team.verify(&team.sign(WEEK).await).await.unwrap();
    assert_eq!(verified.timestamp_version, 1);
    assert_eq!(verified.artifacts.len(), 2);
    let listed = &verified.artifacts[0];
    assert_eq!((listed.kind.as_str(), listed.length), ("tarball", 5));
    assert_eq!(verified.policy.floor, Some(semver::Version::new(1, 1, 0)));
    assert!(verified.expires_ms > 0);
}

#[tokio::test]
async fn replayed_mixed_oversized_and_unsigned_metadata_are_each_named() {
    let team = team().await;
    let v1 = team.sign(WEEK).await;
    let v2 = team.sign(WEEK).await;
    team.verify(&v2).await.unwrap();
    assert_eq!(
        code(team.verify(&v1).await),
        ReasonCode::ReleaseMetadataRollback
    );
    let mixed = with(&v1, "timestamp.json", v2.files["timestamp.json"].clone());
    assert_eq!(
        code(team.verify(&mixed).await),
        ReasonCode::ReleaseMetadataInconsistent
    );
    let mut padded = v2.files["timestamp.json"].clone();
    padded.extend(std::iter::repeat_n(b' ', 100 << 10));
    let endless = with(&v2, "timestamp.json", padded);
    assert_eq!(
        code(team.verify(&endless).await),
        ReasonCode::ReleaseMetadataTooLarge
    );
    // One signature where the threshold is two.
    let mut timestamp: serde_json::Value =
        serde_json::from_slice(&v2.files["timestamp.json"]).unwrap();
    timestamp["signatures"].as_array_mut().unwrap().truncate(1);
    let one = with(
        &v2,
        "timestamp.json",
        serde_json::to_vec(&timestamp).unwrap(),
    );
    assert_eq!(
        code(team.verify(&one).await),
        ReasonCode::ReleaseMetadataUnsigned
    );
    assert_eq!(
        code(team.verify(&Bundle::default()).await),
        ReasonCode::ReleaseMetadataMissing
    );
    // After all that, the honest bundle still verifies: nothing was trusted on the way.
    assert_eq!(team.verify(&v2).await.unwrap().timestamp_version, 2);
}

#[tokio::test]
async fn metadata_past_its_expiry_is_a_freeze() {
    let team = team().await;
    let bundle = team.sign(Duration::from_secs(1)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match team.verify(&bundle).await {
            Ok(_) => assert!(
                Instant::now() < deadline,
                "still valid 20 s after a 1 s expiry"
            ),
            refused => {
                assert_eq!(code(refused), ReasonCode::ReleaseMetadataExpired);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn after_a_rotation_a_bundle_without_the_new_roots_cannot_go_back() {
    let team = team().await;
    let old = team.sign(WEEK).await;
    team.verify(&old).await.unwrap();
    // The team drops every old key: new root keys, new release keys.
    std::fs::create_dir_all(team.temp.path().join("new")).unwrap();
    let new_root = keys(&team.temp.path().join("new"), "root");
    let new_release = keys(&team.temp.path().join("new"), "release");
    sign::rotate_root(
        &team.dir,
        &team.root[..2],
        &new_root,
        2,
        Some((&new_release, 2)),
        YEAR,
    )
    .await
    .unwrap();
    sign::sign(&team.dir, &new_release[..2], YEAR, WEEK)
        .await
        .unwrap();
    let rotated = Bundle::from_dir(&team.dir).unwrap();
    assert!(rotated.files.contains_key("2.root.json"));
    team.verify(&rotated).await.unwrap();
    // Metadata signed by the old keys, with the new root left out.
    let files: BTreeMap<String, Vec<u8>> = old.files.clone();
    assert!(!files.contains_key("2.root.json"));
    let refused = code(team.verify(&Bundle { files }).await);
    assert!(
        matches!(
            refused,
            ReasonCode::ReleaseMetadataUnsigned | ReasonCode::ReleaseMetadataRollback
        ),
        "{refused:?}"
    );
}
