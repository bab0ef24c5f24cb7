//! The admin profile with the operator's own certificate (`--tls-cert`, as in the
//! Kubernetes overlay and behind a DNS name): the certificate covers names, not
//! necessarily the listener's address, so the profile names a host the certificate
//! lists (here `localhost` on a 127.0.0.1 listener), and droverctl works from it alone.
//! Pointed at an address the certificate does not cover, droverctl says that name is not
//! covered instead of blaming the CA (which did sign the certificate).

use std::process::Stdio;

use drover_tests::{CoordinatorBuilder, bin};
use tokio::process::Command;

#[tokio::test]
async fn the_profile_names_a_host_the_operators_certificate_covers() {
    let dir = tempfile::tempdir().unwrap();
    // The operator's CA and a server certificate for a DNS name only (no IP address).
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_params = || {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
    };
    let ca = ca_params().self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params(), &ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer).unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    std::fs::write(path("tls.crt"), cert.pem()).unwrap();
    std::fs::write(path("tls.key"), key.serialize_pem()).unwrap();
    std::fs::write(path("ca.crt"), ca.pem()).unwrap();

    let coordinator = CoordinatorBuilder::sqlite(dir.path())
        .arg("--tls-cert")
        .arg(path("tls.crt"))
        .arg("--tls-key")
        .arg(path("tls.key"))
        .arg("--tls-ca")
        .arg(path("ca.crt"))
        .start()
        .await;
    let port = coordinator.addresses.grpc.port();
    let profile = coordinator.tls.as_ref().unwrap().admin_profile.clone();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&profile).unwrap()).unwrap();
    assert_eq!(
        json["coordinator"],
        format!("https://localhost:{port}"),
        "{json}"
    );

    let ctl = |coordinator_flag: Option<String>| {
        let mut command = Command::new(bin("droverctl"));
        command
            .env("DROVER_PROFILE", &profile)
            .env_remove("DROVER_COORDINATOR")
            .env_remove("DROVER_TOKEN")
            .stdin(Stdio::null());
        if let Some(url) = coordinator_flag {
            command.args(["--coordinator", &url]);
        }
        command.args(["fleet", "summary", "-o", "json"]);
        command
    };
    // The profile alone reaches it.
    let output = ctl(None).output().await.unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // An address outside the certificate: the name is the problem, not the CA.
    let output = ctl(Some(format!("https://127.0.0.1:{port}")))
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("does not cover the name 127.0.0.1") && !stderr.contains("did not sign"),
        "{stderr}"
    );
}
