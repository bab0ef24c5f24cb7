//! droverctl: steer and inspect a Drover fleet through the coordinator's admin gRPC API.
//!
//! `cli` is the clap tree, `commands/` one file per noun (each verb returns a [`render::Reply`]),
//! `render` the one renderer for `-o table|json|yaml`, `output` the only code that writes to
//! stdout or stderr. Exit codes: 0 success (also when the reader of stdout went away),
//! 1 the request failed, 2 the command line was wrong; `rollout watch` has its own (0 done,
//! 1 halted, 2 rolled back, 3 could not watch).
#![forbid(unsafe_code)]

mod cli;
mod commands;
mod names;
mod output;
mod profile;
mod render;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // clap prints usage errors (exit 2) and --help/--version (exit 0) itself.
    let cli = Cli::try_parse().unwrap_or_else(|err| err.exit());
    // One crypto provider for rustls (tonic's TLS), installed before any connection.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let format = cli.output;
    // `rollout watch` streams its own output and exits with the rollout's outcome.
    let command = match cli.command {
        Command::Rollout(commands::rollout::RolloutCommand::Watch(args)) => {
            let token = std::env::var("DROVER_TOKEN").ok();
            return match profile::resolve(cli.coordinator.as_deref(), cli.profile.as_deref(), token)
            {
                Ok(target) => commands::watch_rollout(&target, args, format).await,
                Err(message) => {
                    output::error(&message);
                    ExitCode::from(3)
                }
            };
        }
        other => other,
    };
    let printed = match command {
        Command::Completion { shell } => commands::completion::script(shell),
        // Offline release verbs: local files only, no profile and no coordinator.
        Command::Releases(releases) if releases.is_offline() => {
            commands::releases::run_offline(releases)
                .await
                .and_then(|reply| reply.render(format, output::colour(output::Stream::Stdout)))
        }
        command => async {
            let token = std::env::var("DROVER_TOKEN").ok();
            let target =
                profile::resolve(cli.coordinator.as_deref(), cli.profile.as_deref(), token)?;
            commands::run(&target, command).await
        }
        .await
        .and_then(|reply| reply.render(format, output::colour(output::Stream::Stdout))),
    }
    .and_then(|text| output::print(&text).map_err(|err| format!("cannot write the output: {err}")));
    match printed {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            output::error(&message);
            ExitCode::FAILURE
        }
    }
}
