//! Signed releases built the way an operator would: `tar` for the artifact, `sha256sum` for
//! its digest and the standard `minisign` tool for the manifest's signature; served over
//! HTTP from a local directory. Plus an agent host: a tarball root with the demo agent
//! installed and a restart script, as a package or bootstrap script would leave it.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
};

use crate::{bin, repos::run};

/// A minisign key pair made by the `minisign` tool, without a password.
pub struct SigningKey {
    pub public: PathBuf,
    pub secret: PathBuf,
}

impl SigningKey {
    pub fn generate(dir: &Path, name: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let key = Self {
            public: dir.join(format!("{name}.pub")),
            secret: dir.join(format!("{name}.key")),
        };
        run(Command::new("minisign")
            .arg("-G")
            .arg("-W")
            .arg("-p")
            .arg(&key.public)
            .arg("-s")
            .arg(&key.secret));
        key
    }

    pub fn sign(&self, file: &Path) {
        run(Command::new("minisign")
            .arg("-S")
            .arg("-s")
            .arg(&self.secret)
            .arg("-m")
            .arg(file));
    }
}

pub struct ReleaseRepo {
    root: PathBuf,
    pub key: SigningKey,
    pub url: String,
}

impl ReleaseRepo {
    /// Creates the repository under `dir` and serves it over HTTP on loopback.
    pub async fn create(dir: &Path) -> Self {
        let root = dir.join("releases");
        std::fs::create_dir_all(&root).unwrap();
        let key = SigningKey::generate(&dir.join("keys"), "release");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback_service(tower_http::services::ServeDir::new(&root));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            root,
            key,
            url: format!("http://{addr}"),
        }
    }

    pub fn dir(&self, version: &str) -> PathBuf {
        self.root.join(version)
    }

    pub fn artifact(&self, version: &str) -> PathBuf {
        self.dir(version)
            .join(format!("drover-demo-agent-{version}.tar.gz"))
    }

    /// Builds, hashes and signs a release of the demo agent; `broken` ships a BROKEN marker.
    pub fn publish(&self, version: &str, broken: bool) {
        self.publish_with(version, broken, None);
    }

    /// As `publish`; `leak_mib_per_sec` ships a LEAK marker: the agent stays healthy and
    /// grows its memory by that much every second.
    pub fn publish_with(&self, version: &str, broken: bool, leak_mib_per_sec: Option<u32>) {
        let stage = self.root.join(".build").join(version);
        std::fs::create_dir_all(stage.join("bin")).unwrap();
        std::fs::copy(
            bin("drover-demo-agent"),
            stage.join("bin/drover-demo-agent"),
        )
        .unwrap();
        std::fs::write(stage.join("VERSION"), version).unwrap();
        if broken {
            std::fs::write(
                stage.join("BROKEN"),
                "this release fails its health check\n",
            )
            .unwrap();
        }
        if let Some(mib) = leak_mib_per_sec {
            std::fs::write(stage.join("LEAK"), format!("{mib}\n")).unwrap();
        }
        std::fs::create_dir_all(self.dir(version)).unwrap();
        let artifact = self.artifact(version);
        run(Command::new("tar")
            .arg("czf")
            .arg(&artifact)
            .arg("-C")
            .arg(&stage)
            .arg("."));
        let sha = run(Command::new("sha256sum").arg(&artifact));
        let sha = sha.split_whitespace().next().unwrap();
        let manifest = serde_json::json!({
            "version": version,
            "artifact": artifact.file_name().unwrap().to_string_lossy(),
            "sha256": sha,
            "size": std::fs::metadata(&artifact).unwrap().len(),
        });
        let manifest_path = self.dir(version).join("manifest.json");
        std::fs::write(
            &manifest_path,
            serde_json::to_vec_pretty(&manifest).unwrap(),
        )
        .unwrap();
        self.key.sign(&manifest_path);
    }

    /// Changes the artifact after signing: the digest no longer matches.
    pub fn tamper_artifact(&self, version: &str) {
        let mut bytes = std::fs::read(self.artifact(version)).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(self.artifact(version), bytes).unwrap();
    }

    /// Grows the artifact past the size its signed manifest declares (the digest is never
    /// reached: the download is cut off first).
    pub fn oversize_artifact(&self, version: &str) {
        let mut bytes = std::fs::read(self.artifact(version)).unwrap();
        bytes.extend(std::iter::repeat_n(0u8, 1 << 20));
        std::fs::write(self.artifact(version), bytes).unwrap();
    }

    pub fn remove_signature(&self, version: &str) {
        std::fs::remove_file(self.dir(version).join("manifest.json.minisig")).unwrap();
    }

    /// Re-signs the manifest with a key the updater does not trust.
    pub fn sign_with_another_key(&self, version: &str, scratch: &Path) {
        let other = SigningKey::generate(scratch, "intruder");
        other.sign(&self.dir(version).join("manifest.json"));
    }
}

