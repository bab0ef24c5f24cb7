//! A fake Kubernetes API server: the closest honest substitute for a cluster on a machine
//! that has none. It answers, on loopback over plain HTTP, the calls the Kubernetes updater
//! makes (GET and JSON-patch one Deployment, list its pods by label selector), with the
//! API's own types (k8s-openapi) for its JSON and a Status body for errors, and it plays
//! the Deployment controller: a new generation is observed on the next tick, its pods are
//! created, and they turn Ready a tick later unless their image is marked bad, in which case
//! they never do (the old pods stay, as a rolling update with surge leaves them). It also
//! serves ConfigMaps (`config_maps.rs`), where the updater mirrors its directive.

mod config_maps;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
};
use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec, DeploymentStatus},
        core::v1::{
            ConfigMap, Container, ContainerStatus, Pod, PodCondition, PodSpec, PodStatus,
            PodTemplateSpec,
        },
    },
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta},
};
use parking_lot::Mutex;
use serde_json::{Value, json};

const TOKEN: &str = "fake-service-account-token";
const TICK: Duration = Duration::from_millis(200);

struct Cluster {
    deployment: Deployment,
    /// Each pod with the tick it was made at and the generation it belongs to.
    pods: Vec<(Pod, u32, i64)>,
    bad_images: BTreeSet<String>,
    /// Images whose containers restart on every tick (Ready between restarts: a release that
    /// keeps crashing while its pods still count as Ready).
    crashing_images: BTreeSet<String>,
    patches: Vec<Value>,
    tick: u32,
    /// By (namespace, name).
    config_maps: BTreeMap<(String, String), ConfigMap>,
    resource_version: u64,
    /// Every ConfigMap request is answered 403, as for a Role without the grant.
    config_maps_forbidden: bool,
}

pub struct FakeApiServer {
    pub url: String,
    cluster: Arc<Mutex<Cluster>>,
    _controller: tokio::task::JoinHandle<()>,
}

impl FakeApiServer {
    /// Serves one Deployment `namespace/name` with `replicas` pods of container `agent`
    /// running `image`, all Ready.
    pub async fn start(namespace: &str, name: &str, replicas: i32, image: &str) -> Self {
        let labels = [("app".to_string(), name.to_string())].into();
        let deployment = Deployment {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                generation: Some(1),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: Some(labels),
                    ..Default::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some([("app".to_string(), name.to_string())].into()),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "agent".into(),
                            image: Some(image.into()),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            status: Some(DeploymentStatus::default()),
        };
        let cluster = Arc::new(Mutex::new(Cluster {
            deployment,
            pods: Vec::new(),
            bad_images: BTreeSet::new(),
            crashing_images: BTreeSet::new(),
            patches: Vec::new(),
            tick: 0,
            config_maps: BTreeMap::new(),
            resource_version: 0,
            config_maps_forbidden: false,
        }));
        {
            // The starting pods exist and are Ready.
            let mut c = cluster.lock();
            c.reconcile();
            c.reconcile();
            c.reconcile();
        }
        let app = Router::new()
            .route(
                "/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
                get(get_deployment).patch(patch_deployment),
            )
            .route("/api/v1/namespaces/{namespace}/pods", get(list_pods))
            .merge(config_maps::routes())
            .with_state(cluster.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let ticking = cluster.clone();
        let controller = tokio::spawn(async move {
            let mut interval = tokio::time::interval(TICK);
            loop {
                interval.tick().await;
                ticking.lock().reconcile();
            }
        });
        Self {
            url,
            cluster,
            _controller: controller,
        }
    }

    /// The service account token the server accepts (write it to the updater's token file).
    pub fn token(&self) -> &'static str {
        TOKEN
    }

    /// Pods running `image` never become Ready.
    pub fn mark_bad(&self, image: &str) {
        self.cluster.lock().bad_images.insert(image.to_string());
    }

    /// Pods of `image` are Ready but their container restarts ten times every tick.
    pub fn mark_crashing(&self, image: &str) {
        self.cluster
            .lock()
            .crashing_images
            .insert(image.to_string());
    }

