//! The agent's enrolled identity on disk and when to renew it.
//!
//! `STATE_DIR/identity/` (mode 0700) holds `credentials.pem` (certificate then private key,
//! one file so a renewal replaces both in one rename), `ca.pem` and `identity.json`. Every
//! file is written atomically with mode 0600.

use std::{
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::backoff::Backoff;

pub const IDENTITY_DIR: &str = "identity";
const CREDENTIALS_FILE: &str = "credentials.pem";
const CA_FILE: &str = "ca.pem";
const RECORD_FILE: &str = "identity.json";
/// Renewals are never retried faster than this, whatever the backoff says.
pub const MIN_RETRY: Duration = Duration::from_secs(5);

/// How the updater proves who it is to an `https://` coordinator.
#[derive(Debug, Clone, Default)]
pub enum ClientIdentity {
    /// No client certificate (an `http://` coordinator started with --insecure).
    #[default]
    None,
    /// An enrolled state dir's `identity/`; credentials are re-read at each connect.
    Files { dir: PathBuf },
    /// A simulated agent's certificate and key, never written anywhere.
    InMemory { cert_pem: String, key_pem: String },
}

impl ClientIdentity {
    /// The certificate and key to present now, if any.
    pub async fn load(&self) -> anyhow::Result<Option<tonic::transport::Identity>> {
        match self {
            Self::None => Ok(None),
            Self::InMemory { cert_pem, key_pem } => Ok(Some(tonic::transport::Identity::from_pem(
                cert_pem, key_pem,
            ))),
            Self::Files { dir } => {
                let dir = dir.clone();
                let (cert, key) =
                    tokio::task::spawn_blocking(move || read_credentials(&dir)).await??;
                Ok(Some(tonic::transport::Identity::from_pem(cert, key)))
            }
        }
    }
}

/// `identity.json`: who the coordinator enrolled this host as, and the certificate's lifetime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityRecord {
    pub agent_id: String,
    pub group: String,
    pub coordinator: String,
    pub enrolled_at_ms: i64,
    pub not_after_ms: i64,
    /// When the current certificate was received (the start of its lifetime for renewal).
    pub issued_at_ms: i64,
}

pub fn identity_dir(state_dir: &Path) -> PathBuf {
    state_dir.join(IDENTITY_DIR)
}

pub fn ca_path(dir: &Path) -> PathBuf {
    dir.join(CA_FILE)
}

/// The record of an enrolled state dir, or `None` when it was never enrolled.
pub fn read_record(dir: &Path) -> anyhow::Result<Option<IdentityRecord>> {
    let file = dir.join(RECORD_FILE);
    let bytes = match std::fs::read(&file) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", file.display())),
    };
    serde_json::from_slice(&bytes).map(Some).with_context(|| {
        format!(
            "{} is not a valid identity; enrol again with `drover-updater enroll --force`",
            file.display()
        )
    })
}

/// The certificate PEM and the private key PEM from `credentials.pem`.
pub fn read_credentials(dir: &Path) -> anyhow::Result<(String, String)> {
    let file = dir.join(CREDENTIALS_FILE);
    let text = std::fs::read_to_string(&file).with_context(|| {
        format!(
            "cannot read {}; enrol again with `drover-updater enroll --force`",
            file.display()
        )
    })?;
    split_credentials(&text)
        .with_context(|| format!("{} is damaged; enrol again with --force", file.display()))
}

pub(crate) fn split_credentials(text: &str) -> anyhow::Result<(String, String)> {
    let Some(at) = text
        .match_indices("-----BEGIN ")
        .map(|(i, _)| i)
        .find(|&i| {
            text[i..]
                .lines()
                .next()
                .is_some_and(|l| l.contains("PRIVATE KEY"))
        })
    else {
        bail!("no private key in it");
    };
    let (cert, key) = text.split_at(at);
    if !cert.contains("-----BEGIN CERTIFICATE-----") {
        bail!("no certificate before the private key");
    }
    Ok((cert.to_string(), key.to_string()))
}

/// Writes a new identity (enrolment): the directory 0700, then credentials, CA and record.
pub fn write_identity(
    dir: &Path,
    record: &IdentityRecord,
    cert_pem: &str,
    key_pem: &str,
    ca_pem: &str,
) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}; check its permissions", dir.display()))?;
    // An existing directory keeps its mode on create: tighten it.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict {} to mode 0700", dir.display()))?;
    write_private(
        &dir.join(CREDENTIALS_FILE),
        credentials(cert_pem, key_pem).as_bytes(),
    )?;
    write_private(&ca_path(dir), ca_pem.as_bytes())?;
    write_record(dir, record)
}

/// Replaces the certificate and key after a renewal, then the record's lifetime.
pub fn replace_credentials(
    dir: &Path,
    cert_pem: &str,
    key_pem: &str,
    issued_at_ms: i64,
    not_after_ms: i64,
) -> anyhow::Result<IdentityRecord> {
    let mut record = read_record(dir)?.context("the identity disappeared; enrol again")?;
    write_private(
        &dir.join(CREDENTIALS_FILE),
        credentials(cert_pem, key_pem).as_bytes(),
    )?;
    // A crash here leaves the old times: the next start renews early, which is harmless.
    record.issued_at_ms = issued_at_ms;
    record.not_after_ms = not_after_ms;
    write_record(dir, &record)?;
    Ok(record)
}

