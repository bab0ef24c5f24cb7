//! Signing keys: generating one, reading key files, matching them to a root's roles.

use std::{
    collections::HashMap,
    fmt,
    num::NonZeroU64,
    path::{Path, PathBuf},
};

use aws_lc_rs::{rand::SystemRandom, signature::Ed25519KeyPair};
use tough::{
    async_trait,
    key_source::KeySource,
    schema::{
        RoleKeys, RoleType, Root,
        decoded::{Decoded, Hex},
        key::Key,
    },
    sign::{Sign, parse_keypair},
};

use super::SignError;

/// Generates an Ed25519 key and writes it to `out` as PKCS#8 v2 DER, readable only by its
/// owner (mode 0600); an existing file is never overwritten. Returns the TUF key id (hex).
/// tough's `LocalKeySource` and `parse_keypair` read such a file as it is.
pub fn generate_key(out: &Path) -> Result<String, SignError> {
    let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map_err(|_| SignError::KeyGeneration)?;
    let bytes = document.as_ref();
    // The id first: a key tough cannot read back is never written.
    let id = KeyFile::parse(out, bytes.to_vec())?.id_hex();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(out).map_err(|err| {
        if err.kind() == std::io::ErrorKind::AlreadyExists {
            SignError::KeyExists(out.to_path_buf())
        } else {
            SignError::io("create", out)(err)
        }
    })?;
    let written = std::io::Write::write_all(&mut file, bytes).and_then(|()| file.sync_all());
    if let Err(err) = written {
        drop(file);
        let _ = std::fs::remove_file(out);
        return Err(SignError::io("write", out)(err));
    }
    Ok(id)
}

/// A private key read from a file, with its public half and TUF key id.
pub(crate) struct KeyFile {
    pub path: PathBuf,
    bytes: Vec<u8>,
    pub key: Key,
    pub id: Decoded<Hex>,
}

impl fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyFile")
            .field("path", &self.path)
            .field("id", &self.id_hex())
            .finish_non_exhaustive()
    }
}

impl KeyFile {
    pub fn read(path: &Path) -> Result<Self, SignError> {
        let bytes = std::fs::read(path).map_err(SignError::io("read the key", path))?;
        Self::parse(path, bytes)
    }

    fn parse(path: &Path, bytes: Vec<u8>) -> Result<Self, SignError> {
        let pair = parse_keypair(&bytes).map_err(|_| SignError::NotAKey(path.to_path_buf()))?;
        let key = pair.tuf_key();
        let id = key.key_id().map_err(|err| SignError::Tuf {
            action: "compute a key id",
            message: err.to_string(),
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
            key,
            id,
        })
    }

    pub fn id_hex(&self) -> String {
        hex::encode(&*self.id)
    }

    /// For tough's signing, which takes key sources.
    pub fn source(&self) -> Box<dyn KeySource> {
        Box::new(MemoryKey {
            path: self.path.clone(),
            bytes: self.bytes.clone(),
        })
    }
}

/// Reads every file; refuses a key given twice (it would count twice toward nothing).
pub(crate) fn read_keys(paths: &[PathBuf]) -> Result<Vec<KeyFile>, SignError> {
    let mut keys: Vec<KeyFile> = Vec::with_capacity(paths.len());
    for path in paths {
        let key = KeyFile::read(path)?;
        if let Some(first) = keys.iter().find(|k| k.id == key.id) {
            return Err(SignError::DuplicateKey {
                first: first.path.clone(),
                id: key.id_hex(),
                second: key.path,
            });
        }
        keys.push(key);
    }
    Ok(keys)
}

/// `1 ≤ threshold ≤ keys`, as a root needs it.
pub(crate) fn check_threshold(
    set: &str,
    threshold: u64,
    keys: usize,
) -> Result<NonZeroU64, SignError> {
    if keys == 0 {
        return Err(SignError::Threshold(format!("give at least one {set} key")));
    }
    NonZeroU64::new(threshold)
        .filter(|k| k.get() <= keys as u64)
        .ok_or_else(|| {
            SignError::Threshold(format!(
                "the {set} threshold must be between 1 and {keys} (the number of {set} keys \
                 given), not {threshold}"
            ))
        })
}

pub(crate) fn role_keys(keys: &[KeyFile], threshold: NonZeroU64) -> RoleKeys {
    RoleKeys {
        keyids: keys.iter().map(|k| k.id.clone()).collect(),
        threshold,
        _extra: HashMap::new(),
    }
}

/// The given keys the root lists for `role`.
pub(crate) fn keys_for<'a>(root: &Root, role: RoleType, keys: &'a [KeyFile]) -> Vec<&'a KeyFile> {
    let listed = root
        .roles
        .get(&role)
        .map(|r| r.keyids.as_slice())
        .unwrap_or(&[]);
    keys.iter().filter(|k| listed.contains(&k.id)).collect()
}

/// Fails unless `have` keys reach the role's threshold in `root`, e.g. "targets needs 2
/// signatures of the release keys, 1 of the given keys is one; …".
pub(crate) fn ensure_threshold(
    root: &Root,
    role: RoleType,
    label: &str,
    set: &str,
    have: usize,
    hint: &str,
) -> Result<(), SignError> {
    let needed = root.roles.get(&role).map_or(1, |r| r.threshold.get());
    if have as u64 >= needed {
        return Ok(());
    }
    let signatures = if needed == 1 {
        "signature"
    } else {
        "signatures"
    };
    let given = match have {
        0 => "none of the given keys is one".to_string(),
        1 => "1 of the given keys is one".to_string(),
        n => format!("{n} of the given keys are"),
    };
    Err(SignError::NotEnoughKeys(format!(
        "{label} needs {needed} {signatures} of the {set} keys, {given}; {hint}"
    )))
}

/// A key already read, handed to tough's signing (`LocalKeySource` would read the file
/// again for every role).
#[derive(Debug)]
struct MemoryKey {
    path: PathBuf,
    bytes: Vec<u8>,
}

#[async_trait]
impl KeySource for MemoryKey {
    async fn as_sign(
        &self,
    ) -> Result<Box<dyn Sign>, Box<dyn std::error::Error + Send + Sync + 'static>> {
        Ok(Box::new(parse_keypair(&self.bytes)?))
    }

    async fn write(
        &self,
        _value: &str,
        _key_id_hex: &str,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        Err(format!("{} is read-only here", self.path.display()).into())
    }
}
