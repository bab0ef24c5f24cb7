//! The coordinator's certificate authority: it signs the server certificate (unless the
//! operator brings one) and every agent's client certificate.
//!
//! An agent certificate names its agent twice: the subject's common name, for people, and
//! a URI subject alternative name `urn:drover:agent:ID`, which is what the coordinator
//! reads. It is signed from a certificate signing request, so the agent's key never
//! leaves its host; the request's own signature proves the agent holds that key.

use std::{path::Path, sync::Arc, time::Duration};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::server::{WebPkiClientVerifier, danger::ClientCertVerifier};
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer};
use sha2::{Digest, Sha256};

use crate::error::{DroverError, Result};

const AGENT_URI_PREFIX: &str = "urn:drover:agent:";
/// A client certificate is valid from a little before it is made: clocks drift.
const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// The CA's parameters, derived from its key alone (so the issuer can be rebuilt on every
/// start without parsing the certificate): its name carries a digest of the public key.
pub fn ca_params(key: &KeyPair) -> CertificateParams {
    let mut params = CertificateParams::default();
    let id = hex::encode(&Sha256::digest(key.public_key_raw())[..8]);
    params
        .distinguished_name
        .push(DnType::CommonName, format!("Drover coordinator CA {id}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// A client certificate just made.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    pub pem: String,
    /// Hex of the certificate's serial number.
    pub serial: String,
    pub not_after_ms: i64,
}

/// Signs agent certificates and checks them.
pub struct AgentAuthority {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    validity: Duration,
    /// How long after expiry an unrevoked certificate may still renew itself.
    expired_grace: Duration,
}

impl AgentAuthority {
    /// The CA in `tls_dir` (`ca.pem`, `ca-key.pem`), issuing certificates valid `validity`.
    pub fn load(tls_dir: &Path, validity: Duration, expired_grace: Duration) -> Result<Self> {
        let key = crate::key_files::read_key(&tls_dir.join("ca-key.pem"))?;
        let ca = crate::key_files::read_certs(&tls_dir.join("ca.pem"))?;
        let ca_der = ca
            .into_iter()
            .next()
            .expect("read_certs returns at least one");
        Ok(Self {
            issuer: Issuer::new(ca_params(&key), key),
            ca_der,
            validity,
            expired_grace,
        })
    }

    /// Verifies client certificates against this CA. A connection without one is let
    /// through the handshake: enrolment and the admin API (bearer tokens) need none, and
    /// every updater call checks for one itself. A certificate expired less than the grace
    /// period ago passes too, so its agent can renew; every other call refuses it
    /// (`PeerCertificate::expired_at`).
    pub fn client_verifier(&self) -> Result<Arc<dyn ClientCertVerifier>> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.ca_der.clone())
            .map_err(|err| DroverError::Internal(format!("the CA as a trust root: {err}")))?;
        let inner = WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|err| DroverError::Internal(format!("the client certificate verifier: {err}")))?;
        Ok(Arc::new(crate::pki_grace::GraceVerifier::new(
            inner,
            self.expired_grace,
        )))
    }

    /// A certificate for `agent_id` and the key of `csr_der`, valid from now.
    pub fn issue(&self, csr_der: &[u8], agent_id: &str, now_ms: i64) -> Result<IssuedCertificate> {
        let request = CertificateSigningRequestDer::from(csr_der.to_vec());
        let mut csr = CertificateSigningRequestParams::from_der(&request).map_err(|err| {
            let key = csr_key_kind(csr_der)
                .map(|kind| format!("its key is {kind}; "))
                .unwrap_or_default();
            DroverError::invalid(format!(
                "the certificate signing request is unusable ({err}); {key}send a PKCS#10 \
                 request (DER) signed by a new ECDSA P-256 or P-384, Ed25519 or RSA (2048 bits \
                 or more) key, as drover-updater enroll makes (P-256)"
            ))
        })?;
        let uri = format!("{AGENT_URI_PREFIX}{agent_id}");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, agent_id);
        params.subject_alt_names = vec![SanType::URI(uri.as_str().try_into().map_err(|_| {
            DroverError::invalid(format!("agent id '{agent_id}' cannot go in a certificate"))
        })?)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let mut serial: [u8; 16] = rand::random();
        serial[0] &= 0x7f; // positive, as RFC 5280 asks
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let now = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now_ms) * 1_000_000)
            .map_err(|err| DroverError::Internal(format!("the clock: {err}")))?;
        params.not_before = now - CLOCK_SKEW;
        params.not_after = now + self.validity;
        let not_after_ms = now_ms.saturating_add(self.validity.as_millis() as i64);
        csr.params = params;
        let cert = csr
            .signed_by(&self.issuer)
            .map_err(|err| DroverError::Internal(format!("signing a client certificate: {err}")))?;
        Ok(IssuedCertificate {
            pem: cert.pem(),
            serial: hex::encode(serial),
            not_after_ms,
        })
    }
}

