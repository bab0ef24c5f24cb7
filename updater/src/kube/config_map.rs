//! One key of one ConfigMap: read it, and set it with a merge patch, creating the
//! ConfigMap when it does not exist yet. The manifests pre-create it, so the updater's
//! role needs only get and patch on that one name (Kubernetes cannot restrict `create` to
//! a name); the create is there for clusters that grant it instead.

use std::collections::BTreeMap;

use serde_json::json;

use super::{KubeApi, api_message};

const MERGE_PATCH: &str = "application/merge-patch+json";
const JSON: &str = "application/json";

#[derive(serde::Deserialize)]
struct ConfigMap {
    #[serde(default)]
    data: Option<BTreeMap<String, String>>,
}

impl KubeApi {
    fn config_map_url(&self, namespace: &str, name: &str) -> String {
        format!(
            "{}/api/v1/namespaces/{namespace}/configmaps/{name}",
            self.base
        )
    }

    /// The value of `key` in ConfigMap `namespace/name`; `None` when either is missing.
    pub async fn config_map_value(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Result<Option<String>, String> {
        let url = self.config_map_url(namespace, name);
        let (status, body) = self.send(reqwest::Method::GET, &url, None).await?;
        match status {
            404 => Ok(None),
            200..300 => {
                let map: ConfigMap = serde_json::from_slice(&body)
                    .map_err(|err| format!("GET {url}: not a ConfigMap ({err})"))?;
                Ok(map.data.and_then(|mut data| data.remove(key)))
            }
            _ => Err(format!(
                "GET {url} answered {status}: {}",
                api_message(&body)
            )),
        }
    }

    /// Sets `key` of ConfigMap `namespace/name` to `value`, leaving its other keys alone.
    pub async fn set_config_map_value(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
        value: &str,
    ) -> Result<(), String> {
        let url = self.config_map_url(namespace, name);
        let patch = json!({ "data": { key: value } }).to_string();
        let (status, body) = self
            .send(reqwest::Method::PATCH, &url, Some((MERGE_PATCH, patch)))
            .await?;
        if (200..300).contains(&status) {
            return Ok(());
        }
        if status != 404 {
            return Err(format!(
                "PATCH {url} answered {status}: {}",
                api_message(&body)
            ));
        }
        let collection = format!("{}/api/v1/namespaces/{namespace}/configmaps", self.base);
        let create = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": name, "namespace": namespace },
            "data": { key: value },
        })
        .to_string();
        let (status, body) = self
            .send(reqwest::Method::POST, &collection, Some((JSON, create)))
            .await?;
        if (200..300).contains(&status) {
            return Ok(());
        }
        Err(format!(
            "ConfigMap {namespace}/{name} does not exist and POST {collection} answered {status}: \
             {}; create it (deploy/kubernetes/updater/updater.yaml does) or grant create on configmaps",
            api_message(&body)
        ))
    }
}
