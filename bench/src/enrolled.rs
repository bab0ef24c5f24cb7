//! The default mode's fleet: every simulated updater enrolled with a join token, as
//! `drover-updater enroll` does (its own key, a signing request, the certificate the
//! coordinator issues), all before any measurement starts. A coordinator allows 100
//! enrolments a second per token and 200 overall, so 10,000 on one take about 50 s; across
//! replicas each enrols its own share.

use std::{path::Path, sync::Arc, time::Duration};

use anyhow::Context;
use drover_proto::v1::{EnrollRequest, enrolment_service_client::EnrolmentServiceClient};
use drover_tests::enrol::AgentCert;
use rand::Rng;
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::load;

/// Enrolments in flight at once from one process, whatever the coordinators: enough to
/// keep one at its limit. More only queue on the token rows and the replicas' pools (at
/// 192 per process, six loaders drove six PostgreSQL replicas into pool timeouts).
const IN_FLIGHT: usize = 16;

pub const GROUPS: [&str; 3] = ["dev", "staging", "prod"];

/// One join token per group, each good for `count` agents' share.
pub async fn join_tokens(url: &str, count: usize) -> anyhow::Result<Vec<(String, String)>> {
    let mut tokens = Vec::new();
    for group in GROUPS {
        let uses = count.div_ceil(GROUPS.len());
        tokens.push((group.to_string(), join_token(url, group, uses).await?));
    }
    Ok(tokens)
}

/// A join token for `group` good for `uses` enrolments, made (through droverctl) with the
/// admin profile the harness holds for the coordinator at `url`.
pub async fn join_token(url: &str, group: &str, uses: usize) -> anyhow::Result<String> {
    let (owned, group) = (url.to_string(), group.to_string());
    tokio::task::spawn_blocking(move || drover_tests::enrol::join_token(&owned, &[&group], uses))
        .await?
        .ok_or_else(|| anyhow::anyhow!("{url} is not a TLS coordinator this run started"))
}

/// Enrols updaters `0..count` under their load ids and groups (`load::agent`) at the one
/// coordinator this run started at `url`.
pub async fn enrol_fleet(url: &str, count: usize) -> anyhow::Result<Vec<AgentCert>> {
    let tokens = join_tokens(url, count).await?;
    let ca = std::fs::read(drover_tests::ca_file_for(url).context("the coordinator's CA")?)?;
    enrol_range(&[url.to_string()], &ca, &tokens, 0, count).await
}

/// Enrols updaters `offset..offset + count`, updater `i` at `urls[i % len]` (where it will
/// connect), trusting `ca_pem`, with `tokens` (group, secret); returned in index order.
pub async fn enrol_range(
    urls: &[String],
    ca_pem: &[u8],
    tokens: &[(String, String)],
    offset: usize,
    count: usize,
) -> anyhow::Result<Vec<AgentCert>> {
    let tokens = Arc::new(tokens.to_vec());
    let mut channels = Vec::new();
    for url in urls {
        channels.push(load::connect(url, None, Some((ca_pem, None))).await?);
    }
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..IN_FLIGHT.min(count.max(1)) {
        let (channels, next, tokens) = (channels.clone(), next.clone(), tokens.clone());
        workers.push(tokio::spawn(async move {
            let mut enrolled = Vec::new();
            loop {
                let local = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if local >= count {
                    return anyhow::Ok(enrolled);
                }
                let index = offset + local;
                let (agent_id, group) = load::agent(index);
                let token = &tokens
                    .iter()
                    .find(|(g, _)| g == group)
                    .context("a token")?
                    .1;
                let client = EnrolmentServiceClient::new(channels[index % channels.len()].clone());
                enrolled.push((local, enrol_one(client, &agent_id, group, token).await?));
            }
        }));
    }
    let mut all = Vec::with_capacity(count);
    for worker in workers {
        all.extend(worker.await??);
    }
    all.sort_by_key(|(local, _)| *local);
    Ok(all.into_iter().map(|(_, cert)| cert).collect())
}

/// One enrolment, retried while the coordinator says "too many" or "busy".
pub(crate) async fn enrol_one(
    mut client: EnrolmentServiceClient<Channel>,
    agent_id: &str,
    group: &str,
    token: &str,
) -> anyhow::Result<AgentCert> {
    let key = rcgen::KeyPair::generate()?;
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())?.serialize_request(&key)?;
    let request = EnrollRequest {
        token: token.to_string(),
        csr_der: csr.der().to_vec(),
        agent_id: agent_id.to_string(),
        group: group.to_string(),
        hostname: format!("{agent_id}.load"),
    };
    loop {
        match client.enroll(request.clone()).await {
            Ok(reply) => {
                let reply = reply.into_inner();
                return Ok(AgentCert {
                    agent_id: reply.agent_id,
                    group: reply.group,
                    cert_pem: reply.certificate_pem,
                    key_pem: key.serialize_pem(),
                });
            }
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::ResourceExhausted | tonic::Code::Unavailable
                ) =>
            {
                let wait = Duration::from_millis(rand::rng().random_range(50..250));
                tokio::time::sleep(wait).await;
            }
            Err(status) => anyhow::bail!("enrolling {agent_id}: {status}"),
        }
    }
}

/// Keeps enrolled credentials in a file (JSON), so a later process (the echo baseline's
/// loader) presents the same identities without enrolling again.
pub fn save(path: &Path, certs: &[AgentCert]) -> anyhow::Result<()> {
    let list: Vec<Value> = certs
        .iter()
        .map(|c| {
            json!({ "agent_id": c.agent_id, "group": c.group,
                    "cert_pem": c.cert_pem, "key_pem": c.key_pem })
        })
        .collect();
    Ok(std::fs::write(path, serde_json::to_vec(&list)?)?)
}

pub fn load(path: &Path) -> anyhow::Result<Vec<AgentCert>> {
    let list: Vec<Value> = serde_json::from_slice(&std::fs::read(path)?)?;
    let text = |v: &Value, key: &str| v[key].as_str().unwrap_or_default().to_string();
    Ok(list
        .iter()
        .map(|v| AgentCert {
            agent_id: text(v, "agent_id"),
            group: text(v, "group"),
            cert_pem: text(v, "cert_pem"),
            key_pem: text(v, "key_pem"),
        })
        .collect())
}
