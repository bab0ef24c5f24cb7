//! What the harness trusts: each coordinator it starts registers its CA and admin profile
//! (read from its ready file) under its addresses, so `droverctl`, `UpdaterBuilder`,
//! `simulate`, `http` and `grpc_channel` speak TLS to it given only its URL or address. A
//! coordinator started `--insecure` registers nothing and is spoken to in plaintext.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, LazyLock},
};

use drover_coordinator::server::ReadyTls;
use parking_lot::Mutex;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

static TRUST: LazyLock<Mutex<HashMap<String, ReadyTls>>> = LazyLock::new(Default::default);

/// Registers a coordinator's TLS (or, with `None`, forgets it: it runs `--insecure`).
pub(crate) fn register(addresses: &[SocketAddr], tls: Option<&ReadyTls>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut trust = TRUST.lock();
    for addr in addresses {
        match tls {
            Some(tls) => trust.insert(addr.to_string(), tls.clone()),
            None => trust.remove(&addr.to_string()),
        };
    }
}

/// `HOST:PORT` of a URL such as `https://127.0.0.1:7400/x`.
fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

/// The registered TLS of the coordinator at `url` (or `HOST:PORT`).
pub fn lookup(url: &str) -> Option<ReadyTls> {
    TRUST.lock().get(authority(url)).cloned()
}

/// The CA file to pass as `--ca-file` for `url`, if it is a TLS coordinator the harness knows.
pub fn ca_file_for(url: &str) -> Option<PathBuf> {
    lookup(url).map(|tls| tls.ca_file)
}

/// The admin profile to pass as `--profile` for `url`.
pub fn profile_for(url: &str) -> Option<PathBuf> {
    lookup(url).map(|tls| tls.admin_profile)
}

/// The admin token in the profile of the coordinator at `url` (its bootstrap admin's).
pub fn token_for(url: &str) -> Option<String> {
    let profile = profile_for(url)?;
    let bytes = std::fs::read(profile).ok()?;
    let json: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    json["credentials"]["token"].as_str().map(str::to_string)
}

/// `message` as a gRPC request carrying the admin token of the coordinator at `url`.
pub fn admin_request<T>(url: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token_for(url) {
        let value = format!("Bearer {token}")
            .parse()
            .expect("token is header text");
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// A gRPC channel to `url`, trusting the coordinator's CA for `https://`.
pub async fn grpc_channel(url: &str) -> Result<Channel, tonic::transport::Error> {
    let mut endpoint = Endpoint::from_shared(url.to_string())?;
    if url.starts_with("https://")
        && let Some(tls) = lookup(url)
    {
        let pem = std::fs::read(&tls.ca_file).expect("the coordinator's CA file");
        endpoint = endpoint
            .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))?;
    }
    endpoint.connect().await
}

/// A rustls client trusting only the CA in `ca_file` (ALPN `http/1.1`).
pub fn tls_connector(ca_file: &Path) -> tokio_rustls::TlsConnector {
    use rustls_pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).expect("CA file") {
        roots.add(cert.expect("CA PEM")).expect("CA certificate");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}
