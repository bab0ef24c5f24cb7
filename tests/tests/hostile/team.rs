//! The release team, offline, with the real `droverctl releases` verbs: three Ed25519 keys,
//! two to sign (root and release roles alike). Every signed state is kept as a copy, the
//! way an attacker who once read the coordinator's database would have it.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use drover_tests::{bin, repos::run};

pub struct ReleaseTeam {
    pub dir: PathBuf,
    keys: Vec<PathBuf>,
    copies: PathBuf,
}

fn droverctl(args: &[&str]) -> String {
    run(Command::new(bin("droverctl")).args(args))
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

impl ReleaseTeam {
    pub fn create(work: &Path) -> Self {
        let keys: Vec<PathBuf> = ["alice", "bob", "carol"]
            .iter()
            .map(|name| work.join(format!("{name}.pk8")))
            .collect();
        for key in &keys {
            droverctl(&["releases", "keygen", "--out", text(key)]);
        }
        let dir = work.join("release");
        let all: Vec<&str> = keys.iter().map(|k| text(k)).collect();
        let mut init = vec!["releases", "init", "--dir", text(&dir), "--root-key"];
        init.extend(&all);
        init.extend(["--root-threshold", "2", "--release-key"]);
        init.extend(&all);
        init.extend(["--release-threshold", "2"]);
        droverctl(&init);
        let copies = work.join("signed-copies");
        std::fs::create_dir_all(&copies).unwrap();
        Self { dir, keys, copies }
    }

    /// The root updaters are installed with.
    pub fn pinned_root(&self) -> PathBuf {
        self.dir.join("metadata/1.root.json")
    }

    pub fn add(&self, kind: &str, version: &str, file: &Path) {
        droverctl(&[
            "releases",
            "add",
            "--dir",
            text(&self.dir),
            "--kind",
            kind,
            "--version",
            version,
            text(file),
        ]);
    }

    pub fn floor(&self, version: &str) {
        droverctl(&["releases", "floor", "--dir", text(&self.dir), version]);
    }

    /// Signs with two of the three keys; returns the signed bundle's files (a copy).
    pub fn sign(&self, timestamp_expires: &str) -> BTreeMap<String, String> {
        droverctl(&[
            "releases",
            "sign",
            "--dir",
            text(&self.dir),
            "--key",
            text(&self.keys[0]),
            text(&self.keys[2]),
            "--timestamp-expires",
            timestamp_expires,
        ]);
        let bundle = self.bundle();
        let version = serde_json::from_str::<serde_json::Value>(&bundle["timestamp.json"]).unwrap()
            ["signed"]["version"]
            .as_u64()
            .unwrap();
        std::fs::write(
            self.copies.join(format!("{version}.json")),
            serde_json::to_string(&bundle).unwrap(),
        )
        .unwrap();
        bundle
    }

    /// The files of the release directory as they are now (what `publish` sends).
    pub fn bundle(&self) -> BTreeMap<String, String> {
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(self.dir.join("metadata")).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name != "root.json" {
                files.insert(name, std::fs::read_to_string(entry.path()).unwrap());
            }
        }
        files.insert(
            "targets/policy.json".into(),
            std::fs::read_to_string(self.dir.join("targets/policy.json")).unwrap(),
        );
        files
    }

    /// The bundle as it was after signing `version`.
    pub fn signed_copy(&self, version: u64) -> BTreeMap<String, String> {
        let text = std::fs::read_to_string(self.copies.join(format!("{version}.json"))).unwrap();
        serde_json::from_str(&text).unwrap()
    }
}
