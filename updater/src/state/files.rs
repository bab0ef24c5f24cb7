//! Where the state lives and how it is read and written: a directory (real updaters,
//! atomically: temp file, fsync, rename) or memory (simulated fleets), and the agent id
//! file that survives a damaged state file.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::Context;

use super::PersistedState;

const STATE_FILE: &str = "state.json";
const AGENT_ID_FILE: &str = "agent-id";

/// Where state lives: a directory (real updaters) or memory (simulated fleets).
#[derive(Debug, Clone)]
pub enum StateStore {
    Dir {
        path: PathBuf,
        agent_id: Option<String>,
    },
    Memory {
        agent_id: String,
    },
}

impl StateStore {
    pub async fn load(&self, initial_version: Option<String>) -> anyhow::Result<PersistedState> {
        match self {
            Self::Memory { agent_id } => Ok(PersistedState {
                agent_id: agent_id.clone(),
                agent_version: initial_version,
                ..PersistedState::default()
            }),
            Self::Dir { path, agent_id } => {
                let (path, agent_id) = (path.clone(), agent_id.clone());
                tokio::task::spawn_blocking(move || load_dir(&path, agent_id, initial_version))
                    .await?
            }
        }
    }

    pub async fn save(&self, state: &PersistedState) -> anyhow::Result<()> {
        let Self::Dir { path, .. } = self else {
            return Ok(());
        };
        let bytes = serde_json::to_vec_pretty(state)?;
        let file = path.join(STATE_FILE);
        tokio::task::spawn_blocking(move || write_atomically(&file, &bytes)).await?
    }
}

/// Reads the state of a directory for `drover-updater status`, without changing anything.
pub fn read_dir_state(dir: &Path) -> anyhow::Result<PersistedState> {
    let file = dir.join(STATE_FILE);
    let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not valid updater state", file.display()))
}

fn load_dir(
    dir: &Path,
    agent_id: Option<String>,
    initial_version: Option<String>,
) -> anyhow::Result<PersistedState> {
    std::fs::create_dir_all(dir).with_context(|| {
        format!(
            "cannot create the state directory {}; check its permissions",
            dir.display()
        )
    })?;
    let agent_id = stable_agent_id(dir, agent_id)?;
    let file = dir.join(STATE_FILE);
    let mut state = match std::fs::read(&file) {
        Ok(bytes) => match serde_json::from_slice::<PersistedState>(&bytes) {
            Ok(state) => state,
            Err(err) => {
                // Keep the unreadable file for a person to look at; start over safely. With no
                // schedule and no directive, the updater asks the coordinator again.
                let aside = dir.join(format!("{STATE_FILE}.unreadable"));
                std::fs::rename(&file, &aside)?;
                tracing::warn!(error = %err, kept_at = %aside.display(), "state file unreadable; starting fresh");
                PersistedState::default()
            }
        },
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => PersistedState::default(),
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", file.display())),
    };
    state.agent_id = agent_id;
    if state.agent_version.is_none() {
        state.agent_version = initial_version;
    }
    Ok(state)
}

/// The agent id this state dir has used, if any.
pub fn saved_agent_id(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join(AGENT_ID_FILE))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Records the agent id an enrolment decided, so the next `run` uses it.
pub fn set_agent_id(dir: &Path, agent_id: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the state directory {}", dir.display()))?;
    if saved_agent_id(dir).as_deref() != Some(agent_id) {
        write_atomically(&dir.join(AGENT_ID_FILE), agent_id.as_bytes())?;
    }
    Ok(())
}

/// The agent id is written once and never rewritten, so it survives a damaged state file.
fn stable_agent_id(dir: &Path, requested: Option<String>) -> anyhow::Result<String> {
    let file = dir.join(AGENT_ID_FILE);
    let saved = saved_agent_id(dir);
    match (requested, saved) {
        (Some(requested), Some(saved)) if requested == saved => Ok(saved),
        (Some(requested), _) => {
            write_atomically(&file, requested.as_bytes())?;
            Ok(requested)
        }
        (None, Some(saved)) => Ok(saved),
        (None, None) => {
            let generated = uuid::Uuid::new_v4().to_string();
            write_atomically(&file, generated.as_bytes())?;
            Ok(generated)
        }
    }
}

