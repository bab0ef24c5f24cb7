//! The updater's local state: who it is, what it was last told, and the reports the
//! coordinator has not acknowledged yet. Written atomically (temp file, fsync, rename), so
//! a crash at any instant leaves either the old or the new state, never a torn one.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::Context;
use serde::{Deserialize, Serialize};

const STATE_FILE: &str = "state.json";
const AGENT_ID_FILE: &str = "agent-id";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectiveSource {
    /// Pushed on the stream as soon as it changed.
    Push,
    /// Found by the periodic re-check.
    Poll,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectiveRecord {
    pub directive_id: String,
    pub target_version: Option<String>,
    pub critical: bool,
    pub reason: String,
    pub reason_detail: String,
    pub control_plane_version: Option<String>,
    pub received_ms: i64,
    pub source: DirectiveSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    Failed,
    Reverted,
    Refused,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportRecord {
    pub attempt_id: String,
    pub from_version: Option<String>,
    pub to_version: String,
    pub outcome: Outcome,
    pub error: String,
    pub started_ms: i64,
    pub finished_ms: i64,
    pub directive_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedState {
    pub agent_id: String,
    pub agent_version: Option<String>,
    pub directive: Option<DirectiveRecord>,
    /// Sent on every (re)connect until acknowledged; the coordinator dedups by attempt id.
    pub pending_reports: Vec<ReportRecord>,
    pub last_report: Option<ReportRecord>,
    /// The last decision in plain words, for `drover-updater status`.
    pub last_decision: Option<String>,
    /// A directive whose install failed is not retried until a different directive arrives.
    #[serde(default)]
    pub failed_directive_id: Option<String>,
}

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

/// The agent id is written once and never rewritten, so it survives a damaged state file.
fn stable_agent_id(dir: &Path, requested: Option<String>) -> anyhow::Result<String> {
    let file = dir.join(AGENT_ID_FILE);
    let saved = std::fs::read_to_string(&file)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
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

/// The human view of the state, for `drover-updater status`.
pub fn describe(state: &PersistedState) -> String {
    let dash = |v: Option<&str>| v.unwrap_or("-").to_string();
    let mut out = vec![
        format!("agent:            {}", state.agent_id),
        format!("current version:  {}", dash(state.agent_version.as_deref())),
    ];
    match &state.directive {
        Some(d) => {
            out.push(format!(
                "target version:   {}{}",
                dash(d.target_version.as_deref()),
                if d.critical { " (critical)" } else { "" }
            ));
            out.push(format!(
                "why:              {} — {}",
                d.reason, d.reason_detail
            ));
            out.push(
                format!("directive:        {} (by {:?})", d.directive_id, d.source).to_lowercase(),
            );
        }
        None => out.push("target version:   - (no directive received yet)".into()),
    }
    out.push("next window:      none known: updates install as soon as they arrive".into());
    out.push(format!(
        "last decision:    {}",
        dash(state.last_decision.as_deref())
    ));
    if let Some(r) = &state.last_report {
        let error = if r.error.is_empty() {
            String::new()
        } else {
            format!(" ({})", r.error)
        };
        out.push(format!(
            "last report:      {} → {}: {:?}{error}",
            dash(r.from_version.as_deref()),
            r.to_version,
            r.outcome
        ));
    }
    out.push(format!("unacked reports:  {}", state.pending_reports.len()));
    out.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

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
