//! Signed release metadata (#28): the coordinator carries the bundle the release team
//! signed offline, from `droverctl releases publish` to every updater that asks. It cannot
//! verify it for updaters (they trust only their pinned root), so it checks only what keeps
//! honest operators from mistakes: the names and sizes a bundle may have, and that
//! versions only move forward.

use std::{collections::BTreeMap, sync::Arc};

use drover_release::Bundle;
use drover_rules::ReasonCode;

use super::{Caller, Fleet, change_feed::Change};
use crate::{
    domain::now_ms,
    error::{DroverError, Result},
    store::{Store, StoredRelease},
};

/// What the coordinator serves: loaded before it serves anything, reloaded with settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishedRelease {
    pub version: u64,
    pub files: BTreeMap<String, Vec<u8>>,
    pub bytes: u64,
    pub published_ms: i64,
}

impl PublishedRelease {
    pub async fn load(store: &Store) -> Result<Option<Arc<Self>>> {
        Ok(store.release_metadata().await?.map(|stored| {
            Arc::new(Self {
                version: stored.version,
                files: stored
                    .files
                    .into_iter()
                    .map(|(name, text)| (name, text.into_bytes()))
                    .collect(),
                bytes: stored.bytes,
                published_ms: stored.published_ms,
            })
        }))
    }
}

impl Fleet {
    /// The bundle updaters are given; `None` when none was published.
    pub fn release_metadata(&self) -> Option<Arc<PublishedRelease>> {
        self.releases.read().clone()
    }

    /// Connected agents whose updater's decision is a release refusal or alarm, by code
    /// (from memory; `/metrics` `drover_release_alarms`).
    pub fn release_alarms(&self) -> std::collections::HashMap<ReasonCode, u64> {
        let mut alarms = std::collections::HashMap::new();
        for session in self.sessions.all() {
            let reason = ReasonCode::parse(&session.live.lock().decision_reason);
            if let Some(code) = reason.filter(|code| ReasonCode::RELEASE.contains(code)) {
                *alarms.entry(code).or_insert(0) += 1;
            }
        }
        alarms
    }

    /// Follows the store (another replica's publish, or a change behind the coordinator's
    /// back), reading the files only when the stored bundle's stamp differs from the served.
    pub(super) async fn reload_release_metadata(&self) -> Result<()> {
        let stamp = self.store().release_metadata_stamp().await?;
        let served = self
            .release_metadata()
            .map(|r| (r.version, r.bytes, r.published_ms));
        if stamp != served {
            *self.releases.write() = PublishedRelease::load(self.store()).await?;
        }
        Ok(())
    }

    /// Stores a newer bundle with its audited event, then serves it.
    pub async fn publish_release_metadata(
        &self,
        files: BTreeMap<String, Vec<u8>>,
        caller: &Caller,
    ) -> Result<Arc<PublishedRelease>> {
        let bundle = Bundle::new(files).map_err(|err| DroverError::invalid(err.to_string()))?;
        let version = bundle.claimed_version().ok_or_else(|| {
            DroverError::invalid(
                "the bundle has no readable timestamp.json version; publish the directory \
                 `droverctl releases sign` wrote",
            )
        })?;
        let mut texts = BTreeMap::new();
        for (name, content) in &bundle.files {
            let text = String::from_utf8(content.clone()).map_err(|_| {
                DroverError::invalid(format!("{name} is not UTF-8 text; TUF metadata is JSON"))
            })?;
            texts.insert(name.clone(), text);
        }
        if i64::try_from(version).is_err() {
            return Err(DroverError::invalid(format!(
                "release metadata version {version} is out of range; sign with `droverctl releases sign`"
            )));
        }
        // A settings refresh that read the store before this commit must not put the older
        // bundle back after it: both take the refresh lock.
        let _serialized = self.refresh_lock.lock().await;
        let current = self.release_metadata().map_or(0, |r| r.version);
        if version <= current {
            return Err(DroverError::Conflict(format!(
                "release metadata version {version} is not newer than the published {current}; \
                 nothing was changed (sign again: `droverctl releases sign` raises the version)"
            )));
        }
        let text = format!("release metadata version {version} published");
        let release = StoredRelease {
            version,
            bytes: bundle.total_bytes() as u64,
            files: texts,
            published_ms: now_ms(),
        };
        let published = Arc::new(PublishedRelease {
            version,
            files: bundle.files,
            bytes: release.bytes,
            published_ms: release.published_ms,
        });
        let event = self.admin_event(caller, text);
        self.store()
            .publish_release_metadata(&release, &event)
            .await?;
        *self.releases.write() = Some(published.clone());
        self.announce(Change::Settings).await;
        Ok(published)
    }
}