    /// The Deployment as the API would answer it.
    pub fn deployment(&self) -> Deployment {
        self.cluster.lock().deployment.clone()
    }

    pub fn image(&self) -> String {
        let deployment = self.deployment();
        deployment.spec.unwrap().template.spec.unwrap().containers[0]
            .image
            .clone()
            .unwrap_or_default()
    }

    pub fn annotation(&self, key: &str) -> Option<String> {
        self.deployment()
            .metadata
            .annotations
            .and_then(|mut a| a.remove(key))
    }

    /// From now on every ConfigMap request is answered 403 Forbidden.
    pub fn forbid_config_maps(&self) {
        self.cluster.lock().config_maps_forbidden = true;
    }

    /// Creates an empty ConfigMap `namespace/name`, as a manifest applied beforehand would.
    pub fn create_config_map(&self, namespace: &str, name: &str) {
        let map = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                resource_version: Some("1".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let key = (namespace.to_string(), name.to_string());
        self.cluster.lock().config_maps.insert(key, map);
    }

    /// The value of `key` in ConfigMap `namespace/name`, if both exist.
    pub fn config_map_value(&self, namespace: &str, name: &str, key: &str) -> Option<String> {
        let cluster = self.cluster.lock();
        let map = cluster
            .config_maps
            .get(&(namespace.to_string(), name.to_string()))?;
        map.data.as_ref()?.get(key).cloned()
    }

    /// Every patch of the Deployment accepted so far, as the updater sent it.
    pub fn patches(&self) -> Vec<Value> {
        self.cluster.lock().patches.clone()
    }
}

impl Cluster {
    fn image(&self) -> String {
        let spec = self.deployment.spec.as_ref().unwrap();
        spec.template.spec.as_ref().unwrap().containers[0]
            .image
            .clone()
            .unwrap_or_default()
    }

