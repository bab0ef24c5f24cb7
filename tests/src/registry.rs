//! A real OCI registry for the tests: Debian's `docker-registry` (distribution 2.8) on a
//! loopback port, storage in a temp dir, plain HTTP. Images are tiny OCI layouts built
//! here (one tar layer, a config, a manifest) and pushed with skopeo; signatures are
//! attached the cosign way by `cosign_key` (Debian's skopeo has sigstore signing disabled).

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::process::{Child, Command};

use crate::cosign_key::{CosignKey, attach, payload};

pub struct TestRegistry {
    _child: Child,
    /// `127.0.0.1:PORT`
    pub host: String,
    dir: PathBuf,
}

impl TestRegistry {
    pub async fn start(dir: &Path) -> Self {
        let dir = dir.join("registry");
        std::fs::create_dir_all(dir.join("storage")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let host = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n",
            dir.join("storage").display()
        );
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start docker-registry (scripts/setup installs Debian's docker-registry)");
        crate::eventually(
            "docker-registry accepts connections",
            Duration::from_secs(30),
            async || tokio::net::TcpStream::connect(&host).await.ok().map(|_| ()),
        )
        .await;
        Self {
            _child: child,
            host,
            dir,
        }
    }

    /// `HOST/path`, the repository as the updater is configured with it.
    pub fn repository(&self, path: &str) -> String {
        format!("{}/{path}", self.host)
    }

    /// Builds a one-layer image whose file says `content` and pushes it as `path:tag`,
    /// signed with `key` (a sigstore signature attached the cosign way) or unsigned.
    /// Returns the manifest digest.
    pub async fn push(
        &self,
        path: &str,
        tag: &str,
        content: &str,
        key: Option<&CosignKey>,
    ) -> String {
        let layout = self
            .dir
            .join("layouts")
            .join(format!("{path}-{tag}").replace('/', "_"));
        build_oci_layout(&layout, tag, content);
        skopeo(&[
            "copy".into(),
            "--insecure-policy".into(),
            "--dest-tls-verify=false".into(),
            format!("oci:{}:{tag}", layout.display()),
            format!("docker://{}:{tag}", self.repository(path)),
        ])
        .await;
        let digest = self.digest(path, tag).await;
        if let Some(key) = key {
            let reference = format!("{}:{tag}", self.repository(path));
            self.sign(path, &digest, &payload(&reference, &digest), key);
        }
        digest
    }

    /// Attaches `payload`, signed with `key`, as the signature of the image at `digest`.
    pub fn sign(&self, path: &str, digest: &str, payload: &[u8], key: &CosignKey) {
        let work = self.dir.join("signing").join(digest.replace(':', "-"));
        attach(&self.host, path, digest, payload, key, &work);
    }

    /// The digest of the manifest `path:tag` names, as skopeo computes it.
    pub async fn digest(&self, path: &str, tag: &str) -> String {
        let out = skopeo(&[
            "inspect".into(),
            "--tls-verify=false".into(),
            "--format".into(),
            "{{.Digest}}".into(),
            format!("docker://{}:{tag}", self.repository(path)),
        ])
        .await;
        out.trim().to_string()
    }
}

async fn skopeo(args: &[String]) -> String {
    let out = Command::new("skopeo")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run skopeo (scripts/setup installs it)");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

/// Writes `bytes` as a blob of the layout; returns its descriptor's (digest, size).
fn put_blob(layout: &Path, bytes: &[u8]) -> (String, usize) {
    let hex = sha256_hex(bytes);
    std::fs::write(layout.join("blobs/sha256").join(&hex), bytes).unwrap();
    (format!("sha256:{hex}"), bytes.len())
}

/// An OCI image layout with one image: an uncompressed tar layer holding `agent-version`.
fn build_oci_layout(layout: &Path, tag: &str, content: &str) {
    let stage = layout.with_extension("stage");
    std::fs::create_dir_all(&stage).unwrap();
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    std::fs::write(stage.join("agent-version"), content).unwrap();
    let tar = std::process::Command::new("tar")
        .args(["--mtime=@0", "--owner=0", "--group=0", "-cf", "-", "-C"])
        .arg(&stage)
        .arg("agent-version")
        .output()
        .unwrap();
    assert!(tar.status.success());
    let (layer, layer_size) = put_blob(layout, &tar.stdout);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer]},
    });
    let (config_digest, config_size) = put_blob(layout, config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_size}],
    });
    let (manifest_digest, manifest_size) = put_blob(layout, manifest.to_string().as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
}
