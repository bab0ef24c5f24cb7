//! `rotate_root`: cross-signed by the old threshold, followed by a client pinned to root 1.

use super::*;
use crate::Bundle;

#[tokio::test]
async fn roots_rotated_by_the_old_threshold_load_from_the_pinned_first_root() {
    let team = team().await;
    sign(&team.dir, &team.release[..2], WEEK, WEEK)
        .await
        .unwrap();
    let new_root = keys(&team.keys, "new-root", 2);

    // Root 2: keeps root key 1, drops 0 and 2, adds two; the release keys stay.
    let old = [team.root[0].clone(), team.root[1].clone()];
    let next = [
        team.root[1].clone(),
        new_root[0].clone(),
        new_root[1].clone(),
    ];
    let summary = rotate_root(&team.dir, &old, &next, 2, None, YEAR)
        .await
        .unwrap();
    assert_eq!(summary.root_version, 2);
    assert!(!summary.release_keys_changed);
    assert_eq!(summary.next_step, None);
    let second = std::fs::read(team.dir.join("metadata/2.root.json")).unwrap();
    assert_eq!(
        std::fs::read(team.dir.join("metadata/root.json")).unwrap(),
        second
    );

    let repo = load(&team.dir, &pinned(&team), None).await.unwrap();
    assert_eq!(repo.root().signed.version.get(), 2);
    assert_eq!(
        repo.timestamp().signed.version.get(),
        1,
        "still valid under root 2"
    );

    // Root 3: signed by root 2's keys (root 1's are gone), with new release keys.
    let release = keys(&team.keys, "new-release", 2);
    let old = [new_root[0].clone(), new_root[1].clone()];
    let summary = rotate_root(&team.dir, &old, &new_root, 1, Some((&release, 2)), YEAR)
        .await
        .unwrap();
    assert_eq!(summary.root_version, 3);
    assert!(summary.release_keys_changed);
    assert!(
        summary
            .next_step
            .as_deref()
            .unwrap()
            .contains("releases sign"),
        "{summary:?}"
    );
    let stale = load(&team.dir, &pinned(&team), None).await;
    assert!(
        stale.is_err(),
        "the timestamp is signed by the old release keys"
    );

    let old_release_key = sign(&team.dir, &team.release[..2], WEEK, WEEK).await;
    assert!(matches!(old_release_key, Err(SignError::UnknownKey { .. })));
    let signed = sign(&team.dir, &release, WEEK, WEEK).await.unwrap();
    assert_eq!(signed.timestamp_version, 2);
    let repo = load(&team.dir, &pinned(&team), None).await.unwrap();
    assert_eq!(repo.root().signed.version.get(), 3);
    assert_eq!(repo.timestamp().signed.version.get(), 2);
    read_target(&repo, "policy.json").await;

    let bundle = Bundle::from_dir(&team.dir).unwrap();
    for name in ["1.root.json", "2.root.json", "3.root.json"] {
        assert!(bundle.files.contains_key(name), "{name}");
    }
}

#[tokio::test]
async fn too_few_old_root_keys_cannot_rotate() {
    let team = team().await;
    sign(&team.dir, &team.release[..2], WEEK, WEEK)
        .await
        .unwrap();
    let before = tree(&team.dir);
    let new_root = keys(&team.keys, "new-root", 2);

    let err = rotate_root(&team.dir, &team.root[..1], &new_root, 2, None, YEAR)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, SignError::NotEnoughKeys(_)), "{err:?}");
    assert!(
        text.contains(
            "the new root needs 2 signatures of the current root keys, 1 of the given keys is one"
        ),
        "{text}"
    );
    // A release key does not count as a root key: it is named.
    let old = [team.root[0].clone(), team.release[0].clone()];
    let err = rotate_root(&team.dir, &old, &new_root, 2, None, YEAR)
        .await
        .unwrap_err();
    assert!(matches!(err, SignError::UnknownKey { .. }), "{err:?}");
    let err = rotate_root(&team.dir, &team.root[..2], &new_root, 3, None, YEAR)
        .await
        .unwrap_err();
    assert!(matches!(err, SignError::Threshold(_)), "{err:?}");
    assert_eq!(tree(&team.dir), before, "a refused rotation writes nothing");

    let repo = load(&team.dir, &pinned(&team), None).await.unwrap();
    assert_eq!(repo.root().signed.version.get(), 1);
}
