//! The fields of a Deployment or StatefulSet and of its pods that the updater reads, and
//! the one rule (pure) that says whether a rollout is complete and its pods ready.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Workload {
    pub metadata: Metadata,
    pub spec: WorkloadSpec,
    #[serde(default)]
    pub status: WorkloadStatus,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub generation: i64,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSpec {
    /// Absent means 1, as the API defaults it.
    pub replicas: Option<i32>,
    #[serde(default)]
    pub selector: Selector,
    #[serde(default)]
    pub template: PodTemplate,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PodTemplate {
    #[serde(default)]
    pub spec: PodSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PodSpec {
    #[serde(default)]
    pub containers: Vec<Container>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Container {
    pub name: String,
    #[serde(default)]
    pub image: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadStatus {
    #[serde(default)]
    pub observed_generation: i64,
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub updated_replicas: i32,
    #[serde(default)]
    pub ready_replicas: i32,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Pod {
    #[serde(default)]
    pub metadata: Metadata,
    #[serde(default)]
    pub spec: PodSpec,
    #[serde(default)]
    pub status: PodStatus,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PodStatus {
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, rename = "containerStatuses")]
    pub container_statuses: Vec<ContainerStatus>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContainerStatus {
    #[serde(default, rename = "restartCount")]
    pub restart_count: u64,
}

impl Pod {
    /// Restarts of all its containers, as the kubelet counts them.
    pub fn restarts(&self) -> u64 {
        self.status
            .container_statuses
            .iter()
            .map(|c| c.restart_count)
            .sum()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
}

impl Workload {
    pub fn desired_replicas(&self) -> i32 {
        self.spec.replicas.unwrap_or(1)
    }

    pub fn image(&self, container: &str) -> Option<&str> {
        self.spec
            .template
            .spec
            .containers
            .iter()
            .find(|c| c.name == container)
            .map(|c| c.image.as_str())
    }

    /// `k=v,k=v` for listing its pods.
    pub fn label_selector(&self) -> String {
        let labels = &self.spec.selector.match_labels;
        labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Pod {
    fn runs(&self, container: &str, image: &str) -> bool {
        self.spec
            .containers
            .iter()
            .any(|c| c.name == container && c.image == image)
    }

    fn ready(&self) -> bool {
        self.status
            .conditions
            .iter()
            .any(|c| c.kind == "Ready" && c.status == "True")
    }
}

/// `Ok` once the controller has seen the workload's latest spec, every replica runs it, and
/// as many pods running the container's current image are Ready; otherwise what is missing.
pub fn rollout_progress(workload: &Workload, pods: &[Pod], container: &str) -> Result<(), String> {
    let desired = workload.desired_replicas();
    let status = &workload.status;
    let image = workload
        .image(container)
        .ok_or_else(|| format!("the workload has no container '{container}'"))?;
    if status.observed_generation < workload.metadata.generation {
        return Err(format!(
            "the controller has not seen generation {} yet",
            workload.metadata.generation
        ));
    }
    let ready_pods = pods
        .iter()
        .filter(|p| p.runs(container, image) && p.ready())
        .count();
    if status.updated_replicas < desired
        || status.ready_replicas < desired
        || status.replicas > desired
        || (ready_pods as i64) < i64::from(desired)
    {
        return Err(format!(
            "{}/{desired} replicas updated, {}/{desired} ready, {ready_pods} ready pod(s) run {image}",
            status.updated_replicas, status.ready_replicas
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(generation: i64, observed: i64, updated: i32, ready: i32) -> Workload {
        serde_json::from_value(serde_json::json!({
            "metadata": {"generation": generation},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "agent"}},
                     "template": {"spec": {"containers": [{"name": "agent", "image": "r/a@sha256:1"}]}}},
            "status": {"observedGeneration": observed, "replicas": 2,
                       "updatedReplicas": updated, "readyReplicas": ready},
        }))
        .unwrap()
    }

    fn pod(image: &str, ready: bool) -> Pod {
        serde_json::from_value(serde_json::json!({
            "spec": {"containers": [{"name": "agent", "image": image}]},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        }))
        .unwrap()
    }

    #[test]
    fn a_rollout_is_done_only_when_seen_updated_and_ready_on_the_new_image() {
        let new = || pod("r/a@sha256:1", true);
        assert_eq!(
            rollout_progress(&workload(3, 3, 2, 2), &[new(), new()], "agent"),
            Ok(())
        );
        let unseen = rollout_progress(&workload(3, 2, 2, 2), &[new(), new()], "agent");
        assert!(unseen.unwrap_err().contains("generation 3"));
        assert!(rollout_progress(&workload(3, 3, 1, 2), &[new(), new()], "agent").is_err());
        // Old pods being ready does not count for the new image.
        let old = pod("r/a:1.0.0", true);
        assert!(rollout_progress(&workload(3, 3, 2, 2), &[new(), old], "agent").is_err());
        let not_ready = pod("r/a@sha256:1", false);
        assert!(rollout_progress(&workload(3, 3, 2, 2), &[new(), not_ready], "agent").is_err());
        assert!(rollout_progress(&workload(3, 3, 2, 2), &[new(), new()], "other").is_err());
    }

    #[test]
    fn the_selector_lists_the_match_labels() {
        assert_eq!(workload(1, 1, 1, 1).label_selector(), "app=agent");
    }
}
