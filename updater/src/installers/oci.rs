//! A thin client of the OCI distribution API: resolve a tag to the digest of the manifest it
//! names, fetch a manifest or a blob. Every answer is bounded in size and time, and every
//! document fetched by digest is checked against that digest. Anonymous access only.

use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::InstallError;

/// The manifest kinds an image tag may name, as `Accept` sends them.
const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

/// A manifest is a small JSON document; a larger answer is refused.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// `host[:port]/path` of an image repository, without tag or digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    pub host: String,
    pub path: String,
}

impl Repository {
    /// Parses `host[:port]/path`; the host part must be explicit (no Docker Hub shorthand).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (host, path) = text.split_once('/').ok_or_else(|| {
            format!("image repository '{text}' must be HOST[:PORT]/PATH, e.g. registry.example:5000/agent")
        })?;
        let host_ok = !host.is_empty()
            && (host.contains('.') || host.contains(':') || host == "localhost")
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
        let path_ok = !path.is_empty()
            && path.len() <= 255
            && path
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c));
        if !host_ok || !path_ok || path.contains('@') {
            return Err(format!(
                "image repository '{text}' must be HOST[:PORT]/PATH with a registry host and a lowercase path, without tag or digest"
            ));
        }
        Ok(Self {
            host: host.to_string(),
            path: path.to_string(),
        })
    }

    /// Whether the registry may be reached over plain HTTP: only on this machine.
    pub fn is_loopback(&self) -> bool {
        let name = self
            .host
            .rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map_or(self.host.as_str(), |(name, _)| name);
        matches!(name, "localhost" | "[::1]")
            || name
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

impl std::fmt::Display for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.host, self.path)
    }
}

/// A tag is also a version: the same characters the distribution spec allows.
pub fn check_tag(tag: &str) -> Result<(), InstallError> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && !tag.starts_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(InstallError::Refused(format!(
            "'{tag}' cannot be an image tag"
        )))
    }
}

/// `sha256:` and 64 lowercase hex digits, the only digest form accepted.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub fn is_sha256_digest(text: &str) -> bool {
    text.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'))
    })
}

/// One registry repository, read over HTTPS (HTTP only on loopback).
#[derive(Debug, Clone)]
pub struct Registry {
    pub repository: Repository,
    pub plain_http: bool,
    /// The whole of one verification (every request in it) must finish within this.
    pub timeout: Duration,
}

impl Registry {
    fn url(&self, kind: &str, reference: &str) -> String {
        let scheme = if self.plain_http { "http" } else { "https" };
        let Repository { host, path } = &self.repository;
        format!("{scheme}://{host}/v2/{path}/{kind}/{reference}")
    }

    pub fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }

    /// The manifest `reference` (a tag or a digest) names, and its digest as computed here.
    /// `None` when the registry has no such manifest.
    pub async fn manifest(
        &self,
        reference: &str,
        deadline: Instant,
    ) -> Result<Option<(Vec<u8>, String)>, InstallError> {
        let url = self.url("manifests", reference);
        let Some(body) = get_bounded(&url, MANIFEST_TYPES, MAX_MANIFEST_BYTES, deadline).await?
        else {
            return Ok(None);
        };
        let digest = sha256_digest(&body);
        if reference.starts_with("sha256:") && reference != digest {
            return Err(InstallError::Refused(format!(
                "{url} answered a manifest whose digest is {digest}"
            )));
        }
        Ok(Some((body, digest)))
    }

    /// The blob with `digest`, at most `limit` bytes, checked against the digest.
    pub async fn blob(
        &self,
        digest: &str,
        limit: u64,
        deadline: Instant,
    ) -> Result<Vec<u8>, InstallError> {
        if !is_sha256_digest(digest) {
            return Err(InstallError::Refused(format!(
                "'{digest}' is not a sha256 digest"
            )));
        }
        let url = self.url("blobs", digest);
        let body = get_bounded(&url, "*/*", limit, deadline)
            .await?
            .ok_or_else(|| InstallError::NotFound(format!("{url} does not exist")))?;
        if sha256_digest(&body) != digest {
            return Err(InstallError::Refused(format!(
                "{url} answered content whose digest is not {digest}"
            )));
        }
        Ok(body)
    }
}

/// GET within `limit` bytes and the deadline; `None` on 404.
async fn get_bounded(
    url: &str,
    accept: &str,
    limit: u64,
    deadline: Instant,
) -> Result<Option<Vec<u8>>, InstallError> {
    let too_slow = || InstallError::Transient(format!("GET {url} did not finish in time"));
    let too_large = || InstallError::Refused(format!("GET {url} answered more than {limit} bytes"));
    let client = crate::http::client().map_err(InstallError::Transient)?;
    let send = client.get(url).header("Accept", accept).send();
    let mut response = tokio::time::timeout_at(deadline, send)
        .await
        .map_err(|_| too_slow())?
        .map_err(|err| InstallError::Transient(format!("GET {url} failed: {err}")))?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(InstallError::Refused(format!(
            "GET {url} answered {status}: only registries that allow anonymous pulls are supported"
        )));
    }
    if !status.is_success() {
        return Err(InstallError::Transient(format!(
            "GET {url} answered {status}"
        )));
    }
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = tokio::time::timeout_at(deadline, response.chunk())
        .await
        .map_err(|_| too_slow())?
        .map_err(|err| InstallError::Transient(format!("GET {url} broke off: {err}")))?
    {
        if body.len() as u64 + chunk.len() as u64 > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_name_their_registry_and_nothing_else() {
        let repo = Repository::parse("127.0.0.1:5000/drover/agent").unwrap();
        assert_eq!(
            (repo.host.as_str(), repo.path.as_str()),
            ("127.0.0.1:5000", "drover/agent")
        );
        assert!(repo.is_loopback());
        assert!(
            !Repository::parse("registry.example/agent")
                .unwrap()
                .is_loopback()
        );
        assert!(
            !Repository::parse("127.example/agent")
                .unwrap()
                .is_loopback()
        );
        for bad in [
            "agent",
            "library/agent",
            "r.example/Agent",
            "r.example/a@sha256:00",
            "r.example/",
        ] {
            assert!(Repository::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tags_are_checked_before_they_reach_a_url() {
        assert!(check_tag("1.2.0-rc.1").is_ok());
        for bad in ["", "../x", "a/b", "-a", "a?b", &"x".repeat(129)] {
            assert!(check_tag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_full_sha256_digests_count() {
        let digest = sha256_digest(b"x");
        assert!(is_sha256_digest(&digest));
        assert!(!is_sha256_digest("sha256:abc"));
        assert!(!is_sha256_digest(&digest.to_uppercase()));
    }
}
