//! The command line: global options and the nouns. Each noun's verbs live with its code in
//! `commands/`.

use clap::{Parser, Subcommand};

use crate::{
    commands::{
        admins::AdminsCommand, agents::AgentsCommand, audit::AuditArgs, channels::ChannelsCommand,
        control_plane::ControlPlaneCommand, events::EventsArgs, fleet::FleetCommand,
        releases::ReleasesCommand, rollout::RolloutCommand, schedule::ScheduleCommand,
        tokens::TokensCommand,
    },
    render::Format,
};

#[derive(Parser, Debug)]
#[command(
    name = "droverctl",
    version,
    about = "Steer and inspect a Drover fleet.",
    long_about = "Steer and inspect a Drover fleet.\n\n\
        droverctl talks to a coordinator's admin gRPC API over TLS. A profile (--profile or\n\
        DROVER_PROFILE) names the coordinator and the CA to trust: the coordinator writes one,\n\
        admin-profile.json, into its data directory, with an admin token (credentials.token)\n\
        that droverctl sends with every call; DROVER_TOKEN overrides it. --coordinator\n\
        (DROVER_COORDINATOR) overrides the profile's address; http:// only reaches an\n\
        --insecure coordinator.\n\
        Output is a readable table; add `-o json` or `-o yaml` for scripts. Data goes to stdout,\n\
        errors to stderr. Colour only on a terminal, never with NO_COLOR set.\n\n\
        Exit status: 0 success (also when the reader of stdout closes early), 1 the request\n\
        failed, 2 the command line is wrong.",
    after_help = "Examples:\n  \
        droverctl fleet summary\n  \
        droverctl agents list --group prod --health unhealthy\n  \
        droverctl agents show web-01\n  \
        droverctl control-plane set 15.2.0\n  \
        droverctl channels set stable/cloud 15.1.3\n  \
        droverctl channels set stable/cloud --critical true\n  \
        droverctl rollout create --channel stable/cloud --from 15.1.3 --to 15.2.0 \\\n      \
          --group dev:canaries=1 --group prod:canaries=2,wait=24,start=2,window=4\n  \
        export DROVER_PROFILE=/var/lib/drover/data/admin-profile.json\n  \
        droverctl agents why web-01\n  \
        droverctl tokens create --group prod --ttl 1h --uses 10\n  \
        droverctl agents revoke web-01\n  \
        droverctl releases sign --dir release --key alice.pk8 bob.pk8\n  \
        droverctl completion bash > /etc/bash_completion.d/droverctl"
)]
pub struct Cli {
    /// The coordinator's gRPC address (default: the profile's, else https://127.0.0.1:7400).
    #[arg(long, global = true, env = "DROVER_COORDINATOR")]
    pub coordinator: Option<String>,
    /// The profile: a JSON file with the coordinator's address, the CA to trust and the
    /// admin token (`coordinator`, `ca_file` or `ca_pem`, `credentials.token`), e.g. the
    /// admin-profile.json the coordinator writes into its data directory.
    #[arg(long, global = true, env = "DROVER_PROFILE", value_name = "PATH")]
    pub profile: Option<std::path::PathBuf>,
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List and inspect agents.
    #[command(subcommand)]
    Agents(AgentsCommand),
    /// Counts of agents by version, group and health.
    #[command(subcommand)]
    Fleet(FleetCommand),
    /// Release channels: the version each channel serves and its critical flag.
    #[command(subcommand)]
    Channels(ChannelsCommand),
    /// The control plane's version: the ceiling for every agent (and what `default` and
    /// `stable/rolling` serve).
    #[command(subcommand, name = "control-plane")]
    ControlPlane(ControlPlaneCommand),
    /// Maintenance windows per group (UTC): when healthy agents may install non-critical updates.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Move a channel to a new version group by group, with canaries and automatic halts.
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// The event log: rollout transitions, admin actions and update outcomes, newest last.
    Events(EventsArgs),
    /// The audit log: every change an admin made, every refused request and every dry run,
    /// newest first.
    Audit(AuditArgs),
    /// Admin credentials: create (prints the token once), list, revoke. Needs the admin role.
    #[command(subcommand)]
    Admins(AdminsCommand),
    /// Join tokens for enrolling updaters: create (prints the secret once), list, revoke.
    /// Needs the admin role.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Signed release metadata (TUF) that updaters verify before any install: keys,
    /// artifacts, the version floor, signing and root rotation. The offline verbs work on a
    /// release directory on this machine and need no coordinator.
    #[command(subcommand)]
    Releases(ReleasesCommand),
    /// Print a shell completion script, e.g. `droverctl completion bash > ~/.droverctl.bash`.
    Completion {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn missing_help(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in command.get_arguments() {
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("{path} {}", arg.get_id()));
            }
        }
        for sub in command.get_subcommands() {
            let sub_path = format!("{path} {}", sub.get_name());
            if sub.get_about().is_none() && sub.get_long_about().is_none() {
                missing.push(sub_path.clone());
            }
            missing_help(sub, &sub_path, missing);
        }
    }

    #[test]
    fn every_command_and_argument_has_help() {
        let mut command = Cli::command();
        command.build();
        command.clone().debug_assert();
        let mut missing = Vec::new();
        missing_help(&command, "droverctl", &mut missing);
        assert!(missing.is_empty(), "no help text for: {missing:#?}");
    }
}
