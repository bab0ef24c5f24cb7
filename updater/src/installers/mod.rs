//! How a version gets onto the agent: one `Installer` trait, one module per backend.
//!
//! An attempt (`attempt.rs`) drives an installer through the journaled phases: `prepare`
//! (fetch and verify; the agent is untouched, so a failure here needs no revert), `install`
//! (make exactly that version run), the health gate, and `revert` (put the previous version
//! back). `install` and `revert` are idempotent: after a crash the attempt repeats the
//! interrupted phase.
//!
//! Dependency direction: backends import this module (the trait, `InstallContext`,
//! `InstallError`) and shared helpers (`download`, `crate::shell`, `crate::trace`); only
//! `backend.rs` names every backend, and nothing here imports the attempt or the manager.
//! The package managers (apt, dnf, zypper) share `package` (running and reading their
//! commands); Kubernetes is `kube.rs`, verifying images with `cosign.rs` over `oci.rs`. A
//! new backend is a new module plus a `Backend` variant.

pub mod apt;
pub mod backend;
pub mod command;
pub mod cosign;
pub mod dnf;
pub mod download;
pub mod error;
pub mod kube;
pub mod oci;
pub mod package;
pub mod simulated;
pub mod tarball;
pub mod zypper;

use std::future::Future;

pub use error::InstallError;

/// Which backend installs; told to the coordinator in the hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallerKind {
    Command,
    Tarball,
    Simulated,
    Kubernetes,
    Apt,
    Dnf,
    Zypper,
}

/// Who installs and from what: what a backend may pass on to the agent's tooling.
#[derive(Debug, Clone, Copy)]
pub struct InstallContext<'a> {
    pub agent_id: &'a str,
    /// The version running before this step (for a revert: the one being left).
    pub current: Option<&'a str>,
}

/// One install backend. The futures are `Send` because the manager runs in a spawned task.
pub trait Installer {
    fn kind(&self) -> InstallerKind;

    /// The version installed and active, when the backend can tell (its files are the
    /// truth, whatever a crash left in the state); `None` when it cannot.
    fn installed_version(
        &self,
    ) -> impl Future<Output = Result<Option<String>, InstallError>> + Send;

    /// Everything that can be fetched and checked before the agent is touched. `signed`:
    /// the artifacts the signed release metadata lists for `version` and this installer
    /// (#28; several for several architectures; empty when no release root is pinned); a
    /// backend that can see its artifact's digest and size refuses one that is none of them.
    fn prepare(
        &self,
        version: &str,
        signed: &[drover_release::ArtifactTarget],
    ) -> impl Future<Output = Result<(), InstallError>> + Send;

    /// Makes exactly `version` the running version (switch, restart), in `install` (and
    /// `restart`) spans. Idempotent.
    fn install(
        &self,
        ctx: &InstallContext<'_>,
        version: &str,
    ) -> impl Future<Output = Result<(), InstallError>> + Send;

    /// Makes `previous` the running version again, without fetching it. Idempotent.
    fn revert(
        &self,
        ctx: &InstallContext<'_>,
        previous: &str,
    ) -> impl Future<Output = Result<(), InstallError>> + Send;

    /// A backend that stands in for its agent says its health itself (`Some(healthy)`);
    /// a real agent is probed instead (`None`).
    fn own_health(&self, _version: &str) -> Option<bool> {
        None
    }
}
