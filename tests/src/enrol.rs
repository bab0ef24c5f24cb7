//! Enrolment in the harness: every updater the tests start against a TLS coordinator gets
//! a join token from that coordinator (through droverctl, as an admin would) and enrols
//! with it, as an operator would on a host. Synchronous, so the sync builders can use it.

use std::{path::Path, process::Stdio};

use crate::{bin, trust};

/// A join token for `groups` allowing `uses` enrolments, made with the coordinator's admin
/// profile; `None` for a coordinator the harness does not know as TLS (`--insecure`).
pub fn join_token(coordinator: &str, groups: &[&str], uses: usize) -> Option<String> {
    let profile = trust::profile_for(coordinator)?;
    let mut command = std::process::Command::new(bin("droverctl"));
    command
        .arg("--profile")
        .arg(profile)
        .arg("--coordinator")
        .arg(coordinator)
        .args(["tokens", "create", "--ttl", "1d", "-o", "json"])
        .arg("--uses")
        .arg(uses.max(1).to_string());
    for group in groups {
        command.arg("--group").arg(group);
    }
    let output = command
        .stdin(Stdio::null())
        .output()
        .expect("run droverctl tokens create");
    assert!(
        output.status.success(),
        "droverctl tokens create failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("tokens create prints JSON");
    Some(
        json["secret"]
            .as_str()
            .expect("a secret in the answer")
            .to_string(),
    )
}

/// The CA pin (`sha256:HEX`) of the TLS coordinator at `coordinator`.
pub fn ca_pin(coordinator: &str) -> Option<String> {
    trust::lookup(coordinator).map(|tls| tls.ca_pin)
}

/// Runs `drover-updater enroll` for `agent_id` in `group` into `state_dir`, unless it holds
/// an identity already (a restarted updater keeps its own). Returns the command's outcome
/// (succeeded, stderr); a coordinator the harness knows as `--insecure` needs no enrolment.
pub fn enrol(
    coordinator: &str,
    state_dir: &Path,
    agent_id: &str,
    group: &str,
) -> Option<(bool, String)> {
    if state_dir.join("identity/identity.json").exists() {
        return None;
    }
    let pin = ca_pin(coordinator)?;
    let token = join_token(coordinator, &[group], 1)?;
    Some(enrol_with(
        coordinator,
        state_dir,
        agent_id,
        group,
        &token,
        &pin,
    ))
}

/// `drover-updater enroll` with the given token and pin: (succeeded, stderr).
pub fn enrol_with(
    coordinator: &str,
    state_dir: &Path,
    agent_id: &str,
    group: &str,
    token: &str,
    pin: &str,
) -> (bool, String) {
    std::fs::create_dir_all(state_dir).expect("state dir");
    let output = std::process::Command::new(bin("drover-updater"))
        .arg("enroll")
        .arg("--coordinator")
        .arg(coordinator)
        .arg("--state-dir")
        .arg(state_dir)
        .arg("--agent-id")
        .arg(agent_id)
        .arg("--group")
        .arg(group)
        .arg("--ca-pin")
        .arg(pin)
        .env("DROVER_JOIN_TOKEN", token)
        .stdin(Stdio::null())
        .output()
        .expect("run drover-updater enroll");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// An enrolled agent's credentials, kept in memory (for tests that speak raw gRPC).
#[derive(Clone, Debug)]
pub struct AgentCert {
    pub agent_id: String,
    pub group: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Enrols `agent_id` into `group` with a fresh key and a one-use token, as
/// `drover-updater enroll` would, keeping the credentials in memory.
pub async fn enrol_in_memory(coordinator: &str, agent_id: &str, group: &str) -> AgentCert {
    let token = join_token(coordinator, &[group], 1).expect("a TLS coordinator");
    enrol_in_memory_with(coordinator, agent_id, group, &token)
        .await
        .expect("enrolment succeeds")
}

/// [`enrol_in_memory`] with a given token; the coordinator's refusal as an error.
pub async fn enrol_in_memory_with(
    coordinator: &str,
    agent_id: &str,
    group: &str,
    token: &str,
) -> Result<AgentCert, tonic::Status> {
    use drover_proto::v1::{EnrollRequest, enrolment_service_client::EnrolmentServiceClient};
    let key = rcgen::KeyPair::generate().expect("a key");
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .expect("params")
        .serialize_request(&key)
        .expect("a signing request");
    let channel = trust::grpc_channel(coordinator).await.expect("connect");
    let enrolled = EnrolmentServiceClient::new(channel)
        .enroll(EnrollRequest {
            token: token.to_string(),
            csr_der: csr.der().to_vec(),
            agent_id: agent_id.to_string(),
            group: group.to_string(),
            hostname: "test-host".into(),
        })
        .await?
        .into_inner();
    Ok(AgentCert {
        agent_id: enrolled.agent_id,
        group: enrolled.group,
        cert_pem: enrolled.certificate_pem,
        key_pem: key.serialize_pem(),
    })
}

/// A gRPC channel to `coordinator` presenting `cert` (mutual TLS).
pub async fn channel_as(
    coordinator: &str,
    cert: &AgentCert,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let tls = trust::lookup(coordinator).expect("a TLS coordinator");
    let ca = std::fs::read(&tls.ca_file).expect("the coordinator's CA file");
    Endpoint::from_shared(coordinator.to_string())?
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca))
                .identity(Identity::from_pem(&cert.cert_pem, &cert.key_pem)),
        )?
        .connect()
        .await
}

type CertCache = std::collections::HashMap<(String, String), AgentCert>;
static ENROLLED: std::sync::LazyLock<tokio::sync::Mutex<CertCache>> =
    std::sync::LazyLock::new(Default::default);

/// The credentials of `agent_id` at `coordinator`, enrolled on first use (ids are never
/// given out twice, so a test reopening an agent's stream must reuse them).
pub async fn cached(coordinator: &str, agent_id: &str, group: &str) -> AgentCert {
    let mut enrolled = ENROLLED.lock().await;
    let key = (coordinator.to_string(), agent_id.to_string());
    if let Some(cert) = enrolled.get(&key) {
        return cert.clone();
    }
    let cert = enrol_in_memory(coordinator, agent_id, group).await;
    enrolled.insert(key, cert.clone());
    cert
}
