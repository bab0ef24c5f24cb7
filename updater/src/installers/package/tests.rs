//! The classifier against what apt, dnf and zypper really print (captured on Debian 12 with
//! apt 2.6, dnf 4.14 and zypper 1.14), and the runner's bounds.

use std::time::Duration;

use drover_rules::ReasonCode;

use super::*;

fn failed(text: &str) -> Output {
    Output {
        success: false,
        code: Some(100),
        text: text.to_string(),
    }
}

#[test]
fn real_messages_get_their_reasons() {
    let cases: &[(&str, ReasonCode)] = &[
        (
            "W: GPG error: http://127.0.0.1 stable InRelease: The following signatures couldn't be verified because the public key is not available: NO_PUBKEY 4A8DFA4CAA57B0FA\nE: The repository 'http://127.0.0.1 stable InRelease' is not signed.",
            ReasonCode::InstallRefused,
        ),
        (
            "E: The repository 'http://127.0.0.1:1/ stable Release' is not signed.",
            ReasonCode::InstallRefused,
        ),
        (
            "Ign:3 http://127.0.0.1:1/apt stable Release.gpg\nE: The repository 'http://127.0.0.1:1/apt stable Release' is no longer signed.",
            ReasonCode::InstallRefused,
        ),
        (
            "Error: Failed to download metadata for repo 't': repomd.xml GPG signature verification error: Bad GPG signature",
            ReasonCode::InstallRefused,
        ),
        (
            "Error: Failed to download metadata for repo 't': GPG verification is enabled, but GPG signature is not available.",
            ReasonCode::InstallRefused,
        ),
        ("Error: GPG check FAILED", ReasonCode::InstallRefused),
        (
            "Warning: File 'repomd.xml' from repository 't' is signed with an unknown key '4A8DFA4CAA57B0FA'.",
            ReasonCode::InstallRefused,
        ),
        (
            "Warning: File 'repomd.xml' from repository 't' is unsigned.",
            ReasonCode::InstallRefused,
        ),
        (
            "drover-demo-agent-1.1.0-1.noarch (t): Signature verification failed [2-Signature does not verify]",
            ReasonCode::InstallRefused,
        ),
        (
            "E: Failed to fetch http://127.0.0.1/pool/a.deb  Hash Sum mismatch",
            ReasonCode::InstallRefused,
        ),
        (
            "E: Version '9.9' for 'drover-demo-agent' was not found",
            ReasonCode::VersionNotFound,
        ),
        (
            "Error: Unable to find a match: drover-demo-agent-9.9",
            ReasonCode::VersionNotFound,
        ),
        (
            "No provider of 'drover-demo-agent=9.9' found.",
            ReasonCode::VersionNotFound,
        ),
        (
            "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (apt-get)",
            ReasonCode::PackageManagerBusy,
        ),
        (
            "System management is locked by the application with pid 4242 (zypper).",
            ReasonCode::PackageManagerBusy,
        ),
        (
            "The following packages have unmet dependencies:\n agent : Breaks: other (< 2)",
            ReasonCode::PackageConflict,
        ),
        (
            "Error:\n Problem: package agent-1.1.0-1.noarch conflicts with other provided by other-1-1.noarch",
            ReasonCode::PackageConflict,
        ),
        ("dpkg: error: disk full", ReasonCode::UpdateFailed),
    ];
    for (text, expected) in cases {
        let err = classify("install", &failed(text));
        assert_eq!(err.reason(), *expected, "{text:?} was read as {err:?}");
        assert!(err.message().contains("exit 100"), "{err}");
    }
}

#[test]
fn names_and_versions_never_become_options() {
    for good in ["1.1.0", "1:2.0~rc1-3", "drover-demo-agent", "libfoo2.0+x"] {
        assert!(checked_version(good).is_ok(), "{good}");
    }
    for bad in ["", "-o", "1.0 2.0", "1.0;rm", "a/b", "x=1"] {
        assert!(checked_version(bad).is_err(), "{bad:?}");
    }
    let mut config = PackageConfig {
        package: "--allow-unauthenticated".into(),
        root: None,
        options: Vec::new(),
        timeout: Duration::from_secs(1),
    };
    assert!(config.validate().is_err());
    config.package = "drover-demo-agent".into();
    assert!(config.validate().is_ok());
}

#[tokio::test]
async fn output_is_bounded_and_time_is_bounded() {
    let script = "head -c 1000000 /dev/zero | tr '\\\\0' x; echo END >&2".to_string();
    let out = run("sh", &["-c".into(), script], &[], Duration::from_secs(10))
        .await
        .unwrap();
    assert!(out.success);
    assert!(out.text.len() <= 2 * MAX_CAPTURED + 2, "{}", out.text.len());
    assert!(out.text.trim_end().ends_with("END"));

    let err = run(
        "sh",
        &[
            "-c".into(),
            "echo Waiting for process with pid 7; sleep 30".into(),
        ],
        &[],
        Duration::from_millis(300),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, InstallError::Busy(_)), "{err:?}");
    let err = run("sleep", &["30".into()], &[], Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), ReasonCode::InstallTimedOut);
}
