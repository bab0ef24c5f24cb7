//! The default mode's fleet: every simulated updater enrolled with a join token, as
//! `drover-updater enroll` does (its own key, a signing request, the certificate the
//! coordinator issues), all before any measurement starts. The coordinator allows 100
//! enrolments a second per token and 200 overall, so 10,000 take about 50 s.

use std::{sync::Arc, time::Duration};

use drover_proto::v1::{EnrollRequest, enrolment_service_client::EnrolmentServiceClient};
use drover_tests::enrol::AgentCert;
use rand::Rng;

use crate::load;

/// Enrolments in flight at once: enough to keep the coordinator at its limit.
const IN_FLIGHT: usize = 32;

/// Enrols updaters `0..count` under their load ids and groups (`load::agent`).
pub async fn enrol_fleet(url: &str, count: usize) -> anyhow::Result<Vec<AgentCert>> {
    let groups = ["dev", "staging", "prod"];
    let mut tokens = Vec::new();
    for group in groups {
        let uses = count.div_ceil(groups.len()).max(1);
        let owned = url.to_string();
        let token = tokio::task::spawn_blocking(move || {
            drover_tests::enrol::join_token(&owned, &[group], uses)
        })
        .await?
        .ok_or_else(|| anyhow::anyhow!("{url} is not a TLS coordinator this run started"))?;
        tokens.push((group, token));
    }
    let tokens = Arc::new(tokens);
    let channel = drover_tests::grpc_channel(url).await?;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..IN_FLIGHT.min(count.max(1)) {
        let (client, next, tokens) = (
            EnrolmentServiceClient::new(channel.clone()),
            next.clone(),
            tokens.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut enrolled = Vec::new();
            loop {
                let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if index >= count {
                    return anyhow::Ok(enrolled);
                }
                let (agent_id, group) = load::agent(index);
                let token = &tokens.iter().find(|(g, _)| *g == group).expect("a token").1;
                enrolled.push((
                    index,
                    enrol_one(client.clone(), &agent_id, group, token).await?,
                ));
            }
        }));
    }
    let mut all = Vec::with_capacity(count);
    for worker in workers {
        all.extend(worker.await??);
    }
    all.sort_by_key(|(index, _)| *index);
    Ok(all.into_iter().map(|(_, cert)| cert).collect())
}

/// One enrolment, retried while the coordinator says "too many" or "busy".
async fn enrol_one(
    mut client: EnrolmentServiceClient<tonic::transport::Channel>,
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
