//! Signed package repositories built the way a vendor would, with the standard tools: the
//! demo agent packaged with `dpkg-deb` in an apt repository (`apt-ftparchive`, InRelease and
//! Release.gpg signed by `gpg`), and with `rpmbuild` in an rpm repository (packages signed by
//! `rpmsign`, `createrepo_c`, `repomd.xml.asc`); each also in three flawed variants (signed by
//! an unknown key, unsigned, one package tampered with). Served over loopback HTTP, where
//! `REPO_URL/apt` (or `/rpm`) is the variant the test chose.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
};

use crate::bin;

/// Runs a command that must succeed; its standard output.
pub fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A gpg key in its own GnuPG home (a temp dir): never the user's keyring.
pub struct GpgKey {
    home: PathBuf,
    pub name: String,
    /// The armored public key.
    pub public: PathBuf,
}

impl GpgKey {
    pub fn generate(dir: &Path, name: &str) -> Self {
        let home = dir.join(format!("{name}.gnupg"));
        std::fs::create_dir_all(&home).unwrap();
        std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let key = Self {
            home,
            name: format!("Drover {name}"),
            public: dir.join(format!("{name}.asc")),
        };
        run(key
            .gpg()
            .args(["--passphrase", "", "--quick-gen-key"])
            .args([
                &format!("{} <{name}@drover.invalid>", key.name),
                "rsa2048",
                "sign",
                "never",
            ]));
        let armored = run(key.gpg().args(["--armor", "--export", &key.name]));
        std::fs::write(&key.public, armored).unwrap();
        key
    }

    fn gpg(&self) -> Command {
        let mut gpg = Command::new("gpg");
        gpg.env("GNUPGHOME", &self.home).args(["--batch", "--yes"]);
        gpg
    }

    fn detach_sign(&self, file: &Path) {
        let out = format!("{}.asc", file.display());
        run(self
            .gpg()
            .args(["--armor", "--detach-sign", "-o", &out])
            .arg(file));
    }

    fn sign_release(&self, dists: &Path) {
        let release = dists.join("Release");
        run(self
            .gpg()
            .args(["--clearsign", "-o"])
            .arg(dists.join("InRelease"))
            .arg(&release));
        run(self
            .gpg()
            .args(["--armor", "--detach-sign", "-o"])
            .arg(dists.join("Release.gpg"))
            .arg(&release));
    }

    fn rpmsign(&self, rpms: &[PathBuf]) {
        run(Command::new("rpmsign")
            .env("GNUPGHOME", &self.home)
            .args(["--define", &format!("_gpg_name {}", self.name)])
            .args(["--define", "__gpg /usr/bin/gpg"])
            .arg("--addsign")
            .args(rpms));
    }
}

impl Drop for GpgKey {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(&self.home)
            .args(["--kill", "gpg-agent"])
            .output();
    }
}

/// What is wrong with a repository variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flaw {
    None,
    /// Signed (metadata and packages) by a key the host does not trust.
    UnknownKey,
    /// No signatures at all.
    Unsigned,
    /// Signed correctly, but the newest package's bytes were changed.
    Tampered,
}

impl Flaw {
    pub const ALL: [Flaw; 4] = [Flaw::None, Flaw::UnknownKey, Flaw::Unsigned, Flaw::Tampered];

