//! Enrolment and renewal on the wire: a key made here, a signing request sent, a client
//! certificate back. The private key never leaves the host.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use drover_proto::v1::{self as pb, enrolment_service_client::EnrolmentServiceClient};
use tonic::transport::{Certificate, Channel};

use crate::{
    address::Coordinators,
    connection::{connect, coordinator_ca},
    identity::{self, ClientIdentity, IdentityRecord},
    pin::{CaPin, certificate_pem, fetch_pinned_ca},
    shared::now_ms,
};

/// A certificate for a key made here.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub issued_at_ms: i64,
    pub not_after_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Enrolment {
    pub agent_id: String,
    pub group: String,
    pub ca_pem: String,
    pub issued: Issued,
}

/// What to ask the coordinator for.
#[derive(Debug, Clone, Default)]
pub struct EnrolRequest {
    pub token: String,
    /// Empty: the coordinator makes one from the hostname.
    pub agent_id: String,
    /// Empty: the token's first group.
    pub group: String,
    pub hostname: String,
}

/// A new ECDSA P-256 key (PEM) and a signing request (DER) for it.
fn new_key(common_name: &str) -> anyhow::Result<(String, Vec<u8>)> {
    let key = rcgen::KeyPair::generate().context("cannot generate a private key")?;
    let mut params = rcgen::CertificateParams::default();
    // The coordinator binds the certificate to the agent id it decides; the CN is a hint.
    params.distinguished_name = rcgen::DistinguishedName::new();
    let cn = if common_name.is_empty() {
        "drover-updater"
    } else {
        common_name
    };
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let csr = params
        .serialize_request(&key)
        .context("cannot make a certificate signing request")?;
    Ok((key.serialize_pem(), csr.der().to_vec()))
}

fn ms(timestamp: Option<prost_types::Timestamp>) -> anyhow::Result<i64> {
    let t = timestamp.context("the coordinator sent a certificate without not_after")?;
    Ok(t.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(t.nanos) / 1_000_000))
}

/// Calls `Enroll`. A refusal is returned as the `tonic::Status` (downcast it for the code).
pub async fn enroll(channel: Channel, request: &EnrolRequest) -> anyhow::Result<Enrolment> {
    let hint = if request.agent_id.is_empty() {
        &request.hostname
    } else {
        &request.agent_id
    };
    let (key_pem, csr_der) = new_key(hint)?;
    let response = EnrolmentServiceClient::new(channel)
        .enroll(pb::EnrollRequest {
            token: request.token.clone(),
            csr_der,
            agent_id: request.agent_id.clone(),
            group: request.group.clone(),
            hostname: request.hostname.clone(),
        })
        .await?
        .into_inner();
    if response.agent_id.is_empty() || response.certificate_pem.is_empty() {
        bail!("the coordinator's enrolment answer has no agent id or certificate");
    }
    Ok(Enrolment {
        agent_id: response.agent_id,
        group: response.group,
        ca_pem: response.ca_pem,
        issued: Issued {
            cert_pem: response.certificate_pem,
            key_pem,
            issued_at_ms: now_ms(),
            not_after_ms: ms(response.not_after)?,
        },
    })
}

/// Calls `Renew` over `channel` (which must present the current certificate).
pub async fn renew(channel: Channel, agent_id: &str) -> anyhow::Result<Issued> {
    let (key_pem, csr_der) = new_key(agent_id)?;
    let response = EnrolmentServiceClient::new(channel)
        .renew(pb::RenewRequest { csr_der })
        .await?
        .into_inner();
    if response.certificate_pem.is_empty() {
        bail!("the coordinator's renewal answer has no certificate");
    }
    Ok(Issued {
        cert_pem: response.certificate_pem,
        key_pem,
        issued_at_ms: now_ms(),
        not_after_ms: ms(response.not_after)?,
    })
}

/// A refusal in words, with what to do about it.
pub fn refusal(err: &anyhow::Error) -> String {
    let Some(status) = err.downcast_ref::<tonic::Status>() else {
        return format!("{err:#}");
    };
    let advice = match status.code() {
        tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => {
            "; ask the coordinator's operator for a valid join token (droverctl tokens create)"
        }
        tonic::Code::Unimplemented => "; this coordinator does not support enrolment yet",
        // A busy coordinator's message says when to retry.
        tonic::Code::Unavailable if crate::backoff::pushback(err).is_none() => {
            "; check the coordinator is running and reachable"
        }
        _ => "",
    };
    format!("{} ({:?}){advice}", status.message(), status.code())
}

/// True for refusals worth retrying (the coordinator is busy or briefly unreachable).
pub fn is_transient(err: &anyhow::Error) -> bool {
    err.downcast_ref::<tonic::Status>().is_some_and(|s| {
        matches!(
            s.code(),
            tonic::Code::Unavailable
                | tonic::Code::ResourceExhausted
                | tonic::Code::DeadlineExceeded
        )
    })
}

/// `drover-updater enroll`'s options.
#[derive(Debug, Clone)]
pub struct EnrolOptions {
    pub coordinator: String,
    pub pin: CaPin,
    pub state_dir: PathBuf,
    pub request: EnrolRequest,
    pub force: bool,
}

