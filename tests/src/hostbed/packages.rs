//! The packages a host test installs: .debs built with dpkg-deb and a gpg-signed apt
//! repository of them.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::repos::{GpgKey, run};

/// A .deb of `name` at `version` (files: /opt/NAME/VERSION and `files`, each an absolute
/// path and its contents) with these maintainer `scripts` (file name, body), built into
/// `dir`.
pub fn deb(
    dir: &Path,
    name: &str,
    version: &str,
    scripts: &[(&str, String)],
    files: &[(&str, String)],
) -> PathBuf {
    let staging = dir.join(format!("{name}-{version}"));
    let control = staging.join("DEBIAN");
    std::fs::create_dir_all(&control).unwrap();
    std::fs::create_dir_all(staging.join("opt").join(name)).unwrap();
    std::fs::write(staging.join("opt").join(name).join("VERSION"), version).unwrap();
    for (path, contents) in files {
        let path = staging.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
    }
    let arch = run(Command::new("dpkg").arg("--print-architecture"));
    std::fs::write(
        control.join("control"),
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: {}\n\
             Maintainer: Drover tests <tests@drover.invalid>\nDescription: test agent\n",
            arch.trim()
        ),
    )
    .unwrap();
    for (script, body) in scripts {
        let path = control.join(script);
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    let deb = dir.join(format!("{name}_{version}_{}.deb", arch.trim()));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "-z1", "-b"])
        .arg(&staging)
        .arg(&deb));
    deb
}

/// An apt repository of `debs` in `dir/repo` (suite `stable`, component `main`), signed by
/// a new key whose armored public half is `dir/repo.asc`.
pub fn signed_apt_repo(dir: &Path, debs: &[PathBuf]) -> (PathBuf, PathBuf) {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let key = GpgKey::generate(&keys, "hostbed");
    let repo = dir.join("repo");
    crate::repos::apt_repo(&repo, debs, Some(&key), crate::repos::Flaw::None);
    let public = dir.join("repo.asc");
    std::fs::copy(&key.public, &public).unwrap();
    (repo, public)
}
