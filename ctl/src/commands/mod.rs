//! One module per noun. Each verb calls the coordinator and returns a [`Reply`]; printing is
//! the renderer's job.

pub mod admins;
pub mod agent_history;
pub mod agents;
pub mod audit;
pub mod channels;
pub mod completion;
pub mod control_plane;
pub mod events;
pub mod fleet;
pub mod releases;
pub mod rollout;
pub mod schedule;
pub mod tokens;

use drover_proto::v1::{self as pb, admin_service_client::AdminServiceClient};
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, Channel, ClientTlsConfig},
};

use crate::{cli::Command, profile::Target, render::Reply};

pub type Client = AdminServiceClient<InterceptedService<Channel, Bearer>>;

/// Sends the admin token (`authorization: Bearer TOKEN`) with every call.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Runs one command against the coordinator `target` names.
pub async fn run(target: &Target, command: Command) -> Result<Reply, String> {
    let mut client = connect(target).await?;
    let client = &mut client;
    let plaintext = target.url.starts_with("http://");
    let reply = match command {
        Command::Agents(command) => agents::run(client, command).await,
        Command::Fleet(command) => fleet::run(client, command).await,
        Command::Channels(command) => channels::run(client, command).await,
        Command::ControlPlane(command) => control_plane::run(client, command).await,
        Command::Schedule(command) => schedule::run(client, command).await,
        Command::Rollout(command) => rollout::run(client, command).await,
        Command::Events(args) => events::run(client, args).await,
        Command::Audit(args) => audit::run(client, args).await,
        Command::Admins(command) => admins::run(client, command).await,
        Command::Tokens(command) => tokens::run(client, command).await,
        // main runs the offline verbs without connecting; the online ones (publish, show)
        // will be matched here.
        Command::Releases(command) => releases::run_online(client, command).await,
        Command::Completion { shell } => {
            // main prints completions without connecting; this keeps the match exhaustive.
            Ok(Reply::new(
                serde_json::Value::Null,
                completion::script(shell)?,
            ))
        }
    };
    // In plaintext, a TLS coordinator answers nothing a client can read: say so.
    reply.map_err(|err| {
        if plaintext
            && [
                "transport error",
                "h2 protocol",
                "http2 error",
                "broken pipe",
            ]
            .iter()
            .any(|e| err.contains(e))
        {
            format!(
                "{err}; a coordinator serves TLS unless started with --insecure: use https:// \
                 and DROVER_PROFILE (or --profile)"
            )
        } else {
            err
        }
    })
}

/// `rollout watch`: connects, then follows the rollout; the exit code is its outcome.
pub async fn watch_rollout(
    target: &Target,
    args: rollout::watch::WatchArgs,
    format: crate::render::Format,
) -> std::process::ExitCode {
    match connect(target).await {
        Ok(client) => rollout::watch::run(client, args, format).await,
        Err(message) => {
            crate::output::error(&message);
            std::process::ExitCode::from(3)
        }
    }
}

async fn connect(target: &Target) -> Result<Client, String> {
    let address = target.url.as_str();
    let mut endpoint = Channel::from_shared(address.to_string())
        .map_err(|err| {
            format!(
                "'{address}' is not a valid coordinator address ({err}); use e.g. https://127.0.0.1:7400"
            )
        })?
        .connect_timeout(std::time::Duration::from_secs(5));
    let https = address.starts_with("https://");
    if https {
        let Some(pem) = &target.ca_pem else {
            return Err(format!(
                "{address} is served over TLS, and droverctl needs the CA to trust: set \
                 DROVER_PROFILE (or --profile) to the admin-profile.json in the coordinator's \
                 data directory"
            ));
        };
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
        endpoint = endpoint.tls_config(tls).map_err(|err| {
            format!("cannot use the profile's CA ({err}); check its ca_file or ca_pem")
        })?;
    }
    let host = endpoint.uri().host().unwrap_or(address).to_string();
    let channel = endpoint.connect().await.map_err(|err| {
        let chain = error_chain(&err);
        match &target.ca_source {
            // The CA signed it, but for other names: say so rather than blame the CA.
            Some(_) if https && is_name_mismatch(&chain) => format!(
                "the coordinator at {address} presented a certificate that does not cover the \
                 name {host} ({chain}); connect with a name the certificate lists (--coordinator \
                 https://NAME:PORT, DROVER_COORDINATOR or the profile's coordinator), or add \
                 {host} to the certificate (--tls-san for the coordinator's generated one)"
            ),
            Some(source) if https && is_certificate_error(&chain) => format!(
                "the coordinator at {address} presented a certificate that the CA in {source} \
                 did not sign ({chain}); check the profile's CA: it must be the coordinator's \
                 (tls/ca.pem in its data directory; compare ca_pin with the coordinator's log)"
            ),
            _ if https => format!(
                "cannot reach the coordinator at {address} ({chain}); is it running, and does \
                 it serve TLS on that address? Point droverctl at it with --coordinator, \
                 DROVER_COORDINATOR or the profile"
            ),
            _ => format!(
                "cannot reach the coordinator at {address} ({chain}); is it running? A \
                 coordinator serves TLS unless started with --insecure: use https:// and \
                 DROVER_PROFILE. Point droverctl at it with --coordinator or DROVER_COORDINATOR"
            ),
        }
    })?;
    let bearer = match &target.token {
        None => None,
        Some(token) => {
            let mut value: MetadataValue<Ascii> =
                format!("Bearer {token}").parse().map_err(|_| {
                    "the admin token is not valid header text; check DROVER_TOKEN or the \
                     profile's credentials.token"
                        .to_string()
                })?;
            // Never printed by Debug, never compressed into a shared table.
            value.set_sensitive(true);
            Some(value)
        }
    };
    Ok(AdminServiceClient::with_interceptor(
        channel,
        Bearer(bearer),
    ))
}

/// The error and its causes on one line (tonic's own text is only "transport error").
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// rustls's NotValidForName (and, with context, "certificate not valid for name").
fn is_name_mismatch(chain: &str) -> bool {
    chain.contains("NotValidForName") || chain.contains("not valid for name")
}

fn is_certificate_error(chain: &str) -> bool {
    [
        "certificate",
        "UnknownIssuer",
        "BadSignature",
        "NotValidForName",
    ]
    .iter()
    .any(|needle| chain.contains(needle))
}

/// A mutating verb's effect; `dry_run: true` means the coordinator changed nothing.
/// One line saying what a verb changed, or for a dry run what it would change.
pub fn effect_text(e: Option<&pb::Effect>) -> Option<String> {
    let e = e?;
    Some(if e.dry_run {
        format!(
            "dry run: nothing changed. It would do: {}; {} agent(s) would get a new directive",
            e.summary, e.agents_affected
        )
    } else {
        format!(
            "{}; {} agent(s) get a new directive",
            e.summary, e.agents_affected
        )
    })
}

/// The coordinator's refusal as one line for stderr (the output helper cleans it).
pub fn status_text(status: tonic::Status) -> String {
    format!("{} ({:?})", status.message(), status.code())
}