/// The agent id a client certificate (already verified by the TLS handshake) names.
/// The key type a CSR names, in words, to say why it was refused (a P-521 or a 1024-bit RSA
/// key fails as "invalid signature" otherwise).
fn csr_key_kind(csr_der: &[u8]) -> Option<String> {
    use x509_parser::{prelude::FromDer, public_key::PublicKey};
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(csr_der).ok()?;
    let info = &csr.certification_request_info.subject_pki;
    let curve = info
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|oid| match oid.to_id_string().as_str() {
            "1.2.840.10045.3.1.7" => "P-256".to_string(),
            "1.3.132.0.34" => "P-384".to_string(),
            "1.3.132.0.35" => "P-521".to_string(),
            other => format!("curve {other}"),
        });
    Some(match info.parsed().ok()? {
        PublicKey::RSA(rsa) => format!("RSA of {} bits", rsa.key_size()),
        PublicKey::EC(_) => format!(
            "ECDSA on {}",
            curve.unwrap_or_else(|| "an unnamed curve".into())
        ),
        PublicKey::DSA(_) => "DSA".to_string(),
        PublicKey::GostR3410(_) | PublicKey::GostR3410_2012(_) => "GOST".to_string(),
        PublicKey::Unknown(_) => "of an unknown type".to_string(),
    })
}

/// What a caller's (already verified) client certificate says, read once per call.
#[derive(Debug, Clone)]
pub struct PeerCertificate {
    /// From the URI name `urn:drover:agent:ID`; `None` if it names no agent.
    pub agent_id: Option<String>,
    /// Hex, as `IssuedCertificate::serial` (compare with `same_serial`).
    pub serial: String,
    pub not_after_ms: i64,
}

impl PeerCertificate {
    pub fn parse(cert_der: &[u8]) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
        let agent_id = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .and_then(|names| {
                names
                    .value
                    .general_names
                    .iter()
                    .find_map(|name| match name {
                        x509_parser::extensions::GeneralName::URI(uri) => uri
                            .strip_prefix(AGENT_URI_PREFIX)
                            .filter(|id| !id.is_empty())
                            .map(str::to_string),
                        _ => None,
                    })
            });
        Some(Self {
            agent_id,
            serial: hex::encode(cert.raw_serial()),
            not_after_ms: cert.validity().not_after.timestamp().saturating_mul(1000),
        })
    }

    /// When it expired, if it has by `now_ms`.
    pub fn expired_at(&self, now_ms: i64) -> Option<i64> {
        (self.not_after_ms < now_ms).then_some(self.not_after_ms)
    }
}

/// Whether two hex serials name the same number (DER drops leading zero bytes).
pub fn same_serial(a: &str, b: &str) -> bool {
    let digits = |s: &str| {
        let mut s = s.to_ascii_lowercase();
        while s.len() > 2 && s.starts_with("00") {
            s.drain(..2);
        }
        s
    };
    digits(a) == digits(b)
}

/// The agent id a client certificate names.
pub fn agent_id_of(cert_der: &[u8]) -> Option<String> {
    PeerCertificate::parse(cert_der)?.agent_id
}

#[cfg(test)]
mod tests {
    use rustls_pki_types::pem::PemObject as _;

    use super::*;

    fn authority(dir: &Path) -> AgentAuthority {
        let settings = crate::tls::TlsSettings::generated_in(dir.to_path_buf());
        crate::tls::load_or_create(&settings, &["127.0.0.1:0".parse().unwrap()]).unwrap();
        AgentAuthority::load(
            &dir.join("tls"),
            Duration::from_secs(3600),
            Duration::from_secs(3600),
        )
        .unwrap()
    }

