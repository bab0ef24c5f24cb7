//! `droverctl tokens create|list|revoke` (join tokens for enrolling updaters) and the
//! identity verbs of `droverctl agents` (`identities`, `revoke`). The admin role only,
//! except `agents identities`.

use clap::Subcommand;
use drover_api as api;
use drover_proto::v1 as pb;

use super::{Client, effect_text, status_text};
use crate::{
    names::time_or_dash,
    render::{Reply, Table, Text},
};

#[derive(Subcommand, Debug)]
pub enum TokensCommand {
    /// Make a join token and print its secret, once: the coordinator keeps only its hash.
    ///
    /// On the host: `drover-updater enroll --coordinator URL --token SECRET --ca-pin PIN`
    /// (the pin is in the coordinator's log and ready file, and in the profile).
    Create {
        /// A group the updater may enrol into; repeat for several (the first is the
        /// default when the updater names none).
        #[arg(long = "group", required = true)]
        groups: Vec<String>,
        /// How long the token can be used: 90m, 1h, 2d (at most 30 days).
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// How many updaters may enrol with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// Check the request and say what it would do; create nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Join tokens, newest first, with their groups, uses and expiry (never a secret).
    List,
    /// Revoke a join token by id; nobody enrols with it from now on (agents that enrolled
    /// with it keep their certificates: revoke those with `droverctl agents revoke`).
    Revoke {
        /// The token's id, as `tokens list` shows it.
        token_id: String,
        /// Check the request and say what it would do; revoke nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(client: &mut Client, command: TokensCommand) -> Result<Reply, String> {
    match command {
        TokensCommand::Create {
            groups,
            ttl,
            uses,
            dry_run,
        } => {
            let ttl_ms = drover_rules::time::parse_duration_ms(&ttl)
                .map_err(|err| format!("--ttl: {err}"))?;
            let request = pb::CreateJoinTokenRequest {
                groups,
                ttl: Some(prost_types::Duration {
                    seconds: ttl_ms / 1000,
                    nanos: 0,
                }),
                max_uses: uses,
                dry_run,
            };
            let created = client
                .create_join_token(request)
                .await
                .map_err(status_text)?
                .into_inner();
            let token = created.token.clone().unwrap_or_default();
            let mut text = Text::new();
            if let Some(line) = effect_text(token.effect.as_ref()) {
                text = text.line(line);
            }
            if !created.secret.is_empty() {
                text = text
                    .line(format!("join token {} (secret shown only now):", token.token_id))
                    .line(created.secret.clone())
                    .line("enrol a host: drover-updater enroll --coordinator URL --token SECRET --ca-pin PIN");
            }
            Ok(Reply::new(api::JoinTokenCreated::from(&created), text))
        }
        TokensCommand::List => {
            let tokens = client
                .list_join_tokens(pb::ListJoinTokensRequest {})
                .await
                .map_err(status_text)?
                .into_inner()
                .tokens;
            let data: Vec<_> = tokens.iter().map(api::JoinToken::from).collect();
            Ok(Reply::new(data, tokens_table(&tokens)))
        }
        TokensCommand::Revoke { token_id, dry_run } => {
            let revoked = client
                .revoke_join_token(pb::RevokeJoinTokenRequest { token_id, dry_run })
                .await
                .map_err(status_text)?
                .into_inner();
            let mut text = Text::new();
            if let Some(line) = effect_text(revoked.effect.as_ref()) {
                text = text.line(line).line("");
            }
            let text = text.table(tokens_table(std::slice::from_ref(&revoked)));
            Ok(Reply::new(api::JoinToken::from(&revoked), text))
        }
    }
}

fn tokens_table(tokens: &[pb::JoinToken]) -> Table {
    let mut table = Table::new(&[
        "id", "groups", "uses", "created", "expires", "revoked", "by",
    ]);
    for t in tokens {
        table.row(vec![
            t.token_id.clone(),
            t.groups.join(","),
            format!("{}/{}", t.uses, t.max_uses),
            time_or_dash(t.created_at.as_ref()),
            time_or_dash(t.expires_at.as_ref()),
            time_or_dash(t.revoked_at.as_ref()),
            t.created_by.clone(),
        ]);
    }
    table
}

/// `droverctl agents identities`: enrolled agents and their certificates.
pub async fn identities(client: &mut Client, after: String, limit: u32) -> Result<Reply, String> {
    let identities = client
        .list_agent_identities(pb::ListAgentIdentitiesRequest { limit, after })
        .await
        .map_err(status_text)?
        .into_inner()
        .identities;
    let data: Vec<_> = identities.iter().map(api::AgentIdentity::from).collect();
    Ok(Reply::new(data, identities_table(&identities)))
}

/// `droverctl agents revoke ID`: the agent's certificate is refused and its stream cut.
pub async fn revoke_agent(
    client: &mut Client,
    agent_id: String,
    dry_run: bool,
) -> Result<Reply, String> {
    let revoked = client
        .revoke_agent(pb::RevokeAgentRequest { agent_id, dry_run })
        .await
        .map_err(status_text)?
        .into_inner();
    let mut text = Text::new();
    if let Some(line) = effect_text(revoked.effect.as_ref()) {
        text = text.line(line).line("");
    }
    let text = text.table(identities_table(std::slice::from_ref(&revoked)));
    Ok(Reply::new(api::AgentIdentity::from(&revoked), text))
}

fn identities_table(identities: &[pb::AgentIdentity]) -> Table {
    let mut table = Table::new(&["agent", "group", "token", "enrolled", "expires", "revoked"]);
    for i in identities {
        table.row(vec![
            i.agent_id.clone(),
            i.group.clone(),
            i.token_id.clone(),
            time_or_dash(i.enrolled_at.as_ref()),
            time_or_dash(i.not_after.as_ref()),
            time_or_dash(i.revoked_at.as_ref()),
        ]);
    }
    table
}
