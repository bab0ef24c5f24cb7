//! Enrolment and agent identity, black-box: join tokens are refused when unknown, expired,
//! revoked, used up or asked for another group; an updater speaks only for the agent its
//! certificate names, and a revoked agent is cut off at once. Every refusal changes nothing
//! and is in the audit log.

use std::time::Duration;

use drover_proto::v1::{
    self as pb, coordinator_message::Kind as Down, updater_message::Kind as Up,
    updater_service_client::UpdaterServiceClient,
};
use drover_tests::{
    CoordinatorBuilder, CoordinatorProcess, droverctl, droverctl_json,
    enrol::{self, AgentCert},
    eventually,
};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Streaming};

fn hello(agent_id: &str, group: &str) -> pb::UpdaterMessage {
    pb::UpdaterMessage {
        kind: Some(Up::Hello(pb::Hello {
            agent_id: agent_id.into(),
            hostname: "host".into(),
            group: group.into(),
            channel: "stable/rolling".into(),
            agent_version: "1.0.0".into(),
            health: pb::AgentHealth::Healthy as i32,
            ..Default::default()
        })),
    }
}

/// Opens a session on `channel` with `first`; the refusal, if any.
async fn open(
    channel: tonic::transport::Channel,
    first: pb::UpdaterMessage,
) -> Result<
    (
        mpsc::Sender<pb::UpdaterMessage>,
        Streaming<pb::CoordinatorMessage>,
    ),
    tonic::Status,
> {
    let (up, rx) = mpsc::channel(16);
    up.send(first).await.unwrap();
    let mut down = UpdaterServiceClient::new(channel)
        .session(ReceiverStream::new(rx))
        .await?
        .into_inner();
    // A refused hello ends the stream with its status before any Welcome.
    match tokio::time::timeout(Duration::from_secs(10), down.message()).await {
        Ok(Ok(Some(message))) => {
            assert!(matches!(message.kind, Some(Down::Welcome(_))));
            Ok((up, down))
        }
        Ok(Err(status)) => Err(status),
        other => panic!("no Welcome and no refusal: {other:?}"),
    }
}

async fn agent_ids(c: &CoordinatorProcess) -> Vec<String> {
    let agents = droverctl_json(&c.grpc_url(), &["agents", "list", "--all"]).await;
    let mut ids: Vec<String> = agents["agents"]
        .as_array()
        .unwrap_or(&vec![])
        .iter()
        .map(|a| a["agent_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn refusals<'a>(audit: &'a Value, action: &str) -> Vec<&'a Value> {
    audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == action && r["result"] == "refused")
        .collect()
}

#[tokio::test]
async fn an_updater_without_a_certificate_is_refused_and_records_nothing() {
    let root = tempfile::tempdir().unwrap();
    let c = CoordinatorBuilder::sqlite(root.path()).start().await;
    let err = open(c.channel().await, hello("nocert-1", "prod"))
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("drover-updater enroll"), "{err:?}");
    let polled = UpdaterServiceClient::new(c.channel().await)
        .get_target(pb::GetTargetRequest {
            agent_id: "nocert-1".into(),
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert_eq!(polled.code(), Code::Unauthenticated);
    assert!(agent_ids(&c).await.is_empty());
}

#[tokio::test]
async fn a_certificate_from_another_coordinators_ca_fails_the_handshake() {
    let root = tempfile::tempdir().unwrap();
    let (ours_dir, theirs_dir) = (root.path().join("ours"), root.path().join("theirs"));
    std::fs::create_dir_all(&ours_dir).unwrap();
    std::fs::create_dir_all(&theirs_dir).unwrap();
    let ours = CoordinatorBuilder::sqlite(&ours_dir).start().await;
    let theirs = CoordinatorBuilder::sqlite(&theirs_dir).start().await;
    let foreign = enrol::enrol_in_memory(&theirs.grpc_url(), "stranger", "prod").await;
    // Trusting our CA for the server but presenting a certificate their CA signed.
    let tls = ours.tls.clone().unwrap();
    let ca = std::fs::read(&tls.ca_file).unwrap();
    let endpoint = tonic::transport::Endpoint::from_shared(ours.grpc_url())
        .unwrap()
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(ca))
                .identity(tonic::transport::Identity::from_pem(
                    &foreign.cert_pem,
                    &foreign.key_pem,
                )),
        )
        .unwrap();
    let refused = match endpoint.connect().await {
        Err(err) => format!("{err:?}"),
        Ok(channel) => format!("{:?}", open(channel, hello("stranger", "prod")).await.err()),
    };
    assert!(
        refused.to_lowercase().contains("certificate")
            || refused.contains("Unknown")
            || refused.contains("transport"),
        "the handshake fails: {refused}"
    );
    assert!(agent_ids(&ours).await.is_empty());
    assert!(
        ours.log().contains("TLS handshake failed"),
        "the coordinator says why"
    );
}

