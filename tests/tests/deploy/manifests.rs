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
        if o["kind"] != "PersistentVolume" && o["kind"] != "Namespace" {
            assert_eq!(o["metadata"]["namespace"], "drover", "{}", o["metadata"]);
        }
    }
    // The overlay creates its namespace (`kubectl apply -k` on a fresh cluster), which
    // enforces the restricted Pod Security Standard the pods meet.
    let namespace = object(objects, "Namespace", "drover");
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
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
    // Optimised: the release profile, or the updater's own, which inherits it.
    let optimised = build.contains("--release")
        || (build.contains("--profile updater") && updater_profile_inherits_release());
    assert!(optimised && build.contains("--locked"), "{build}");
    runtime.to_vec()
}

/// Whether the workspace's `[profile.updater]` is an optimised build (inherits release).
fn updater_profile_inherits_release() -> bool {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml"))
        .expect("read the workspace Cargo.toml");
    let Some((_, profile)) = manifest.split_once("[profile.updater]") else {
        return false;
    };
    let profile = profile.split("\n[").next().unwrap_or_default();
    profile
        .lines()
        .any(|l| l.trim() == r#"inherits = "release""#)
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

    // The state directory is the service's alone (0700, uid 65532). COPY of a directory
    // copies its contents into a destination it makes 0755, so the image copies the
    // parent, whose entry keeps the build stage's mode (checked by building both files
    // with buildah against stand-in bases: 0755 before, 0700 after).
    for (name, state) in [
        ("Containerfile.coordinator", "drover"),
        ("Containerfile.updater", "drover-updater"),
    ] {
        let all = instructions(name);
        assert!(
            all.iter().any(|(op, rest)| op == "RUN"
                && rest.contains(&format!("install -d -m 0700 /out/var/lib/{state}"))),
            "{name}: the build stage makes /var/lib/{state} 0700"
        );
        let copies: Vec<&String> = all
            .iter()
            .filter(|(op, rest)| op == "COPY" && rest.contains("/var/lib"))
            .map(|(_, rest)| rest)
            .collect();
        assert_eq!(
            copies,
            ["--from=build --chown=65532:65532 /out/var/lib/ /var/lib/"],
            "{name}"
        );
    }
}

/// The YAML documents of deploy/kubernetes/updater/NAME.
fn updater_manifest(name: &str) -> Vec<Value> {
    let path = deploy_dir().join("kubernetes/updater").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).expect("YAML"))
        .filter(|value| !value.is_null())
        .collect()
}

/// The in-cluster updater's pods run the distroless image (no shell, no coreutils): every
/// container runs the image's entrypoint, drover-updater, with a subcommand and flags the
/// real binary accepts (`--help` after them parses them all and runs nothing), as the
/// restricted security context allows.
#[test]
fn updater_manifests_run_only_drover_updater_and_enrol_on_its_volume() {
    let mut objects = updater_manifest("enrol.yaml");
    objects.extend(updater_manifest("updater.yaml"));
    objects.extend(updater_manifest("rbac.yaml"));
    let mut claims = Vec::new();
    let mut subcommands = Vec::new();
    for o in objects
        .iter()
        .filter(|o| o["kind"] == "Deployment" || o["kind"] == "Job")
    {
        let name = o["metadata"]["name"].as_str().unwrap();
        let pod = &o["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        let containers = pod["containers"].as_array().unwrap().iter();
        let init = pod["initContainers"].as_array().into_iter().flatten();
        for container in containers.chain(init) {
            let what = format!("{name}/{}", container["name"]);
            assert_eq!(
                container["image"], "registry.example/drover/drover-updater:0.1.0",
                "{what}"
            );
            assert!(
                container.get("command").is_none(),
                "{what}: the image has no shell or tools; run drover-updater's own \
                 subcommands (args) instead of {}",
                container["command"]
            );
            let security = &container["securityContext"];
            assert_eq!(security["readOnlyRootFilesystem"], true, "{what}");
            assert_eq!(security["allowPrivilegeEscalation"], false, "{what}");
            assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
            let args: Vec<&str> = container["args"]
                .as_array()
                .unwrap_or_else(|| panic!("{what}: no args"))
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            let output = Command::new(drover_tests::bin("drover-updater"))
                .args(&args)
                .arg("--help")
                .env_clear()
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{what}: drover-updater {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            subcommands.push(args[0].to_string());
            for volume in pod["volumes"].as_array().unwrap() {
                if let Some(claim) = volume["persistentVolumeClaim"]["claimName"].as_str() {
                    claims.push((args[0].to_string(), claim.to_string()));
                }
            }
        }
    }
    subcommands.sort();
    assert_eq!(subcommands, ["enroll", "kube"]);
    // Enrolment writes the identity where `kube` reads and renews it.
    assert_eq!(claims.len(), 2, "{claims:?}");
    assert_eq!(claims[0].1, claims[1].1, "{claims:?}");
    assert!(
        objects
            .iter()
            .any(|o| o["kind"] == "PersistentVolumeClaim" && o["metadata"]["name"] == claims[0].1),
        "no PersistentVolumeClaim {}",
        claims[0].1
    );
}
