//! `droverctl releases …`: signed release metadata (TUF) that updaters verify before any
//! install. The offline verbs (`offline.rs`) work on a release directory on the release
//! team's machine and never touch a profile or a coordinator; `main` runs them before
//! resolving one.

pub mod offline;
pub mod online;

use clap::Subcommand;

pub use offline::run as run_offline;
use offline::{
    AddArgs, AllowRollbackArgs, FloorArgs, InitArgs, KeygenArgs, RemoveArgs, RotateRootArgs,
    SignArgs,
};
use online::PublishArgs;

#[derive(Subcommand, Debug)]
#[command(
    after_help = "A release, offline, by a team with three keys and two to sign:\n  \
    droverctl releases keygen --out alice.pk8   (and bob.pk8, carol.pk8, one each)\n  \
    droverctl releases init --dir rel --root-key alice.pk8 bob.pk8 carol.pk8 \\\n      \
      --root-threshold 2 --release-key alice.pk8 bob.pk8 carol.pk8 --release-threshold 2\n  \
    droverctl releases add --dir rel --kind tarball --version 1.4.0 agent-1.4.0.tar.gz\n  \
    droverctl releases floor --dir rel 1.2.0\n  \
    droverctl releases sign --dir rel --key alice.pk8 bob.pk8"
)]
pub enum ReleasesCommand {
    // ---- Offline: a release directory on this machine; no profile, no coordinator. ----
    /// Make a new Ed25519 signing key (PKCS#8 DER, mode 0600); prints its key id.
    Keygen(KeygenArgs),
    /// Create a release directory: the first root (root keys and threshold; the release
    /// keys sign targets, snapshot and timestamp) and an empty release.json.
    Init(InitArgs),
    /// Record an artifact (its sha256 and size) in release.json as KIND/VERSION/FILE NAME;
    /// the next `sign` signs it.
    Add(AddArgs),
    /// Drop an artifact from release.json by its target name.
    Remove(RemoveArgs),
    /// Set the version floor (no install goes below it), or clear it with --clear.
    Floor(FloorArgs),
    /// Allow one exact downgrade below the floor: from --from to --to.
    #[command(name = "allow-rollback")]
    AllowRollback(AllowRollbackArgs),
    /// Sign release.json into targets, snapshot and timestamp, one version up; needs the
    /// release threshold of the keys given.
    Sign(SignArgs),
    /// Write the next root, cross-signed by the current root's threshold and by the new
    /// root keys; optionally new release keys (then `sign` again).
    #[command(name = "rotate-root")]
    RotateRoot(RotateRootArgs),
    // ---- Online: through the coordinator (profile and token as every other noun). ----
    /// Verify a signed release directory as updaters would, then send its bundle to the
    /// coordinator (admin role); only a newer version is accepted.
    Publish(PublishArgs),
    /// What release metadata the coordinator serves.
    Show,
}

impl ReleasesCommand {
    /// Whether the verb works on local files only: `main` runs it without resolving a
    /// profile or connecting to a coordinator.
    pub fn is_offline(&self) -> bool {
        match self {
            Self::Keygen(_)
            | Self::Init(_)
            | Self::Add(_)
            | Self::Remove(_)
            | Self::Floor(_)
            | Self::AllowRollback(_)
            | Self::Sign(_)
            | Self::RotateRoot(_) => true,
            Self::Publish(_) | Self::Show => false,
        }
    }
}

/// The online verbs, through `client`.
pub async fn run_online(
    client: &mut super::Client,
    command: ReleasesCommand,
) -> Result<crate::render::Reply, String> {
    match command {
        ReleasesCommand::Publish(args) => online::publish(client, args).await,
        ReleasesCommand::Show => online::show(client).await,
        offline => run_offline(offline).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::{
        cli::{Cli, Command},
        render::Format,
    };

    /// Parses a command line as `main` does (words split at spaces) and runs it offline.
    async fn droverctl(line: &str) -> Result<serde_json::Value, String> {
        let args = ["droverctl", "-o", "json"]
            .into_iter()
            .chain(line.split_whitespace());
        let cli = Cli::try_parse_from(args).map_err(|err| err.to_string())?;
        let Command::Releases(command) = cli.command else {
            panic!("not a releases verb: {line}");
        };
        assert!(command.is_offline(), "{line}");
        let json = super::run_offline(command).await?;
        Ok(serde_json::from_str(&json.render(Format::Json, false)?).unwrap())
    }

    #[tokio::test]
    async fn a_release_is_made_and_its_root_rotated_without_a_coordinator() {
        let temp = tempfile::TempDir::new().unwrap();
        let path = |name: &str| temp.path().join(name).display().to_string();
        let [a, b, c, d, dir] = ["a.pk8", "b.pk8", "c.pk8", "d.pk8", "rel"].map(path);
        for key in [&a, &b, &c, &d] {
            droverctl(&format!("releases keygen --out {key}"))
                .await
                .unwrap();
        }
        let file = path("agent-1.4.0.tar.gz");
        std::fs::write(&file, b"agent").unwrap();
        droverctl(&format!(
            "releases init --dir {dir} --root-key {a} {b} {c} --root-threshold 2 \
             --release-key {a} {b} {c} --release-threshold 2"
        ))
        .await
        .unwrap();
        let added = droverctl(&format!(
            "releases add --dir {dir} --kind tarball --version v1.4.0 {file}"
        ))
        .await
        .unwrap();
        assert_eq!(added["target"], "tarball/1.4.0/agent-1.4.0.tar.gz");
        droverctl(&format!("releases floor --dir {dir} 1.2.0"))
            .await
            .unwrap();

        let short = droverctl(&format!("releases sign --dir {dir} --key {a}")).await;
        assert!(short.unwrap_err().contains("targets needs 2 signatures"));
        let signed = droverctl(&format!(
            "releases sign --dir {dir} --key {a} {b} --timestamp-expires 1d"
        ))
        .await
        .unwrap();
        assert_eq!(signed["timestamp_version"], 1);

        let rotated = droverctl(&format!(
            "releases rotate-root --dir {dir} --old-key {a} {b} --new-root-key {c} {d} \
             --new-root-threshold 2 --release-key {d} --release-threshold 1"
        ))
        .await
        .unwrap();
        assert_eq!(rotated["root_version"], 2);
        assert_eq!(rotated["release_keys_changed"], true);
        let signed = droverctl(&format!("releases sign --dir {dir} --key {d}"))
            .await
            .unwrap();
        assert_eq!(signed["timestamp_version"], 2);
        let bundle = drover_release::Bundle::from_dir(temp.path().join("rel").as_path()).unwrap();
        assert!(bundle.files.contains_key("2.root.json"));
    }
}
