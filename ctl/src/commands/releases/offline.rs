//! The offline verbs of `droverctl releases`: keys, release.json, signing and root rotation
//! in a release directory on this machine (`drover_release::sign`). No profile, no network.

use std::{path::PathBuf, time::Duration};

use clap::{ArgGroup, Args, builder::PossibleValuesParser};
use drover_release::{
    Policy,
    sign::{self as release, ARTIFACT_KINDS},
};
use semver::Version;
use serde_json::json;

use super::ReleasesCommand;
use crate::render::{Reply, Text};

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Where to write the private key; an existing file is never overwritten. Keep it
    /// offline: whoever holds a threshold of keys can sign releases.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// The release directory to create (metadata/ and release.json go in it).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// A root key file (the first root is signed by each); list several or repeat.
    #[arg(long = "root-key", value_name = "FILE", required = true, num_args = 1..)]
    root_keys: Vec<PathBuf>,
    /// How many root keys must sign the next root.
    #[arg(long, value_name = "N")]
    root_threshold: u64,
    /// A release key file (signs targets, snapshot and timestamp); list several or repeat.
    #[arg(long = "release-key", value_name = "FILE", required = true, num_args = 1..)]
    release_keys: Vec<PathBuf>,
    /// How many release keys must sign each release.
    #[arg(long, value_name = "N")]
    release_threshold: u64,
    /// How long the root stays valid: 365d, 52w, 1y.
    #[arg(long, value_name = "DURATION", default_value = "365d", value_parser = duration)]
    expires: Duration,
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// The release directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// The kind of artifact.
    #[arg(long, value_parser = PossibleValuesParser::new(ARTIFACT_KINDS))]
    kind: String,
    /// The version it installs, e.g. 1.4.0.
    #[arg(long, value_parser = version)]
    version: Version,
    /// The artifact; its file name becomes the last part of the target name.
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

#[derive(Args, Debug)]
pub struct RemoveArgs {
    /// The release directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// The target name, e.g. tarball/1.4.0/agent-1.4.0.tar.gz.
    name: String,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("floor").required(true).args(["version", "clear"])))]
pub struct FloorArgs {
    /// The release directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// The lowest version any agent may install from the next `sign` on.
    #[arg(value_parser = version)]
    version: Option<Version>,
    /// Remove the floor.
    #[arg(long)]
    clear: bool,
}

#[derive(Args, Debug)]
pub struct AllowRollbackArgs {
    /// The release directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// The version an agent runs.
    #[arg(long, value_parser = version)]
    from: Version,
    /// The older version it may go back to, even below the floor.
    #[arg(long, value_parser = version)]
    to: Version,
}

#[derive(Args, Debug)]
pub struct SignArgs {
    /// The release directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// A release key file; at least the release threshold of them; list several or repeat.
    #[arg(long = "key", value_name = "FILE", required = true, num_args = 1..)]
    keys: Vec<PathBuf>,
    /// How long the targets (and the snapshot) stay valid.
    #[arg(long, value_name = "DURATION", default_value = "90d", value_parser = duration)]
    targets_expires: Duration,
    /// How long the timestamp stays valid: sign again before then, or updaters stop
    /// installing (they take an old timestamp for a freeze attack).
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = duration)]
    timestamp_expires: Duration,
}

#[derive(Args, Debug)]
pub struct RotateRootArgs {
    /// The release directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// A key of the current root; at least its threshold of them must sign the new root.
    #[arg(long = "old-key", value_name = "FILE", required = true, num_args = 1..)]
    old_keys: Vec<PathBuf>,
    /// A key of the new root (each signs it); list several or repeat.
    #[arg(long = "new-root-key", value_name = "FILE", required = true, num_args = 1..)]
    new_root_keys: Vec<PathBuf>,
    /// How many of the new root keys must sign the root after this one.
    #[arg(long, value_name = "N")]
    new_root_threshold: u64,
    /// New release keys (otherwise the current ones stay); then run `sign` with them.
    #[arg(long = "release-key", value_name = "FILE", num_args = 1.., requires = "release_threshold")]
    release_keys: Vec<PathBuf>,
    /// How many of the new release keys must sign each release.
    #[arg(long, value_name = "N", requires = "release_keys")]
    release_threshold: Option<u64>,
    /// How long the new root stays valid.
    #[arg(long, value_name = "DURATION", default_value = "365d", value_parser = duration)]
    expires: Duration,
}

/// "90d", "30s", "1y 2w".
fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|err| format!("{err}; use e.g. 90d, 12h or 30s"))
}

/// A semantic version; a leading `v` is allowed.
fn version(text: &str) -> Result<Version, String> {
    Version::parse(text.strip_prefix('v').unwrap_or(text))
        .map_err(|err| format!("'{text}' is not a semantic version such as 1.4.0 ({err})"))
}

