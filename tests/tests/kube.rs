//! The Kubernetes updater end to end: a real coordinator, a real `drover-updater kube`, a
//! real OCI registry (Debian's docker-registry) holding images pushed and signed by skopeo,
//! and — there being no cluster here — the fake API server of `drover_tests::kube_api`
//! standing in for Kubernetes (its Deployment controller simulated).

use std::time::Duration;

use drover_tests::{
    CoordinatorBuilder, CoordinatorProcess, UpdaterBuilder, UpdaterProcess, cosign_key::CosignKey,
    droverctl, droverctl_json, eventually, kube_api::FakeApiServer, registry::TestRegistry,
};
use drover_updater::installers::kube::{PREVIOUS_IMAGE_ANNOTATION, VERSION_ANNOTATION};
use serde_json::Value;
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(60);
const PATH: &str = "drover/agent";

struct Setup {
    root: TempDir,
    coordinator: CoordinatorProcess,
    registry: TestRegistry,
    key: CosignKey,
    api: FakeApiServer,
}

/// Signed 1.0.0, 1.1.0 and 1.3.0, unsigned 1.2.0; the Deployment `fleet/agent` runs 1.0.0
/// by tag; channel `beta` at 1.0.0.
async fn setup() -> Setup {
    let root = tempfile::tempdir().unwrap();
    let coordinator = CoordinatorBuilder::sqlite(root.path())
        .control_plane("2.0.0")
        .start()
        .await;
    let registry = TestRegistry::start(root.path()).await;
    let key = CosignKey::generate(&root.path().join("keys"), "release");
    for version in ["1.0.0", "1.1.0", "1.3.0"] {
        registry.push(PATH, version, version, Some(&key)).await;
    }
    registry.push(PATH, "1.2.0", "1.2.0", None).await;
    let image = format!("{}:1.0.0", registry.repository(PATH));
    let api = FakeApiServer::start("fleet", "agent", 2, &image).await;
    droverctl_json(
        &coordinator.grpc_url(),
        &["channels", "set", "beta", "1.0.0"],
    )
    .await;
    Setup {
        root,
        coordinator,
        registry,
        key,
        api,
    }
}

impl Setup {
    fn updater(&self) -> UpdaterProcess {
        self.updater_in("updater")
    }

    /// A kube updater with its state in `root/state_dir`.
    fn updater_in(&self, state_dir: &str) -> UpdaterProcess {
        let token = self.root.path().join("token");
        std::fs::write(&token, self.api.token()).unwrap();
        UpdaterBuilder::new(
            &self.coordinator.grpc_url(),
            &self.root.path().join(state_dir),
            "kube-agent",
        )
        .kube()
        .arg("--group", "prod")
        .arg("--channel", "beta")
        .arg("--namespace", "fleet")
        .arg("--workload", "agent")
        .arg("--container", "agent")
        .arg("--image-repository", self.registry.repository(PATH))
        .arg(
            "--cosign-public-key",
            self.key.public_key.display().to_string(),
        )
        .arg("--api-server", self.api.url.clone())
        .arg("--api-token-file", token.display().to_string())
        .arg("--health-interval-ms", "200")
        .arg("--health-grace-secs", "4")
        .arg("--health-stable-secs", "1")
        .arg("--recheck-secs", "3600")
        .arg("--sample-secs", "1")
        .start()
    }

    async fn set_channel(&self, version: &str) {
        droverctl_json(
            &self.coordinator.grpc_url(),
            &["channels", "set", "beta", version],
        )
        .await;
    }

    /// The agent as the coordinator knows it; `None` before its first hello.
    async fn agent(&self) -> Option<Value> {
        let url = self.coordinator.grpc_url();
        let args = ["agents", "show", "kube-agent", "-o", "json"];
        let (ok, stdout, _) = droverctl(&url, &args).await;
        ok.then(|| serde_json::from_str(&stdout).expect("droverctl prints JSON"))
    }

    /// The agent as the coordinator knows it, once its last report has `outcome`.
    async fn report(&self, outcome: &str, to: &str) -> Value {
        eventually(&format!("a {outcome} report for {to}"), WAIT, async || {
            let agent = self.agent().await?;
            let report = &agent["last_report"];
            (report["outcome"] == outcome && report["to_version"] == to).then_some(agent)
        })
        .await
    }

