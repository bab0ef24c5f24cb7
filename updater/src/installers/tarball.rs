//! Signed tarball installs. Layout under `root`:
//!
//! ```text
//! versions/<version>/   one directory per installed version (the previous one is kept)
//! current -> versions/<version>   switched atomically (new symlink, then rename over)
//! ```
//!
//! Nothing touches the install until everything is proven: the release manifest's minisign
//! signature against the pinned public key, the manifest naming the requested version, and the
//! artifact's sha256. Extraction goes to a staging directory renamed into place, so a crash at
//! any point leaves either no `versions/<v>` or a complete one.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use drover_release::{ArtifactTarget, Refusal};
use drover_rules::ReasonCode;
use serde::Deserialize;

use super::{
    InstallContext, InstallError, Installer, InstallerKind,
    download::{DownloadLimits, download_to, fetch},
    error::is_disk_full,
};
use crate::trace::{step_span, traced};

#[derive(Debug, Clone)]
pub struct TarballInstaller {
    pub root: PathBuf,
    /// Releases live at `{release_url}/{version}/manifest.json` (+ `.minisig`).
    pub release_url: String,
    /// The minisign public key file's contents (as written by `minisign -G`).
    pub public_key: String,
    /// Run after every switch, to (re)start the agent on the active version.
    pub restart_command: Option<String>,
    pub timeout: Duration,
    pub download: DownloadLimits,
}

/// What a release publishes next to its artifact, signed with minisign.
#[derive(Debug, Deserialize)]
struct Manifest {
    version: String,
    artifact: String,
    sha256: String,
    /// The artifact's size in bytes; a server sending more is cut off at once. Without it
    /// the updater's own limit applies.
    #[serde(default)]
    size: Option<u64>,
}

fn refused(msg: impl Into<String>) -> InstallError {
    InstallError::Refused(msg.into())
}

fn transient(msg: impl Into<String>) -> InstallError {
    InstallError::Transient(msg.into())
}

fn failed(msg: impl Into<String>) -> InstallError {
    InstallError::Failed(msg.into())
}

impl Installer for TarballInstaller {
    fn kind(&self) -> InstallerKind {
        InstallerKind::Tarball
    }

    async fn installed_version(&self) -> Result<Option<String>, InstallError> {
        self.active_version().map_err(|err| {
            transient(format!(
                "cannot read {}: {err}",
                self.current_link().display()
            ))
        })
    }

    async fn prepare(&self, version: &str, signed: &[ArtifactTarget]) -> Result<(), InstallError> {
        self.fetch_and_unpack(version, signed).await
    }

    async fn install(&self, _ctx: &InstallContext<'_>, version: &str) -> Result<(), InstallError> {
        let step = step_span!("install", drover.installer = "tarball", drover.step = "switch", drover.version = %version);
        traced(step, self.switch_to(version)).await?;
        let step = step_span!("restart", drover.version = %version);
        traced(step, self.restart(version)).await
    }

    /// The previous version's directory is kept, so going back fetches nothing.
    async fn revert(&self, ctx: &InstallContext<'_>, previous: &str) -> Result<(), InstallError> {
        if !self.is_installed(previous) {
            return Err(failed(format!(
                "the previous version {previous} is not installed here"
            )));
        }
        self.install(ctx, previous).await
    }
}

impl TarballInstaller {
    fn versions(&self) -> PathBuf {
        self.root.join("versions")
    }

    fn current_link(&self) -> PathBuf {
        self.root.join("current")
    }