    /// One pass of the Deployment controller.
    fn reconcile(&mut self) {
        self.tick += 1;
        let generation = self.deployment.metadata.generation.unwrap_or(1);
        let spec = self.deployment.spec.clone().unwrap();
        let desired = spec.replicas.unwrap_or(1);
        let image = self.image();
        let status = self.deployment.status.get_or_insert_with(Default::default);
        if status.observed_generation.unwrap_or(0) < generation {
            status.observed_generation = Some(generation);
            for i in 0..desired {
                let pod = Pod {
                    metadata: ObjectMeta {
                        name: Some(format!("agent-{generation}-{i}")),
                        labels: spec
                            .template
                            .metadata
                            .as_ref()
                            .and_then(|m| m.labels.clone()),
                        ..Default::default()
                    },
                    spec: spec.template.spec.clone(),
                    status: Some(ready_status(false)),
                };
                self.pods.push((pod, self.tick, generation));
            }
        } else {
            let tick = self.tick;
            let bad = self.bad_images.contains(&image);
            let crashing = self.crashing_images.contains(&image);
            for (pod, born, of) in &mut self.pods {
                if *of == generation && *born < tick && !bad {
                    // A crash loop: ten restarts a tick (two a second would take minutes
                    // to tell from a baseline of a few seconds).
                    let restarts = restart_count(pod) + if crashing { 10 } else { 0 };
                    pod.status = Some(ready_status(true));
                    set_restart_count(pod, restarts);
                }
            }
            let all_new_ready = self
                .pods
                .iter()
                .filter(|(_, _, of)| *of == generation)
                .all(|(p, _, _)| is_ready(p));
            if all_new_ready {
                self.pods.retain(|(_, _, of)| *of == generation);
            }
        }
        let count =
            |f: &dyn Fn(&(Pod, u32, i64)) -> bool| self.pods.iter().filter(|p| f(p)).count() as i32;
        let replicas = count(&|_| true);
        let updated = count(&|(_, _, of)| *of == generation);
        let ready = count(&|(p, _, _)| is_ready(p));
        let status = self.deployment.status.get_or_insert_with(Default::default);
        status.replicas = Some(replicas);
        status.updated_replicas = Some(updated);
        status.ready_replicas = Some(ready);
        status.available_replicas = status.ready_replicas;
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn restart_count(pod: &Pod) -> u32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .map_or(0, |c| u32::try_from(c.restart_count).unwrap_or(0))
}

fn set_restart_count(pod: &mut Pod, restarts: u32) {
    let status = pod.status.get_or_insert_with(Default::default);
    status.container_statuses = Some(vec![ContainerStatus {
        name: "agent".into(),
        restart_count: i32::try_from(restarts).unwrap_or(i32::MAX),
        ready: true,
        ..Default::default()
    }]);
}

fn ready_status(ready: bool) -> PodStatus {
    PodStatus {
        conditions: Some(vec![PodCondition {
            type_: "Ready".into(),
            status: if ready { "True" } else { "False" }.into(),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

/// A `Status` error body, as the API server answers one.
fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    (code, Json(body)).into_response()
}

/// The 401 for a request without the service account's token; `None` when it has it.
fn unauthorized(headers: &HeaderMap) -> Option<Response> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    (bearer != Some(TOKEN))
        .then(|| status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized"))
}

type Shared = State<Arc<Mutex<Cluster>>>;

/// The 404 for any Deployment but the one served; `None` for that one.
fn not_found(cluster: &Cluster, namespace: &str, name: &str) -> Option<Response> {
    let meta = &cluster.deployment.metadata;
    let served = meta.namespace.as_deref() == Some(namespace) && meta.name.as_deref() == Some(name);
    let message = format!("deployments.apps \"{name}\" not found");
    (!served).then(|| status(StatusCode::NOT_FOUND, "NotFound", &message))
}

async fn get_deployment(
    State(cluster): Shared,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = unauthorized(&headers) {
        return refused;
    }
    let cluster = cluster.lock();
    not_found(&cluster, &namespace, &name)
        .unwrap_or_else(|| Json(cluster.deployment.clone()).into_response())
}

async fn patch_deployment(
    State(cluster): Shared,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = unauthorized(&headers) {
        return refused;
    }
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
    if content_type != Some("application/json-patch+json") {
        let message = format!("the fake server takes JSON patches only, not {content_type:?}");
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            &message,
        );
    }
    let Ok(Value::Array(operations)) = serde_json::from_slice::<Value>(&body) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the patch is not a JSON array",
        );
    };
    let mut cluster = cluster.lock();
    if let Some(missing) = not_found(&cluster, &namespace, &name) {
        return missing;
    }
    let mut document = serde_json::to_value(&cluster.deployment).unwrap();
    for operation in &operations {
        if let Err(err) = crate::json_patch::apply(&mut document, operation) {
            return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", &err);
        }
    }
    let mut patched: Deployment = match serde_json::from_value(document) {
        Ok(patched) => patched,
        Err(err) => {
            return status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                &err.to_string(),
            );
        }
    };
    if patched.spec != cluster.deployment.spec {
        patched.metadata.generation = Some(cluster.deployment.metadata.generation.unwrap_or(1) + 1);
    }
    patched.status = cluster.deployment.status.clone();
    cluster.deployment = patched;
    cluster.patches.push(Value::Array(operations));
    Json(cluster.deployment.clone()).into_response()
}

async fn list_pods(
    State(cluster): Shared,
    Path(namespace): Path<String>,
    Query(query): Query<std::collections::BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = unauthorized(&headers) {
        return refused;
    }
    let cluster = cluster.lock();
    let wanted: Vec<(&str, &str)> = query
        .get("labelSelector")
        .map(|s| s.split(',').filter_map(|kv| kv.split_once('=')).collect())
        .unwrap_or_default();
    let in_namespace = cluster.deployment.metadata.namespace.as_deref() == Some(namespace.as_str());
    let items: Vec<Pod> = cluster
        .pods
        .iter()
        .map(|(p, _, _)| p.clone())
        .filter(|p| {
            let labels = p.metadata.labels.clone().unwrap_or_default();
            in_namespace
                && wanted
                    .iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    let list = k8s_openapi::List::<Pod> {
        items,
        metadata: Default::default(),
    };
    Json(list).into_response()
}
