//! The fake API server's ConfigMaps, as a real API server serves them: GET, POST (create;
//! 409 when it exists), PUT (replace) and PATCH (JSON merge patch) of one by name, with a
//! `Status` body (404 `NotFound`, 409 `AlreadyExists`, 403 `Forbidden` when told to
//! refuse them) for errors.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use k8s_openapi::api::core::v1::ConfigMap;
use parking_lot::Mutex;
use serde_json::Value;

use super::{Cluster, status, unauthorized};

type Shared = State<Arc<Mutex<Cluster>>>;

pub(super) fn routes() -> Router<Arc<Mutex<Cluster>>> {
    Router::new()
        .route(
            "/api/v1/namespaces/{namespace}/configmaps",
            post(create_config_map),
        )
        .route(
            "/api/v1/namespaces/{namespace}/configmaps/{name}",
            get(get_config_map)
                .put(replace_config_map)
                .patch(patch_config_map),
        )
}

/// The 403 a Role without the grant gets; `None` when ConfigMaps are allowed.
fn forbidden(cluster: &Arc<Mutex<Cluster>>) -> Option<Response> {
    cluster.lock().config_maps_forbidden.then(|| {
        let message = "configmaps is forbidden: User \"system:serviceaccount:fleet:drover-updater\" cannot access configmaps";
        status(StatusCode::FORBIDDEN, "Forbidden", message)
    })
}

fn not_found(name: &str) -> Response {
    let message = format!("configmaps \"{name}\" not found");
    status(StatusCode::NOT_FOUND, "NotFound", &message)
}

fn invalid(message: &str) -> Response {
    status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message)
}

/// Stores `map` as `namespace/name`, with a new resource version.
fn store(cluster: &mut Cluster, namespace: &str, name: &str, mut map: ConfigMap) -> Response {
    cluster.resource_version += 1;
    map.metadata.name = Some(name.into());
    map.metadata.namespace = Some(namespace.into());
    map.metadata.resource_version = Some(cluster.resource_version.to_string());
    let key = (namespace.to_string(), name.to_string());
    cluster.config_maps.insert(key, map.clone());
    Json(map).into_response()
}

async fn get_config_map(
    State(cluster): Shared,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = unauthorized(&headers).or_else(|| forbidden(&cluster)) {
        return refused;
    }
    let cluster = cluster.lock();
    match cluster.config_maps.get(&(namespace, name.clone())) {
        Some(map) => Json(map.clone()).into_response(),
        None => not_found(&name),
    }
}

async fn create_config_map(
    State(cluster): Shared,
    Path(namespace): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = unauthorized(&headers).or_else(|| forbidden(&cluster)) {
        return refused;
    }
    let map: ConfigMap = match serde_json::from_slice(&body) {
        Ok(map) => map,
        Err(err) => return status(StatusCode::BAD_REQUEST, "BadRequest", &err.to_string()),
    };
    let Some(name) = map.metadata.name.clone() else {
        return invalid("metadata.name: Required value");
    };
    if map
        .metadata
        .namespace
        .as_ref()
        .is_some_and(|n| *n != namespace)
    {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the namespace of the object does not match the namespace on the request",
        );
    }
    let mut cluster = cluster.lock();
    if cluster
        .config_maps
        .contains_key(&(namespace.clone(), name.clone()))
    {
        let message = format!("configmaps \"{name}\" already exists");
        return status(StatusCode::CONFLICT, "AlreadyExists", &message);
    }
    let created = store(&mut cluster, &namespace, &name, map);
    (StatusCode::CREATED, created).into_response()
}

async fn replace_config_map(
    State(cluster): Shared,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = unauthorized(&headers).or_else(|| forbidden(&cluster)) {
        return refused;
    }
    let map: ConfigMap = match serde_json::from_slice(&body) {
        Ok(map) => map,
        Err(err) => return status(StatusCode::BAD_REQUEST, "BadRequest", &err.to_string()),
    };
    if map.metadata.name.as_deref() != Some(name.as_str()) {
        return invalid("metadata.name: the name of the object does not match the URL");
    }
    let mut cluster = cluster.lock();
    if !cluster
        .config_maps
        .contains_key(&(namespace.clone(), name.clone()))
    {
        return not_found(&name);
    }
    store(&mut cluster, &namespace, &name, map)
}

async fn patch_config_map(
    State(cluster): Shared,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = unauthorized(&headers).or_else(|| forbidden(&cluster)) {
        return refused;
    }
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
    if content_type != Some("application/merge-patch+json") {
        let message =
            format!("the fake server patches ConfigMaps by merge patch only, not {content_type:?}");
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            &message,
        );
    }
    let Ok(patch @ Value::Object(_)) = serde_json::from_slice::<Value>(&body) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the merge patch is not a JSON object",
        );
    };
    let mut cluster = cluster.lock();
    let Some(map) = cluster.config_maps.get(&(namespace.clone(), name.clone())) else {
        return not_found(&name);
    };
    let mut document = serde_json::to_value(map).unwrap();
    merge(&mut document, &patch);
    match serde_json::from_value::<ConfigMap>(document) {
        Ok(patched) => store(&mut cluster, &namespace, &name, patched),
        Err(err) => invalid(&err.to_string()),
    }
}

/// RFC 7396: objects merge key by key, `null` removes, anything else replaces.
fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let target = target.as_object_mut().unwrap();
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}
