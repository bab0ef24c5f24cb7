//! The admin profile the coordinator writes into its data directory on start
//! (`admin-profile.json`, mode 0600): where droverctl finds the coordinator and which CA to
//! trust. `droverctl` reads it with `DROVER_PROFILE=PATH` or `--profile PATH`.
//!
//! Credentials will live here too (`credentials`, `null` until admin tokens exist); a
//! value already there is kept when the coordinator rewrites the file.

use std::{net::SocketAddr, path::Path};

use serde::{Deserialize, Serialize};

use crate::{error::Result, tls};

pub const FILE_NAME: &str = "admin-profile.json";

/// The profile's shape; droverctl reads the same keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminProfile {
    /// The gRPC address, `https://HOST:PORT`.
    pub coordinator: String,
    /// The CA certificate (PEM) that signed the coordinator's certificate.
    pub ca_file: std::path::PathBuf,
    /// `sha256:HEX` of that CA's DER, for humans comparing it with the coordinator's log.
    pub ca_pin: String,
    /// Reserved for admin credentials (not yet issued).
    #[serde(default)]
    pub credentials: serde_json::Value,
}

/// A client's address for a listen address: an unspecified one (`0.0.0.0`, `[::]`) is
/// reached on loopback, which the generated certificate always names.
pub fn client_url(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        ip if !ip.is_unspecified() => ip,
        std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
    };
    format!("https://{}", SocketAddr::new(ip, listen.port()))
}

/// Writes (or rewrites) `DATA_DIR/admin-profile.json`, keeping any credentials in it.
/// Blocking file I/O.
pub fn write(data_dir: &Path, grpc: SocketAddr, tls: &tls::Tls) -> Result<std::path::PathBuf> {
    let path = data_dir.join(FILE_NAME);
    let credentials = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<AdminProfile>(&bytes).ok())
        .map(|old| old.credentials)
        .unwrap_or_default();
    let ca_file = std::path::absolute(&tls.ca_file).unwrap_or_else(|_| tls.ca_file.clone());
    let profile = AdminProfile {
        coordinator: client_url(grpc),
        ca_file,
        ca_pin: tls.ca_pin.clone(),
        credentials,
    };
    let json = serde_json::to_vec_pretty(&profile)
        .map_err(|err| crate::error::DroverError::Internal(err.to_string()))?;
    tls::write_file(&path, &json, 0o600)?;
    Ok(path)
}
