//! apt: installs exactly `PACKAGE=VERSION` from the host's apt sources, whose signatures apt
//! checks (nothing here can weaken that), and keeps the package on hold (`apt-mark hold`) so
//! unattended upgrades never move it; the hold is lifted only for the install itself.
//! With a root, apt's lists, cache and sources and dpkg's database and files live under it
//! (`-o Dir=ROOT/`, `dpkg --root`), so an image or a test never touches the host's packages.

use drover_release::{ArtifactTarget, Refusal};
use drover_rules::ReasonCode;

use super::{
    InstallContext, InstallError, Installer, InstallerKind,
    package::{self, PackageConfig, args, checked_version, expect_version},
};
use crate::trace::{step_span, traced};

const NONINTERACTIVE: &[(&str, &str)] = &[("DEBIAN_FRONTEND", "noninteractive")];

#[derive(Debug, Clone)]
pub struct AptInstaller {
    pub config: PackageConfig,
}

impl AptInstaller {
    /// Options every apt command gets: the root's directories, then the operator's.
    fn options(&self) -> Vec<String> {
        let mut options = Vec::new();
        if let Some(root) = &self.config.root {
            let root = root.display();
            for option in [
                format!("Dir={root}/"),
                format!("Dir::State::status={root}/var/lib/dpkg/status"),
                format!("DPkg::Options::=--root={root}"),
                format!("DPkg::Options::=--admindir={root}/var/lib/dpkg"),
                format!("DPkg::Options::=--log={root}/var/log/dpkg.log"),
            ] {
                options.extend(["-o".to_string(), option]);
            }
        }
        // Keep the operator's changed config files rather than asking.
        for option in [
            "DPkg::Options::=--force-confdef",
            "DPkg::Options::=--force-confold",
        ] {
            options.extend(["-o".to_string(), option.to_string()]);
        }
        options.extend(self.config.options.iter().cloned());
        options
    }

    async fn apt<const N: usize>(
        &self,
        program: &str,
        tail: [&str; N],
    ) -> Result<(), InstallError> {
        let name = format!("{program} {}", tail[0]);
        package::step(
            &name,
            program,
            &args(&self.options(), tail),
            NONINTERACTIVE,
            self.config.timeout,
        )
        .await
        .map(drop)
    }

    async fn install_held(&self, version: &str) -> Result<(), InstallError> {
        let version = checked_version(version)?;
        let spec = format!("{}={version}", self.config.package);
        let package = self.config.package.as_str();
        self.apt("apt-mark", ["unhold", package]).await?;
        let installed = self
            .apt(
                "apt-get",
                [
                    "install",
                    "-y",
                    "--allow-downgrades",
                    "--no-install-recommends",
                    &spec,
                ],
            )
            .await;
        // Held again whatever happened: an update never leaves the package free to drift.
        let held = self.apt("apt-mark", ["hold", package]).await;
        installed?;
        held?;
        expect_version("apt", self.installed_version().await?, version)
    }
}

impl AptInstaller {
    /// The package apt would fetch must be the one the release metadata signed (#28): apt
    /// then checks the download against this same SHA256 from its signed index.
    async fn matches_release(
        &self,
        spec: &str,
        signed: &[ArtifactTarget],
    ) -> Result<(), InstallError> {
        let output = package::run(
            "apt-cache",
            &args(&self.options(), ["show", "--no-all-versions", spec]),
            NONINTERACTIVE,
            self.config.timeout,
        )
        .await?;
        if !output.success {
            return Err(InstallError::NotFound(format!(
                "apt knows no {spec} (apt-cache show failed); it retries later"
            )));
        }
        let field = |name: &str| {
            output.text.lines().find_map(|line| {
                line.strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix(':'))
                    .map(|value| value.trim().to_string())
            })
        };
        let (sha256, size) = (field("SHA256"), field("Size"));
        let listed = signed.iter().any(|target| {
            sha256
                .as_deref()
                .is_some_and(|digest| digest.eq_ignore_ascii_case(&target.sha256))
                && size.as_deref() == Some(target.length.to_string().as_str())
        });
        if listed {
            return Ok(());
        }
        let names: Vec<String> = signed
            .iter()
            .map(|t| format!("{t} (sha256 {}, {} bytes)", t.sha256, t.length))
            .collect();
        Err(InstallError::release(Refusal::new(
            ReasonCode::ReleaseArtifactMismatch,
            format!(
                "apt's repository offers {spec} with sha256 {} and size {}, but the signed \
                 release metadata lists {}; nothing was downloaded",
                sha256.as_deref().unwrap_or("(none)"),
                size.as_deref().unwrap_or("(none)"),
                names.join(", ")
            ),
        )))
    }
}

impl Installer for AptInstaller {
    fn kind(&self) -> InstallerKind {
        InstallerKind::Apt
    }

    async fn installed_version(&self) -> Result<Option<String>, InstallError> {
        let mut query = Vec::new();
        if let Some(root) = &self.config.root {
            query.push(format!("--admindir={}/var/lib/dpkg", root.display()));
        }
        query.extend(
            [
                "-W",
                "-f",
                "${db:Status-Status}\t${Version}",
                self.config.package.as_str(),
            ]
            .map(String::from),
        );
        let output = package::run("dpkg-query", &query, &[], self.config.timeout).await?;
        if !output.success {
            // dpkg-query exits 1 for a package it has never seen.
            return Ok(None);
        }
        Ok(match output.text.trim().split_once('\t') {
            Some(("installed", version)) => Some(version.trim().to_string()),
            _ => None,
        })
    }

    /// Refreshes the signed indexes and downloads (and so checks) the package; the agent is
    /// untouched. A held package may be downloaded: nothing is installed.
    async fn prepare(&self, version: &str, signed: &[ArtifactTarget]) -> Result<(), InstallError> {
        let version = checked_version(version)?;
        let spec = format!("{}={version}", self.config.package);
        let step = step_span!("prepare", drover.installer = "apt", drover.version = %version);
        let run = async {
            package::strict_step(
                "apt-get update",
                "apt-get",
                &args(&self.options(), ["update"]),
                NONINTERACTIVE,
                self.config.timeout,
            )
            .await?;
            if !signed.is_empty() {
                self.matches_release(&spec, signed).await?;
            }
            self.apt(
                "apt-get",
                [
                    "install",
                    "-y",
                    "--download-only",
                    "--allow-downgrades",
                    "--allow-change-held-packages",
                    "--no-install-recommends",
                    &spec,
                ],
            )
            .await
        };
        traced(step, run).await
    }

    async fn install(&self, _ctx: &InstallContext<'_>, version: &str) -> Result<(), InstallError> {
        let step = step_span!("install", drover.installer = "apt", drover.version = %version);
        traced(step, self.install_held(version)).await
    }

    async fn revert(&self, ctx: &InstallContext<'_>, previous: &str) -> Result<(), InstallError> {
        self.install(ctx, previous).await
    }
}