pub async fn run(command: ReleasesCommand) -> Result<Reply, String> {
    let reply = match command {
        ReleasesCommand::Keygen(args) => {
            let id = release::generate_key(&args.out).map_err(|e| e.to_string())?;
            let text = format!(
                "wrote a new Ed25519 key to {} (key id {id}); keep it offline and backed up",
                args.out.display()
            );
            Reply::new(json!({ "key_file": args.out, "key_id": id }), text)
        }
        ReleasesCommand::Init(args) => init(args).await?,
        ReleasesCommand::Add(args) => {
            let name = release::add_artifact(&args.dir, &args.kind, &args.version, &args.file)
                .map_err(|e| e.to_string())?;
            let source = release::read_source(&args.dir).map_err(|e| e.to_string())?;
            let target = source.targets.get(&name);
            let text = format!(
                "recorded {name} ({} bytes, sha256 {}); `droverctl releases sign` signs it",
                target.map_or(0, |t| t.length),
                target.map_or("-", |t| t.sha256.as_str())
            );
            Reply::new(json!({ "target": name, "digest": target }), text)
        }
        ReleasesCommand::Remove(args) => {
            release::remove_artifact(&args.dir, &args.name).map_err(|e| e.to_string())?;
            let text = format!(
                "removed {} from release.json; the next `sign` leaves it out",
                args.name
            );
            Reply::new(json!({ "removed": args.name }), text)
        }
        ReleasesCommand::Floor(args) => {
            let policy = release::set_floor(&args.dir, args.version).map_err(|e| e.to_string())?;
            policy_reply(policy)
        }
        ReleasesCommand::AllowRollback(args) => {
            let policy = release::allow_rollback(&args.dir, args.from, args.to)
                .map_err(|e| e.to_string())?;
            policy_reply(policy)
        }
        ReleasesCommand::Sign(args) => {
            let s = release::sign(
                &args.dir,
                &args.keys,
                args.targets_expires,
                args.timestamp_expires,
            )
            .await
            .map_err(|e| e.to_string())?;
            let text = Text::new()
                .line(format!(
                    "signed {}: targets v{}, snapshot v{}, timestamp v{}; {} artifact(s) and \
                     policy.json, by {} key(s)",
                    args.dir.display(),
                    s.targets_version,
                    s.snapshot_version,
                    s.timestamp_version,
                    s.artifacts,
                    s.signed_by.len()
                ))
                .line(format!(
                    "the timestamp expires {}, targets and snapshot {}: sign again before then",
                    s.timestamp_expires, s.targets_expires
                ));
            Reply::new(&s, text)
        }
        ReleasesCommand::RotateRoot(args) => rotate_root(args).await?,
        ReleasesCommand::Publish(_) | ReleasesCommand::Show => {
            return Err("this verb needs a coordinator; main runs it through one".into());
        }
    };
    Ok(reply)
}

async fn init(args: InitArgs) -> Result<Reply, String> {
    let s = release::init(
        &args.dir,
        &args.root_keys,
        args.root_threshold,
        &args.release_keys,
        args.release_threshold,
        args.expires,
    )
    .await
    .map_err(|e| e.to_string())?;
    let text = Text::new()
        .line(format!(
            "created {}: root v1 ({} of {} root keys sign the next root; expires {}); \
             {} of {} release keys sign each release",
            args.dir.display(),
            s.root_threshold,
            s.root_keys.len(),
            s.root_expires,
            s.release_threshold,
            s.release_keys.len()
        ))
        .line("next: `droverctl releases add …`, then `droverctl releases sign …`");
    Ok(Reply::new(&s, text))
}

async fn rotate_root(args: RotateRootArgs) -> Result<Reply, String> {
    let release_keys = args
        .release_threshold
        .map(|threshold| (args.release_keys.as_slice(), threshold));
    let s = release::rotate_root(
        &args.dir,
        &args.old_keys,
        &args.new_root_keys,
        args.new_root_threshold,
        release_keys,
        args.expires,
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut text = Text::new().line(format!(
        "wrote root v{} ({} of {} root keys sign the next root; expires {}), cross-signed by \
         the previous root's keys",
        s.root_version,
        s.root_threshold,
        s.root_keys.len(),
        s.root_expires
    ));
    if let Some(next) = &s.next_step {
        text = text.alert(next);
    }
    Ok(Reply::new(&s, text))
}

fn policy_reply(policy: Policy) -> Reply {
    let floor = policy
        .floor
        .as_ref()
        .map_or("no floor".to_string(), |f| format!("floor {f}"));
    let rollbacks: Vec<String> = policy
        .rollbacks
        .iter()
        .map(|r| format!("{} -> {}", r.from, r.to))
        .collect();
    let allowed = if rollbacks.is_empty() {
        "no rollbacks below it".to_string()
    } else {
        format!("rollbacks allowed: {}", rollbacks.join(", "))
    };
    let text = format!("policy in release.json: {floor}; {allowed}; the next `sign` signs it");
    Reply::new(json!({ "policy": policy }), text)
}
