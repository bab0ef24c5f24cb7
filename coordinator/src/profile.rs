//! The admin profile the coordinator writes into its data directory on start
//! (`admin-profile.json`, mode 0600): where droverctl finds the coordinator and which CA to
//! trust. `droverctl` reads it with `DROVER_PROFILE=PATH` or `--profile PATH`.
//!
//! `credentials` carries the admin token: on a first start (no credential in the store) the
//! coordinator makes the `bootstrap` credential (role admin) and writes its token here as
//! `{"token": "drover_…"}` before committing it, so no crash loses the only key. Later
//! starts keep whatever `credentials` holds. The token is never logged.

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    error::{DroverError, Result},
    fleet::{BOOTSTRAP_NAME, Fleet, new_token},
    tls,
};

pub const FILE_NAME: &str = "admin-profile.json";

/// The profile's shape; droverctl reads the same keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminProfile {
    /// The gRPC address, `https://HOST:PORT`, with a HOST the server certificate covers.
    pub coordinator: String,
    /// The CA certificate (PEM) that signed the coordinator's certificate.
    pub ca_file: std::path::PathBuf,
    /// `sha256:HEX` of that CA's DER, for humans comparing it with the coordinator's log.
    pub ca_pin: String,
    /// `{"token": "drover_…"}`: the bootstrap admin token (or what the operator put here).
    #[serde(default)]
    pub credentials: serde_json::Value,
}

/// A client's address for a listen address: an unspecified one (`0.0.0.0`, `[::]`) is
/// reached on loopback, which the generated certificate always names.
pub fn client_url(listen: SocketAddr) -> String {
    format!(
        "https://{}",
        SocketAddr::new(client_ip(listen), listen.port())
    )
}

fn client_ip(listen: SocketAddr) -> IpAddr {
    match listen.ip() {
        ip if !ip.is_unspecified() => ip,
        IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
        IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
    }
}

/// The address the profile names for the gRPC listener `listen`, as the server
/// certificate covers it (`names`: its DNS and IP subjectAltNames; droverctl checks the
/// URL's host against them): the listener's own address (loopback for an unspecified
/// one) when the certificate lists it, as the generated one always does; else
/// `localhost` for a loopback listener; else the certificate's first DNS name (an
/// operator's `--tls-cert` names the host as clients reach it); else, on an unspecified
/// listener, one of its IP addresses. `None`: the certificate covers none of these.
pub fn covered_url(listen: SocketAddr, names: &[String]) -> Option<String> {
    let port = listen.port();
    let ip = client_ip(listen);
    let ips: Vec<IpAddr> = names.iter().filter_map(|name| name.parse().ok()).collect();
    // A wildcard (`*.example.com`) names no host droverctl could connect to.
    let dns = || {
        names
            .iter()
            .filter(|name| name.parse::<IpAddr>().is_err() && !name.contains('*'))
    };
    if ips.contains(&ip) {
        return Some(format!("https://{}", SocketAddr::new(ip, port)));
    }
    if ip.is_loopback() && dns().any(|name| name.eq_ignore_ascii_case("localhost")) {
        return Some(format!("https://localhost:{port}"));
    }
    if let Some(name) = dns().next() {
        return Some(format!("https://{name}:{port}"));
    }
    ips.iter()
        .find(|_| listen.ip().is_unspecified())
        .map(|ip| format!("https://{}", SocketAddr::new(*ip, port)))
}

/// Writes the profile, and on a first start the bootstrap credential: the token goes into
/// the file (mode 0600) first, then its hash into the store. A token left in the profile
/// by a first start that crashed before its commit is reused.
pub async fn prepare(
    fleet: &Fleet,
    data_dir: &Path,
    grpc: SocketAddr,
    tls: &tls::Tls,
) -> Result<PathBuf> {
    let bootstrap = if fleet.needs_bootstrap_credential().await? {
        let path = data_dir.join(FILE_NAME);
        let earlier = tokio::task::spawn_blocking(move || read(&path).map(|p| p.credentials))
            .await
            .ok()
            .flatten()
            .and_then(|credentials| credentials.get("token")?.as_str().map(str::to_string))
            .filter(|token| token.starts_with("drover_"));
        Some(earlier.unwrap_or_else(new_token))
    } else {
        None
    };
    let credentials = bootstrap
        .as_ref()
        .map(|token| serde_json::json!({ "token": token }));
    let path = write_blocking(data_dir, grpc, tls, credentials).await?;
    let Some(token) = bootstrap else {
        return Ok(path);
    };
    if fleet.create_bootstrap_credential(&token).await? {
        tracing::info!(
            name = BOOTSTRAP_NAME,
            profile = %path.display(),
            "admin credential created (role admin); its token is in the admin profile"
        );
    } else {
        // Another coordinator on the same store made the first credential meanwhile: this
        // token is worth nothing, so it does not stay in the profile.
        write_blocking(data_dir, grpc, tls, Some(serde_json::Value::Null)).await?;
        tracing::warn!(
            profile = %path.display(),
            "another coordinator created the first admin credential; this profile has no \
             token: use that coordinator's admin-profile.json, or a token from \
             `droverctl admins create`"
        );
    }
    Ok(path)
}

