//! TLS by default: plaintext clients are refused, a client trusting another CA fails with a
//! clear message, `--insecure` is for loopback only, the generated CA and server
//! certificate survive restarts with private keys, and the profile the coordinator writes
//! is all droverctl needs.

use std::{os::unix::fs::PermissionsExt, path::Path, process::Stdio, time::Duration};

use drover_proto::v1::admin_service_client::AdminServiceClient;
use drover_tests::{
    CoordinatorBuilder, UpdaterBuilder, bin, droverctl, droverctl_json, grpc_channel, http,
    http_plaintext, tls_connector, wait_connected,
};
use tokio::process::Command;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn plaintext_clients_are_refused_by_the_default_coordinator() {
    let root = tempfile::tempdir().unwrap();
    let c = CoordinatorBuilder::sqlite(root.path()).start().await;
    assert!(c.grpc_url().starts_with("https://"), "{}", c.grpc_url());
    // Over TLS, with the generated CA, both listeners answer.
    assert_eq!(http(c.addresses.http, "GET", "/livez").await.0, 200);
    droverctl_json(&c.grpc_url(), &["fleet", "summary"]).await;

    // HTTP in plaintext: no HTTP answer at all.
    let (status, body) = http_plaintext(c.addresses.http, "/livez").await;
    assert_eq!(status, 0, "a plaintext request got an HTTP answer: {body}");
    // gRPC in plaintext: droverctl fails and says what to do.
    let plain = format!("http://{}", c.addresses.grpc);
    let (ok, _, stderr) = droverctl(&plain, &["fleet", "summary"]).await;
    assert!(!ok, "plaintext droverctl succeeded");
    assert!(
        stderr.contains("--insecure") && stderr.contains("use https://"),
        "{stderr}"
    );
    // And a raw gRPC client in plaintext gets no answer either.
    let refused = match grpc_channel(&plain).await {
        Err(_) => true,
        Ok(channel) => AdminServiceClient::new(channel)
            .get_fleet_summary(drover_proto::v1::GetFleetSummaryRequest::default())
            .await
            .is_err(),
    };
    assert!(refused, "a plaintext gRPC call was answered");
    // The refused connections did not hurt the server.
    droverctl_json(&c.grpc_url(), &["fleet", "summary"]).await;
}

#[tokio::test]
async fn a_client_trusting_another_ca_fails_the_handshake_with_a_clear_error() {
    let (root_a, root_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = CoordinatorBuilder::sqlite(root_a.path()).start().await;
    let b = CoordinatorBuilder::sqlite(root_b.path()).start().await;
    let (tls_a, tls_b) = (a.tls.clone().unwrap(), b.tls.clone().unwrap());
    assert_ne!(
        tls_a.ca_pin, tls_b.ca_pin,
        "each coordinator makes its own CA"
    );

    // droverctl pointed at A with B's profile.
    let output = Command::new(bin("droverctl"))
        .arg("--profile")
        .arg(&tls_b.admin_profile)
        .args(["--coordinator", &a.grpc_url(), "fleet", "summary"])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("check the profile's CA"), "{stderr}");

    // A raw TLS client trusting B's CA cannot complete a handshake with A's HTTP listener.
    let stream = tokio::net::TcpStream::connect(a.addresses.http)
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::IpAddress(a.addresses.http.ip().into());
    let err = tls_connector(&tls_b.ca_file)
        .connect(name, stream)
        .await
        .expect_err("a handshake against a CA we do not trust");
    assert!(err.to_string().contains("certificate"), "{err}");

    // An updater given B's pin cannot enrol at A, and says why; so nothing reaches A.
    let state = root_a.path().join("updater");
    let token = drover_tests::enrol::join_token(&a.grpc_url(), &["default"], 1).unwrap();
    let (enrolled, stderr) = drover_tests::enrol::enrol_with(
        &a.grpc_url(),
        &state,
        "wrong-ca",
        "default",
        &token,
        &tls_b.ca_pin,
    );
    assert!(!enrolled, "enrolment with another coordinator's pin fails");
    assert!(stderr.contains("--ca-pin"), "{stderr}");
    assert!(!state.join("identity").exists(), "no identity written");
    let summary = droverctl_json(&a.grpc_url(), &["fleet", "summary"]).await;
    assert_eq!(summary["total_agents"], 0, "{summary}");
}

#[tokio::test]
async fn insecure_refuses_a_non_loopback_address_and_creates_no_store() {
    let root = tempfile::tempdir().unwrap();
    let db = root.path().join("drover.db");
    let output = Command::new(bin("drover-coordinator"))
        .arg("--database")
        .arg(format!("sqlite://{}", db.display()))
        .args(["--grpc-listen", "0.0.0.0:0", "--http-listen", "127.0.0.1:0"])
        .arg("--insecure")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("--insecure") && stderr.contains("loopback") && stderr.contains("0.0.0.0"),
        "{stderr}"
    );
    assert!(!db.exists(), "a refused start created the store");
    assert!(!root.path().join("drover-data").exists());

    // On loopback, --insecure serves plaintext (and writes no certificates).
    let c = CoordinatorBuilder::sqlite(root.path())
        .insecure()
        .start()
        .await;
    assert!(c.tls.is_none() && c.grpc_url().starts_with("http://"));
    assert_eq!(http_plaintext(c.addresses.http, "/livez").await.0, 200);
    // An updater in plaintext works against it.
    let _updater = UpdaterBuilder::new(&c.grpc_url(), &root.path().join("u"), "plain-1")
        .arg("--install-command", "true")
        .start();
    wait_connected(&c.grpc_url(), 1).await;
    assert!(!root.path().join("drover-data/tls").exists());
}

