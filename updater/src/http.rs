//! The one HTTP client configuration (health probes, release downloads).

use std::{sync::OnceLock, time::Duration};

/// A shared client; rustls with the ring provider (installed once, here, so no second
/// crypto provider can win by accident).
pub fn client() -> Result<reqwest::Client, String> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .read_timeout(Duration::from_secs(60))
                .build()
                .map_err(|err| format!("cannot build an HTTP client: {err}"))
        })
        .clone()
}
