//! A thin client of the Kubernetes API for one workload (a Deployment or StatefulSet):
//! read it, patch it (JSON patch, with a `test` of the image read, so a concurrent change
//! makes the patch fail instead of being overwritten), list its pods; read and write one
//! key of a ConfigMap (`config_map.rs`, where the updater mirrors its directive).
//! Below `health` and `installers`, which both use it; it knows nothing of installs.
//!
//! Only the fields the updater reads are modelled (`workload.rs`); answers are bounded in
//! size and time. In a cluster it uses the service account's token and CA; plain HTTP is
//! allowed only to a loopback API server (the tests' substitute).

mod config_map;
mod workload;

use std::{path::PathBuf, time::Duration};

use serde::de::DeserializeOwned;

pub use workload::{Pod, Workload, rollout_progress};

/// The most an API answer may be (a pod list of a large workload stays far below).
const MAX_ANSWER_BYTES: usize = 8 << 20;
const SERVICE_ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const JSON_PATCH: &str = "application/json-patch+json";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
}

impl WorkloadKind {
    fn resource(self) -> &'static str {
        match self {
            Self::Deployment => "deployments",
            Self::StatefulSet => "statefulsets",
        }
    }
}

/// Which workload and container the updater keeps on its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadRef {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
    pub container: String,
}

#[derive(Debug, Clone)]
pub struct KubeApi {
    /// `https://host:port` (or `http://127.0.0.1:port`), no trailing slash.
    base: String,
    /// Re-read for every request: projected tokens are rotated by the kubelet.
    token_file: Option<PathBuf>,
    client: reqwest::Client,
    timeout: Duration,
}

/// Two clients are the same when they reach the same server as the same account.
impl PartialEq for KubeApi {
    fn eq(&self, other: &Self) -> bool {
        (&self.base, &self.token_file, self.timeout)
            == (&other.base, &other.token_file, other.timeout)
    }
}

impl Eq for KubeApi {}

impl KubeApi {
    /// `server` defaults to the in-cluster address; `ca_file` and `token_file` to the
    /// service account's mounted files when they exist.
    pub fn new(
        server: Option<String>,
        ca_file: Option<PathBuf>,
        token_file: Option<PathBuf>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let base = match server {
            Some(server) => server.trim_end_matches('/').to_string(),
            None => {
                let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| {
                    "not in a cluster (KUBERNETES_SERVICE_HOST unset): give --api-server"
                        .to_string()
                })?;
                let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or("443".into());
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host
                };
                format!("https://{host}:{port}")
            }
        };
        let plain = base.strip_prefix("http://");
        if plain.is_some_and(|rest| !is_loopback_authority(rest)) {
            return Err(format!(
                "{base}: plain HTTP is allowed only to a loopback API server; use https://"
            ));
        }
        let in_cluster = |name: &str| {
            let path = PathBuf::from(SERVICE_ACCOUNT).join(name);
            path.exists().then_some(path)
        };
        let ca_file = ca_file.or_else(|| in_cluster("ca.crt"));
        let token_file = token_file.or_else(|| in_cluster("token"));
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(timeout);
        if let Some(ca_file) = &ca_file {
            let pem = std::fs::read(ca_file).map_err(|err| {
                format!(
                    "cannot read the API server's CA {}: {err}",
                    ca_file.display()
                )
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|err| format!("{} holds no PEM certificate: {err}", ca_file.display()))?;
            builder = builder.tls_certs_only(certs);
        }
        let client = builder
            .build()
            .map_err(|err| format!("cannot build the API client: {err}"))?;
        Ok(Self {
            base,
            token_file,
            client,
            timeout,
        })
    }

    fn workload_url(&self, workload: &WorkloadRef) -> String {
        format!(
            "{}/apis/apps/v1/namespaces/{}/{}/{}",
            self.base,
            workload.namespace,
            workload.kind.resource(),
            workload.name
        )
    }

    pub async fn workload(&self, workload: &WorkloadRef) -> Result<Workload, String> {
        self.call(reqwest::Method::GET, &self.workload_url(workload), None)
            .await
    }

    /// Applies a JSON patch (RFC 6902) to the workload.
    pub async fn patch(
        &self,
        workload: &WorkloadRef,
        operations: serde_json::Value,
    ) -> Result<Workload, String> {
        let url = self.workload_url(workload);
        self.call(reqwest::Method::PATCH, &url, Some(operations))
            .await
    }

    /// The pods `selector` (`k=v,k=v`) matches in the namespace.
    pub async fn pods(&self, namespace: &str, selector: &str) -> Result<Vec<Pod>, String> {
        #[derive(serde::Deserialize)]
        struct PodList {
            items: Vec<Pod>,
        }
        let url = format!("{}/api/v1/namespaces/{namespace}/pods", self.base);
        let url = reqwest::Url::parse_with_params(&url, [("labelSelector", selector)])
            .map_err(|err| format!("bad pods URL: {err}"))?;
        let list: PodList = self.call(reqwest::Method::GET, url.as_str(), None).await?;
        Ok(list.items)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        url: &str,
        patch: Option<serde_json::Value>,
    ) -> Result<T, String> {
        let what = format!("{method} {url}");
        let body = patch.map(|patch| (JSON_PATCH, patch.to_string()));
        let (status, body) = self.send(method, url, body).await?;
        if !(200..300).contains(&status) {
            return Err(format!("{what} answered {status}: {}", api_message(&body)));
        }
        serde_json::from_slice(&body).map_err(|err| format!("{what}: unexpected answer ({err})"))
    }

    /// One request with an optional `(content type, body)`; the answer's status and body,
    /// bounded in size and time. Errors say which request failed.
    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<(&'static str, String)>,
    ) -> Result<(u16, Vec<u8>), String> {
        let what = format!("{method} {url}");
        let mut request = self.client.request(method, url);
        if let Some(token_file) = &self.token_file {
            let token = tokio::fs::read_to_string(token_file).await.map_err(|err| {
                format!("cannot read the API token {}: {err}", token_file.display())
            })?;
            request = request.bearer_auth(token.trim());
        }
        if let Some((content_type, body)) = body {
            request = request.header("Content-Type", content_type).body(body);
        }
        let run = async {
            let mut response = request
                .send()
                .await
                .map_err(|err| format!("{what} failed: {err}"))?;
            let status = response.status();
            let mut body = Vec::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|err| format!("{what} broke off: {err}"))?
            {
                if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err(format!(
                        "{what} answered more than {MAX_ANSWER_BYTES} bytes"
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok((status.as_u16(), body))
        };
        tokio::time::timeout(self.timeout, run)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "{what}: no answer within {} s",
                    self.timeout.as_secs()
                ))
            })
    }
}

/// The `message` of a Kubernetes `Status`, cut short; never the whole body.
fn api_message(body: &[u8]) -> String {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|status| status["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| "no Status message".into());
    message
        .chars()
        .filter(|c| !c.is_control())
        .take(300)
        .collect()
}

fn is_loopback_authority(rest: &str) -> bool {
    let authority = rest.split('/').next().unwrap_or_default();
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host);
    host == "localhost"
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}
