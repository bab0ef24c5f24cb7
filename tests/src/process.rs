//! Real processes: the coordinator, updaters and droverctl, as built by cargo.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use drover_coordinator::server::{BoundAddresses, ReadyFile, ReadyTls};
use tokio::process::{Child, Command};

static BIN_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Takes the binaries from `dir` (e.g. `target/release` for `drover-loadgen`), before any
/// [`bin`] call; the first call wins.
pub fn use_bin_dir(dir: &Path) {
    let _ = BIN_DIR.set(dir.to_path_buf());
}

/// A built binary of this workspace (`cargo build --workspace --bins` puts them beside the
/// test executables' parent directory), or in the directory [`use_bin_dir`] or
/// `DROVER_BIN_DIR` names.
pub fn bin(name: &str) -> PathBuf {
    let dir = BIN_DIR
        .get()
        .cloned()
        .or_else(|| std::env::var_os("DROVER_BIN_DIR").map(PathBuf::from))
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().expect("test executable path");
            exe.parent()
                .and_then(Path::parent)
                .expect("target/<profile>")
                .to_path_buf()
        });
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing; build the binaries first: cargo build --workspace --bins",
        path.display()
    );
    path
}

/// The coordinator built with its test-only features (`failpoints,testing`: crash points,
/// the manual clock and its route), kept beside the normal binary by scripts/test.
pub fn testing_bin() -> PathBuf {
    let path = bin("drover-coordinator").with_file_name("drover-coordinator-testing");
    assert!(
        path.exists(),
        "{} is missing; scripts/test builds it (cargo build -p drover-coordinator --features \
         failpoints,testing, then copies the binary under this name)",
        path.display()
    );
    path
}

/// Ends a process and everything it started: the test starts it as the leader of its own
/// process group, and dropping the guard (the test ending, passed or panicking) SIGKILLs the
/// whole group, so an agent a restart script left running goes with its updater.
pub struct ProcessGroup {
    id: i32,
    /// The leader's start time (`/proc/PID/stat`), to tell it from a later process that was
    /// given the same number once it had gone (pids wrap at 32,768 here).
    started: Option<u64>,
}

/// Field 22 of `/proc/PID/stat`: when the process started, in clock ticks since boot.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

impl ProcessGroup {
    /// Makes `command` lead a new process group once spawned (see [`ProcessGroup::of`]).
    pub fn lead(command: &mut Command) -> &mut Command {
        command.process_group(0).kill_on_drop(true)
    }

    /// The guard for `child`, spawned from a command [`ProcessGroup::lead`] prepared.
    pub fn of(child: &Child) -> Self {
        let id = child.id().expect("a child just spawned has a pid") as i32;
        Self {
            id,
            started: start_time(id),
        }
    }

    /// SIGKILLs the group now (idempotent: a group already gone is no error). A process
    /// numbered like the group but started at another time leads someone else's group
    /// (ours had emptied, so its number was free again): then nothing is sent.
    pub fn kill(&self) {
        if let Some(now) = start_time(self.id)
            && Some(now) != self.started
        {
            return;
        }
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.id),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

pub(crate) fn log_file(dir: &Path, name: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
        .expect("log file")
}

#[derive(Clone)]
pub struct CoordinatorBuilder {
    work_dir: PathBuf,
    database: String,
    args: Vec<String>,
    /// `DROVER_FAILPOINTS` for the test build; `None`: nothing armed.
    failpoints: Option<String>,
    /// Run the test build (`drover-coordinator-testing`) even with no failpoints armed.
    testing: bool,
    /// Plaintext (`--insecure`) instead of TLS with the generated CA in `work_dir/drover-data`.
    insecure: bool,
    /// Extra environment, e.g. `OTEL_EXPORTER_OTLP_ENDPOINT`.
    env: Vec<(String, String)>,
}

impl CoordinatorBuilder {
    /// A coordinator on a SQLite file inside `work_dir`.
    pub fn sqlite(work_dir: &Path) -> Self {
        let database = format!("sqlite://{}", work_dir.join("drover.db").display());
        Self::with_database(work_dir, &database)
    }

