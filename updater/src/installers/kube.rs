//! The Kubernetes backend: the agent is one container of one Deployment or StatefulSet, and
//! a version is an image tag of one repository.
//!
//! `prepare` resolves the tag to a digest and verifies its cosign signature (nothing is
//! pulled here: the cluster pulls by digest). `install` verifies again, patches the
//! container's image to `repository@sha256:…` and waits for the rollout (the controller has
//! seen it, every replica updated, as many pods on the new image Ready) within the
//! rollout timeout; a rollout that does not finish fails the install, and the attempt
//! reverts. The version, the image it replaced and that image's version are kept as
//! annotations on the workload, so `revert` patches back to exactly the previous image
//! and the installed version survives the updater's restarts.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::{
    InstallContext, InstallError, Installer, InstallerKind,
    cosign::{self, PublicKey},
    oci::Registry,
};
use crate::{
    kube::{KubeApi, Workload, WorkloadRef, rollout_progress},
    trace::{step_span, traced},
};

pub const VERSION_ANNOTATION: &str = "drover.dev/version";
pub const PREVIOUS_IMAGE_ANNOTATION: &str = "drover.dev/previous-image";
pub const PREVIOUS_VERSION_ANNOTATION: &str = "drover.dev/previous-version";
/// How often a rollout's progress is read while waiting for it.
const POLL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct KubeInstaller {
    pub api: KubeApi,
    pub workload: WorkloadRef,
    pub registry: Registry,
    pub key: PublicKey,
    /// How long a patched workload may take to be rolled out and ready.
    pub rollout_timeout: Duration,
}

impl KubeInstaller {
    async fn read(&self) -> Result<Workload, InstallError> {
        self.api
            .workload(&self.workload)
            .await
            .map_err(InstallError::Transient)
    }

    fn current_image(&self, workload: &Workload) -> Result<String, InstallError> {
        workload
            .image(&self.workload.container)
            .map(str::to_string)
            .ok_or_else(|| {
                InstallError::Failed(format!(
                    "{}/{} has no container '{}'",
                    self.workload.namespace, self.workload.name, self.workload.container
                ))
            })
    }

    /// Sets the container's image (if `image` differs from what was read) and the
    /// annotations; the patch tests the image it read, so a concurrent edit is not lost.
    async fn set_image(
        &self,
        workload: &Workload,
        image: &str,
        annotations: &[(&str, &str)],
    ) -> Result<(), InstallError> {
        let current = self.current_image(workload)?;
        let index = workload
            .spec
            .template
            .spec
            .containers
            .iter()
            .position(|c| c.name == self.workload.container)
            .unwrap_or_default();
        let path = format!("/spec/template/spec/containers/{index}/image");
        let mut operations = vec![
            json!({"op": "test", "path": format!("/spec/template/spec/containers/{index}/name"), "value": self.workload.container}),
            json!({"op": "test", "path": path, "value": current}),
            json!({"op": "replace", "path": path, "value": image}),
        ];
        if workload.metadata.annotations.is_empty() {
            operations.push(json!({"op": "add", "path": "/metadata/annotations", "value": {}}));
        }
        for (key, value) in annotations {
            let path = format!(
                "/metadata/annotations/{}",
                key.replace('~', "~0").replace('/', "~1")
            );
            operations.push(json!({"op": "add", "path": path, "value": value}));
        }
        self.api
            .patch(&self.workload, Value::Array(operations))
            .await
            .map(|_| ())
            .map_err(|err| InstallError::Failed(format!("cannot patch the workload: {err}")))
    }

    /// Waits until the rollout is complete and its pods ready, or fails at the timeout.
    async fn wait_rolled_out(&self, what: &str) -> Result<(), InstallError> {
        let deadline = Instant::now() + self.rollout_timeout;
        loop {
            let Err(last) = self.progress().await else {
                return Ok(());
            };
            if Instant::now() + POLL >= deadline {
                return Err(InstallError::Failed(format!(
                    "{what} did not roll out within {} s ({last})",
                    self.rollout_timeout.as_secs()
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Whether the workload's current spec is rolled out and ready (also the health probe).
    pub async fn progress(&self) -> Result<(), String> {
        let workload = self.api.workload(&self.workload).await?;
        let pods = self
            .api
            .pods(&self.workload.namespace, &workload.label_selector())
            .await?;
        rollout_progress(&workload, &pods, &self.workload.container)
    }
}

impl Installer for KubeInstaller {
    fn kind(&self) -> InstallerKind {
        InstallerKind::Kubernetes
    }

    async fn installed_version(&self) -> Result<Option<String>, InstallError> {
        let workload = self.read().await?;
        if let Some(version) = workload.metadata.annotations.get(VERSION_ANNOTATION) {
            return Ok(Some(version.clone()));
        }
        // Before the first install: `repository:TAG` says its version, a digest does not.
        let image = self.current_image(&workload)?;
        let prefix = format!("{}:", self.registry.repository);
        Ok(image.strip_prefix(&prefix).map(str::to_string))
    }

    async fn prepare(
        &self,
        version: &str,
        _signed: &[drover_release::ArtifactTarget],
    ) -> Result<(), InstallError> {
        let step = step_span!("verify", drover.installer = "kubernetes", drover.version = %version);
        traced(step, cosign::verify(&self.registry, &self.key, version))
            .await
            .map(|_| ())
    }

    async fn install(&self, ctx: &InstallContext<'_>, version: &str) -> Result<(), InstallError> {
        let step =
            step_span!("install", drover.installer = "kubernetes", drover.version = %version);
        let run = async {
            // Verified again: the digest patched is the one whose signature was just checked.
            let image = cosign::verify(&self.registry, &self.key, version).await?;
            let workload = self.read().await?;
            let current = self.current_image(&workload)?;
            if current != image.reference {
                let annotations = &workload.metadata.annotations;
                let previous_version = ctx
                    .current
                    .or(annotations.get(VERSION_ANNOTATION).map(String::as_str))
                    .unwrap_or_default();
                let set = [
                    (VERSION_ANNOTATION, version),
                    (PREVIOUS_IMAGE_ANNOTATION, current.as_str()),
                    (PREVIOUS_VERSION_ANNOTATION, previous_version),
                ];
                self.set_image(&workload, &image.reference, &set).await?;
                tracing::info!(image = %image.reference, "workload patched; waiting for the rollout");
            }
            self.wait_rolled_out(&format!("{version} ({})", image.digest))
                .await
        };
        traced(step, run).await
    }

    async fn revert(&self, _ctx: &InstallContext<'_>, previous: &str) -> Result<(), InstallError> {
        let workload = self.read().await?;
        let annotations = &workload.metadata.annotations;
        if annotations.get(VERSION_ANNOTATION).map(String::as_str) != Some(previous) {
            let recorded = (annotations
                .get(PREVIOUS_VERSION_ANNOTATION)
                .map(String::as_str)
                == Some(previous))
            .then(|| annotations.get(PREVIOUS_IMAGE_ANNOTATION).cloned())
            .flatten();
            let image = match recorded {
                Some(image) => image,
                // No record of the image (e.g. edited by hand since): the signed tag.
                None => {
                    cosign::verify(&self.registry, &self.key, previous)
                        .await?
                        .reference
                }
            };
            self.set_image(&workload, &image, &[(VERSION_ANNOTATION, previous)])
                .await?;
            tracing::warn!(%image, "workload patched back to the previous image");
        }
        self.wait_rolled_out(&format!("the revert to {previous}"))
            .await
    }
}
