//! The host test bed: a Debian 12 root made once with debootstrap (cached under
//! `target/hostbed/`), booted per test under its own systemd with `systemd-nspawn -b
//! --private-network --volatile=overlay` (the test's writes go to a tmpfs; the cached root
//! stays pristine), so the packages, units and package managers are the real ones.
//!
//! Commands run inside through `nsenter` on the machine's PID 1, not `systemd-run -M` or
//! `machinectl`: those need systemd-machined on the host, and a CI host (like this one)
//! may not run systemd at all. There nspawn runs with `--register=no --keep-unit` (no bus
//! to register with or to ask for a scope) in a cgroup the harness makes.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use nix::{sys::signal, unistd::Pid};

mod cgroups;
mod packages;
use cgroups::{remove_cgroup, tracking_cgroups};
pub use packages::{deb, signed_apt_repo};

use crate::repos::run;

const SUITE: &str = "bookworm";
const MIRROR: &str = "http://deb.debian.org/debian";
/// What the packages and tests need beyond minbase (passwd, apt, dpkg are in it).
const INCLUDE: &[&str] = &["systemd", "systemd-sysv", "dbus", "ca-certificates", "gpg"];
/// Bump when [`finish_root`] changes, so cached roots are rebuilt.
const RECIPE: u32 = 2;
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const BOOT_DEADLINE: Duration = Duration::from_secs(120);
const COMMAND_DEADLINE: Duration = Duration::from_secs(300);

/// Why the bed cannot run here, or `None`. Only what no set-up can fix is a reason: missing
/// tools are scripts/setup's job and fail the test instead.
fn cannot_run() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("systemd-nspawn and debootstrap need root".into());
    }
    for tool in ["debootstrap", "systemd-nspawn", "nsenter"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        assert!(found, "{tool} is missing: run scripts/setup");
    }
    None
}

fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // target/<profile>/deps/<test executable>
    let exe = std::env::current_exe().expect("test executable path");
    exe.ancestors().nth(3).expect("target dir").to_path_buf()
}

/// The cached root, built first if missing: under an exclusive file lock (one build at a
/// time across test binaries), into a scratch dir renamed into place when complete.
fn cached_root() -> PathBuf {
    let recipe = format!("{SUITE} minbase {} {RECIPE}", INCLUDE.join(","));
    let digest = ring::digest::digest(&ring::digest::SHA256, recipe.as_bytes());
    let key: String = digest.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = target_dir().join("hostbed");
    std::fs::create_dir_all(&dir).expect("target/hostbed");
    let root = dir.join(format!("{SUITE}-{key}"));
    let lock = std::fs::File::create(dir.join(format!("{SUITE}-{key}.lock"))).expect("lock file");
    lock.lock().expect("lock the host bed's root");
    if root.exists() {
        return root;
    }
    // Left by a build that died: we hold the lock, so nobody is using it.
    let scratch = dir.join(format!("{SUITE}-{key}.building"));
    let _ = std::fs::remove_dir_all(&scratch);
    let started = Instant::now();
    let log = dir.join(format!("{SUITE}-{key}.log"));
    let output = Command::new("debootstrap")
        .arg("--variant=minbase")
        .arg(format!("--include={}", INCLUDE.join(",")))
        .arg(SUITE)
        .arg(&scratch)
        .arg(MIRROR)
        .stdin(Stdio::null())
        .output()
        .expect("run debootstrap");
    let _ = std::fs::write(&log, [output.stdout, output.stderr].concat());
    assert!(
        output.status.success(),
        "debootstrap failed ({}); see {}",
        output.status,
        log.display()
    );
    finish_root(&scratch);
    std::fs::rename(&scratch, &root).expect("move the root into place");
    eprintln!(
        "hostbed: built the Debian root {} in {:.1?}",
        root.display(),
        started.elapsed()
    );
    root
}

/// What every machine needs: no network sources (it has no network; the tests add their
/// own), its name as hostname, no timer that takes dpkg's lock in the middle of a test, and
/// the journal in memory only (flushing it to disk once failed a boot on a busy host).
fn finish_root(root: &Path) {
    std::fs::write(root.join("etc/apt/sources.list"), "").unwrap();
    let _ = std::fs::remove_file(root.join("etc/hostname"));
    let _ = std::fs::remove_dir_all(root.join("var/log/journal"));
    run(Command::new("sh")
        .arg("-c")
        .arg("rm -rf \"$1\"/var/lib/apt/lists/* \"$1\"/var/cache/apt/*.bin")
        .arg("sh")
        .arg(root));
    run(Command::new("systemctl")
        .arg(format!("--root={}", root.display()))
        .args(["mask", "apt-daily.timer", "apt-daily-upgrade.timer"]));
}