    pub fn with_database(work_dir: &Path, database: &str) -> Self {
        Self {
            work_dir: work_dir.to_path_buf(),
            database: database.to_string(),
            args: Vec::new(),
            failpoints: None,
            testing: false,
            insecure: false,
            env: Vec::new(),
        }
    }

    /// Sets an environment variable for the coordinator (e.g. the OTLP exporter's).
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_string(), value.into()));
        self
    }

    /// Plaintext on loopback (`--insecure`), for tests about it; the default is TLS with the
    /// coordinator's generated CA.
    pub fn insecure(mut self) -> Self {
        self.insecure = true;
        self
    }

    /// The data directory (generated CA, server certificate, admin profile).
    pub fn data_dir(&self) -> PathBuf {
        self.work_dir.join("drover-data")
    }

    /// Runs the test build (`drover-coordinator-testing`, made by scripts/test) with these
    /// points armed, e.g. `report.before_ack=crash`.
    pub fn failpoints(mut self, spec: &str) -> Self {
        self.failpoints = Some(spec.to_string());
        self
    }

    /// Runs the test build (`drover-coordinator-testing`): the manual rollout clock
    /// (`--manual-clock-start-ms`) and `POST /api/v1/testing/clock/advance` exist only there.
    /// `--control-plane-version VERSION`: what nearly every test records at start.
    pub fn control_plane(self, version: &str) -> Self {
        self.arg("--control-plane-version").arg(version)
    }

    pub fn testing(mut self) -> Self {
        self.testing = true;
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub async fn start(self) -> CoordinatorProcess {
        let grpc: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let http: SocketAddr = "127.0.0.1:0".parse().unwrap();
        CoordinatorProcess::spawn(self, grpc, http).await
    }
}

pub struct CoordinatorProcess {
    child: Child,
    /// Declared after `child`, so the group is killed once the child is.
    _group: ProcessGroup,
    builder: CoordinatorBuilder,
    pub addresses: BoundAddresses,
    /// The CA, its pin and the admin profile, from the ready file; `None` with `--insecure`.
    pub tls: Option<ReadyTls>,
}

impl CoordinatorProcess {
    async fn spawn(builder: CoordinatorBuilder, grpc: SocketAddr, http: SocketAddr) -> Self {
        let ready = builder.work_dir.join("coordinator-ready.json");
        let _ = std::fs::remove_file(&ready);
        let mut command = match (&builder.failpoints, builder.testing) {
            (Some(spec), _) => {
                let mut command = Command::new(testing_bin());
                command.env("DROVER_FAILPOINTS", spec);
                command
            }
            (None, true) => Command::new(testing_bin()),
            (None, false) => Command::new(bin("drover-coordinator")),
        };
        if builder.insecure {
            command.arg("--insecure");
        } else {
            command.arg("--data-dir").arg(builder.data_dir());
        }
        let child = ProcessGroup::lead(&mut command)
            .arg("--database")
            .arg(&builder.database)
            .arg("--grpc-listen")
            .arg(grpc.to_string())
            .arg("--http-listen")
            .arg(http.to_string())
            .arg("--ready-file")
            .arg(&ready)
            .args(&builder.args)
            .env("RUST_LOG", "info")
            .envs(builder.env.iter().map(|(k, v)| (k, v)))
            .stdout(log_file(&builder.work_dir, "coordinator.log"))
            .stderr(log_file(&builder.work_dir, "coordinator.log"))
            .spawn()
            .expect("start drover-coordinator");
        let mut process = Self {
            _group: ProcessGroup::of(&child),
            child,
            builder,
            addresses: BoundAddresses { grpc, http },
            tls: None,
        };
        let ready = process.wait_ready(&ready).await;
        (process.addresses, process.tls) = (ready.bound, ready.tls);
        crate::trust::register(
            &[process.addresses.grpc, process.addresses.http],
            process.tls.as_ref(),
        );
        process
    }

    async fn wait_ready(&mut self, ready: &Path) -> ReadyFile {
        for _ in 0..300 {
            if let Ok(bytes) = std::fs::read(ready) {
                return serde_json::from_slice(&bytes).expect("ready file is JSON");
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "drover-coordinator exited with {status} before it was ready:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("drover-coordinator not ready after 15 s:\n{}", self.log());
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    pub fn grpc_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.addresses.grpc)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme(), self.addresses.http)
    }