    fn dir(self) -> &'static str {
        match self {
            Flaw::None => "good",
            Flaw::UnknownKey => "unknown-key",
            Flaw::Unsigned => "unsigned",
            Flaw::Tampered => "tampered",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageFormat {
    Deb,
    Rpm,
}

impl PackageFormat {
    fn name(self) -> &'static str {
        match self {
            PackageFormat::Deb => "apt",
            PackageFormat::Rpm => "rpm",
        }
    }
}

pub const PACKAGE: &str = "drover-demo-agent";

pub struct PackageRepos {
    served: PathBuf,
    format: PackageFormat,
    pub key: GpgKey,
    _other: GpgKey,
    /// `{url}/apt` or `{url}/rpm`: the variant chosen with `serve`.
    pub url: String,
    /// The package files built, one per version, in the order given (what the good
    /// repository serves, byte for byte).
    pub packages: Vec<PathBuf>,
}

impl PackageRepos {
    /// Packages `versions` of the demo agent and builds every variant (the last version is
    /// the tampered one); serves the good one.
    pub async fn build(dir: &Path, format: PackageFormat, versions: &[&str]) -> Self {
        let keys = dir.join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        let key = GpgKey::generate(&keys, "release");
        let other = GpgKey::generate(&keys, "intruder");
        let served = dir.join("served");
        let build = dir.join("build");
        let packages: Vec<PathBuf> = versions
            .iter()
            .map(|version| match format {
                PackageFormat::Deb => build_deb(&build, version),
                PackageFormat::Rpm => build_rpm(&build, version),
            })
            .collect();
        for flaw in Flaw::ALL {
            let repo = served.join(format!("{}-{}", format.name(), flaw.dir()));
            let signer = match flaw {
                Flaw::None | Flaw::Tampered => Some(&key),
                Flaw::UnknownKey => Some(&other),
                Flaw::Unsigned => None,
            };
            match format {
                PackageFormat::Deb => apt_repo(&repo, &packages, signer, flaw),
                PackageFormat::Rpm => rpm_repo(&repo, &packages, signer, flaw),
            }
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        // Always the whole file: variants are swapped within a second, so a 304 for an
        // If-Modified-Since, or a range honoured without its If-Range date (apt resumes a
        // partial InRelease of the same size), would hand apt the previous variant's index.
        let app = axum::Router::new()
            .fallback_service(tower_http::services::ServeDir::new(&served))
            .layer(axum::middleware::map_request(
                |mut request: axum::extract::Request| async move {
                    let headers = request.headers_mut();
                    headers.remove(axum::http::header::IF_MODIFIED_SINCE);
                    headers.remove(axum::http::header::IF_NONE_MATCH);
                    headers.remove(axum::http::header::RANGE);
                    headers.remove(axum::http::header::IF_RANGE);
                    request
                },
            ));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let repos = Self {
            served,
            format,
            key,
            _other: other,
            url: format!("http://{addr}/{}", format.name()),
            packages,
        };
        repos.serve(Flaw::None);
        repos
    }

    /// Points `{url}` at the variant with `flaw`.
    pub fn serve(&self, flaw: Flaw) {
        let link = self.served.join(self.format.name());
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(format!("{}-{}", self.format.name(), flaw.dir()), &link)
            .unwrap();
    }
}

/// The demo agent as it would be installed: /opt/drover-demo-agent/{VERSION,bin/…}.
fn stage(dir: &Path, version: &str) -> PathBuf {
    let opt = dir.join("opt").join(PACKAGE);
    std::fs::create_dir_all(opt.join("bin")).unwrap();
    std::fs::write(opt.join("VERSION"), format!("{version}\n")).unwrap();
    std::fs::copy(bin(PACKAGE), opt.join("bin").join(PACKAGE)).unwrap();
    dir.to_path_buf()
}

fn build_deb(build: &Path, version: &str) -> PathBuf {
    let arch = run(Command::new("dpkg").arg("--print-architecture"));
    let arch = arch.trim();
    let staging = stage(&build.join(format!("deb-{version}")), version);
    std::fs::create_dir_all(staging.join("DEBIAN")).unwrap();
    std::fs::write(
        staging.join("DEBIAN/control"),
        format!(
            "Package: {PACKAGE}\nVersion: {version}\nArchitecture: {arch}\n\
             Maintainer: Drover tests <tests@drover.invalid>\nDescription: Drover demo agent\n"
        ),
    )
    .unwrap();
    let deb = build.join(format!("{PACKAGE}_{version}_{arch}.deb"));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "-z1", "-b"])
        .arg(&staging)
        .arg(&deb));
    deb
}

