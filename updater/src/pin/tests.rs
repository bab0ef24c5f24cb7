//! The pin verifier against a local TLS server that sends the chain [server, CA], as the
//! coordinator does.

use std::{sync::Arc, time::Duration};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, pem::PemObject};
use tokio::net::TcpListener;

use super::*;

const DEADLINE: Duration = Duration::from_secs(10);

fn new_ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A server certificate for 127.0.0.1 issued by `issuer`, presented with `extra` after it.
async fn serve(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    extra: CertificateDer<'static>,
) -> String {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, issuer)
        .unwrap();
    let chain = vec![cert.der().clone(), extra];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("https://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            // Refused handshakes end here; the client side says why.
            tokio::spawn(async move { acceptor.accept(tcp).await.map(drop) });
        }
    });
    address
}

async fn fetch(address: &str, pin: CaPin) -> anyhow::Result<CertificateDer<'static>> {
    tokio::time::timeout(DEADLINE, fetch_pinned_ca(address, pin))
        .await
        .expect("the pinned fetch finished within its deadline")
}

#[tokio::test]
async fn the_right_pin_returns_the_ca() {
    let ca = new_ca();
    let address = serve(&ca, ca.der().clone()).await;
    let pin: CaPin = CaPin::of(ca.der()).to_string().parse().unwrap();
    let fetched = fetch(&address, pin).await.unwrap();
    assert_eq!(&fetched, ca.der());
}

#[tokio::test]
async fn a_wrong_pin_is_refused_with_what_to_check() {
    let ca = new_ca();
    let address = serve(&ca, ca.der().clone()).await;
    let wrong = CaPin::of(b"another CA");
    let err = fetch(&address, wrong).await.unwrap_err().to_string();
    assert!(err.contains("does not match --ca-pin"), "{err}");
    assert!(err.contains(&wrong.to_string()), "{err}");
    assert!(err.contains(&CaPin::of(ca.der()).to_string()), "{err}");
    assert!(
        err.contains("check the pin printed by the coordinator"),
        "{err}"
    );
}

#[tokio::test]
async fn a_pinned_ca_in_the_chain_of_a_certificate_it_did_not_issue_is_refused() {
    let (pinned, other) = (new_ca(), new_ca());
    // A server that copies the pinned CA into its chain but holds no certificate from it.
    let address = serve(&other, pinned.der().clone()).await;
    let err = fetch(&address, CaPin::of(pinned.der())).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("must be issued by the pinned CA"),
        "{err:#}"
    );
}

#[test]
fn pins_parse_strictly() {
    let hex = "ab".repeat(32);
    assert!(format!("sha256:{hex}").parse::<CaPin>().is_ok());
    assert!(
        format!("sha256:{}", hex.to_uppercase())
            .parse::<CaPin>()
            .is_ok()
    );
    for bad in [
        hex.clone(),
        format!("sha1:{hex}"),
        "sha256:abc".into(),
        "sha256:zz".into(),
    ] {
        let err = bad.parse::<CaPin>().unwrap_err().to_string();
        assert!(err.contains("sha256:<64 hex digits>"), "{bad}: {err}");
    }
}

#[test]
fn certificate_pem_round_trips() {
    for len in [0usize, 1, 2, 3, 47, 48, 49, 100, 1000] {
        let der: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        let pem = certificate_pem(&der);
        let parsed = CertificateDer::from_pem_slice(pem.as_bytes());
        if len == 0 {
            continue; // an empty body is no certificate; only the encoding matters here
        }
        assert_eq!(parsed.unwrap().as_ref(), der.as_slice(), "length {len}");
        assert!(pem.lines().all(|l| l.len() <= 64));
    }
    let ca = new_ca();
    assert_eq!(certificate_pem(ca.der()), ca.pem());
}