    /// A gRPC channel to this coordinator (trusting its CA).
    pub async fn channel(&self) -> tonic::transport::Channel {
        crate::trust::grpc_channel(&self.grpc_url())
            .await
            .expect("connect to the coordinator's gRPC listener")
    }

    /// A channel for agent `agent_id` in `group`: enrolled (in memory, with its own key,
    /// once per agent id and coordinator address) and presenting its certificate;
    /// plaintext for an `--insecure` coordinator.
    pub async fn agent_channel(&self, agent_id: &str, group: &str) -> tonic::transport::Channel {
        if crate::trust::lookup(&self.grpc_url()).is_none() {
            return self.channel().await;
        }
        let cert = crate::enrol::cached(&self.grpc_url(), agent_id, group).await;
        crate::enrol::channel_as(&self.grpc_url(), &cert)
            .await
            .expect("connect with the agent's certificate")
    }

    /// The coordinator's process id (for /proc measurements).
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the coordinator is running")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.builder.work_dir.join("coordinator.log")).unwrap_or_default()
    }

    /// SIGKILL: no shutdown hooks, no flushes. What was committed must survive.
    pub async fn kill9(&mut self) {
        self.child.start_kill().expect("SIGKILL the coordinator");
        self.child.wait().await.expect("reap the coordinator");
    }

    /// Waits (up to `timeout`) for the process to die at an armed crash point; returns the
    /// log, which names the point.
    pub async fn wait_crash(&mut self, timeout: Duration) -> String {
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the coordinator did not crash within {timeout:?}:\n{}",
                    self.log()
                )
            })
            .expect("reap the coordinator");
        assert!(!status.success(), "a crash is not a clean exit: {status}");
        self.log()
    }

    /// Restarts without crash points: the same store and ports, the normal binary (the test
    /// build if `testing()` asked for it).
    pub async fn restart_disarmed(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.builder.failpoints = None;
        self.restart().await;
    }

    /// SIGKILL, then starts again on the same store and ports with `spec` armed (the test
    /// build), e.g. `report.before_ack=crash`.
    pub async fn restart_with_failpoints(&mut self, spec: &str) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.builder.failpoints = Some(spec.to_string());
        self.restart().await;
    }

    /// Starts again on the same database and the same ports, so updaters find it.
    pub async fn restart(&mut self) {
        let (grpc, http) = (self.addresses.grpc, self.addresses.http);
        *self = Self::spawn(self.builder.clone(), grpc, http).await;
    }

    /// SIGTERM, then waits for a clean exit.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        terminate(&mut self.child, "the coordinator").await
    }
}

/// SIGTERM to `child`, then waits (15 s at most) for it to exit.
pub async fn terminate(child: &mut Child, what: &str) -> std::process::ExitStatus {
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .unwrap_or_else(|_| panic!("{what} exits within 15 s of SIGTERM"))
        .expect("reap")
}

/// Runs droverctl against `coordinator` (with the admin profile the coordinator wrote, for
/// a TLS coordinator the harness started); returns (success, stdout, stderr).
pub async fn droverctl(coordinator: &str, args: &[&str]) -> (bool, String, String) {
    let mut command = Command::new(bin("droverctl"));
    if let Some(profile) = crate::trust::profile_for(coordinator) {
        command.arg("--profile").arg(profile);
    }
    let output = command
        .arg("--coordinator")
        .arg(coordinator)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run droverctl");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs `droverctl … -o json`, asserting success, and parses the output.
pub async fn droverctl_json(coordinator: &str, args: &[&str]) -> serde_json::Value {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["-o", "json"]);
    let (ok, stdout, stderr) = droverctl(coordinator, &all).await;
    assert!(ok, "droverctl {args:?} failed: {stderr}");
    serde_json::from_str(&stdout)
        .unwrap_or_else(|err| panic!("droverctl {args:?} printed invalid JSON ({err}): {stdout}"))
}