/// Enrols the state dir: pins the CA, enrols, writes `identity/` and the agent id.
pub async fn enrol_state_dir(mut options: EnrolOptions) -> anyhow::Result<IdentityRecord> {
    let dir = identity::identity_dir(&options.state_dir);
    let existing = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || identity::read_record(&dir)).await??
    };
    if let Some(existing) = existing
        && !options.force
    {
        bail!(
            "{} is enrolled already as agent '{}' (group '{}'); give --force to enrol again \
             with a new key and certificate",
            options.state_dir.display(),
            existing.agent_id,
            existing.group
        );
    }
    if options.request.agent_id.is_empty() {
        // An updater that ran before enrolment keeps its agent id (and its history).
        options.request.agent_id =
            crate::state::saved_agent_id(&options.state_dir).unwrap_or_default();
    }
    let ca_der = fetch_pinned_ca(&options.coordinator, options.pin).await?;
    let ca_pem = certificate_pem(&ca_der);
    let channel = connect(
        &options.coordinator,
        Some(&Certificate::from_pem(&ca_pem)),
        &ClientIdentity::None,
    )
    .await?;
    let enrolment = enroll(channel, &options.request)
        .await
        .map_err(|err| anyhow::anyhow!("the coordinator refused to enrol: {}", refusal(&err)))?;
    let now = now_ms();
    let record = IdentityRecord {
        agent_id: enrolment.agent_id.clone(),
        group: enrolment.group.clone(),
        coordinator: options.coordinator.clone(),
        enrolled_at_ms: now,
        not_after_ms: enrolment.issued.not_after_ms,
        issued_at_ms: enrolment.issued.issued_at_ms,
    };
    let (state_dir, written) = (options.state_dir.clone(), record.clone());
    tokio::task::spawn_blocking(move || {
        // The pinned CA, not the answer's copy: it is the one this host verified.
        identity::write_identity(
            &dir,
            &written,
            &enrolment.issued.cert_pem,
            &enrolment.issued.key_pem,
            &ca_pem,
        )?;
        crate::state::set_agent_id(&state_dir, &written.agent_id)
    })
    .await??;
    Ok(record)
}

/// The CA for a `run` from an enrolled state dir: `--ca-file` if given, else `identity/ca.pem`.
pub fn enrolled_ca(dir: &Path, ca_file: Option<&Path>) -> anyhow::Result<Certificate> {
    let path = ca_file.map_or_else(|| identity::ca_path(dir), Path::to_path_buf);
    let pem = std::fs::read(&path).with_context(|| {
        format!(
            "cannot read the coordinator's CA {}; enrol again with --force or give --ca-file",
            path.display()
        )
    })?;
    Ok(Certificate::from_pem(pem))
}

/// Who `run` is and how it proves it: from the enrolled identity when there is one.
#[derive(Debug)]
pub struct RunIdentity {
    /// `None`: the state dir's saved id, or a new one.
    pub agent_id: Option<String>,
    pub group: String,
    pub ca: Option<Certificate>,
    pub identity: ClientIdentity,
}

impl RunIdentity {
    /// An enrolled state dir decides the agent id and group (a different flag is refused);
    /// an `https://` coordinator needs an enrolled one. The identity works with every
    /// replica sharing the CA: the address it enrolled with is a record, not a pin.
    pub fn resolve(
        state_dir: &Path,
        coordinator: &Coordinators,
        ca_file: Option<&Path>,
        agent_id: Option<String>,
        group: Option<String>,
    ) -> anyhow::Result<Self> {
        let dir = identity::identity_dir(state_dir);
        let https = coordinator.https();
        let Some(record) = identity::read_record(&dir)? else {
            if https {
                bail!(
                    "{coordinator} is served over TLS and {} has no identity; enrol first: \
                     drover-updater enroll --coordinator {} --token … --ca-pin \
                     sha256:… --state-dir {}",
                    state_dir.display(),
                    coordinator.first(),
                    state_dir.display()
                );
            }
            return Ok(Self {
                agent_id,
                group: group.unwrap_or_else(|| "default".into()),
                ca: coordinator_ca(coordinator, ca_file)?,
                identity: ClientIdentity::None,
            });
        };
        for (flag, given, enrolled) in [
            ("--agent-id", &agent_id, &record.agent_id),
            ("--group", &group, &record.group),
        ] {
            if let Some(given) = given
                && given != enrolled
            {
                bail!(
                    "{flag} {given} differs from '{enrolled}', which this agent is enrolled as \
                     ({}); drop {flag} (and DROVER_{}), or enrol again with \
                     `drover-updater enroll --force {flag} {given}`",
                    dir.display(),
                    flag.trim_start_matches("--")
                        .replace('-', "_")
                        .to_uppercase()
                );
            }
        }
        if !coordinator
            .addresses()
            .iter()
            .any(|a| a.url == record.coordinator)
        {
            // Not a pin: every replica sharing the CA accepts this identity.
            tracing::info!(
                enrolled_with = %record.coordinator,
                coordinators = %coordinator,
                "enrolled through another address; the identity works with every replica                  that shares the coordinator's CA"
            );
        }
        let (ca, identity) = if https {
            let ca = enrolled_ca(&dir, ca_file)?;
            (Some(ca), ClientIdentity::Files { dir })
        } else {
            // An --insecure coordinator takes no client certificate.
            (coordinator_ca(coordinator, ca_file)?, ClientIdentity::None)
        };
        Ok(Self {
            agent_id: Some(record.agent_id),
            group: record.group,
            ca,
            identity,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests;
