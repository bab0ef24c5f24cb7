//! A small file system of the test's own (tmpfs, mounted as root), to fill up for real.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
};

pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `megabytes` on a new temporary directory (needs root, as CI has).
    pub fn mount(megabytes: u32) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            output.status.success(),
            "cannot mount a tmpfs (this test needs root): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system to the last byte with one file; returns it (remove it to free).
    pub fn fill(&self) -> PathBuf {
        let path = self.dir.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("create the filler");
        let block = vec![0u8; 64 * 1024];
        // Whole blocks, then single bytes: until the file system says it is full.
        while file.write_all(&block).is_ok() {}
        while file.write_all(&[0]).is_ok() {}
        let _ = file.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: a process the test started may still hold a file open here.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
