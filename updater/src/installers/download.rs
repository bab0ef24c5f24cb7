//! Bounded downloads: a release server that sends more than it declared, more than the
//! updater accepts, or stalls, is cut off, and the caller installs nothing. For backends
//! that fetch releases (the tarball one today).

use std::{path::Path, time::Duration};

use sha2::{Digest, Sha256};
use tokio::{io::AsyncWriteExt, time::Instant};

use super::InstallError;

/// What any one download may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownloadLimits {
    /// Bytes accepted for an artifact whose manifest declares no size.
    pub max_bytes: u64,
    /// The whole download, from request to last byte; a stalled server ends here (and a
    /// silent one earlier, at the client's read timeout).
    pub timeout: Duration,
}

impl Default for DownloadLimits {
    fn default() -> Self {
        Self {
            max_bytes: 4 << 30,
            timeout: Duration::from_secs(3600),
        }
    }
}

/// A response body read chunk by chunk, accepting at most `limit` bytes (the declared size
/// when there is one) and giving up at `deadline`.
pub struct BoundedBody {
    response: reqwest::Response,
    url: String,
    limit: u64,
    deadline: Instant,
    received: u64,
}

impl BoundedBody {
    pub async fn open(
        client: &reqwest::Client,
        url: &str,
        limit: u64,
        deadline: Instant,
    ) -> Result<Self, InstallError> {
        let response = tokio::time::timeout_at(deadline, get(client, url))
            .await
            .map_err(|_| too_slow(url))??;
        if response
            .content_length()
            .is_some_and(|length| length > limit)
        {
            return Err(too_large(url, limit));
        }
        Ok(Self {
            response,
            url: url.to_string(),
            limit,
            deadline,
            received: 0,
        })
    }

    /// The next chunk, `None` at the end; an error once the body breaks a limit.
    pub async fn next(&mut self) -> Result<Option<bytes::Bytes>, InstallError> {
        let chunk = tokio::time::timeout_at(self.deadline, self.response.chunk())
            .await
            .map_err(|_| too_slow(&self.url))?
            .map_err(|err| InstallError::Transient(format!("GET {} broke off: {err}", self.url)))?;
        if let Some(chunk) = &chunk {
            self.received = self.received.saturating_add(chunk.len() as u64);
            if self.received > self.limit {
                return Err(too_large(&self.url, self.limit));
            }
        }
        Ok(chunk)
    }
}

fn too_slow(url: &str) -> InstallError {
    InstallError::Transient(format!(
        "the download of {url} did not finish in time; the server stalled or is too slow"
    ))
}

fn too_large(url: &str, limit: u64) -> InstallError {
    InstallError::Refused(format!(
        "{url} sends more than the {limit} bytes expected; cut off, nothing installed"
    ))
}

async fn get(client: &reqwest::Client, url: &str) -> Result<reqwest::Response, InstallError> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|err| InstallError::Transient(format!("GET {url} failed: {err}")))?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Err(InstallError::NotFound(format!("{url} does not exist")));
    }
    if !status.is_success() {
        return Err(InstallError::Transient(format!(
            "GET {url} answered {status}"
        )));
    }
    Ok(response)
}

/// Fetches a small document (manifest, signature), bounded to 1 MiB and the deadline.
pub(super) async fn fetch(
    client: &reqwest::Client,
    url: &str,
    deadline: Instant,
) -> Result<Vec<u8>, InstallError> {
    const LIMIT: u64 = 1024 * 1024;
    let mut document = Vec::new();
    let mut body = BoundedBody::open(client, url, LIMIT, deadline).await?;
    while let Some(chunk) = body.next().await? {
        document.extend_from_slice(&chunk);
    }
    Ok(document)
}

/// Streams `url` into `path` within `limit` bytes and the deadline; returns its sha256 (hex).
pub(super) async fn download_to(
    client: &reqwest::Client,
    url: &str,
    path: &Path,
    limit: u64,
    deadline: Instant,
) -> Result<String, InstallError> {
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|err| InstallError::io(&format!("creating {}", path.display()), &err))?;
    let mut hasher = Sha256::new();
    let mut body = BoundedBody::open(client, url, limit, deadline).await?;
    while let Some(chunk) = body.next().await? {
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|err| InstallError::io("writing the download", &err))?;
    }
    file.sync_all()
        .await
        .map_err(|err| InstallError::io("writing the download", &err))?;
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use tokio::{io::AsyncWriteExt, net::TcpListener};

    use super::*;

    /// A server that answers one request with headers, then `body` forever or until done.
    async fn server(endless: bool, stall: bool) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut request).await;
            let head = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
            socket.write_all(head.as_bytes()).await.unwrap();
            socket.write_all(&[7u8; 100]).await.unwrap();
            if stall {
                std::future::pending::<()>().await;
            }
            if endless {
                // Until the client hangs up.
                while socket.write_all(&[7u8; 64 * 1024]).await.is_ok() {}
            }
        });
        format!("http://{addr}/artifact")
    }

    async fn run(url: &str, limit: u64, timeout: Duration) -> Result<u64, InstallError> {
        let client = crate::http::client().unwrap();
        let deadline = Instant::now() + timeout;
        let mut body = BoundedBody::open(&client, url, limit, deadline).await?;
        let mut kept = 0u64;
        while let Some(chunk) = body.next().await? {
            kept += chunk.len() as u64;
            assert!(
                kept <= limit,
                "handed out {kept} bytes past the limit {limit}"
            );
        }
        Ok(kept)
    }

    #[tokio::test]
    async fn an_endless_body_is_cut_off_at_the_limit() {
        let url = server(true, false).await;
        let result = run(&url, 1 << 20, Duration::from_secs(30)).await;
        assert!(
            matches!(&result, Err(InstallError::Refused(m)) if m.contains("more than the 1048576 bytes")),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn a_stalled_server_is_given_up_at_the_deadline() {
        let url = server(false, true).await;
        let started = std::time::Instant::now();
        let result = run(&url, 1 << 20, Duration::from_millis(500)).await;
        assert!(
            matches!(&result, Err(InstallError::Transient(m)) if m.contains("did not finish in time")),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_body_within_the_limit_arrives_whole() {
        let url = server(false, false).await;
        assert_eq!(run(&url, 100, Duration::from_secs(30)).await, Ok(100));
    }
}