#[tokio::test]
async fn join_tokens_that_are_unknown_expired_revoked_used_up_or_for_another_group_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let c = CoordinatorBuilder::sqlite(root.path()).start().await;
    let url = c.grpc_url();
    let code = |r: Result<AgentCert, tonic::Status>| r.expect_err("refused");

    // Unknown.
    let unknown = code(enrol::enrol_in_memory_with(&url, "a-1", "prod", "drover_join_00").await);
    assert_eq!(unknown.code(), Code::Unauthenticated, "{unknown:?}");

    // Reused: one use, spent by the first enrolment.
    let once = enrol::join_token(&url, &["prod"], 1).unwrap();
    let first = enrol::enrol_in_memory_with(&url, "a-1", "prod", &once)
        .await
        .expect("the first use enrols");
    assert_eq!(
        (first.agent_id.as_str(), first.group.as_str()),
        ("a-1", "prod")
    );
    let reused = code(enrol::enrol_in_memory_with(&url, "a-2", "prod", &once).await);
    assert_eq!(reused.code(), Code::PermissionDenied, "{reused:?}");
    assert!(reused.message().contains("used 1 of 1"), "{reused:?}");

    // Another group than the token allows.
    let prod_only = enrol::join_token(&url, &["prod"], 5).unwrap();
    let group = code(enrol::enrol_in_memory_with(&url, "a-3", "staging", &prod_only).await);
    assert_eq!(group.code(), Code::PermissionDenied, "{group:?}");
    assert!(
        group.message().contains("enrols only into prod"),
        "{group:?}"
    );

    // An agent id that is taken: ids are never given out twice.
    let taken = code(enrol::enrol_in_memory_with(&url, "a-1", "prod", &prod_only).await);
    assert_eq!(taken.code(), Code::Aborted, "{taken:?}");
    assert!(taken.message().contains("enrolled already"), "{taken:?}");

    // Revoked.
    let tokens = droverctl_json(&url, &["tokens", "list"]).await;
    let live = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["uses"] == 0 && t["max_uses"] == 5)
        .expect("the five-use token is listed");
    assert!(
        live.get("secret").is_none(),
        "no secret is ever listed: {live}"
    );
    let id = live["token_id"].as_str().unwrap();
    droverctl_json(&url, &["tokens", "revoke", id]).await;
    let revoked = code(enrol::enrol_in_memory_with(&url, "a-4", "prod", &prod_only).await);
    assert_eq!(revoked.code(), Code::PermissionDenied, "{revoked:?}");
    assert!(revoked.message().contains("revoked"), "{revoked:?}");

    // Expired: a one-second token, tried until it has expired.
    let brief = {
        let created = droverctl_json(
            &url,
            &[
                "tokens", "create", "--group", "prod", "--ttl", "1s", "--uses", "9",
            ],
        )
        .await;
        created["secret"].as_str().unwrap().to_string()
    };
    let expired = eventually(
        "the one-second token expires",
        Duration::from_secs(20),
        async || {
            let key = format!("late-{}", rand_suffix());
            match enrol::enrol_in_memory_with(&url, &key, "prod", &brief).await {
                Err(status) if status.message().contains("expired") => Some(status),
                _ => None,
            }
        },
    )
    .await;
    assert_eq!(expired.code(), Code::PermissionDenied);

    // Nothing changed but the one good enrolment (and any made before the token expired).
    let identities = droverctl_json(&url, &["agents", "identities"]).await;
    let ids: Vec<&str> = identities
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["agent_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"a-1"));
    for refused in ["a-2", "a-3", "a-4"] {
        assert!(!ids.contains(&refused), "{refused} was refused: {ids:?}");
    }
    // Every refusal is audited, as an updater's, under the token's id where it is known.
    let audit = droverctl_json(&url, &["audit"]).await;
    let refused = refusals(&audit, "Enroll");
    assert!(refused.len() >= 5, "refusals audited: {audit}");
    assert!(refused.iter().all(|r| r["role"] == "updater"), "{audit}");
    assert!(
        refused
            .iter()
            .any(|r| r["detail"].as_str().unwrap().contains("used 1 of 1")),
        "{audit}"
    );
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["action"] == "Enroll" && r["result"] == "ok" && r["target"] == "a-1"),
        "the enrolment itself is audited: {audit}"
    );
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
}

