//! The coordinator's key and certificate files: read (PEM), written atomically with their
//! mode from the start, and kept private (a key or directory others can read is made
//! private again, with a warning). Shared by `tls` (the server certificate) and `pki`
//! (the CA that signs agents' certificates).

use std::{
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::Path,
};

use rcgen::KeyPair;
use rustls_pki_types::{CertificateDer, pem::PemObject};

use crate::error::{DroverError, Result};

pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|err| {
            DroverError::invalid(format!(
                "cannot read certificates from {} ({err}); give a PEM file",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(DroverError::invalid(format!(
            "{} holds no certificate; give a PEM file with at least one",
            path.display()
        )));
    }
    Ok(certs)
}

/// Creates the data directory (mode 0700) if it is missing.
pub fn ensure_data_dir(data_dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .map_err(|err| {
            DroverError::invalid(format!(
                "cannot create the data directory {} ({err}); choose another with --data-dir",
                data_dir.display()
            ))
        })?;
    keep_private(data_dir, 0o700);
    Ok(())
}

/// A key or directory that others may read (a restore or a copy can loosen modes) is made
/// private again, with a warning.
fn keep_private(path: &Path, mode: u32) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let current = meta.permissions().mode() & 0o777;
    if current & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = %format!("{current:o}"), "readable by others; made private");
        if let Err(err) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
            tracing::warn!(path = %path.display(), error = %err, "cannot make it private; fix its mode by hand");
        }
    }
}

pub fn read_key(path: &Path) -> Result<KeyPair> {
    keep_private(path, 0o600);
    let pem = std::fs::read_to_string(path).map_err(fs_error(path))?;
    KeyPair::from_pem(&pem).map_err(|err| {
        DroverError::invalid(format!(
            "cannot read the key {} ({err}); restore it, or move the data directory's tls/ \
             away to create a new CA (clients must then trust the new one)",
            path.display()
        ))
    })
}

/// Writes atomically (a temporary file renamed into place) with this mode from the start.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(fs_error(&tmp))?;
    // The mode applies only to a new file; make sure of it for an old one too.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(fs_error(&tmp))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(fs_error(&tmp))?;
    std::fs::rename(&tmp, path).map_err(fs_error(path))
}

pub fn fs_error(path: &Path) -> impl Fn(std::io::Error) -> DroverError + '_ {
    move |err| {
        DroverError::invalid(format!(
            "cannot write {} ({err}); check the data directory (--data-dir) is writable",
            path.display()
        ))
    }
}
