//! The cgroups a machine runs in where the host has no systemd to give it a scope.

use std::path::{Path, PathBuf};

/// A new cgroup `name` under ours in each hierarchy systemd tracks processes in (cgroup2, and
/// v1's name=systemd on a hybrid host), created.
pub(super) fn tracking_cgroups(name: &str) -> Vec<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let own_path = |controllers: &str| {
        own.lines()
            .find_map(|l| {
                l.split_once(':')?
                    .1
                    .split_once(':')
                    .filter(|(c, _)| *c == controllers)
            })
            .map(|(_, path)| path.trim_start_matches('/').to_string())
    };
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut cgroups = Vec::new();
    for line in mounts.lines() {
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount) = before.split_whitespace().nth(4) else {
            continue;
        };
        let after: Vec<&str> = after.split_whitespace().collect();
        let own = match after.as_slice() {
            ["cgroup2", ..] => own_path(""),
            ["cgroup", _, options] if options.split(',').any(|o| o == "name=systemd") => {
                own_path("name=systemd")
            }
            _ => None,
        };
        if let Some(own) = own {
            let cgroup = Path::new(mount).join(own).join(name);
            std::fs::create_dir_all(&cgroup).expect("create the machine's cgroup");
            cgroups.push(cgroup);
        }
    }
    cgroups
}

/// Removes an emptied cgroup and those the machine's systemd made under it (rmdir only).
pub(super) fn remove_cgroup(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}