#[tokio::test]
async fn an_updater_speaks_only_for_its_own_agent_id_and_group() {
    let root = tempfile::tempdir().unwrap();
    let c = CoordinatorBuilder::sqlite(root.path()).start().await;
    let url = c.grpc_url();
    let mine = enrol::enrol_in_memory(&url, "mine-1", "prod").await;
    let victim = enrol::enrol_in_memory(&url, "victim-1", "prod").await;
    // The victim is connected; a forged hello must not take over its stream.
    let (_victim_up, mut victim_down) = open(
        enrol::channel_as(&url, &victim).await.unwrap(),
        hello("victim-1", "prod"),
    )
    .await
    .expect("the victim connects");
    let channel = enrol::channel_as(&url, &mine).await.unwrap();
    let forged = open(channel.clone(), hello("victim-1", "prod"))
        .await
        .expect_err("refused");
    assert_eq!(forged.code(), Code::PermissionDenied, "{forged:?}");
    assert!(forged.message().contains("only for itself"), "{forged:?}");
    let other_group = open(channel.clone(), hello("mine-1", "staging"))
        .await
        .expect_err("refused");
    assert_eq!(
        other_group.code(),
        Code::PermissionDenied,
        "{other_group:?}"
    );
    let polled = UpdaterServiceClient::new(channel.clone())
        .get_target(pb::GetTargetRequest {
            agent_id: "victim-1".into(),
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert_eq!(polled.code(), Code::PermissionDenied);
    // The victim's stream is untouched: directives may come, but no end.
    loop {
        match tokio::time::timeout(Duration::from_millis(500), victim_down.message()).await {
            Err(_) => break,
            Ok(Ok(Some(_))) => continue,
            Ok(other) => panic!("the victim's stream ended: {other:?}"),
        }
    }
    // Its own hello in its own group works.
    open(channel, hello("mine-1", "prod"))
        .await
        .expect("itself");
    let ids = agent_ids(&c).await;
    assert_eq!(ids, ["mine-1", "victim-1"]);
    let agent = droverctl_json(&url, &["agents", "show", "mine-1"]).await;
    assert_eq!(agent["group"], "prod", "the forged group was not recorded");
    // The forged attempts are in the audit log, in the certificate holder's name.
    let audit = droverctl_json(&url, &["audit"]).await;
    let hellos = refusals(&audit, "Hello");
    assert!(
        hellos
            .iter()
            .any(|r| r["actor"] == "agent mine-1" && r["target"] == "victim-1"),
        "{audit}"
    );
    assert!(
        refusals(&audit, "GetTarget")
            .iter()
            .any(|r| r["role"] == "updater"),
        "{audit}"
    );
}

#[tokio::test]
async fn a_revoked_agent_is_cut_off_at_once_and_refused_after() {
    let root = tempfile::tempdir().unwrap();
    let c = CoordinatorBuilder::sqlite(root.path()).start().await;
    let url = c.grpc_url();
    let cert = enrol::enrol_in_memory(&url, "gone-1", "prod").await;
    let (_up, mut down) = open(
        enrol::channel_as(&url, &cert).await.unwrap(),
        hello("gone-1", "prod"),
    )
    .await
    .expect("connects");
    let (ok, _, stderr) = droverctl(&url, &["agents", "revoke", "gone-1", "--dry-run"]).await;
    assert!(ok, "{stderr}");
    let revoked = droverctl_json(&url, &["agents", "revoke", "gone-1"]).await;
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    // The open stream ends with the reason.
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(10), down.message())
            .await
            .expect("the stream ends within 10 s")
        {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(ended.code(), Code::PermissionDenied, "{ended:?}");
    assert!(ended.message().contains("revoked"), "{ended:?}");
    // A new stream with the same certificate is refused, and so is a renewal.
    let again = open(
        enrol::channel_as(&url, &cert).await.unwrap(),
        hello("gone-1", "prod"),
    )
    .await
    .expect_err("refused");
    assert_eq!(again.code(), Code::PermissionDenied, "{again:?}");
    let identities = droverctl_json(&url, &["agents", "identities"]).await;
    assert!(identities[0]["revoked_at"].is_string(), "{identities}");
    let audit = droverctl_json(&url, &["audit"]).await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["action"] == "RevokeAgent" && r["result"] == "ok"),
        "{audit}"
    );
    // Revoking twice finds nothing live.
    let (ok, _, stderr) = droverctl(&url, &["agents", "revoke", "gone-1"]).await;
    assert!(!ok && stderr.contains("revoked"), "{stderr}");
}