/// What a command in the machine did.
#[derive(Debug)]
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// A booted machine. Dropping it (the test ending, passed or panicking) halts it and waits,
/// then SIGKILLs whatever is left: its PID 1 (which ends every process inside) and nspawn.
pub struct Machine {
    pub name: String,
    nspawn: Option<std::process::Child>,
    /// The machine's PID 1, as the host numbers it.
    leader: i32,
    console: PathBuf,
    /// The cgroups made for it (none on a host running systemd).
    cgroups: Vec<PathBuf>,
}

impl Machine {
    /// Boots a throw-away copy of the cached root with `binds` (host dir, path inside)
    /// mounted read-only, its console logged in `log_dir`. `None` (with the reason printed)
    /// only when this host cannot run nspawn at all.
    pub async fn boot(binds: &[(&Path, &str)], log_dir: &Path) -> Option<Machine> {
        if let Some(reason) = cannot_run() {
            eprintln!("SKIPPED: the host test bed cannot run here: {reason}");
            return None;
        }
        let root = tokio::task::spawn_blocking(cached_root)
            .await
            .expect("build the root");
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "drover-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let console = log_dir.join(format!("{name}.console"));
        let log = std::fs::File::create(&console).expect("console log");
        // Without systemd on the host nothing gives each machine a cgroup of its own, and two
        // machines' systemd managing one cgroup fail each other's units (219/CGROUP): the
        // wrapper moves nspawn into a fresh one first. A host running systemd registers each
        // machine with machined instead, which makes it a scope.
        let systemd = host_runs_systemd();
        let cgroups = if systemd {
            Vec::new()
        } else {
            tracking_cgroups(&name)
        };
        let mut command = Command::new("sh");
        command
            .args([
                "-ec",
                "for g in $CG; do echo $$ > $g/cgroup.procs; done; unset CG; exec \"$@\"",
            ])
            .args(["sh", "systemd-nspawn", "--boot", "--private-network"])
            .args(["--volatile=overlay", "--machine", &name, "--directory"])
            .arg(&root)
            .env(
                "CG",
                cgroups
                    .iter()
                    .map(|g| g.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        if !systemd {
            command.args(["--register=no", "--keep-unit"]);
        }
        for (host, inside) in binds {
            command.arg(format!("--bind-ro={}:{inside}", host.display()));
        }
        // PID 1 carries the run's marker too, so scripts/test would find a machine left over.
        if let Ok(run) = std::env::var("DROVER_TEST_RUN") {
            command.arg(format!("--setenv=DROVER_TEST_RUN={run}"));
        }
        let started = Instant::now();
        let nspawn = std::os::unix::process::CommandExt::process_group(&mut command, 0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start systemd-nspawn");
        let mut machine = Machine {
            name,
            leader: 0,
            nspawn: Some(nspawn),
            console,
            cgroups,
        };
        machine.leader = machine.find_leader().await;
        machine.wait_booted().await;
        eprintln!(
            "hostbed: {} booted in {:.1?}",
            machine.name,
            started.elapsed()
        );
        Some(machine)
    }

    /// nspawn's child whose pid in its own namespace is 1.
    async fn find_leader(&mut self) -> i32 {
        let nspawn = self.nspawn.as_mut().unwrap();
        let console = self.console.clone();
        let id = nspawn.id();
        crate::eventually_explained(
            "the machine's PID 1 to start",
            BOOT_DEADLINE,
            async || {
                if let Some(status) = nspawn.try_wait().unwrap() {
                    let log = std::fs::read_to_string(&console).unwrap_or_default();
                    panic!("systemd-nspawn exited ({status}):\n{log}");
                }
                let children =
                    std::fs::read_to_string(format!("/proc/{id}/task/{id}/children")).ok()?;
                children
                    .split_whitespace()
                    .find(|pid| leader_of(id, pid))
                    .and_then(|pid| pid.parse().ok())
            },
            || std::fs::read_to_string(&console).unwrap_or_default(),
        )
        .await
    }

    /// Until systemd says the boot is done; a unit that failed to start fails the test.
    async fn wait_booted(&self) {
        let state = crate::eventually_explained(
            "the machine to finish booting",
            BOOT_DEADLINE,
            async || {
                // Bounded, so a boot that hangs meets the deadline above.
                let wait = self.exec(&["systemctl", "is-system-running", "--wait"]);
                let out = tokio::time::timeout(Duration::from_secs(10), wait)
                    .await
                    .ok()?;
                let state = out.stdout.trim().to_string();
                matches!(state.as_str(), "running" | "degraded").then_some(state)
            },
            || self.console(),
        )
        .await;
        if state == "degraded" {
            let script = "systemctl --failed --no-pager; systemctl --failed --plain \
                          --no-legend | cut -d' ' -f1 | xargs -r -n1 journalctl -b --no-pager -u";
            let failed = self.exec(&["sh", "-c", script]).await;
            panic!("{} booted degraded:\n{}", self.name, failed.stdout);
        }
    }

    fn nsenter(&self, argv: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("nsenter");
        command
            .args(["--target", &self.leader.to_string(), "--all"])
            .args(["env", "-i", &format!("PATH={PATH}"), "LANG=C.UTF-8"])
            .args(["HOME=/root", "TERM=dumb"])
            .args(argv)
            .kill_on_drop(true);
        command
    }

    /// Runs `argv` as root inside the machine (a clean environment, its PATH).
    pub async fn exec(&self, argv: &[&str]) -> Output {
        self.exec_with_input(argv, &[]).await
    }

    /// [`Machine::exec`] with `input` on its stdin.
    pub async fn exec_with_input(&self, argv: &[&str], input: &[u8]) -> Output {
        use tokio::io::AsyncWriteExt;
        let mut child = self
            .nsenter(argv)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run nsenter");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input).await.expect("write stdin");
        drop(stdin);
        let output = tokio::time::timeout(COMMAND_DEADLINE, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("{argv:?} in {} took over {COMMAND_DEADLINE:?}", self.name))
            .expect("wait for nsenter");
        Output {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs `script` with `sh -c` inside; fails the test unless it succeeds. Its stdout.
    pub async fn sh(&self, script: &str) -> String {
        let out = self.exec(&["sh", "-c", script]).await;
        assert!(
            out.success,
            "in {}: {script}\nfailed: {}\n{}",
            self.name, out.stdout, out.stderr
        );
        out.stdout
    }

    /// Writes `contents` to `path` inside the machine with `mode` (octal, e.g. "0600").
    pub async fn write(&self, path: &str, contents: &str, mode: &str) {
        let script = "install -D -m \"$2\" /dev/stdin \"$1\"";
        let out = self
            .exec_with_input(&["sh", "-c", script, "sh", path, mode], contents.as_bytes())
            .await;
        assert!(out.success, "cannot write {path}: {}", out.stderr);
    }

    /// `systemctl show -P PROPERTY UNIT`.
    pub async fn unit_property(&self, unit: &str, property: &str) -> String {
        let out = self
            .exec(&["systemctl", "show", "-P", property, unit])
            .await;
        out.stdout.trim().to_string()
    }

    /// The unit's journal (messages only), read from inside; blocking, so a failure
    /// message can include it.
    pub fn journal(&self, unit: &str) -> String {
        let output = std::process::Command::new("nsenter")
            .args(["--target", &self.leader.to_string(), "--all"])
            .args(["env", "-i", &format!("PATH={PATH}")])
            .args(["journalctl", "--no-pager", "-o", "cat", "-u", unit])
            .output();
        output.map_or_else(
            |err| format!("(no journal: {err})"),
            |out| String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// The last `lines` lines of [`Machine::journal`].
    pub fn journal_tail(&self, unit: &str, lines: usize) -> String {
        let journal = self.journal(unit);
        let all: Vec<&str> = journal.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// What nspawn and the machine's console printed.
    pub fn console(&self) -> String {
        std::fs::read_to_string(&self.console).unwrap_or_default()
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let Some(mut nspawn) = self.nspawn.take() else {
            return;
        };
        let id = nspawn.id();
        let group = Pid::from_raw(id as i32);
        let started = Instant::now();
        // SIGTERM: nspawn asks systemd to halt, then unmounts the overlay and exits.
        let _ = signal::kill(group, signal::Signal::SIGTERM);
        let (done, waited) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let _ = nspawn.wait();
            let _ = done.send(());
        });
        if waited.recv_timeout(Duration::from_secs(30)).is_ok() {
            eprintln!("hostbed: {} halted in {:.1?}", self.name, started.elapsed());
        } else {
            let console = self.console();
            let tail: Vec<&str> = console.lines().rev().take(15).collect();
            eprintln!(
                "hostbed: {} did not halt within 30 s; killing it. Its console ended:\n{}",
                self.name,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
            // PID 1 is in its own session: killing it ends every process in the machine.
            // Checked first: had it gone, its number may be someone else's by now.
            if leader_of(id, &self.leader.to_string()) {
                let _ = signal::kill(Pid::from_raw(self.leader), signal::Signal::SIGKILL);
            }
            // nspawn is still unreaped, so its group's number cannot have been reused.
            let _ = signal::killpg(group, signal::Signal::SIGKILL);
        }
        let _ = waiter.join();
        for cgroup in &self.cgroups {
            remove_cgroup(cgroup);
        }
        // nspawn cannot remove it where /run is not a tmpfs (as here); empty once it exits.
        let _ = std::fs::remove_dir(Path::new("/run/systemd/nspawn/propagate").join(&self.name));
    }
}

fn host_runs_systemd() -> bool {
    Path::new("/run/systemd/system").exists()
}

/// Whether `pid` is a child of nspawn `nspawn` and PID 1 of its own namespace.
fn leader_of(nspawn: u32, pid: &str) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    field("PPid:") == [nspawn.to_string().as_str()]
        && field("NSpid:").ends_with(&["1"])
        && field("NSpid:").len() == 2
}
