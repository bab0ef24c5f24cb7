//! `sign`: thresholds, versions, rollback protection and expiry, through tough's client.

use tough::schema::RoleType;

use super::*;
use crate::{Bundle, Policy};

#[tokio::test]
async fn two_of_three_release_keys_sign_what_tough_loads() {
    let team = team().await;
    let file = team.keys.join("drover-agent_1.4.0_all.deb");
    std::fs::write(&file, b"a debian package").unwrap();
    let name = add_artifact(&team.dir, "apt", &v("1.4.0"), &file).unwrap();
    set_floor(&team.dir, Some(v("1.2.0"))).unwrap();

    let summary = sign(&team.dir, &team.release[1..], WEEK * 13, WEEK)
        .await
        .unwrap();
    assert_eq!(
        (
            summary.targets_version,
            summary.snapshot_version,
            summary.timestamp_version
        ),
        (1, 1, 1)
    );
    assert_eq!((summary.targets, summary.artifacts), (2, 1));
    assert_eq!(summary.signed_by.len(), 2);

    let repo = load(&team.dir, &pinned(&team), None).await.unwrap();
    let listed = &repo.targets().signed.targets;
    let artifact = &listed[&TargetName::new(name.as_str()).unwrap()];
    assert_eq!(artifact.length, 16);
    let policy_bytes = read_target(&repo, "policy.json").await;
    assert_eq!(
        policy_bytes,
        std::fs::read(team.dir.join("targets/policy.json")).unwrap()
    );
    let policy: Policy = serde_json::from_slice(&policy_bytes).unwrap();
    assert_eq!(policy.floor, Some(v("1.2.0")));

    let bundle = Bundle::from_dir(&team.dir).unwrap();
    let names: Vec<_> = bundle.files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "1.root.json",
            "snapshot.json",
            "targets.json",
            "targets/policy.json",
            "timestamp.json"
        ]
    );
    assert_eq!(bundle.claimed_version(), Some(1));
}

#[tokio::test]
async fn one_key_short_of_the_threshold_writes_nothing() {
    let team = team().await;
    let before = tree(&team.dir);
    let err = sign(&team.dir, &team.release[..1], WEEK, WEEK)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, SignError::NotEnoughKeys(_)), "{err:?}");
    assert!(
        text.contains("targets needs 2 signatures of the release keys, 1 of the given keys is one"),
        "{text}"
    );
    assert_eq!(tree(&team.dir), before);

    // A root key is no release key: named, not silently ignored.
    let keys = [team.release[0].clone(), team.root[0].clone()];
    let err = sign(&team.dir, &keys, WEEK, WEEK).await.unwrap_err();
    assert!(matches!(err, SignError::UnknownKey { .. }), "{err:?}");
    assert_eq!(tree(&team.dir), before);
}

#[tokio::test]
async fn each_sign_goes_up_a_version_and_a_client_refuses_the_older_timestamp() {
    let team = team().await;
    let datastore = TempDir::new().unwrap();
    sign(&team.dir, &team.release[..2], WEEK, WEEK)
        .await
        .unwrap();
    // What an attacker holding the coordinator would replay later: version 1 as signed.
    let old = team.dir.parent().unwrap().join("replay");
    for sub in ["metadata", "targets"] {
        std::fs::create_dir_all(old.join(sub)).unwrap();
        for entry in std::fs::read_dir(team.dir.join(sub)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), old.join(sub).join(entry.file_name())).unwrap();
        }
    }
    let repo = load(&team.dir, &pinned(&team), Some(datastore.path()))
        .await
        .unwrap();
    assert_eq!(repo.timestamp().signed.version.get(), 1);

    set_floor(&team.dir, Some(v("2.0.0"))).unwrap();
    let summary = sign(&team.dir, &team.release[1..], WEEK, WEEK)
        .await
        .unwrap();
    assert_eq!(
        (
            summary.targets_version,
            summary.snapshot_version,
            summary.timestamp_version
        ),
        (2, 2, 2)
    );
    let repo = load(&team.dir, &pinned(&team), Some(datastore.path()))
        .await
        .unwrap();
    assert_eq!(repo.timestamp().signed.version.get(), 2);
    let policy: Policy = serde_json::from_slice(&read_target(&repo, "policy.json").await).unwrap();
    assert_eq!(policy.floor, Some(v("2.0.0")));

    // The replay is validly signed, and still refused: the client has seen version 2.
    assert!(
        load(&old, &pinned(&team), None).await.is_ok(),
        "valid on its own"
    );
    match load(&old, &pinned(&team), Some(datastore.path())).await {
        Err(tough::error::Error::OlderMetadata {
            role: RoleType::Timestamp,
            current_version: 2,
            new_version: 1,
            ..
        }) => {}
        Err(other) => panic!("expected OlderMetadata for the timestamp, got {other}"),
        Ok(_) => panic!("the replayed version 1 was accepted"),
    }
}

#[tokio::test]
async fn an_expired_timestamp_does_not_load() {
    let team = team().await;
    let summary = sign(&team.dir, &team.release[..2], WEEK, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(summary.timestamp_expires < summary.targets_expires);
    // Wait on the clock itself until the expiry is past (tough compares with now).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while jiff::Timestamp::now() <= summary.timestamp_expires {
        assert!(
            std::time::Instant::now() < deadline,
            "the clock did not move"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    match load(&team.dir, &pinned(&team), None).await {
        Err(tough::error::Error::ExpiredMetadata {
            role: RoleType::Timestamp,
            ..
        }) => {}
        Err(other) => panic!("expected ExpiredMetadata for the timestamp, got {other}"),
        Ok(_) => panic!("an expired timestamp was accepted"),
    }
}
