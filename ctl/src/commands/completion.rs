//! `droverctl completion SHELL`: generated from the same clap tree as `--help`.

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

pub fn script(shell: Shell) -> Result<String, String> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "droverctl", &mut script);
    String::from_utf8(script)
        .map(|text| text.trim_end().to_string())
        .map_err(|err| format!("the {shell} completion script is not UTF-8: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_name_droverctl_and_its_commands() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let text = script(shell).unwrap();
            assert!(text.contains("droverctl"), "{shell}: {text}");
            assert!(text.contains("rollout"), "{shell} completes nouns");
        }
    }
}
