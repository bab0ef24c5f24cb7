//! `droverctl releases publish|show`: through the coordinator. The coordinator carries the
//! bundle to updaters but cannot vouch for it (they verify it against their pinned root),
//! so `publish` first verifies it here, as an updater pinned to this directory's first
//! root would, and sends nothing that an updater would refuse.

use std::path::PathBuf;

use clap::Args;
use drover_proto::v1 as pb;
use drover_release::Bundle;
use serde_json::json;

use super::super::{Client, status_text};
use crate::{names::time_or_dash, render::Reply};

#[derive(Args, Debug)]
pub struct PublishArgs {
    /// The release directory `droverctl releases sign` wrote.
    #[arg(long)]
    pub dir: PathBuf,
    /// The root updaters pin (default: the directory's metadata/1.root.json).
    #[arg(long, value_name = "ROOT_JSON")]
    pub root: Option<PathBuf>,
}

pub async fn publish(client: &mut Client, args: PublishArgs) -> Result<Reply, String> {
    let bundle = Bundle::from_dir(&args.dir).map_err(|err| err.to_string())?;
    let root_path = args
        .root
        .unwrap_or_else(|| args.dir.join("metadata/1.root.json"));
    let root = std::fs::read(&root_path)
        .map_err(|err| format!("cannot read the root {}: {err}", root_path.display()))?;
    // A fresh datastore: this checks signatures, thresholds, hashes and expiry, not history.
    let scratch = tempfile::tempdir().map_err(|err| format!("cannot make a scratch dir: {err}"))?;
    let verified = drover_release::verify(&bundle, &root, scratch.path())
        .await
        .map_err(|err| format!("not published: updaters would refuse this metadata ({err})"))?;
    let request = pb::ReleaseMetadata {
        version: verified.timestamp_version,
        files: bundle
            .files
            .into_iter()
            .map(|(name, content)| pb::ReleaseFile { name, content })
            .collect(),
    };
    let status = client
        .publish_release_metadata(request)
        .await
        .map_err(status_text)?
        .into_inner();
    let expires = drover_api::time_text(&prost_types::Timestamp {
        seconds: verified.expires_ms.div_euclid(1000),
        nanos: 0,
    });
    let text = format!(
        "published release metadata version {} ({} artifacts, {} bytes); it expires {expires}: \
         sign and publish again before then, or updaters raise release_metadata_expired",
        status.version,
        verified.artifacts.len(),
        status.bytes
    );
    Ok(Reply::new(
        json!({
            "version": status.version,
            "files": status.files,
            "bytes": status.bytes,
            "artifacts": verified.artifacts.len(),
            "expires_at": expires,
        }),
        text,
    ))
}

pub async fn show(client: &mut Client) -> Result<Reply, String> {
    let status = client
        .get_release_metadata_status(pb::GetReleaseMetadataStatusRequest {})
        .await
        .map_err(status_text)?
        .into_inner();
    let published = time_or_dash(status.published_at.as_ref());
    let text = if status.version == 0 {
        "no release metadata published (droverctl releases publish --dir DIR)".to_string()
    } else {
        format!(
            "release metadata version {} ({} files, {} bytes), published {published}",
            status.version, status.files, status.bytes
        )
    };
    Ok(Reply::new(
        json!({
            "version": status.version,
            "files": status.files,
            "bytes": status.bytes,
            "published_at": status.published_at.as_ref().map(drover_api::time_text),
        }),
        text,
    ))
}
