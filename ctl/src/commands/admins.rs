//! `droverctl admins create|list|revoke`: admin credentials (the admin role only).

use clap::{Subcommand, ValueEnum};
use drover_api as api;
use drover_proto::v1 as pb;

use super::{Client, effect_text, status_text};
use crate::{
    names::time_or_dash,
    render::{Reply, Table, Text},
};

#[derive(Subcommand, Debug)]
pub enum AdminsCommand {
    /// Create a credential and print its token, once: the coordinator keeps only its hash.
    ///
    /// Hand the token to its owner, who sets DROVER_TOKEN (or puts it in a profile's
    /// `credentials.token`).
    Create {
        /// The credential's name, as the audit log will show it, e.g. `alice` or `ci`.
        #[arg(long)]
        name: String,
        /// What it may do: viewer (read), operator (also rollouts, channels, schedules,
        /// pins) or admin (also the control plane and credentials).
        #[arg(long, value_enum)]
        role: Role,
        /// Check the request and say what it would do; create nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Every credential, live and revoked, with its role (never a token).
    List,
    /// Revoke a credential by name; its token is refused from the next request on.
    Revoke {
        /// The credential's name.
        name: String,
        /// Check the request and say what it would do; revoke nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// An admin role.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Role {
    /// Reads everything, changes nothing.
    Viewer,
    /// Also runs rollouts and sets channels, schedules and pins.
    Operator,
    /// Also sets the control plane and manages credentials.
    Admin,
}

impl Role {
    fn code(self) -> drover_rules::AdminRole {
        match self {
            Self::Viewer => drover_rules::AdminRole::Viewer,
            Self::Operator => drover_rules::AdminRole::Operator,
            Self::Admin => drover_rules::AdminRole::Admin,
        }
    }
}

pub async fn run(client: &mut Client, command: AdminsCommand) -> Result<Reply, String> {
    match command {
        AdminsCommand::Create {
            name,
            role,
            dry_run,
        } => {
            let request = pb::CreateAdminCredentialRequest {
                name,
                role: role.code().as_str().into(),
                dry_run,
            };
            let created = client
                .create_admin_credential(request)
                .await
                .map_err(status_text)?
                .into_inner();
            let credential = created.credential.clone().unwrap_or_default();
            let mut text = Text::new();
            if let Some(line) = effect_text(credential.effect.as_ref()) {
                text = text.line(line);
            }
            if !created.token.is_empty() {
                text = text
                    .line(format!("token (shown only now): {}", created.token))
                    .line("its owner sets DROVER_TOKEN to it, or puts it in a profile's credentials.token");
            }
            Ok(Reply::new(
                api::AdminCredentialCreated::from(&created),
                text,
            ))
        }
        AdminsCommand::List => {
            let credentials = client
                .list_admin_credentials(pb::ListAdminCredentialsRequest {})
                .await
                .map_err(status_text)?
                .into_inner()
                .credentials;
            let data: Vec<_> = credentials.iter().map(api::AdminCredential::from).collect();
            Ok(Reply::new(data, table(&credentials)))
        }
        AdminsCommand::Revoke { name, dry_run } => {
            let revoked = client
                .revoke_admin_credential(pb::RevokeAdminCredentialRequest { name, dry_run })
                .await
                .map_err(status_text)?
                .into_inner();
            let mut text = Text::new();
            if let Some(line) = effect_text(revoked.effect.as_ref()) {
                text = text.line(line).line("");
            }
            let text = text.table(table(std::slice::from_ref(&revoked)));
            Ok(Reply::new(api::AdminCredential::from(&revoked), text))
        }
    }
}

fn table(credentials: &[pb::AdminCredential]) -> Table {
    let mut table = Table::new(&["name", "role", "created", "revoked"]);
    for c in credentials {
        table.row(vec![
            c.name.clone(),
            c.role.clone(),
            time_or_dash(c.created_at.as_ref()),
            time_or_dash(c.revoked_at.as_ref()),
        ]);
    }
    table
}
