//! The packages as an operator gets them: `scripts/package` builds the .deb and .rpm of
//! drover-coordinator (with droverctl) and drover-updater from the debug binaries already
//! built (a release build would take minutes; the packaging is the same; `--fast` packs
//! with gzip -1 instead of xz), signed with a throw-away gpg key. Each is installed into
//! its own empty root and checked: files,
//! modes, the `drover` user, the state directories, the units (`systemd-analyze verify`
//! and `security` against the installed root), and that signatures verify and a tampered
//! package does not.
//!
//! Limits (also in README): dpkg runs the real maintainer scripts without a chroot
//! (`--force-script-chrootless`; they honour `DPKG_ROOT`), and `--force-depends` because
//! the empty root has no libc6. rpm cannot run scriptlets outside a chroot and the root has
//! no /bin/sh, so it installs with `--noscripts --nodeps`; the test checks the scriptlets
//! call systemd-sysusers and systemd-tmpfiles and runs those two on the root itself.

use std::{
    fs,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Command, Output},
};

use drover_tests::bin;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Stops the gpg-agent a test's GNUPGHOME started, so none outlives the test.
struct AgentGuard(PathBuf);

impl Drop for AgentGuard {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", &self.0)
            .args(["--kill", "all"])
            .output();
    }
}

/// A throw-away signing key in its own GNUPGHOME; returns its fingerprint.
fn test_key(gnupg: &Path) -> String {
    fs::create_dir(gnupg).unwrap();
    fs::set_permissions(gnupg, fs::Permissions::from_mode(0o700)).unwrap();
    let gpg = |args: &[&str]| run(Command::new("gpg").env("GNUPGHOME", gnupg).args(args));
    gpg(&[
        "--batch",
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
        "--quick-gen-key",
        "Drover Package Test <packages@drover.test>",
        "rsa3072",
        "sign",
        "1d",
    ]);
    let listing = stdout(&gpg(&["--with-colons", "--list-secret-keys"]));
    listing
        .lines()
        .find_map(|line| line.strip_prefix("fpr:"))
        .and_then(|rest| rest.split(':').find(|field| field.len() == 40))
        .expect("the new key's fingerprint")
        .to_string()
}

struct Packages {
    debs: [PathBuf; 2],
    rpms: [PathBuf; 2],
}

fn build_packages(out: &Path, gnupg: &Path, key: &str) -> Packages {
    let bin_dir = bin("drover-coordinator").parent().unwrap().to_path_buf();
    bin("droverctl");
    bin("drover-updater");
    run(Command::new(repo_root().join("scripts/package"))
        .env("GNUPGHOME", gnupg)
        .arg("--fast")
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--out")
        .arg(out)
        .arg("--sign")
        .arg(key));
    // rpm names the machine as `uname -m` does; dpkg has its own names.
    let rpm_arch = std::env::consts::ARCH;
    let deb_arch = match rpm_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let deb = |name: &str| out.join(format!("{name}_{VERSION}_{deb_arch}.deb"));
    let rpm = |name: &str| out.join(format!("{name}-{VERSION}-1.{rpm_arch}.rpm"));
    let packages = Packages {
        debs: [deb("drover-coordinator"), deb("drover-updater")],
        rpms: [rpm("drover-coordinator"), rpm("drover-updater")],
    };
    for file in packages.debs.iter().chain(&packages.rpms) {
        assert!(file.exists(), "scripts/package made no {}", file.display());
    }
    packages
}

/// A copy with one byte of the payload flipped (near the end: inside the compressed data).
fn tampered(file: &Path) -> PathBuf {
    let mut bytes = fs::read(file).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0x01;
    let copy = file.with_extension("tampered");
    fs::write(&copy, bytes).unwrap();
    copy
}

