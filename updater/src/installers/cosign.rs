//! Cosign signature verification of a container image, with one configured public key.
//!
//! The tag is resolved to the digest of its manifest (computed here, not taken from a
//! header); the signatures are the layers of the manifest tagged `sha256-<hex>.sig` (the
//! cosign convention skopeo also writes), each a "simple signing" payload with its ECDSA
//! P-256/SHA-256 signature in an annotation. An image is accepted only if one payload
//! verifies with the key AND names exactly the resolved digest and this repository.

use base64::Engine as _;
use ring::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use rustls_pki_types::{SubjectPublicKeyInfoDer, pem::PemObject};
use serde::Deserialize;

use super::{
    InstallError,
    oci::{Registry, check_tag, is_sha256_digest},
};

const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Signatures looked at per image, and the size of one payload: both small in practice.
const MAX_SIGNATURES: usize = 16;
const MAX_PAYLOAD_BYTES: u64 = 64 * 1024;
/// The DER of a P-256 SubjectPublicKeyInfo up to its uncompressed point (65 bytes).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// A cosign public key: ECDSA P-256, PEM `PUBLIC KEY` (as `cosign generate-key-pair` writes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    point: Vec<u8>,
}

impl PublicKey {
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        let spki = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes())
            .map_err(|err| format!("not a PEM PUBLIC KEY ({err})"))?;
        let der: &[u8] = spki.as_ref();
        match der.strip_prefix(&P256_SPKI_PREFIX[..]) {
            Some(point) if point.len() == 65 && point[0] == 0x04 => Ok(Self {
                point: point.to_vec(),
            }),
            _ => Err("not an ECDSA P-256 public key (cosign's default); other key types are not supported".into()),
        }
    }

    fn verifies(&self, payload: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.point)
            .verify(payload, signature)
            .is_ok()
    }
}

/// Why an image was refused; each is an `InstallError::Refused` with this text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No signature manifest exists for the digest.
    Unsigned { image: String, digest: String },
    /// Signatures exist, none made by the configured key.
    UnknownKey { image: String, signatures: usize },
    /// A signature by the key, but over a payload for another image or repository.
    WrongImage { image: String, detail: String },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unsigned { image, digest } => write!(
                f,
                "{image} ({digest}) is not signed: the registry has no cosign signature for it; sign it with the key the updater trusts"
            ),
            Self::UnknownKey { image, signatures } => write!(
                f,
                "{image} has {signatures} cosign signature(s), none made by the configured public key"
            ),
            Self::WrongImage { image, detail } => write!(
                f,
                "{image}: a signature by the configured key does not match the image ({detail})"
            ),
        }
    }
}

impl From<Refusal> for InstallError {
    fn from(refusal: Refusal) -> Self {
        InstallError::Refused(refusal.to_string())
    }
}

/// An image whose signature verified: pull it by `repository@digest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedImage {
    pub digest: String,
    /// `host/path@sha256:…`, the reference to run.
    pub reference: String,
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    layers: Vec<Layer>,
}

#[derive(Deserialize)]
struct Layer {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Payload {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    identity: Identity,
    image: PayloadImage,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Deserialize)]
struct PayloadImage {
    #[serde(rename = "docker-manifest-digest")]
    digest: String,
}

/// Resolves `tag` in the registry's repository and accepts it only with a valid signature.
pub async fn verify(
    registry: &Registry,
    key: &PublicKey,
    tag: &str,
) -> Result<VerifiedImage, InstallError> {
    check_tag(tag)?;
    let image = format!("{}:{tag}", registry.repository);
    let deadline = registry.deadline();
    let (_, digest) = registry
        .manifest(tag, deadline)
        .await?
        .ok_or_else(|| InstallError::NotFound(format!("{image} is not in the registry")))?;
    let signature_tag = format!("{}.sig", digest.replace(':', "-"));
    let Some((body, _)) = registry.manifest(&signature_tag, deadline).await? else {
        return Err(Refusal::Unsigned { image, digest }.into());
    };
    let manifest: Manifest = serde_json::from_slice(&body).map_err(|err| {
        InstallError::Refused(format!("{image}: unreadable signature manifest ({err})"))
    })?;
    let signed: Vec<&Layer> = manifest
        .layers
        .iter()
        .filter(|l| {
            l.media_type == SIMPLE_SIGNING && l.annotations.contains_key(SIGNATURE_ANNOTATION)
        })
        .take(MAX_SIGNATURES)
        .collect();
    if signed.is_empty() {
        return Err(Refusal::Unsigned { image, digest }.into());
    }
    let mut wrong_image = None;
    for layer in &signed {
        let Ok(signature) = base64::engine::general_purpose::STANDARD
            .decode(layer.annotations[SIGNATURE_ANNOTATION].trim())
        else {
            continue;
        };
        let payload = registry
            .blob(&layer.digest, MAX_PAYLOAD_BYTES, deadline)
            .await?;
        if !key.verifies(&payload, &signature) {
            continue;
        }
        match check_payload(&payload, registry, &digest) {
            Ok(()) => {
                return Ok(VerifiedImage {
                    reference: format!("{}@{digest}", registry.repository),
                    digest,
                });
            }
            Err(detail) => wrong_image = Some(detail),
        }
    }
    Err(match wrong_image {
        Some(detail) => Refusal::WrongImage { image, detail },
        None => Refusal::UnknownKey {
            image,
            signatures: signed.len(),
        },
    }
    .into())
}

/// The signed payload must name this digest and this repository.
fn check_payload(payload: &[u8], registry: &Registry, digest: &str) -> Result<(), String> {
    let payload: Payload =
        serde_json::from_slice(payload).map_err(|err| format!("unreadable payload: {err}"))?;
    let critical = payload.critical;
    if critical.kind != "cosign container image signature" {
        return Err(format!("payload type is '{}'", critical.kind));
    }
    if !is_sha256_digest(&critical.image.digest) || critical.image.digest != digest {
        return Err(format!(
            "it signs {}, the tag resolves to {digest}",
            critical.image.digest
        ));
    }
    let signed_repository = strip_tag_or_digest(&critical.identity.docker_reference);
    if signed_repository != registry.repository.to_string() {
        return Err(format!(
            "it signs an image of {signed_repository}, not of {}",
            registry.repository
        ));
    }
    Ok(())
}

/// `host:port/path:tag` or `host/path@sha256:…` → `host:port/path`.
fn strip_tag_or_digest(reference: &str) -> &str {
    let without_digest = reference.split('@').next().unwrap_or(reference);
    match without_digest.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => without_digest,
    }
}

#[cfg(test)]
mod tests;
