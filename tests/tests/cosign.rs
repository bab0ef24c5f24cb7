//! Cosign verification against a real registry: Debian's `docker-registry` on loopback,
//! images pushed by skopeo, cosign signatures made by OpenSSL with keys made in the test
//! and attached the cosign way (see `drover_tests::cosign_key`). The updater's verification code is called as the Kubernetes
//! installer calls it.

use std::time::Duration;

use drover_rules::ReasonCode;
use drover_tests::{cosign_key::CosignKey, registry::TestRegistry};
use drover_updater::installers::{
    InstallError,
    cosign::{PublicKey, verify},
    oci::{Registry, Repository},
};

fn registry_for(registry: &TestRegistry, path: &str) -> Registry {
    Registry {
        repository: Repository::parse(&registry.repository(path)).unwrap(),
        plain_http: true,
        timeout: Duration::from_secs(30),
    }
}

fn key_of(key: &CosignKey) -> PublicKey {
    PublicKey::from_pem(&key.public_pem()).unwrap()
}

fn refused(result: Result<impl std::fmt::Debug, InstallError>) -> String {
    let err = result.expect_err("the image must be refused");
    assert_eq!(err.reason(), ReasonCode::InstallRefused, "{err}");
    err.message().to_string()
}

#[tokio::test]
async fn a_signed_image_verifies_and_resolves_to_its_digest() {
    let dir = tempfile::tempdir().unwrap();
    let registry = TestRegistry::start(dir.path()).await;
    let key = CosignKey::generate(&dir.path().join("keys"), "release");
    let digest = registry
        .push("drover/agent", "1.1.0", "1.1.0", Some(&key))
        .await;

    let verified = verify(
        &registry_for(&registry, "drover/agent"),
        &key_of(&key),
        "1.1.0",
    )
    .await
    .expect("the signed image verifies");
    assert_eq!(
        verified.digest, digest,
        "resolved to the digest skopeo pushed"
    );
    assert_eq!(
        verified.reference,
        format!("{}@{digest}", registry.repository("drover/agent"))
    );
}

#[tokio::test]
async fn unsigned_and_foreign_signed_images_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let registry = TestRegistry::start(dir.path()).await;
    let trusted = CosignKey::generate(&dir.path().join("keys"), "trusted");
    let stranger = CosignKey::generate(&dir.path().join("keys"), "stranger");
    let repo = registry_for(&registry, "drover/agent");
    let unsigned_digest = registry.push("drover/agent", "1.2.0", "1.2.0", None).await;
    registry
        .push("drover/agent", "1.3.0", "1.3.0", Some(&stranger))
        .await;

    let unsigned = refused(verify(&repo, &key_of(&trusted), "1.2.0").await);
    assert!(unsigned.contains("is not signed"), "{unsigned}");
    assert!(unsigned.contains(&unsigned_digest), "{unsigned}");

    let foreign = refused(verify(&repo, &key_of(&trusted), "1.3.0").await);
    assert!(
        foreign.contains("1 cosign signature(s), none made by the configured public key"),
        "{foreign}"
    );
    // The stranger's own key accepts it: the refusal is about the key, not the signature.
    verify(&repo, &key_of(&stranger), "1.3.0")
        .await
        .expect("verifies with the key that signed it");
}

#[tokio::test]
async fn a_signature_replayed_onto_another_image_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let registry = TestRegistry::start(dir.path()).await;
    let key = CosignKey::generate(&dir.path().join("keys"), "release");
    let good = registry
        .push("drover/agent", "1.1.0", "1.1.0", Some(&key))
        .await;
    let evil = registry.push("drover/agent", "1.1.1", "evil", None).await;
    // Image 1.1.1 carries a genuine signature by the key over 1.1.0's payload: the
    // signature verifies, the digest it names is not 1.1.1's.
    let reference = format!("{}:1.1.0", registry.repository("drover/agent"));
    registry.sign(
        "drover/agent",
        &evil,
        &drover_tests::cosign_key::payload(&reference, &good),
        &key,
    );

    let message = refused(
        verify(
            &registry_for(&registry, "drover/agent"),
            &key_of(&key),
            "1.1.1",
        )
        .await,
    );
    assert!(message.contains("does not match the image"), "{message}");
    assert!(
        message.contains(&format!("it signs {good}, the tag resolves to {evil}")),
        "{message}"
    );
}

#[tokio::test]
async fn a_missing_tag_is_a_version_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let registry = TestRegistry::start(dir.path()).await;
    let key = CosignKey::generate(&dir.path().join("keys"), "release");
    let err = verify(
        &registry_for(&registry, "drover/agent"),
        &key_of(&key),
        "9.9.9",
    )
    .await
    .expect_err("no such tag");
    assert_eq!(err.reason(), ReasonCode::VersionNotFound, "{err}");
    assert!(err.message().contains("is not in the registry"), "{err}");
}