fn mode_and_owner(path: &Path) -> (u32, u32) {
    let meta = fs::symlink_metadata(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    (meta.permissions().mode() & 0o7777, meta.uid())
}

/// What both package formats must leave in a root once their install steps ran.
fn check_installed_root(root: &Path) {
    for (path, mode) in [
        ("usr/bin/drover-coordinator", 0o755),
        ("usr/bin/droverctl", 0o755),
        ("usr/bin/drover-updater", 0o755),
        ("usr/lib/systemd/system/drover-coordinator.service", 0o644),
        ("usr/lib/systemd/system/drover-updater.service", 0o644),
        ("usr/lib/sysusers.d/drover-coordinator.conf", 0o644),
        ("usr/lib/tmpfiles.d/drover-coordinator.conf", 0o644),
        ("usr/lib/tmpfiles.d/drover-updater.conf", 0o644),
        // Read by systemd as root; may hold the database password.
        ("etc/drover/coordinator.env", 0o600),
        ("etc/drover/updater.env", 0o600),
    ] {
        assert_eq!(mode_and_owner(&root.join(path)), (mode, 0), "{path}");
    }
    for unit in ["drover-coordinator.service", "drover-updater.service"] {
        assert_eq!(
            fs::read(root.join("usr/lib/systemd/system").join(unit)).unwrap(),
            fs::read(repo_root().join("deploy/systemd").join(unit)).unwrap(),
            "{unit} is the one in deploy/systemd"
        );
    }
    // The packaged binary runs (it is the real one, not a placeholder).
    let version = run(Command::new(root.join("usr/bin/droverctl")).arg("--version"));
    assert!(stdout(&version).contains(VERSION), "{}", stdout(&version));
    // Stripped, as distributions ship binaries: no symbol table, no debug info (the
    // allocated .debug_gdb_scripts, which rustc loads at run time, stays).
    for binary in ["drover-coordinator", "droverctl", "drover-updater"] {
        let sections = stdout(&run(Command::new("readelf")
            .args(["--section-headers", "--wide"])
            .arg(root.join("usr/bin").join(binary))));
        assert!(
            !sections.contains(" .symtab ")
                && !sections.contains(" .debug_info ")
                && !sections.contains(" .debug_line "),
            "{binary} is not stripped:\n{sections}"
        );
    }

    // The user, made by systemd-sysusers in this root only.
    let passwd = fs::read_to_string(root.join("etc/passwd")).expect("the root's /etc/passwd");
    let entry: Vec<&str> = passwd
        .lines()
        .find(|line| line.starts_with("drover:"))
        .unwrap_or_else(|| panic!("no drover user in the root's /etc/passwd:\n{passwd}"))
        .split(':')
        .collect();
    let uid: u32 = entry[2].parse().unwrap();
    assert!((1..1000).contains(&uid), "a system user: {entry:?}");
    assert_eq!(entry[5], "/var/lib/drover", "{entry:?}");
    assert_eq!(entry[6], "/usr/sbin/nologin", "{entry:?}");
    assert!(
        fs::read_to_string(root.join("etc/group"))
            .unwrap()
            .lines()
            .any(|line| line.starts_with(&format!("drover:x:{}:", entry[3]))),
        "drover's group"
    );
    // State directories from tmpfiles.d, with their owners and modes.
    assert_eq!(mode_and_owner(&root.join("var/lib/drover")), (0o750, uid));
    assert_eq!(
        mode_and_owner(&root.join("var/lib/drover-updater")),
        (0o700, 0)
    );
    verify_units(root);
}

/// `systemd-analyze verify --root` resolves each ExecStart inside the root and the
/// dependencies (network-online.target, …) among the root's units: the root gets the host's
/// systemd units, as a host with systemd installed has them.
fn verify_units(root: &Path) {
    let units_dir = root.join("usr/lib/systemd/system");
    for entry in fs::read_dir("/usr/lib/systemd/system").unwrap() {
        let entry = entry.unwrap();
        let target = units_dir.join(entry.file_name());
        if !target.exists() {
            run(Command::new("cp").arg("-a").arg(entry.path()).arg(&target));
        }
    }
    let verify = || {
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", root.display()))
            .args(["drover-coordinator.service", "drover-updater.service"])
            .output()
            .unwrap()
    };
    let output = verify();
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The check looks at the installed binary: without it, verify fails.
    let binary = root.join("usr/bin/drover-coordinator");
    fs::rename(&binary, binary.with_extension("away")).unwrap();
    let without = verify();
    fs::rename(binary.with_extension("away"), &binary).unwrap();
    assert!(
        !without.status.success(),
        "verify passed without the binary"
    );
    assert!(String::from_utf8_lossy(&without.stderr).contains("/usr/bin/drover-coordinator"));

    for (unit, at_most) in [
        ("drover-coordinator.service", 2.0),
        ("drover-updater.service", 5.0),
    ] {
        let output = run(Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(format!("--root={}", root.display()))
            .arg(unit));
        let text = stdout(&output);
        let exposure: f64 = text
            .lines()
            .find_map(|line| line.split(&format!("level for {unit}: ")).nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|number| number.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level for {unit}:\n{text}"));
        assert!(
            exposure <= at_most,
            "{unit} exposure {exposure} > {at_most}"
        );
    }
}

fn install_debs(packages: &Packages, root: &Path) {
    for dir in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
    ] {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["--force-script-chrootless", "--force-depends", "-i"])
        .args(&packages.debs));
    for name in ["drover-coordinator", "drover-updater"] {
        let status = run(Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .args(["--status", name]));
        assert!(
            stdout(&status).contains("Status: install ok installed"),
            "{}",
            stdout(&status)
        );
    }
}

