//! Real `drover-updater` processes, as built by cargo.

use std::path::{Path, PathBuf};

use tokio::process::{Child, Command};

use crate::process::{ProcessGroup, bin, log_file};

pub struct UpdaterBuilder {
    /// `run`, or `kube` for the Kubernetes updater.
    subcommand: &'static str,
    coordinator: String,
    state_dir: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl UpdaterBuilder {
    /// `coordinator` may list several replicas (`https://a,https://b`): the updater enrols
    /// with (and trusts the CA of) the first.
    pub fn new(coordinator: &str, state_dir: &Path, agent_id: &str) -> Self {
        let args = vec!["--agent-id".into(), agent_id.into()];
        Self {
            subcommand: "run",
            coordinator: coordinator.into(),
            state_dir: state_dir.to_path_buf(),
            args,
            env: Vec::new(),
        }
    }

    /// Sets an environment variable for the updater (e.g. the OTLP exporter's).
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_string(), value.into()));
        self
    }

    /// Runs `drover-updater kube` instead of `run`.
    pub fn kube(mut self) -> Self {
        self.subcommand = "kube";
        self
    }

    pub fn arg(mut self, flag: &str, value: impl Into<String>) -> Self {
        self.args.push(flag.into());
        self.args.push(value.into());
        self
    }

    pub fn start(self) -> UpdaterProcess {
        std::fs::create_dir_all(&self.state_dir).expect("state dir");
        // As on a host: enrol once (a restart keeps the identity), then run with it.
        let value = |flag: &str| {
            self.args
                .iter()
                .position(|arg| arg == flag)
                .and_then(|at| self.args.get(at + 1))
                .cloned()
        };
        let agent_id = value("--agent-id").expect("UpdaterBuilder sets --agent-id");
        let group = value("--group").unwrap_or_else(|| "default".into());
        let first = self.coordinator.split(',').next().unwrap_or_default();
        if let Some((enrolled, stderr)) =
            crate::enrol::enrol(first, &self.state_dir, &agent_id, &group)
        {
            assert!(enrolled, "drover-updater enroll failed: {stderr}");
        }
        let mut command = Command::new(bin("drover-updater"));
        command.arg(self.subcommand);
        if let Some(ca) = crate::trust::ca_file_for(first) {
            command.arg("--ca-file").arg(ca);
        }
        let child = ProcessGroup::lead(&mut command)
            .arg("--coordinator")
            .arg(&self.coordinator)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(&self.args)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(log_file(&self.state_dir, "updater.log"))
            .stderr(log_file(&self.state_dir, "updater.log"))
            .spawn()
            .expect("start drover-updater");
        UpdaterProcess {
            _group: ProcessGroup::of(&child),
            child,
            state_dir: self.state_dir,
        }
    }
}

pub struct UpdaterProcess {
    child: Child,
    /// The updater and what it started (restart scripts, the agents they run).
    _group: ProcessGroup,
    pub state_dir: PathBuf,
}

impl UpdaterProcess {
    /// The updater's saved state (`state.json`), or `Null` before the first save.
    pub fn state(&self) -> serde_json::Value {
        std::fs::read(self.state_dir.join("state.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or(serde_json::Value::Null)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state_dir.join("updater.log")).unwrap_or_default()
    }

    pub async fn kill9(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// SIGTERM, then waits for a clean exit (its last spans and state written).
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        crate::process::terminate(&mut self.child, "the updater").await
    }
}