/// An identity file's text: the certificate, then its key (what [`split_credentials`] reads).
pub fn credentials(cert_pem: &str, key_pem: &str) -> String {
    let mut text = cert_pem.trim_end().to_string();
    text.push('\n');
    text.push_str(key_pem.trim_end());
    text.push('\n');
    text
}

fn write_record(dir: &Path, record: &IdentityRecord) -> anyhow::Result<()> {
    write_private(&dir.join(RECORD_FILE), &serde_json::to_vec_pretty(record)?)
}

/// Temp file created 0600, fsync, rename, fsync the directory.
pub(crate) fn write_private(file: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = file.with_extension("tmp");
    // A leftover temp file would keep its old mode when reopened.
    let _ = std::fs::remove_file(&tmp);
    {
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        out.write_all(bytes)?;
        out.sync_all()?;
    }
    std::fs::rename(&tmp, file).with_context(|| format!("cannot replace {}", file.display()))?;
    if let Some(dir) = file.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The instant two thirds of the certificate's lifetime have passed.
pub fn renew_at_ms(issued_at_ms: i64, not_after_ms: i64) -> i64 {
    let lifetime = not_after_ms.saturating_sub(issued_at_ms).max(0);
    issued_at_ms.saturating_add(lifetime / 3 * 2)
}

/// The wait after `failures` (≥ 1) failed attempts: jittered backoff, never under `MIN_RETRY`.
pub fn retry_delay(failures: u32, random: f64) -> Duration {
    let backoff = Backoff {
        base: MIN_RETRY,
        cap: Duration::from_secs(300),
    };
    backoff
        .delay(failures.saturating_sub(1), random)
        .max(MIN_RETRY)
}

/// How long to wait before the next renewal attempt: until `renew_at_ms`, or after
/// `failures` failed attempts `retry_delay`.
pub fn renewal_delay(now_ms: i64, record: &IdentityRecord, failures: u32, random: f64) -> Duration {
    if failures > 0 {
        return retry_delay(failures, random);
    }
    let due = renew_at_ms(record.issued_at_ms, record.not_after_ms);
    Duration::from_millis(due.saturating_sub(now_ms).max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(issued: i64, not_after: i64) -> IdentityRecord {
        IdentityRecord {
            agent_id: "a-1".into(),
            group: "prod".into(),
            coordinator: "https://127.0.0.1:7400".into(),
            enrolled_at_ms: issued,
            not_after_ms: not_after,
            issued_at_ms: issued,
        }
    }

    #[test]
    fn renews_after_two_thirds_of_the_lifetime() {
        assert_eq!(renew_at_ms(0, 3_000), 2_000);
        assert_eq!(renew_at_ms(1_000, 31_000), 21_000);
        // A certificate already expired (or with a nonsense lifetime) is due at once.
        assert_eq!(renew_at_ms(5_000, 1_000), 5_000);
        let r = record(0, 90_000);
        assert_eq!(renewal_delay(0, &r, 0, 0.5), Duration::from_secs(60));
        assert_eq!(renewal_delay(59_000, &r, 0, 0.5), Duration::from_secs(1));
        assert_eq!(renewal_delay(80_000, &r, 0, 0.5), Duration::ZERO);
    }

    #[test]
    fn failed_renewals_back_off_but_never_below_five_seconds() {
        let r = record(0, 90_000);
        for failures in 1..40 {
            for random in [0.0, 0.3, 0.999] {
                let delay = renewal_delay(80_000, &r, failures, random);
                assert!(delay >= MIN_RETRY, "{delay:?}");
                assert!(delay <= Duration::from_secs(300), "{delay:?}");
            }
        }
    }

    #[test]
    fn files_round_trip_with_private_modes() {
        let state = tempfile::tempdir().unwrap();
        let dir = identity_dir(state.path());
        assert_eq!(read_record(&dir).unwrap(), None);
        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let key = "-----BEGIN PRIVATE KEY-----\nBBBB\n-----END PRIVATE KEY-----\n";
        let ca = "-----BEGIN CERTIFICATE-----\nCCCC\n-----END CERTIFICATE-----\n";
        let rec = record(1_000, 91_000);
        write_identity(&dir, &rec, cert, key, ca).unwrap();

        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        for file in [CREDENTIALS_FILE, CA_FILE, RECORD_FILE] {
            assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
        }
        assert_eq!(read_record(&dir).unwrap(), Some(rec.clone()));
        assert_eq!(
            read_credentials(&dir).unwrap(),
            (cert.to_string(), key.to_string())
        );
        assert_eq!(std::fs::read_to_string(ca_path(&dir)).unwrap(), ca);

        let cert2 = cert.replace("AAAA", "DDDD");
        let renewed = replace_credentials(&dir, &cert2, key, 50_000, 140_000).unwrap();
        assert_eq!(
            (renewed.issued_at_ms, renewed.not_after_ms),
            (50_000, 140_000)
        );
        assert_eq!(renewed.enrolled_at_ms, 1_000);
        assert_eq!(read_credentials(&dir).unwrap().0, cert2);
        assert_eq!(mode(&dir.join(CREDENTIALS_FILE)), 0o600);
        assert!(!dir.join("credentials.tmp").exists());
    }

    #[test]
    fn damaged_credentials_say_what_to_do() {
        let err = split_credentials("-----BEGIN CERTIFICATE-----\n").unwrap_err();
        assert!(err.to_string().contains("no private key"));
    }
}