/// One packaging run (a few seconds with `--fast`) serves both formats' checks.
#[test]
fn packages_are_signed_and_install_into_empty_roots_with_user_state_and_units() {
    let dir = tempfile::tempdir().unwrap();
    let gnupg = dir.path().join("gnupg");
    let _agent = AgentGuard(gnupg.clone());
    let key = test_key(&gnupg);
    let packages = build_packages(&dir.path().join("out"), &gnupg, &key);
    check_debs(&packages, &gnupg, &key, &dir.path().join("deb"));
    check_rpms(&packages, &gnupg, &key, &dir.path().join("rpm"));
}

/// Detached signatures, then both .debs into an empty root with their real scripts.
fn check_debs(packages: &Packages, gnupg: &Path, key: &str, dir: &Path) {
    fs::create_dir(dir).unwrap();

    // The detached signatures verify with the public key alone; a changed byte does not.
    let keyring = dir.join("drover-test.gpg");
    let public = run(Command::new("gpg")
        .env("GNUPGHOME", gnupg)
        .args(["--export", key]));
    fs::write(&keyring, &public.stdout).unwrap();
    for deb in &packages.debs {
        let signature = deb.with_extension("deb.asc");
        run(Command::new("gpgv")
            .arg("--keyring")
            .arg(&keyring)
            .arg(&signature)
            .arg(deb));
        let bad = Command::new("gpgv")
            .arg("--keyring")
            .arg(&keyring)
            .arg(&signature)
            .arg(tampered(deb))
            .output()
            .unwrap();
        assert!(!bad.status.success(), "a tampered .deb verified");
        assert!(String::from_utf8_lossy(&bad.stderr).contains("BAD signature"));
    }

    let root = dir.join("root");
    let host_users = fs::read_to_string("/etc/passwd").unwrap();
    install_debs(packages, &root);
    check_installed_root(&root);
    // The scripts ran chrootless, yet changed only the root (DPKG_ROOT).
    assert_eq!(fs::read_to_string("/etc/passwd").unwrap(), host_users);
    check_debian_docs(&root);
    check_lintian(packages);
}

/// What Debian asks of every binary package's /usr/share/doc/PKG: a machine-readable
/// copyright file naming the workspace's license, and the changelog (`changelog.gz`, as
/// the packages are native) whose latest entry is this version.
fn check_debian_docs(root: &Path) {
    let manifest = fs::read_to_string(repo_root().join("Cargo.toml")).unwrap();
    let license = manifest
        .lines()
        .find_map(|line| line.strip_prefix("license = "))
        .expect("the workspace's license")
        .trim_matches('"');
    for pkg in ["drover-coordinator", "drover-updater"] {
        let doc = root.join("usr/share/doc").join(pkg);
        let copyright = fs::read_to_string(doc.join("copyright")).expect("copyright");
        assert!(
            copyright.starts_with(
                "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
            ),
            "{pkg}: {copyright}"
        );
        assert!(
            copyright.contains(&format!("\nLicense: {license}\n")),
            "{pkg}: {copyright}"
        );
        assert_eq!(mode_and_owner(&doc.join("changelog.gz")), (0o644, 0));
        let changelog = stdout(&run(Command::new("zcat").arg(doc.join("changelog.gz"))));
        assert!(
            changelog.starts_with(&format!("{pkg} ({VERSION}) ")),
            "{pkg}: {changelog}"
        );
    }
}

