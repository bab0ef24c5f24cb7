//! The labels an updater reports about its host unasked, so a rollout can stratify by them:
//! `os` and `os_version` (os-release's `ID` and `VERSION_ID`) and `arch`. A `--label` of
//! the same name wins. Values are cleaned here, where they enter: os-release is a file
//! anyone with root on the host may have written.

use std::collections::BTreeMap;

const MAX_VALUE: usize = 63;

/// `ID` and `VERSION_ID` of an os-release text, as `os` and `os_version`.
pub fn from_os_release(text: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let name = match key.trim() {
            "ID" => "os",
            "VERSION_ID" => "os_version",
            _ => continue,
        };
        if let Some(value) = clean(value) {
            labels.push((name.to_string(), value));
        }
    }
    labels
}

/// Unquoted, only letters, digits and `._-`, at most 63 bytes; `None` if nothing is left.
fn clean(value: &str) -> Option<String> {
    let value: String = value
        .trim()
        .trim_matches(|c| c == '"' || c == '\'')
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(MAX_VALUE)
        .collect::<String>()
        .to_ascii_lowercase();
    (!value.is_empty()).then_some(value)
}

/// This host's labels: os-release (`/etc/os-release`, else `/usr/lib/os-release`) and the
/// architecture this binary runs on.
pub fn this_host() -> Vec<(String, String)> {
    let text = ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .unwrap_or_default();
    let mut labels = from_os_release(&text);
    labels.push(("arch".into(), std::env::consts::ARCH.into()));
    labels
}

/// `detected` under `explicit`: a label given on the command line replaces a detected one.
pub fn merged(
    detected: Vec<(String, String)>,
    explicit: Vec<(String, String)>,
) -> Vec<(String, String)> {
    let mut labels: BTreeMap<String, String> = detected.into_iter().collect();
    labels.extend(explicit);
    labels.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_id_and_version_and_cleans_what_it_reads() {
        let text = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n\
                    VERSION_ID=\"12\"\nID_LIKE=\"x\"\n";
        assert_eq!(
            from_os_release(text),
            [
                ("os".into(), "debian".into()),
                ("os_version".into(), "12".into())
            ]
        );
        let hostile = "ID=\"Rocky\r\n\u{1b}[31m\"\nVERSION_ID='9.4;rm -rf'\n";
        assert_eq!(
            from_os_release(hostile),
            [
                ("os".into(), "rocky".into()),
                ("os_version".into(), "9.4rm-rf".into())
            ],
            "control characters, quotes and shell syntax are cleaned away"
        );
        assert!(from_os_release("ID=\"\"\n").is_empty());
    }

    #[test]
    fn an_explicit_label_wins() {
        let labels = merged(
            vec![
                ("os".into(), "debian".into()),
                ("arch".into(), "x86_64".into()),
            ],
            vec![
                ("os".into(), "custom".into()),
                ("region".into(), "eu".into()),
            ],
        );
        assert_eq!(
            labels,
            [
                ("arch".into(), "x86_64".into()),
                ("os".into(), "custom".into()),
                ("region".into(), "eu".into())
            ]
        );
    }
}