    /// Waits until the updater is connected, healthy on 1.0.0 (read from the workload).
    async fn running_first_version(&self) {
        eventually(
            "the kube updater reports 1.0.0, healthy",
            WAIT,
            async || {
                let agent = self.agent().await?;
                (agent["agent_version"] == "1.0.0" && agent["health"] == "healthy").then_some(())
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_to_a_signed_tag_patches_the_workload_to_its_digest() {
    let s = setup().await;
    let updater = s.updater();
    s.running_first_version().await;
    s.set_channel("1.1.0").await;
    let agent = s.report("succeeded", "1.1.0").await;
    let digest = s.registry.digest(PATH, "1.1.0").await;
    assert_eq!(
        s.api.image(),
        format!("{}@{digest}", s.registry.repository(PATH))
    );
    assert_eq!(
        s.api.annotation(VERSION_ANNOTATION).as_deref(),
        Some("1.1.0")
    );
    assert_eq!(
        s.api.annotation(PREVIOUS_IMAGE_ANNOTATION),
        Some(format!("{}:1.0.0", s.registry.repository(PATH)))
    );
    assert_eq!(s.api.patches().len(), 1, "one patch: {:?}", s.api.patches());
    let mirrored = s
        .api
        .config_map_value("fleet", MIRROR, "directive.json")
        .expect("the missing ConfigMap was created with the directive");
    assert!(
        mirrored.contains("\"target_version\": \"1.1.0\""),
        "{mirrored}"
    );
    eventually("the coordinator sees 1.1.0", WAIT, async || {
        let agent = s.agent().await?;
        (agent["agent_version"] == "1.1.0").then_some(())
    })
    .await;
    assert_eq!(agent["health"], "healthy", "{agent}");
    drop(updater);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_target_is_refused_and_the_workload_untouched() {
    let s = setup().await;
    let _updater = s.updater();
    s.running_first_version().await;
    let before = s.api.deployment();
    s.set_channel("1.2.0").await;
    let agent = s.report("refused", "1.2.0").await;
    let error = agent["last_report"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(error.contains("is not signed"), "{error}");
    assert!(
        s.api.patches().is_empty(),
        "nothing patched: {:?}",
        s.api.patches()
    );
    assert_eq!(s.api.deployment(), before, "the workload is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_whose_pods_never_become_ready_is_reverted() {
    let s = setup().await;
    let _updater = s.updater();
    s.running_first_version().await;
    let bad = format!(
        "{}@{}",
        s.registry.repository(PATH),
        s.registry.digest(PATH, "1.3.0").await
    );
    s.api.mark_bad(&bad);
    s.set_channel("1.3.0").await;
    let agent = s.report("reverted", "1.3.0").await;
    let error = agent["last_report"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(error.contains("did not roll out within 4 s"), "{error}");
    assert!(error.contains("reverted to 1.0.0"), "{error}");
    assert_eq!(
        s.api.image(),
        format!("{}:1.0.0", s.registry.repository(PATH))
    );
    assert_eq!(
        s.api.annotation(VERSION_ANNOTATION).as_deref(),
        Some("1.0.0")
    );
    let patched: Vec<String> = s
        .api
        .patches()
        .iter()
        .map(|ops| {
            ops.as_array()
                .unwrap()
                .iter()
                .find(|op| op["op"] == "replace")
                .unwrap()["value"]
                .to_string()
        })
        .collect();
    assert_eq!(patched.len(), 2, "to the bad image and back: {patched:?}");
    assert!(patched[0].contains(&bad), "{patched:?}");
    eventually("the workload is healthy again on 1.0.0", WAIT, async || {
        let agent = s.agent().await?;
        (agent["agent_version"] == "1.0.0" && agent["health"] == "healthy").then_some(())
    })
    .await;
}

/// A release whose pods stay Ready but restart again and again passes the install gate;
/// the pods' restart counts reach the coordinator in the updater's health samples, and the
/// verdict halts the rollout naming restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_whose_pods_keep_restarting_is_halted_by_the_verdict() {
    let s = setup().await;
    let _updater = s.updater();
    s.running_first_version().await;
    let url = s.coordinator.grpc_url();
    eventually("a baseline of samples on 1.0.0", WAIT, async || {
        let samples = drover_tests::health_samples_on(&url, "kube-agent", "1.0.0").await?;
        (samples >= 2).then_some(())
    })
    .await;
    let crashing = format!(
        "{}@{}",
        s.registry.repository(PATH),
        s.registry.digest(PATH, "1.3.0").await
    );
    s.api.mark_crashing(&crashing);
    let (ok, out, err) = droverctl(
        &url,
        &[
            "rollout",
            "create",
            "--channel",
            "beta",
            "--from",
            "1.0.0",
            "--to",
            "1.3.0",
            "--group",
            "prod",
            "--immediate",
            "--bake",
            "10m",
            "--verdict",
            "min-agents=1",
        ],
    )
    .await;
    assert!(ok, "{out}{err}");
    let seen = parking_lot::Mutex::new(String::new());
    let status = drover_tests::eventually_explained(
        "the verdict halts the group",
        WAIT,
        async || {
            let status = droverctl_json(&url, &["rollout", "status", "--channel", "beta"]).await;
            let why = droverctl_json(&url, &["agents", "why", "kube-agent"]).await;
            *seen.lock() = format!("{:#}\n{}", status["groups"][0], why["explanation"]);
            (status["groups"][0]["state"] == "halted").then_some(status)
        },
        || seen.lock().clone(),
    )
    .await;
    let note = status["groups"][0]["note"].as_str().unwrap();
    assert!(
        note.starts_with("health verdict failed: restarts at"),
        "{note}"
    );
    let agent = s.report("succeeded", "1.3.0").await;
    assert_eq!(
        agent["agent_version"], "1.3.0",
        "the install gate had passed: {agent}"
    );
    let why = droverctl_json(&url, &["agents", "why", "kube-agent"]).await;
    let text = why["explanation"].as_str().unwrap();
    assert!(text.contains("Health since its install of 1.3.0"), "{text}");
}

/// The ConfigMap the updater mirrors its directive to (`--schedule-config-map`'s default).
const MIRROR: &str = "agent-drover";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_pod_restores_the_schedule_from_the_config_map_and_honours_the_window() {
    let mut s = setup().await;
    // As deploy/kubernetes/updater/updater.yaml does: the ConfigMap exists, empty.
    s.api.create_config_map("fleet", MIRROR);
    let first = s.updater();
    s.running_first_version().await;
    // A window six hours away: a healthy agent waits for it.
    let minute = (now_ms().rem_euclid(86_400_000) / 60_000 + 360) % 1440;
    let start = format!("{:02}:{:02}", minute / 60, minute % 60);
    droverctl_json(
        &s.coordinator.grpc_url(),
        &[
            "schedule",
            "set",
            "--group",
            "prod",
            "--days",
            "daily",
            "--start",
            &start,
            "--duration",
            "1h",
        ],
    )
    .await;
    s.set_channel("1.1.0").await;
    let held = eventually("the first updater waits for the window", WAIT, async || {
        let state = first.state();
        (state["last_decision"]["reason"] == "outside_window"
            && state["directive"]["schedule"].is_object())
        .then_some(state["directive"].clone())
    })
    .await;
    let mirrored: Value = eventually("the ConfigMap holds the directive", WAIT, async || {
        let value = s.api.config_map_value("fleet", MIRROR, "directive.json")?;
        let mirrored: Value = serde_json::from_str(&value).expect("the mirror is JSON");
        (mirrored["directive_id"] == held["directive_id"]).then_some(mirrored)
    })
    .await;
    assert_eq!(mirrored["schedule"], held["schedule"], "{mirrored}");
    assert_eq!(mirrored["target_version"], "1.1.0", "{mirrored}");
    assert!(
        mirrored["schedule"]["valid_until_ms"].as_i64() > Some(now_ms()),
        "{mirrored}"
    );

    // The pod is rescheduled: its state dir is empty but for the enrolled identity (the
    // manifest's init container copies it from a Secret), and the coordinator is unreachable.
    drop(first);
    s.coordinator.kill9().await;
    let identity = s.root.path().join("fresh-pod/identity");
    std::fs::create_dir_all(&identity).unwrap();
    for file in std::fs::read_dir(s.root.path().join("updater/identity")).unwrap() {
        let file = file.unwrap();
        std::fs::copy(file.path(), identity.join(file.file_name())).unwrap();
    }
    assert!(!s.root.path().join("fresh-pod/state.json").exists());
    let second = s.updater_in("fresh-pod");
    let restored = eventually(
        "the fresh updater restores the directive and waits for the window",
        WAIT,
        async || {
            let state = second.state();
            (state["last_decision"]["reason"] == "outside_window").then_some(state)
        },
    )
    .await;
    assert_eq!(restored["directive"]["source"], "restored", "{restored}");
    assert_eq!(
        restored["directive"]["schedule"], held["schedule"],
        "{restored}"
    );
    assert_eq!(
        restored["directive"]["directive_id"], held["directive_id"],
        "{restored}"
    );
    assert!(
        second
            .log()
            .contains("restored the directive and its maintenance schedule from the ConfigMap"),
        "{}",
        second.log()
    );
    let status = tokio::process::Command::new(drover_tests::bin("drover-updater"))
        .args(["status", "--state-dir"])
        .arg(&second.state_dir)
        .output()
        .await
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("(by restored)") && status.contains("wait (outside_window)"),
        "{status}"
    );
    assert!(
        s.api.patches().is_empty(),
        "nothing installed outside the window: {:?}",
        s.api.patches()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_config_map_is_logged_and_updates_go_on() {
    let s = setup().await;
    s.api.forbid_config_maps();
    let updater = s.updater();
    s.running_first_version().await;
    s.set_channel("1.1.0").await;
    s.report("succeeded", "1.1.0").await;
    let log = updater.log();
    assert!(
        log.contains("cannot read the mirrored directive") && log.contains("403"),
        "{log}"
    );
    assert!(
        log.contains("cannot mirror the directive to the ConfigMap"),
        "{log}"
    );
    assert_eq!(
        s.api.config_map_value("fleet", MIRROR, "directive.json"),
        None
    );
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