async fn write_blocking(
    data_dir: &Path,
    grpc: SocketAddr,
    tls: &tls::Tls,
    credentials: Option<serde_json::Value>,
) -> Result<PathBuf> {
    let (dir, tls) = (data_dir.to_path_buf(), tls.clone());
    tokio::task::spawn_blocking(move || write(&dir, grpc, &tls, credentials))
        .await
        .map_err(|err| DroverError::Internal(format!("profile task: {err}")))?
}

fn read(path: &Path) -> Option<AdminProfile> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice::<AdminProfile>(&bytes).ok()
}

/// Writes (or rewrites) `DATA_DIR/admin-profile.json` with `credentials`, or keeping the
/// credentials already in it. Blocking file I/O.
pub fn write(
    data_dir: &Path,
    grpc: SocketAddr,
    tls: &tls::Tls,
    credentials: Option<serde_json::Value>,
) -> Result<PathBuf> {
    let path = data_dir.join(FILE_NAME);
    let credentials = match credentials {
        Some(credentials) => credentials,
        None => read(&path).map(|old| old.credentials).unwrap_or_default(),
    };
    let ca_file = std::path::absolute(&tls.ca_file).unwrap_or_else(|_| tls.ca_file.clone());
    let coordinator = covered_url(grpc, &tls.server_names).unwrap_or_else(|| {
        tracing::warn!(
            names = ?tls.server_names,
            listen = %grpc,
            "the server certificate names no address of the gRPC listener, so droverctl \
             cannot verify it; the admin profile names {}: add that name to the certificate, \
             or set the profile's coordinator to a name the certificate covers",
            client_url(grpc)
        );
        client_url(grpc)
    });
    let profile = AdminProfile {
        coordinator,
        ca_file,
        ca_pin: tls.ca_pin.clone(),
        credentials,
    };
    let json = serde_json::to_vec_pretty(&profile)
        .map_err(|err| DroverError::Internal(err.to_string()))?;
    crate::key_files::write_file(&path, &json, 0o600)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn the_profile_names_an_address_the_certificate_covers() {
        let generated = names(&["127.0.0.1", "::1", "localhost"]);
        let url = |listen: &str, names: &[String]| covered_url(listen.parse().unwrap(), names);
        // The generated certificate: the listener's own address, loopback for 0.0.0.0.
        assert_eq!(
            url("127.0.0.1:7400", &generated).as_deref(),
            Some("https://127.0.0.1:7400")
        );
        assert_eq!(
            url("0.0.0.0:7400", &generated).as_deref(),
            Some("https://127.0.0.1:7400")
        );
        assert_eq!(
            url("[::]:7400", &generated).as_deref(),
            Some("https://[::1]:7400")
        );
        // An operator's certificate for its DNS names: the first one it lists.
        let operator = names(&["*.fleet.example", "drover.example", "10.0.0.5"]);
        assert_eq!(
            url("127.0.0.1:7400", &operator).as_deref(),
            Some("https://drover.example:7400")
        );
        assert_eq!(
            url("10.0.0.5:7400", &operator).as_deref(),
            Some("https://10.0.0.5:7400")
        );
        // localhost before other names for a loopback listener.
        assert_eq!(
            url("127.0.0.1:7400", &names(&["drover.example", "localhost"])).as_deref(),
            Some("https://localhost:7400")
        );
        // Only IP addresses: one of them when the listener takes every address.
        let ips = names(&["10.0.0.5"]);
        assert_eq!(
            url("0.0.0.0:7400", &ips).as_deref(),
            Some("https://10.0.0.5:7400")
        );
        assert_eq!(url("127.0.0.1:7400", &ips), None);
        assert_eq!(url("127.0.0.1:7400", &names(&["*.fleet.example"])), None);
    }
}