/// `lintian` (Debian's package checker) finds no error in either .deb: copyright and
/// changelog present, binaries stripped, control fields well-formed, … (Its warnings are
/// deliberate choices: 0600 env files, systemctl in maintainer scripts, no man pages.)
fn check_lintian(packages: &Packages) {
    let output = Command::new("lintian")
        .args(["--no-cfg", "--fail-on", "error"])
        .args(&packages.debs)
        .output()
        .expect("lintian is missing: scripts/setup installs it");
    let text = stdout(&output);
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(
        errors.is_empty() && output.status.success(),
        "lintian ({}) reports errors:\n{}\n{}",
        output.status,
        errors.join("\n"),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `rpm -K`, then both .rpms into an empty root with signatures enforced.
fn check_rpms(packages: &Packages, gnupg: &Path, key: &str, dir: &Path) {
    fs::create_dir(dir).unwrap();
    let public_key = dir.join("drover-test.asc");
    let public = run(Command::new("gpg")
        .env("GNUPGHOME", gnupg)
        .args(["--armor", "--export", key]));
    fs::write(&public_key, &public.stdout).unwrap();

    // rpm -K against a database that does not know the key: signed, but not trusted.
    let db = dir.join("rpmdb");
    let rpm = |args: &[&std::ffi::OsStr]| {
        Command::new("rpm")
            .arg("--dbpath")
            .arg(&db)
            .args(args)
            .output()
            .unwrap()
    };
    fs::create_dir(&db).unwrap();
    assert!(rpm(&["--initdb".as_ref()]).status.success());
    let unknown = rpm(&["-K".as_ref(), packages.rpms[0].as_os_str()]);
    assert!(!unknown.status.success(), "verified without the key");
    assert!(
        stdout(&unknown).contains("SIGNATURES NOT OK"),
        "{}",
        stdout(&unknown)
    );
    assert!(
        rpm(&["--import".as_ref(), public_key.as_os_str()])
            .status
            .success()
    );
    for file in &packages.rpms {
        let good = rpm(&["-K".as_ref(), file.as_os_str()]);
        assert!(good.status.success(), "{}", stdout(&good));
        assert!(
            stdout(&good).contains("digests signatures OK"),
            "{}",
            stdout(&good)
        );
        let bad = rpm(&["-K".as_ref(), tampered(file).as_os_str()]);
        assert!(
            !bad.status.success(),
            "a tampered .rpm verified: {}",
            stdout(&bad)
        );
    }

    // Install with signatures enforced (`_pkgverify_level signature`): refused where the
    // key is unknown, accepted once it is imported.
    let root = dir.join("root");
    fs::create_dir(&root).unwrap();
    let install = |extra: &[&Path]| {
        Command::new("rpm")
            .arg("--root")
            .arg(&root)
            .args(["--define", "_pkgverify_level signature"])
            .args(["-i", "--nodeps", "--noscripts"])
            .args(extra)
            .output()
            .unwrap()
    };
    run(Command::new("rpm").arg("--root").arg(&root).arg("--initdb"));
    let refused = install(&[&packages.rpms[1]]);
    assert!(!refused.status.success(), "installed without a trusted key");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("NOKEY"));
    run(Command::new("rpm")
        .arg("--root")
        .arg(&root)
        .arg("--import")
        .arg(&public_key));
    let installed = install(&[&packages.rpms[0], &packages.rpms[1]]);
    assert!(
        installed.status.success(),
        "{}",
        String::from_utf8_lossy(&installed.stderr)
    );

    // The scriptlets rpm skipped (no shell in the root) do exactly these two things.
    let scripts = stdout(&run(Command::new("rpm")
        .args(["-qp", "--scripts"])
        .arg(&packages.rpms[0])));
    assert!(
        scripts.contains("systemd-sysusers drover-coordinator.conf"),
        "{scripts}"
    );
    assert!(
        scripts.contains("systemd-tmpfiles --create drover-coordinator.conf"),
        "{scripts}"
    );
    run(Command::new("systemd-sysusers").arg(format!("--root={}", root.display())));
    run(Command::new("systemd-tmpfiles")
        .arg(format!("--root={}", root.display()))
        .arg("--create"));
    check_installed_root(&root);
    // Every installed file matches its package (digests, modes, owners).
    run(Command::new("rpm").arg("--root").arg(&root).args([
        "-V",
        "--nodeps",
        "drover-coordinator",
        "drover-updater",
    ]));
}
