//! Cosign signatures made with standard tools, attached in a real registry the way cosign
//! attaches them. Debian's skopeo 1.9 cannot do it (its sigstore signing is patched out:
//! "Debian-local change: sigstore disabled") and Debian ships no cosign, so: OpenSSL makes
//! the P-256 key pair and the ECDSA/SHA-256 signature over cosign's "simple signing"
//! payload, and curl uploads the payload blob, a config blob and the signature manifest
//! (the payload as a layer of media type `application/vnd.dev.cosign.simplesigning.v1+json`
//! with the base64 signature in the annotation `dev.cosignproject.cosign/signature`) under
//! the tag `sha256-<hex>.sig`, over the OCI distribution API.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use base64::Engine as _;
use serde_json::json;

pub struct CosignKey {
    pub private_key: PathBuf,
    /// The public key (PEM `PUBLIC KEY`), what the updater is configured with.
    pub public_key: PathBuf,
}

impl CosignKey {
    pub fn generate(dir: &Path, name: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let key = Self {
            private_key: dir.join(format!("{name}.key")),
            public_key: dir.join(format!("{name}.pub")),
        };
        run(
            "openssl",
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
            ],
            &[&key.private_key],
        );
        run(
            "openssl",
            &["pkey", "-pubout", "-in"],
            &[&key.private_key, Path::new("-out"), &key.public_key],
        );
        key
    }

    pub fn public_pem(&self) -> String {
        std::fs::read_to_string(&self.public_key).unwrap()
    }

    /// The DER ECDSA/SHA-256 signature of the file `payload`.
    fn sign(&self, payload: &Path) -> Vec<u8> {
        let out = Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(&self.private_key)
            .arg(payload)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl dgst -sign: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

/// The payload cosign signs for an image.
pub fn payload(reference: &str, digest: &str) -> Vec<u8> {
    json!({
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

/// Signs `payload` with `key` and stores it, in `host`'s repository `path`, as the
/// signature of the image with digest `at_digest`. `work` holds the files made on the way.
pub fn attach(
    host: &str,
    path: &str,
    at_digest: &str,
    payload: &[u8],
    key: &CosignKey,
    work: &Path,
) {
    std::fs::create_dir_all(work).unwrap();
    let payload_file = work.join("payload.json");
    std::fs::write(&payload_file, payload).unwrap();
    let signature = base64::engine::general_purpose::STANDARD.encode(key.sign(&payload_file));
    let payload_digest = upload_blob(host, path, payload, work);
    let config = json!({
        "architecture": "", "os": "", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [payload_digest]},
    })
    .to_string();
    let config_digest = upload_blob(host, path, config.as_bytes(), work);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": config.len(), "digest": config_digest},
        "layers": [{
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "size": payload.len(), "digest": payload_digest,
            "annotations": {"dev.cosignproject.cosign/signature": signature},
        }],
    })
    .to_string();
    let manifest_file = work.join("manifest.json");
    std::fs::write(&manifest_file, manifest).unwrap();
    let tag = format!("{}.sig", at_digest.replace(':', "-"));
    curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/vnd.oci.image.manifest.v1+json",
        "--data-binary",
        &format!("@{}", manifest_file.display()),
        &format!("http://{host}/v2/{path}/manifests/{tag}"),
    ]);
}

/// A monolithic blob upload (POST, then PUT with the digest); returns the digest.
fn upload_blob(host: &str, path: &str, bytes: &[u8], work: &Path) -> String {
    let digest = crate::registry::sha256_digest(bytes);
    let file = work.join(digest.replace(':', "-"));
    std::fs::write(&file, bytes).unwrap();
    let headers = curl(&[
        "-X",
        "POST",
        "-D",
        "-",
        "-o",
        "/dev/null",
        &format!("http://{host}/v2/{path}/blobs/uploads/"),
    ]);
    let location = headers
        .lines()
        .find_map(|l| {
            l.strip_prefix("Location: ")
                .or_else(|| l.strip_prefix("location: "))
        })
        .expect("the registry answers an upload location")
        .trim()
        .to_string();
    let location = if location.starts_with('/') {
        format!("http://{host}{location}")
    } else {
        location
    };
    let separator = if location.contains('?') { '&' } else { '?' };
    curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("{location}{separator}digest={digest}"),
    ]);
    digest
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "30"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run(program: &str, args: &[&str], paths: &[&Path]) {
    let out = Command::new(program)
        .args(args)
        .args(paths)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