fn build_rpm(build: &Path, version: &str) -> PathBuf {
    let staging = stage(&build.join(format!("rpm-{version}")), version);
    let top = build.join("rpmbuild");
    let spec = build.join("agent.spec");
    std::fs::write(
        &spec,
        format!(
            "Name: {PACKAGE}\nVersion: %{{ver}}\nRelease: 1\nSummary: Drover demo agent\n\
             License: Apache-2.0\nAutoReqProv: no\n%description\nDrover demo agent.\n\
             %install\ncp -a %{{staging}}/opt %{{buildroot}}/\n\
             %files\n/opt/{PACKAGE}\n"
        ),
    )
    .unwrap();
    run(Command::new("rpmbuild")
        .args(["--quiet", "-bb"])
        .args(["--define", &format!("_topdir {}", top.display())])
        .args(["--define", &format!("ver {version}")])
        .args(["--define", &format!("staging {}", staging.display())])
        // A prebuilt binary: no stripping, debuginfo or post-install scripts; fast payload.
        .args(["--define", "debug_package %{nil}"])
        .args(["--define", "__os_install_post %{nil}"])
        .args(["--define", "_build_id_links none"])
        .args(["--define", "_binary_payload w1.gzdio"])
        .arg(&spec));
    let arch = run(Command::new("rpm").args(["--eval", "%{_arch}"]));
    top.join("RPMS")
        .join(arch.trim())
        .join(format!("{PACKAGE}-{version}-1.{}.rpm", arch.trim()))
}

/// Flips one byte near the end of `file` (inside the compressed payload).
fn tamper(file: &Path) {
    let mut bytes = std::fs::read(file).unwrap();
    let at = bytes.len() - 20;
    bytes[at] ^= 0xff;
    std::fs::write(file, bytes).unwrap();
}

pub(crate) fn apt_repo(repo: &Path, debs: &[PathBuf], signer: Option<&GpgKey>, flaw: Flaw) {
    let pool = repo.join("pool");
    std::fs::create_dir_all(&pool).unwrap();
    for deb in debs {
        std::fs::copy(deb, pool.join(deb.file_name().unwrap())).unwrap();
    }
    let arch = run(Command::new("dpkg").arg("--print-architecture"));
    let dists = repo.join("dists/stable");
    let binary = dists.join(format!("main/binary-{}", arch.trim()));
    std::fs::create_dir_all(&binary).unwrap();
    let packages = run(Command::new("apt-ftparchive")
        .current_dir(repo)
        .args(["packages", "pool"]));
    std::fs::write(binary.join("Packages"), packages).unwrap();
    let release = run(Command::new("apt-ftparchive")
        .current_dir(&dists)
        .args(["-o", "APT::FTPArchive::Release::Suite=stable"])
        .args(["-o", "APT::FTPArchive::Release::Codename=stable"])
        .args(["-o", "APT::FTPArchive::Release::Components=main"])
        .args([
            "-o",
            &format!("APT::FTPArchive::Release::Architectures={}", arch.trim()),
        ])
        .args(["release", "."]));
    std::fs::write(dists.join("Release"), release).unwrap();
    if let Some(key) = signer {
        key.sign_release(&dists);
    }
    if flaw == Flaw::Tampered {
        let newest = debs.last().unwrap();
        tamper(&pool.join(newest.file_name().unwrap()));
    }
}

fn rpm_repo(repo: &Path, rpms: &[PathBuf], signer: Option<&GpgKey>, flaw: Flaw) {
    std::fs::create_dir_all(repo).unwrap();
    let copies: Vec<PathBuf> = rpms
        .iter()
        .map(|rpm| {
            let copy = repo.join(rpm.file_name().unwrap());
            std::fs::copy(rpm, &copy).unwrap();
            copy
        })
        .collect();
    if let Some(key) = signer {
        key.rpmsign(&copies);
    }
    if flaw == Flaw::Tampered {
        // The metadata is made (and signed) over the tampered file: only the package's own
        // signature can catch it.
        tamper(copies.last().unwrap());
    }
    run(Command::new("createrepo_c").arg("-q").arg(repo));
    if let Some(key) = signer {
        key.detach_sign(&repo.join("repodata/repomd.xml"));
    }
}