fn write_atomically(file: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = file.with_extension("tmp");
    {
        let mut out = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        out.write_all(bytes)?;
        out.sync_all()?;
    }
    std::fs::rename(&tmp, file)?;
    if let Some(dir) = file.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::state::{DirectiveRecord, DirectiveSource, InFlight, Outcome, Phase, ReportRecord};

    #[tokio::test]
    async fn survives_a_restart_and_keeps_the_agent_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::Dir {
            path: dir.path().into(),
            agent_id: None,
        };
        let mut state = store.load(Some("1.0.0".into())).await.unwrap();
        let id = state.agent_id.clone();
        state.agent_version = Some("1.1.0".into());
        store.save(&state).await.unwrap();
        let again = store.load(Some("1.0.0".into())).await.unwrap();
        assert_eq!(again.agent_id, id);
        assert_eq!(again.agent_version.as_deref(), Some("1.1.0"));
    }

    #[tokio::test]
    async fn a_state_file_written_before_rollout_ids_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::Dir {
            path: dir.path().into(),
            agent_id: Some("a-1".into()),
        };
        let report = ReportRecord {
            attempt_id: "at-1".into(),
            from_version: Some("1.0.0".into()),
            to_version: "1.1.0".into(),
            outcome: Outcome::Succeeded,
            error: String::new(),
            started_ms: 1,
            finished_ms: 2,
            directive_id: "d-1".into(),
            rollout_id: "r-1".into(),
        };
        let state = PersistedState {
            agent_id: "a-1".into(),
            directive: Some(DirectiveRecord {
                directive_id: "d-1".into(),
                target_version: Some("1.1.0".into()),
                critical: false,
                reason: "group_active".into(),
                reason_detail: String::new(),
                control_plane_version: None,
                received_ms: 0,
                source: DirectiveSource::Push,
                schedule: None,
                attempt_id: String::new(),
                rollout_id: "r-1".into(),
                rollout_epoch: 0,
                trace_context: BTreeMap::new(),
            }),
            pending_reports: vec![report.clone()],
            last_report: Some(report),
            in_flight: Some(InFlight {
                attempt_id: "at-2".into(),
                directive_id: "d-1".into(),
                rollout_id: "r-1".into(),
                directive_attempt_id: String::new(),
                from: None,
                to: "1.1.0".into(),
                phase: Phase::Verifying,
                started_ms: 3,
                failure: String::new(),
                host_failure: None,
                reason: String::new(),
                trace_context: BTreeMap::new(),
            }),
            ..PersistedState::default()
        };
        // The same state as an older updater wrote it: no `rollout_id` anywhere.
        let mut old = serde_json::to_value(&state).unwrap();
        old["pending_reports"][0]
            .as_object_mut()
            .unwrap()
            .remove("rollout_id");
        old["last_report"]
            .as_object_mut()
            .unwrap()
            .remove("rollout_id");
        old["in_flight"]
            .as_object_mut()
            .unwrap()
            .remove("rollout_id");
        old["directive"]
            .as_object_mut()
            .unwrap()
            .remove("rollout_id");
        assert!(!old.to_string().contains("rollout_id"));
        store.load(None).await.unwrap();
        std::fs::write(dir.path().join(STATE_FILE), old.to_string()).unwrap();

        let loaded = store.load(None).await.unwrap();
        assert!(!dir.path().join("state.json.unreadable").exists());
        assert_eq!(loaded.pending_reports[0].attempt_id, "at-1");
        assert_eq!(loaded.pending_reports[0].rollout_id, "");
        assert_eq!(loaded.in_flight.unwrap().phase, Phase::Verifying);
        assert_eq!(loaded.directive.unwrap().directive_id, "d-1");
    }

    #[tokio::test]
    async fn an_unreadable_state_file_is_kept_aside_and_the_id_survives() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::Dir {
            path: dir.path().into(),
            agent_id: Some("a-1".into()),
        };
        store.load(None).await.unwrap();
        std::fs::write(dir.path().join(STATE_FILE), b"{not json").unwrap();
        let state = store.load(None).await.unwrap();
        assert_eq!(state.agent_id, "a-1");
        assert!(dir.path().join("state.json.unreadable").exists());
    }
}