/// Renews `cert` with a new key over mutual TLS, as the updater does.
async fn renew(url: &str, cert: &AgentCert) -> Result<AgentCert, tonic::Status> {
    use drover_proto::v1::enrolment_service_client::EnrolmentServiceClient;
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&key)
        .unwrap();
    let renewed = EnrolmentServiceClient::new(enrol::channel_as(url, cert).await.unwrap())
        .renew(pb::RenewRequest {
            csr_der: csr.der().to_vec(),
        })
        .await?
        .into_inner();
    Ok(AgentCert {
        cert_pem: renewed.certificate_pem,
        key_pem: key.serialize_pem(),
        ..cert.clone()
    })
}

/// #22 item 6: after Renew the replaced certificate works only until the new one is first
/// used (an updater that crashed before saving the new one still gets in); then it is
/// refused for sessions and for renewals, so a stolen old key is worth nothing.
#[tokio::test]
async fn a_renewal_retires_the_certificate_it_replaces_once_the_new_one_is_used() {
    let root = tempfile::tempdir().unwrap();
    let c = CoordinatorBuilder::sqlite(root.path()).start().await;
    let url = c.grpc_url();
    let old = enrol::enrol_in_memory(&url, "ren-1", "prod").await;
    let new = renew(&url, &old).await.expect("renewed");
    let connects = async |cert: &AgentCert| {
        open(
            enrol::channel_as(&url, cert).await.unwrap(),
            hello("ren-1", "prod"),
        )
        .await
        .map(|_| ())
    };
    connects(&old)
        .await
        .expect("the old certificate until the new one is used");
    connects(&new).await.expect("the new certificate");
    let refused = connects(&old).await.expect_err("retired");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("replaced by a renewal"),
        "{refused:?}"
    );
    let renewal = renew(&url, &old)
        .await
        .expect_err("a retired certificate renews nothing");
    assert_eq!(renewal.code(), Code::PermissionDenied, "{renewal:?}");
    connects(&new).await.expect("the new certificate still");
}