/// Where an agent lives: `root/versions/<v>`, `root/current`, a restart script and its port.
pub struct AgentHost {
    pub root: PathBuf,
    pub port: u16,
    pub restart_script: PathBuf,
    dir: PathBuf,
}

impl AgentHost {
    /// Installs `version` from `repo` by hand (as a bootstrap would) and starts the agent.
    pub fn bootstrap(dir: &Path, repo: &ReleaseRepo, version: &str) -> Self {
        let root = dir.join("agent");
        let release = root.join("versions").join(version);
        std::fs::create_dir_all(&release).unwrap();
        run(Command::new("tar")
            .arg("xzf")
            .arg(repo.artifact(version))
            .arg("-C")
            .arg(&release));
        std::os::unix::fs::symlink(Path::new("versions").join(version), root.join("current"))
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let restart_script = dir.join("restart-agent.sh");
        let script = format!(
            "#!/bin/sh\n\
             # Restarts the demo agent on the active version (what a systemd unit restart does).\n\
             [ -f {dir}/slow-restart ] && sleep 3\n\
             if [ -f {dir}/agent.pid ]; then kill \"$(cat {dir}/agent.pid)\" 2>/dev/null; sleep 0.2; fi\n\
             {root}/current/bin/drover-demo-agent --listen 127.0.0.1:{port} >>{dir}/agent.log 2>&1 &\n\
             echo $! > {dir}/agent.pid\n",
            dir = dir.display(),
            root = root.display(),
        );
        std::fs::write(&restart_script, script).unwrap();
        let host = Self {
            root,
            port,
            restart_script,
            dir: dir.to_path_buf(),
        };
        host.restart();
        host
    }

    pub fn restart(&self) {
        run(Command::new("sh").arg(&self.restart_script));
    }

    /// Stops the agent process, as a crash would.
    pub fn kill_agent(&self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("agent.pid")) {
            let _ = Command::new("kill").arg("-9").arg(pid.trim()).status();
        }
    }

    pub fn set_slow_restart(&self, slow: bool) {
        let marker = self.dir.join("slow-restart");
        if slow {
            std::fs::write(marker, "").unwrap();
        } else {
            let _ = std::fs::remove_file(marker);
        }
    }

    /// Where the restart script writes the agent's PID.
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("agent.pid")
    }

    pub fn health_url(&self) -> String {
        format!("http://127.0.0.1:{}/healthz", self.port)
    }

    /// The version the running agent reports, if it answers.
    pub async fn running_version(&self) -> Option<String> {
        http_text(self.port, "/version").await
    }

    pub async fn healthy(&self) -> bool {
        http_text(self.port, "/healthz")
            .await
            .is_some_and(|t| t.starts_with("ok"))
    }

    /// The version `current` points at.
    pub fn active_version(&self) -> Option<String> {
        std::fs::read_link(self.root.join("current"))
            .ok()?
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
    }

    pub fn installed_versions(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.root.join("versions"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for AgentHost {
    /// Ends every process running from this host's directory (its agents, whoever started
    /// them, and restart scripts still sleeping), found by their command lines: the
    /// directory is the test's own, so nothing else matches, and no pid or group number is
    /// trusted after its process may have gone.
    fn drop(&mut self) {
        let mine = self.dir.to_string_lossy().into_owned();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&mine) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// GET on loopback; `Some(body)` for a 2xx answer.
async fn http_text(port: u16, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.split_whitespace()
        .nth(1)?
        .starts_with('2')
        .then(|| body.to_string())
}
