//! droverctl: steer and inspect a Drover fleet. See `droverctl --help`.
#![forbid(unsafe_code)]

use clap::Parser;
use drover_coordinator::cli::{Cli, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(text) => {
            println!("{text}");
            std::process::ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("droverctl: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