#[tokio::test]
async fn the_generated_ca_and_server_certificate_are_reused_on_restart() {
    let root = tempfile::tempdir().unwrap();
    let builder = CoordinatorBuilder::sqlite(root.path());
    let tls_dir = builder.data_dir().join("tls");
    let mut c = builder.start().await;
    let pin = c.tls.as_ref().unwrap().ca_pin.clone();
    assert!(
        pin.starts_with("sha256:") && pin.len() == 7 + 64,
        "pin {pin}"
    );
    assert!(c.log().contains(&pin), "the pin is logged at start");
    let server_cert = std::fs::read(tls_dir.join("server.pem")).unwrap();
    for key in ["ca-key.pem", "server-key.pem"] {
        assert_eq!(mode(&tls_dir.join(key)), 0o600, "{key}");
    }
    assert_eq!(mode(&builder_data_dir(root.path())), 0o700);

    c.kill9().await;
    c.restart().await;
    assert_eq!(
        c.tls.as_ref().unwrap().ca_pin,
        pin,
        "same CA after a restart"
    );
    assert_eq!(
        std::fs::read(tls_dir.join("server.pem")).unwrap(),
        server_cert,
        "same server certificate after a restart"
    );
    droverctl_json(&c.grpc_url(), &["fleet", "summary"]).await;

    // The operator's own certificate: here the first coordinator's, served by a second one.
    let other = tempfile::tempdir().unwrap();
    let c2 = CoordinatorBuilder::sqlite(other.path())
        .arg("--tls-cert")
        .arg(tls_dir.join("server.pem").display().to_string())
        .arg("--tls-key")
        .arg(tls_dir.join("server-key.pem").display().to_string())
        .arg("--tls-ca")
        .arg(tls_dir.join("ca.pem").display().to_string())
        .start()
        .await;
    assert_eq!(c2.tls.as_ref().unwrap().ca_pin, pin);
    // No server certificate is generated; agents' certificates still come from the
    // coordinator's own CA in its data directory.
    let generated = other.path().join("drover-data/tls");
    assert!(
        !generated.join("server.pem").exists(),
        "no server certificate generated"
    );
    assert!(generated.join("ca.pem").exists(), "the agents' CA is made");
    droverctl_json(&c2.grpc_url(), &["fleet", "summary"]).await;
}

fn builder_data_dir(root: &Path) -> std::path::PathBuf {
    root.join("drover-data")
}

#[tokio::test]
async fn droverctl_works_with_the_profile_the_coordinator_wrote() {
    let root = tempfile::tempdir().unwrap();
    let c = CoordinatorBuilder::sqlite(root.path()).start().await;
    let profile = c.tls.as_ref().unwrap().admin_profile.clone();
    assert_eq!(
        profile,
        builder_data_dir(root.path()).join("admin-profile.json")
    );
    assert_eq!(mode(&profile), 0o600);
    let text = std::fs::read_to_string(&profile).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["coordinator"], c.grpc_url());
    assert!(
        json.get("credentials").is_some(),
        "a place for credentials: {text}"
    );

    // Only DROVER_PROFILE: the address and the CA both come from it.
    let output = Command::new(bin("droverctl"))
        .env("DROVER_PROFILE", &profile)
        .env_remove("DROVER_COORDINATOR")
        .args(["control-plane", "set", "3.0.0"])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // https:// without a profile: refused, saying what to set.
    let output = Command::new(bin("droverctl"))
        .env_remove("DROVER_PROFILE")
        .args(["--coordinator", &c.grpc_url(), "fleet", "summary"])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("DROVER_PROFILE"),
        "{stderr}"
    );
    let summary = droverctl_json(&c.grpc_url(), &["fleet", "summary"]).await;
    assert_eq!(summary["control_plane_version"], "3.0.0", "{summary}");
}

/// A client that starts a TLS handshake and stalls is closed within the handshake timeout,
/// though it sent more than the first bytes the listener waits for.
#[tokio::test]
async fn a_stalled_tls_handshake_is_closed_within_the_handshake_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let root = tempfile::tempdir().unwrap();
    let c = CoordinatorBuilder::sqlite(root.path())
        .arg("--handshake-timeout-secs")
        .arg("1")
        .start()
        .await;
    for addr in [c.addresses.grpc, c.addresses.http] {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        // A TLS handshake record header announcing 512 bytes, then 40 of them, then nothing.
        let mut partial = vec![0x16, 0x03, 0x01, 0x02, 0x00];
        partial.extend([0u8; 40]);
        stream.write_all(&partial).await.unwrap();
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "{addr}: a stalled handshake was kept open past 5 s"
        );
    }
    droverctl_json(&c.grpc_url(), &["fleet", "summary"]).await;
}
