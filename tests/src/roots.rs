//! Isolated package roots, so tests run the real apt, dnf and zypper without ever changing
//! the host's packages: apt with its own lists, cache, sources and dpkg database under the
//! root (the updater's `--package-root`); dnf `--installroot` with its own config and repo
//! dir; zypper `--root`. Each trusts only the test's release key: apt through `signed-by`,
//! dnf and zypper through the key imported into the root's rpm database (`rpm --import`),
//! with gpgcheck on; nothing is auto-imported or trusted blindly.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::repos::{PACKAGE, PackageFormat, PackageRepos, run};

/// Where scripts/setup unpacks Debian's dnf-plugins-core (its versionlock plugin): the
/// package cannot be installed beside zypper on Debian 12 (it declares Breaks: zypper).
pub const DNF_PLUGINS: &str = "/usr/local/lib/drover-tests/dnf-plugins-core";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    Apt,
    Dnf,
    Zypper,
}

impl Manager {
    pub fn name(self) -> &'static str {
        match self {
            Manager::Apt => "apt",
            Manager::Dnf => "dnf",
            Manager::Zypper => "zypper",
        }
    }

    pub fn format(self) -> PackageFormat {
        match self {
            Manager::Apt => PackageFormat::Deb,
            Manager::Dnf | Manager::Zypper => PackageFormat::Rpm,
        }
    }
}

pub struct PackageHost {
    pub manager: Manager,
    pub root: PathBuf,
    /// Global options the package manager needs for this root (config files, plugins).
    options: Vec<String>,
    env: Vec<(String, String)>,
}

impl PackageHost {
    /// An empty root whose package manager uses `repos` (whatever variant it serves).
    pub fn create(manager: Manager, dir: &Path, repos: &PackageRepos) -> Self {
        let root = dir.join(format!("{}-root", manager.name()));
        std::fs::create_dir_all(&root).unwrap();
        let mut host = Self {
            manager,
            root,
            options: Vec::new(),
            env: Vec::new(),
        };
        match manager {
            Manager::Apt => host.setup_apt(repos),
            Manager::Dnf => host.setup_dnf(dir, repos),
            Manager::Zypper => host.setup_zypper(repos),
        }
        host
    }

    fn mkdirs(&self, dirs: &[&str]) {
        for dir in dirs {
            std::fs::create_dir_all(self.root.join(dir)).unwrap();
        }
    }

    fn setup_apt(&mut self, repos: &PackageRepos) {
        self.mkdirs(&[
            "etc/apt/sources.list.d",
            "etc/apt/preferences.d",
            "etc/apt/apt.conf.d",
            "etc/apt/keyrings",
            "var/lib/dpkg/info",
            "var/lib/dpkg/updates",
            "var/lib/apt/lists/partial",
            "var/cache/apt/archives/partial",
            "var/log/apt",
        ]);
        std::fs::write(self.root.join("var/lib/dpkg/status"), "").unwrap();
        let keyring = self.root.join("etc/apt/keyrings/drover-test.asc");
        std::fs::copy(&repos.key.public, &keyring).unwrap();
        std::fs::write(
            self.root.join("etc/apt/sources.list"),
            format!(
                "deb [signed-by={}] {}/ stable main\n",
                keyring.display(),
                repos.url
            ),
        )
        .unwrap();
        // The root's directories belong to root, not to apt's download user.
        self.options.push("-oAPT::Sandbox::User=root".into());
    }

    fn setup_rpm_db(&self, repos: &PackageRepos) {
        let root = self.root.display().to_string();
        run(Command::new("rpm").args(["--root", &root, "--initdb"]));
        run(Command::new("rpm")
            .args(["--root", &root, "--import"])
            .arg(&repos.key.public));
    }

