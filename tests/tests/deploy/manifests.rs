//! deploy/kubernetes and deploy/container, checked without a cluster or a container engine
//! (neither runs on this machine): each kustomize overlay is rendered by `kubectl kustomize`
//! and the objects are checked for probes wired to the coordinator's real HTTPS port,
//! resources, security contexts and the disruption budget; the Containerfiles are linted
//! for what matters (pinned bases, non-root user, no shell needed, no remote ADD).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde::Deserialize;
use serde_json::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// `kubectl kustomize` of an overlay, one JSON value per object.
fn render(overlay: &str) -> Vec<Value> {
    let dir = deploy_dir().join("kubernetes/overlays").join(overlay);
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(&dir)
        .output()
        .expect("kubectl is missing: scripts/setup installs it");
    assert!(
        output.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).expect("rendered YAML"))
        .collect()
}

fn object<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

/// The port the coordinator's HTTP listener binds, from the rendered ConfigMap.
fn http_listen_port(objects: &[Value]) -> u64 {
    let config = object(objects, "ConfigMap", "drover-coordinator-config");
    let listen = config["data"]["DROVER_HTTP_LISTEN"].as_str().unwrap();
    listen.rsplit(':').next().unwrap().parse().unwrap()
}

/// What every overlay must keep; returns the coordinator container.
fn check_coordinator(objects: &[Value]) -> Value {
    for o in objects {
        if o["kind"] != "PersistentVolume" {
            assert_eq!(o["metadata"]["namespace"], "drover", "{}", o["metadata"]);
        }
    }
    let set = object(objects, "StatefulSet", "drover-coordinator");
    let pod = &set["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_ne!(pod["securityContext"]["runAsUser"], 0);
    assert_eq!(pod["automountServiceAccountToken"], false);
    let container = pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "coordinator")
        .expect("the coordinator container")
        .clone();
    assert_eq!(
        container["image"],
        "registry.example/drover/drover-coordinator:0.1.0"
    );

    // The probes reach the coordinator's own endpoints on the port it listens on, over
    // TLS (both listeners are TLS-only).
    let https_port = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "https")
        .expect("a port named https");
    assert_eq!(https_port["containerPort"], http_listen_port(objects));
    for (probe, path) in [
        ("livenessProbe", "/livez"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/livez"),
    ] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(get["scheme"], "HTTPS", "{probe}");
        assert_eq!(get["port"], "https", "{probe}");
    }

    for bound in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            let value = &container["resources"][bound][resource];
            assert!(value.is_string(), "resources.{bound}.{resource}: {value}");
        }
    }
    let security = &container["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));

    // With a read-only root, the data directory must be on a mounted volume.
    let data_dir =
        object(objects, "ConfigMap", "drover-coordinator-config")["data"]["DROVER_DATA_DIR"]
            .as_str()
            .unwrap()
            .to_string();
    let mounts = container["volumeMounts"].as_array().unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| m["name"] == "data" && data_dir.starts_with(m["mountPath"].as_str().unwrap())),
        "{data_dir} is not on the data volume: {mounts:?}"
    );

    // The Service and the disruption budget select the coordinator's pods.
    let labels = &set["spec"]["template"]["metadata"]["labels"];
    let service = object(objects, "Service", "drover-coordinator");
    for (key, value) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&labels[key], value, "Service selector {key}");
    }
    let ports: Vec<_> = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_u64().unwrap())
        .collect();
    assert_eq!(ports, [7400, 7401]);
    let pdb = object(objects, "PodDisruptionBudget", "drover-coordinator");
    for (key, value) in pdb["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&labels[key], value, "PDB selector {key}");
    }
    container
}