    /// #22 item 7: keys Drover cannot verify (P-521, RSA-1024) are refused naming the key,
    /// not as "invalid signature".
    #[test]
    fn an_unsupported_key_is_named_in_the_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let ca = authority(dir.path());
        for (newkey, named) in [
            (vec!["-newkey", "rsa:1024"], "RSA of 1024 bits"),
            (
                vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"],
                "ECDSA on P-521",
            ),
        ] {
            let key_file = dir.path().join("key.pem");
            let out = std::process::Command::new("openssl")
                .args(["req", "-new", "-nodes", "-outform", "DER", "-subj", "/CN=x"])
                .args(&newkey)
                .arg("-keyout")
                .arg(&key_file)
                .output()
                .expect("openssl (Debian package openssl)");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let err = ca.issue(&out.stdout, "a-1", 1_800_000_000_000).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(named) && text.contains("P-256"), "{text}");
        }
    }

    #[test]
    fn issued_certificates_name_their_agent_and_chain_to_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let ca = authority(dir.path());
        let key = KeyPair::generate().unwrap();
        let csr = CertificateParams::new(vec![])
            .unwrap()
            .serialize_request(&key)
            .unwrap();
        let issued = ca.issue(csr.der(), "web-01", 1_800_000_000_000).unwrap();
        assert_eq!(issued.not_after_ms, 1_800_000_000_000 + 3_600_000);
        let der = CertificateDer::from_pem_slice(issued.pem.as_bytes()).unwrap();
        assert_eq!(agent_id_of(&der).as_deref(), Some("web-01"));
        // The verifier accepts it as a client certificate (at a time it is valid).
        let verifier = ca.client_verifier().unwrap();
        let at = rustls_pki_types::UnixTime::since_unix_epoch(Duration::from_secs(1_800_000_100));
        verifier
            .verify_client_cert(&der, &[], at)
            .expect("chains to the CA");
        // A certificate from another CA does not.
        let other_dir = tempfile::tempdir().unwrap();
        let other = authority(other_dir.path());
        let foreign = other.issue(csr.der(), "web-01", 1_800_000_000_000).unwrap();
        let foreign = CertificateDer::from_pem_slice(foreign.pem.as_bytes()).unwrap();
        assert!(verifier.verify_client_cert(&foreign, &[], at).is_err());
    }

    #[test]
    fn a_tampered_signing_request_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = authority(dir.path());
        let key = KeyPair::generate().unwrap();
        let csr = CertificateParams::new(vec!["x".into()])
            .unwrap()
            .serialize_request(&key)
            .unwrap();
        let mut der = csr.der().to_vec();
        let last = der.len() - 5;
        der[last] ^= 0xff;
        let err = ca.issue(&der, "web-01", 0).unwrap_err();
        assert!(err.to_string().contains("signing request"), "{err}");
        assert!(ca.issue(b"not a request", "web-01", 0).is_err());
        assert_eq!(agent_id_of(b"junk"), None);
    }

    /// One CA for every generated case (made once; its directory lives for the process).
    static FUZZ_CA: std::sync::LazyLock<(AgentAuthority, Vec<u8>)> =
        std::sync::LazyLock::new(|| {
            let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
            let ca = authority(dir.path());
            let key = KeyPair::generate().unwrap();
            let csr = CertificateParams::new(vec![])
                .unwrap()
                .serialize_request(&key)
                .unwrap();
            (ca, csr.der().to_vec())
        });

    proptest::proptest! {
        /// Whatever an enrolling client sends as its signing request, and whatever a peer
        /// presents as a certificate: no panic; a request is signed only if it is one.
        #[test]
        fn fuzz_signing_requests_and_certificates(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1024),
            flip in proptest::prelude::any::<(usize, u8)>(),
        ) {
            let (ca, good) = &*FUZZ_CA;
            if let Err(err) = ca.issue(&bytes, "fuzz-1", 1_800_000_000_000) {
                proptest::prop_assert_eq!(err.code(), crate::error::ErrorCode::InvalidArgument);
            }
            let _ = agent_id_of(&bytes);
            // A real request with one byte changed: signed only if it still verifies.
            let mut mutated = good.clone();
            let at = flip.0 % mutated.len();
            mutated[at] ^= flip.1.max(1);
            match ca.issue(&mutated, "fuzz-1", 1_800_000_000_000) {
                Ok(issued) => {
                    let der = CertificateDer::from_pem_slice(issued.pem.as_bytes()).unwrap();
                    let named = agent_id_of(&der);
                    proptest::prop_assert_eq!(named.as_deref(), Some("fuzz-1"));
                }
                Err(err) => proptest::prop_assert_eq!(
                    err.code(),
                    crate::error::ErrorCode::InvalidArgument
                ),
            }
        }
    }
}
