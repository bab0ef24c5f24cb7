//! Where the coordinator is and whom to trust: `--coordinator`/`DROVER_COORDINATOR` and a
//! profile (`--profile`/`DROVER_PROFILE`), the JSON file the coordinator writes into its
//! data directory (`admin-profile.json`):
//!
//! ```json
//! { "coordinator": "https://127.0.0.1:7400", "ca_file": "/var/lib/drover/data/tls/ca.pem" }
//! ```
//!
//! `ca_pem` (the CA certificate itself) may stand instead of `ca_file`; a relative
//! `ca_file` is relative to the profile. `credentials.token` is the admin token sent with
//! every call (`DROVER_TOKEN` overrides it); `ca_pin` is for humans. `https://` needs a CA;
//! `http://` only reaches an `--insecure` coordinator.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The loopback default when neither a flag nor a profile names the coordinator.
pub const DEFAULT_COORDINATOR: &str = "https://127.0.0.1:7400";

#[derive(Debug, Deserialize)]
struct ProfileFile {
    coordinator: Option<String>,
    ca_file: Option<PathBuf>,
    ca_pem: Option<String>,
    #[serde(default)]
    credentials: Option<Credentials>,
}

#[derive(Debug, Deserialize)]
struct Credentials {
    token: Option<String>,
}

/// The coordinator to call and the CA to trust.
#[derive(Debug)]
pub struct Target {
    pub url: String,
    /// The CA certificate (PEM), if a profile gave one.
    pub ca_pem: Option<Vec<u8>>,
    /// Where the CA came from, for error messages.
    pub ca_source: Option<String>,
    /// The admin token to send (`authorization: Bearer TOKEN`), if any.
    pub token: Option<String>,
}

/// Combines the flags with the profile (a flag wins over the profile's `coordinator`, and
/// `token`, from `DROVER_TOKEN`, over its credentials).
pub fn resolve(
    coordinator: Option<&str>,
    profile: Option<&Path>,
    token: Option<String>,
) -> Result<Target, String> {
    let token = token.filter(|t| !t.is_empty());
    let Some(path) = profile else {
        return Ok(Target {
            url: coordinator.unwrap_or(DEFAULT_COORDINATOR).to_string(),
            ca_pem: None,
            ca_source: None,
            token,
        });
    };
    let bytes = std::fs::read(path).map_err(|err| {
        format!(
            "cannot read the profile {} ({err}); point DROVER_PROFILE (or --profile) at the \
             admin-profile.json in the coordinator's data directory",
            path.display()
        )
    })?;
    let file: ProfileFile = serde_json::from_slice(&bytes).map_err(|err| {
        format!(
            "the profile {} is not valid JSON ({err}); expected {{\"coordinator\": \
             \"https://HOST:PORT\", \"ca_file\": \"PATH\"}}",
            path.display()
        )
    })?;
    let (ca_pem, ca_source) = match (file.ca_pem, file.ca_file) {
        (Some(pem), _) => (
            Some(pem.into_bytes()),
            format!("ca_pem in {}", path.display()),
        ),
        (None, Some(ca_file)) => {
            let ca_file = path.parent().unwrap_or(Path::new(".")).join(ca_file);
            let pem = std::fs::read(&ca_file).map_err(|err| {
                format!(
                    "cannot read the CA certificate {} named by the profile {} ({err}); fix \
                     its ca_file",
                    ca_file.display(),
                    path.display()
                )
            })?;
            (
                Some(pem),
                format!("{} (ca_file in {})", ca_file.display(), path.display()),
            )
        }
        (None, None) => (None, format!("the profile {}", path.display())),
    };
    Ok(Target {
        url: coordinator
            .map(str::to_string)
            .or(file.coordinator)
            .unwrap_or_else(|| DEFAULT_COORDINATOR.to_string()),
        ca_pem,
        ca_source: Some(ca_source),
        token: token.or(file.credentials.and_then(|c| c.token)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_wins_over_the_profile_and_ca_file_is_relative_to_it() {
        let dir = std::env::temp_dir().join(format!("droverctl-profile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.pem"), "PEM").unwrap();
        let profile = dir.join("p.json");
        std::fs::write(
            &profile,
            r#"{"coordinator": "https://a:1", "ca_file": "ca.pem", "credentials": {"token": "t1"}}"#,
        )
        .unwrap();
        let target = resolve(None, Some(&profile), None).unwrap();
        assert_eq!(target.url, "https://a:1");
        assert_eq!(target.ca_pem.as_deref(), Some(&b"PEM"[..]));
        assert_eq!(target.token.as_deref(), Some("t1"));
        let target = resolve(Some("https://b:2"), Some(&profile), Some("t2".into())).unwrap();
        assert_eq!(target.url, "https://b:2");
        assert_eq!(target.token.as_deref(), Some("t2"));
        std::fs::write(&profile, "{").unwrap();
        assert!(
            resolve(None, Some(&profile), None)
                .unwrap_err()
                .contains("not valid JSON")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
