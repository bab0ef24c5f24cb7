//! Key parsing, signature checks and payload binding, without a registry (the real
//! registry is in `tests/tests/cosign.rs`).

use std::time::Duration;

use base64::Engine as _;
use ring::{
    rand::SystemRandom,
    signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _},
};

use super::*;
use crate::installers::oci::Repository;

fn key_pair() -> (EcdsaKeyPair, String) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let mut der = P256_SPKI_PREFIX.to_vec();
    der.extend_from_slice(pair.public_key().as_ref());
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    (
        pair,
        format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n"),
    )
}

fn registry() -> Registry {
    Registry {
        repository: Repository::parse("127.0.0.1:5000/agent").unwrap(),
        plain_http: true,
        timeout: Duration::from_secs(5),
    }
}

fn payload(reference: &str, digest: &str) -> Vec<u8> {
    serde_json::json!({
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature"
        },
        "optional": null
    })
    .to_string()
    .into_bytes()
}

#[test]
fn a_signature_verifies_only_with_its_own_key_and_payload() {
    let (pair, pem) = key_pair();
    let (_, other_pem) = key_pair();
    let key = PublicKey::from_pem(&pem).unwrap();
    let body = payload("127.0.0.1:5000/agent:1.0.0", "sha256:00");
    let signature = pair.sign(&SystemRandom::new(), &body).unwrap();
    assert!(key.verifies(&body, signature.as_ref()));
    assert!(
        !PublicKey::from_pem(&other_pem)
            .unwrap()
            .verifies(&body, signature.as_ref())
    );
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    assert!(!key.verifies(&tampered, signature.as_ref()));
}

#[test]
fn only_p256_public_keys_are_accepted() {
    assert!(PublicKey::from_pem("not a key").is_err());
    // An Ed25519 SubjectPublicKeyInfo.
    let ed25519 = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n";
    let err = PublicKey::from_pem(ed25519).unwrap_err();
    assert!(err.contains("P-256"), "{err}");
}

#[test]
fn the_payload_must_name_the_resolved_digest_and_this_repository() {
    let digest = crate::installers::oci::sha256_digest(b"manifest");
    let other = crate::installers::oci::sha256_digest(b"another manifest");
    let registry = registry();
    assert_eq!(
        check_payload(
            &payload("127.0.0.1:5000/agent:1.1.0", &digest),
            &registry,
            &digest
        ),
        Ok(())
    );
    assert_eq!(
        check_payload(
            &payload(&format!("127.0.0.1:5000/agent@{digest}"), &digest),
            &registry,
            &digest
        ),
        Ok(())
    );
    let mismatch = check_payload(
        &payload("127.0.0.1:5000/agent:1.1.0", &other),
        &registry,
        &digest,
    );
    assert!(mismatch.unwrap_err().contains("the tag resolves to"));
    let elsewhere = check_payload(
        &payload("127.0.0.1:5000/other:1.1.0", &digest),
        &registry,
        &digest,
    );
    assert!(elsewhere.unwrap_err().contains("127.0.0.1:5000/other"));
    assert!(check_payload(b"{}", &registry, &digest).is_err());
}

#[test]
fn refusals_are_never_retried_and_say_what_to_do() {
    let unsigned: InstallError = Refusal::Unsigned {
        image: "r.example/agent:1.0.0".into(),
        digest: "sha256:00".into(),
    }
    .into();
    assert_eq!(unsigned.reason(), drover_rules::ReasonCode::InstallRefused);
    assert!(unsigned.message().contains("not signed"));
}
