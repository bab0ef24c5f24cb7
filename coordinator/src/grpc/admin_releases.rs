//! The admin RPCs of signed release metadata (#28): publish (role admin, audited) and show.

use drover_proto::v1 as pb;
use drover_rules::AdminRole;
use tonic::{Request, Status};

use super::{AdminApi, convert};
use crate::fleet::releases::PublishedRelease;

impl AdminApi {
    pub(super) async fn publish_release_metadata_rpc(
        &self,
        request: Request<pb::ReleaseMetadata>,
    ) -> Result<pb::ReleaseMetadataStatus, Status> {
        let target = format!("version {}", request.get_ref().version);
        let caller = self
            .authorize(
                &request,
                AdminRole::Admin,
                "PublishReleaseMetadata",
                &target,
            )
            .await?;
        let files = request
            .into_inner()
            .files
            .into_iter()
            .map(|file| (file.name, file.content))
            .collect();
        let outcome = self.fleet.publish_release_metadata(files, &caller).await;
        let published = self.audited(&caller, false, outcome).await?;
        tracing::info!(
            version = published.version,
            bytes = published.bytes,
            "release metadata published"
        );
        Ok(status(Some(&published)))
    }

    pub(super) async fn release_metadata_status_rpc(
        &self,
        request: Request<pb::GetReleaseMetadataStatusRequest>,
    ) -> Result<pb::ReleaseMetadataStatus, Status> {
        self.authorize(&request, AdminRole::Viewer, "GetReleaseMetadataStatus", "")
            .await?;
        Ok(status(self.fleet.release_metadata().as_deref()))
    }
}

fn status(release: Option<&PublishedRelease>) -> pb::ReleaseMetadataStatus {
    let Some(release) = release else {
        return pb::ReleaseMetadataStatus::default();
    };
    pb::ReleaseMetadataStatus {
        version: release.version,
        files: release.files.len() as u32,
        bytes: release.bytes,
        published_at: convert::timestamp(release.published_ms),
    }
}