fn env_from_secret(objects: &[Value]) -> String {
    let secret = object(objects, "Secret", "drover-coordinator-database");
    secret["stringData"]["DROVER_DATABASE"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn sqlite_single_renders_one_replica_with_its_store_on_the_volume() {
    let objects = render("sqlite-single");
    let container = check_coordinator(&objects);
    let set = object(&objects, "StatefulSet", "drover-coordinator");
    assert_eq!(set["spec"]["replicas"], 1, "SQLite has one writer");
    let database = env_from_secret(&objects);
    assert!(
        database.starts_with("sqlite:///var/lib/drover/"),
        "{database}"
    );
    let args = container["args"].as_array().unwrap();
    assert!(
        args.iter()
            .any(|a| a == "--tls-san=drover-coordinator.$(POD_NAMESPACE).svc"),
        "the certificate names the Service: {args:?}"
    );
    let pdb = object(&objects, "PodDisruptionBudget", "drover-coordinator");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
}

#[test]
fn postgres_replicas_render_three_replicas_sharing_ca_and_certificate() {
    let objects = render("postgres-replicas");
    let container = check_coordinator(&objects);
    let set = object(&objects, "StatefulSet", "drover-coordinator");
    assert_eq!(set["spec"]["replicas"], 3);
    assert!(env_from_secret(&objects).starts_with("postgres://"));
    let pdb = object(&objects, "PodDisruptionBudget", "drover-coordinator");
    assert_eq!(pdb["spec"]["minAvailable"], 2);
    assert!(pdb["spec"].get("maxUnavailable").is_none(), "{pdb}");

    // --tls-cert excludes --tls-san: the overlay's args replace the base's.
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        args.contains(&"--tls-cert=/etc/drover/tls/tls.crt"),
        "{args:?}"
    );
    assert!(!args.iter().any(|a| a.starts_with("--tls-san")), "{args:?}");
    let mounts = container["volumeMounts"].as_array().unwrap();
    for file in ["ca.pem", "ca-key.pem"] {
        assert!(
            mounts.iter().any(|m| m["name"] == "agent-ca"
                && m["mountPath"] == format!("/var/lib/drover/data/tls/{file}")),
            "the shared CA's {file} in the data directory: {mounts:?}"
        );
    }
}

/// A Containerfile's instructions, continuation lines joined, comments dropped.
fn instructions(name: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(deploy_dir().join("container").join(name)).unwrap();
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(start) => current.push_str(start),
            None => {
                current.push_str(line);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    joined
        .into_iter()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (op, rest) = l.split_once(' ').unwrap_or((&l, ""));
            (op.to_uppercase(), rest.trim().to_string())
        })
        .collect()
}

fn lint_containerfile(name: &str, binary: &str) -> Vec<(String, String)> {
    let all = instructions(name);
    for (op, rest) in &all {
        if op == "FROM" {
            let image = rest.split_whitespace().next().unwrap();
            let tag = image.rsplit('/').next().unwrap();
            assert!(
                image.contains("@sha256:") || (tag.contains(':') && !tag.ends_with(":latest")),
                "{name}: base {image} is not pinned to a tag or digest"
            );
        }
        assert!(
            op != "ADD",
            "{name}: ADD {rest} (use COPY; no remote or archive ADD)"
        );
    }
    let last_from = all.iter().rposition(|(op, _)| op == "FROM").unwrap();
    let runtime = &all[last_from..];
    let base = &runtime[0].1;
    assert!(
        base.contains("distroless") || base.contains("-slim"),
        "{name}: runtime base {base}"
    );
    assert!(
        !runtime.iter().any(|(op, _)| op == "RUN"),
        "{name}: the runtime stage must not need a shell"
    );
    let user = runtime
        .iter()
        .rev()
        .find(|(op, _)| op == "USER")
        .map(|(_, user)| user.clone())
        .unwrap_or_else(|| panic!("{name}: no USER in the runtime stage"));
    let uid = user.split(':').next().unwrap();
    assert!(
        uid.parse::<u32>().is_ok_and(|uid| uid != 0),
        "{name}: USER {user} must be a non-root numeric uid (runAsNonRoot checks it)"
    );
    let entrypoint = runtime
        .iter()
        .find(|(op, _)| op == "ENTRYPOINT")
        .map(|(_, e)| e.clone())
        .unwrap_or_else(|| panic!("{name}: no ENTRYPOINT"));
    let argv: Vec<String> = serde_json::from_str(&entrypoint)
        .unwrap_or_else(|_| panic!("{name}: ENTRYPOINT {entrypoint} must be exec (JSON) form"));
    assert_eq!(argv, [format!("/usr/bin/{binary}")]);
    let build = all[..last_from]
        .iter()
        .find(|(op, r)| op == "RUN" && r.contains("cargo build"));
    let build = &build.unwrap_or_else(|| panic!("{name}: no cargo build")).1;
    assert!(
        build.contains("--release") && build.contains("--locked"),
        "{build}"
    );
    runtime.to_vec()
}

#[test]
fn containerfiles_are_pinned_non_root_and_need_no_shell() {
    let coordinator = lint_containerfile("Containerfile.coordinator", "drover-coordinator");
    let exposed: Vec<&str> = coordinator
        .iter()
        .filter(|(op, _)| op == "EXPOSE")
        .flat_map(|(_, ports)| ports.split_whitespace())
        .collect();
    assert_eq!(exposed, ["7400", "7401"], "the ports the manifests use");
    lint_containerfile("Containerfile.updater", "drover-updater");
}