    fn setup_dnf(&mut self, dir: &Path, repos: &PackageRepos) {
        self.setup_rpm_db(repos);
        let conf = dir.join("dnf");
        let (repos_d, plugins, plugin_conf) = (
            conf.join("repos.d"),
            conf.join("plugins"),
            conf.join("plugins.conf.d"),
        );
        for d in [&repos_d, &plugins, &plugin_conf] {
            std::fs::create_dir_all(d).unwrap();
        }
        let python = Path::new(DNF_PLUGINS).join("usr/lib/python3/dist-packages");
        let versionlock = python.join("dnf-plugins/versionlock.py");
        assert!(
            versionlock.exists(),
            "{} is missing: run scripts/setup (it unpacks dnf-plugins-core there)",
            versionlock.display()
        );
        // Only the versionlock plugin, so no other plugin's missing dependency gets in the way.
        std::fs::copy(&versionlock, plugins.join("versionlock.py")).unwrap();
        self.mkdirs(&["etc/dnf/plugins"]);
        let locklist = self.root.join("etc/dnf/plugins/versionlock.list");
        std::fs::write(&locklist, "").unwrap();
        std::fs::write(
            plugin_conf.join("versionlock.conf"),
            format!("[main]\nenabled=1\nlocklist={}\n", locklist.display()),
        )
        .unwrap();
        std::fs::write(
            repos_d.join("drover-test.repo"),
            format!(
                "[drover-test]\nname=Drover test\nbaseurl={}/\nenabled=1\ngpgcheck=1\n\
                 repo_gpgcheck=1\ngpgkey=file://{}\n",
                repos.url,
                repos.key.public.display()
            ),
        )
        .unwrap();
        let main = conf.join("dnf.conf");
        std::fs::write(
            &main,
            format!(
                "[main]\ngpgcheck=1\nrepo_gpgcheck=1\nlocalpkg_gpgcheck=1\nreposdir={}\n\
                 pluginpath={}\npluginconfpath={}\ninstall_weak_deps=0\n",
                repos_d.display(),
                plugins.display(),
                plugin_conf.display()
            ),
        )
        .unwrap();
        self.options = vec![
            format!("--config={}", main.display()),
            "--releasever=12".into(),
        ];
        self.env
            .push(("PYTHONPATH".into(), python.display().to_string()));
    }

    fn setup_zypper(&mut self, repos: &PackageRepos) {
        self.setup_rpm_db(repos);
        run(Command::new("zypper")
            .args(["--non-interactive", "--root"])
            .arg(&self.root)
            .args(["addrepo", "--gpgcheck-strict"])
            .arg(format!("{}/", repos.url))
            .arg("drover-test"));
    }

    /// The `drover-updater run` flags that install into this root.
    pub fn updater_args(&self) -> Vec<(String, String)> {
        let mut args = vec![
            ("--installer".to_string(), self.manager.name().to_string()),
            ("--package".into(), PACKAGE.into()),
            ("--package-root".into(), self.root.display().to_string()),
        ];
        for option in &self.options {
            args.push(("--package-option".into(), option.clone()));
        }
        args
    }

    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// The installed version, from the root's package database.
    pub fn installed(&self) -> Option<String> {
        let output = match self.manager {
            Manager::Apt => Command::new("dpkg-query")
                .arg(format!("--admindir={}/var/lib/dpkg", self.root.display()))
                .args(["-W", "-f", "${db:Status-Status} ${Version}", PACKAGE])
                .output(),
            Manager::Dnf | Manager::Zypper => Command::new("rpm")
                .arg("--root")
                .arg(&self.root)
                .args(["-q", "--qf", "installed %{VERSION}", PACKAGE])
                .output(),
        }
        .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.strip_prefix("installed ").map(str::to_string)
    }

    /// The file the package put in the root says the same version.
    pub fn installed_file_version(&self) -> Option<String> {
        std::fs::read_to_string(self.root.join(format!("opt/{PACKAGE}/VERSION")))
            .ok()
            .map(|v| v.trim().to_string())
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        match self.manager {
            Manager::Apt => {
                command
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .arg(format!("-oDir={}/", self.root.display()))
                    .arg(format!(
                        "-oDir::State::status={}/var/lib/dpkg/status",
                        self.root.display()
                    ))
                    .arg(format!("-oDPkg::Options::=--root={}", self.root.display()))
                    .arg(format!(
                        "-oDPkg::Options::=--admindir={}/var/lib/dpkg",
                        self.root.display()
                    ));
            }
            Manager::Dnf => {
                command.arg("-y").arg("--installroot").arg(&self.root);
            }
            Manager::Zypper => {
                command
                    .arg("--non-interactive")
                    .arg("--root")
                    .arg(&self.root);
            }
        }
        command.args(&self.options);
        command
    }

    /// Whether the package manager itself lists the package as held / locked.
    pub fn held(&self) -> bool {
        let listing = match self.manager {
            Manager::Apt => run(self.command("apt-mark").arg("showhold")),
            Manager::Dnf => run(self.command("dnf").args(["versionlock", "list"])),
            Manager::Zypper => run(self.command("zypper").arg("locks")),
        };
        listing.contains(PACKAGE)
    }

    /// What unattended upgrades would do: upgrade everything the repositories offer.
    pub fn upgrade_everything(&self) {
        match self.manager {
            Manager::Apt => {
                run(self.command("apt-get").arg("update"));
                run(self.command("apt-get").args(["-y", "upgrade"]));
            }
            Manager::Dnf => {
                run(self.command("dnf").arg("upgrade"));
            }
            Manager::Zypper => {
                run(self.command("zypper").arg("refresh"));
                run(self.command("zypper").arg("update"));
            }
        }
    }
}