    /// The version `current` points at, if any.
    fn active_version(&self) -> std::io::Result<Option<String>> {
        match std::fs::read_link(self.current_link()) {
            Ok(target) => Ok(target.file_name().map(|n| n.to_string_lossy().into_owned())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Where an attempt's artifact is downloaded to, before its digest is checked.
    fn download_path(&self, version: &str, token: &str) -> PathBuf {
        self.versions().join(format!(".download-{version}-{token}"))
    }

    fn is_installed(&self, version: &str) -> bool {
        self.versions().join(version).is_dir()
    }

    /// Fetches, verifies and unpacks `version` into `versions/<version>`; touches nothing else.
    /// Each step is a span: `download` (manifest, then artifact), `verify` (signature, then
    /// digest), `install` (extraction).
    async fn fetch_and_unpack(
        &self,
        version: &str,
        signed: &[ArtifactTarget],
    ) -> Result<(), InstallError> {
        tokio::fs::create_dir_all(self.versions())
            .await
            .map_err(|err| {
                transient(format!(
                    "cannot create {}: {err}",
                    self.versions().display()
                ))
            })?;
        self.remove_leftovers().await;
        let client = crate::http::client().map_err(transient)?;
        let deadline = tokio::time::Instant::now() + self.download.timeout;
        let base = format!("{}/{version}", self.release_url.trim_end_matches('/'));
        let manifest_url = format!("{base}/manifest.json");
        let signature_url = format!("{manifest_url}.minisig");
        let documents = async {
            let manifest = fetch(&client, &manifest_url, deadline).await?;
            let signature = fetch(&client, &signature_url, deadline).await.map_err(|err| match err {
                InstallError::NotFound(_) => refused(format!(
                    "the release manifest {manifest_url} is not signed ({signature_url} does not exist); \
                     sign it with `minisign -S -m manifest.json`"
                )),
                other => other,
            })?;
            Ok::<_, InstallError>((manifest, signature))
        };
        let step = step_span!("download", url.full = %manifest_url);
        let (manifest_bytes, signature) = traced(step, documents).await?;
        let step = step_span!("verify", url.full = %manifest_url);
        let manifest = traced(step, async {
            let mut manifest =
                self.verify_manifest(&manifest_bytes, &signature, &manifest_url, version)?;
            if signed.is_empty() {
                return Ok::<_, InstallError>(manifest);
            }
            let listed = agrees_with_release(&manifest, signed)?;
            // The signed length bounds the download exactly (an endless body is cut there).
            manifest.size = Some(listed.length);
            Ok(manifest)
        })
        .await?;
        let token = uuid::Uuid::new_v4().simple().to_string();
        let download = self.download_path(version, &token);
        let result = self
            .download_and_unpack(&client, &base, &manifest, version, &token, deadline)
            .await;
        let _ = tokio::fs::remove_file(&download).await;
        result
    }

    /// The signed manifest, checked: signature, the version asked for, a safe artifact name.
    fn verify_manifest(
        &self,
        manifest_bytes: &[u8],
        signature: &[u8],
        manifest_url: &str,
        version: &str,
    ) -> Result<Manifest, InstallError> {
        self.verify_signature(manifest_bytes, signature, manifest_url)?;
        let manifest: Manifest = serde_json::from_slice(manifest_bytes).map_err(|err| {
            refused(format!(
                "the signed manifest {manifest_url} is not valid JSON: {err}"
            ))
        })?;
        if manifest.version.trim_start_matches('v') != version {
            return Err(refused(format!(
                "the signed manifest at {manifest_url} is for version {}, not {version}; refusing a \
                 replayed or misplaced release",
                manifest.version
            )));
        }
        if manifest.artifact.is_empty()
            || manifest.artifact.contains('/')
            || manifest.artifact.starts_with('.')
        {
            return Err(refused(format!(
                "the manifest names an unsafe artifact path '{}'",
                manifest.artifact
            )));
        }
        Ok(manifest)
    }

    fn verify_signature(
        &self,
        manifest: &[u8],
        signature: &[u8],
        url: &str,
    ) -> Result<(), InstallError> {
        let key = minisign_verify::PublicKey::decode(&self.public_key).map_err(|err| {
            refused(format!(
                "the pinned release public key is unreadable ({err}); check --release-public-key"
            ))
        })?;
        let signature_text = String::from_utf8_lossy(signature);
        let signature = minisign_verify::Signature::decode(&signature_text)
            .map_err(|err| refused(format!("the signature of {url} is malformed ({err})")))?;
        key.verify(manifest, &signature, false).map_err(|err| {
            refused(format!(
                "the signature of {url} does not verify with the pinned public key ({err}); \
                 the release was not signed by your release key or was modified"
            ))
        })
    }

    async fn download_and_unpack(
        &self,
        client: &reqwest::Client,
        base: &str,
        manifest: &Manifest,
        version: &str,
        token: &str,
        deadline: tokio::time::Instant,
    ) -> Result<(), InstallError> {
        let url = format!("{base}/{}", manifest.artifact);
        let download = &self.download_path(version, token);
        let limit = manifest.size.unwrap_or(self.download.max_bytes);
        let step = step_span!("download", url.full = %url);
        let digest = traced(step, download_to(client, &url, download, limit, deadline)).await?;
        let step = step_span!("verify", url.full = %url);
        traced(step, async {
            if digest.eq_ignore_ascii_case(manifest.sha256.trim()) {
                return Ok(());
            }
            Err(refused(format!(
                "the artifact {url} has sha256 {digest}, but the signed manifest says {}; it was \
                 tampered with or corrupted, so nothing was installed",
                manifest.sha256.trim()
            )))
        })
        .await?;
        let step = step_span!("install", drover.step = "extract", drover.version = %version);
        traced(step, self.unpack_into_place(download, version, token, &url)).await
    }

    /// Unpacks the verified archive into a staging dir, renamed to `versions/<version>`.
    async fn unpack_into_place(
        &self,
        download: &Path,
        version: &str,
        token: &str,
        url: &str,
    ) -> Result<(), InstallError> {
        let staging = self.versions().join(format!(".staging-{version}-{token}"));
        let final_dir = self.versions().join(version);
        let (archive, staging_dir) = (download.to_path_buf(), staging.clone());
        let unpacked = tokio::task::spawn_blocking(move || unpack(&archive, &staging_dir))
            .await
            .map_err(|err| transient(err.to_string()))?;
        if let Err(err) = unpacked {
            // Nothing half-unpacked stays behind, least of all on a full disk.
            let _ = tokio::fs::remove_dir_all(&staging).await;
            return Err(if is_disk_full(&err) {
                InstallError::io(&format!("unpacking {url}"), &err)
            } else {
                refused(format!(
                    "the artifact {url} is not a readable .tar.gz ({err})"
                ))
            });
        }
        if final_dir.exists() {
            // A leftover from an earlier attempt; never the active version (the target differs).
            tokio::fs::remove_dir_all(&final_dir)
                .await
                .map_err(|err| transient(err.to_string()))?;
        }
        tokio::fs::rename(&staging, &final_dir)
            .await
            .map_err(|err| transient(err.to_string()))?;
        sync_dir(&self.versions()).await;
        Ok(())
    }

    /// Points `current` at `versions/<version>` in one atomic rename.
    async fn switch_to(&self, version: &str) -> Result<(), InstallError> {
        let target = Path::new("versions").join(version);
        if !self.root.join(&target).is_dir() {
            return Err(failed(format!(
                "version {version} is not installed under {}",
                self.versions().display()
            )));
        }
        let tmp = self.root.join(".current.tmp");
        let _ = tokio::fs::remove_file(&tmp).await;
        tokio::fs::symlink(&target, &tmp)
            .await
            .map_err(|err| failed(format!("cannot create a symlink: {err}")))?;
        tokio::fs::rename(&tmp, self.current_link())
            .await
            .map_err(|err| failed(format!("cannot switch current: {err}")))?;
        sync_dir(&self.root).await;
        Ok(())
    }

    async fn restart(&self, version: &str) -> Result<(), InstallError> {
        let Some(command) = &self.restart_command else {
            return Ok(());
        };
        crate::shell::run_shell(
            command,
            self.timeout,
            &[
                ("DROVER_VERSION", version),
                ("DROVER_AGENT_DIR", &self.current_link().to_string_lossy()),
            ],
        )
        .await
        .map_err(|err| failed(format!("restarting the agent failed: {err}")))
    }

    /// Removes half-finished downloads and extractions of earlier runs.
    async fn remove_leftovers(&self) {
        let Ok(mut entries) = tokio::fs::read_dir(self.versions()).await else {
            return;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".staging-") {
                let _ = tokio::fs::remove_dir_all(entry.path()).await;
            } else if name.starts_with(".download-") {
                let _ = tokio::fs::remove_file(entry.path()).await;
            }
        }
    }
}

/// The minisign manifest must name an artifact the release metadata signed (#28): the
/// same file, digest and size, or nothing is downloaded.
fn agrees_with_release<'a>(
    manifest: &Manifest,
    signed: &'a [ArtifactTarget],
) -> Result<&'a ArtifactTarget, InstallError> {
    let digest = manifest.sha256.trim();
    let listed = signed.iter().find(|target| {
        target.file == manifest.artifact
            && digest.eq_ignore_ascii_case(&target.sha256)
            && manifest.size.is_none_or(|size| size == target.length)
    });
    listed.ok_or_else(|| {
        let names: Vec<String> = signed
            .iter()
            .map(|t| format!("{t} (sha256 {}, {} bytes)", t.sha256, t.length))
            .collect();
        InstallError::release(Refusal::new(
            ReasonCode::ReleaseArtifactMismatch,
            format!(
                "the release server's manifest names {} (sha256 {digest}), but the signed \
                 release metadata lists {}; nothing was downloaded",
                manifest.artifact,
                names.join(", ")
            ),
        ))
    })
}

fn unpack(archive: &Path, into: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(into)?;
    let file = std::fs::File::open(archive)?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    tar.set_preserve_permissions(true);
    // `unpack` refuses entries that would land outside `into` (absolute paths, `..`).
    tar.unpack(into)?;
    std::fs::File::open(into)?.sync_all()
}

async fn sync_dir(dir: &Path) {
    if let Ok(file) = tokio::fs::File::open(dir).await {
        let _ = file.sync_all().await;
    }
}
