//! Trust on first enrolment: fetch the coordinator's CA over TLS and accept it only if its
//! SHA-256 matches the pin the operator copied from the coordinator.
//!
//! The handshake is accepted only when some certificate of the presented chain has the
//! pinned hash AND the server certificate verifies against that certificate alone for the
//! coordinator's name, so a pinned CA cannot be replayed by a server that lacks its key.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, bail};
use parking_lot::Mutex;
use rustls::{
    DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::CryptoProvider,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A CA pin: `sha256:` and the hex SHA-256 of the CA certificate's DER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaPin([u8; 32]);

impl std::str::FromStr for CaPin {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        let hint = "a CA pin looks like sha256:<64 hex digits>, as the coordinator prints it";
        let hex_text = text.trim().strip_prefix("sha256:").context(hint)?;
        let bytes = hex::decode(hex_text).ok().context(hint)?;
        let pin = <[u8; 32]>::try_from(bytes).ok().context(hint)?;
        Ok(Self(pin))
    }
}

impl std::fmt::Display for CaPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl CaPin {
    pub fn of(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }
}

#[derive(Debug)]
struct PinVerifier {
    pin: CaPin,
    provider: Arc<CryptoProvider>,
    /// The pinned certificate once a handshake presented it (and whether it matched at all).
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
enum Seen {
    #[default]
    Nothing,
    Mismatch(Vec<CaPin>),
    Pinned(CertificateDer<'static>),
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = std::iter::once(end_entity).chain(intermediates);
        let Some(pinned) = chain.clone().find(|c| CaPin::of(c) == self.pin) else {
            *self.seen.lock() = Seen::Mismatch(chain.map(|c| CaPin::of(c)).collect());
            return Err(rustls::Error::General("CA pin mismatch".into()));
        };
        let mut roots = RootCertStore::empty();
        roots.add(pinned.clone().into_owned()).map_err(|err| {
            rustls::Error::General(format!("the pinned certificate is not a CA: {err}"))
        })?;
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|err| rustls::Error::General(err.to_string()))?;
        let verified = verifier.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        *self.seen.lock() = Seen::Pinned(pinned.clone().into_owned());
        Ok(verified)
    }

    // The same checks WebPkiServerVerifier makes, with the same provider.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The host (as a TLS server name) and port of an `https://` coordinator address.
fn host_and_port(coordinator: &str) -> anyhow::Result<(ServerName<'static>, String, u16)> {
    let uri: tonic::codegen::http::Uri = coordinator.parse().with_context(|| {
        format!("'{coordinator}' is not a valid coordinator address; use e.g. https://HOST:7400")
    })?;
    if uri.scheme_str() != Some("https") {
        bail!("enrolment needs an https:// coordinator address, not '{coordinator}'");
    }
    let host = uri
        .host()
        .with_context(|| format!("'{coordinator}' names no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let name = ServerName::try_from(host.clone())
        .with_context(|| format!("'{host}' is not a valid TLS server name"))?;
    Ok((name, host, uri.port_u16().unwrap_or(443)))
}

/// Connects once to `coordinator` and returns its CA certificate (DER) if it matches `pin`.
pub async fn fetch_pinned_ca(
    coordinator: &str,
    pin: CaPin,
) -> anyhow::Result<CertificateDer<'static>> {
    let (name, host, port) = host_and_port(coordinator)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinVerifier {
        pin,
        provider: provider.clone(),
        seen: Mutex::default(),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("the TLS provider supports no protocol version")?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .ok()
    .with_context(|| format!("cannot reach the coordinator at {coordinator} within 10 s"))?
    .with_context(|| format!("cannot reach the coordinator at {coordinator}"))?;
    let outcome = tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, tcp))
        .await
        .with_context(|| format!("the TLS handshake with {coordinator} took over 10 s"))?;
    let seen = std::mem::take(&mut *verifier.seen.lock());
    match (outcome, seen) {
        (Ok(_stream), Seen::Pinned(ca)) => Ok(ca),
        (_, Seen::Mismatch(presented)) => bail!(
            "the coordinator's CA does not match --ca-pin {pin} (it presented {}); check the \
             pin printed by the coordinator (ready file / log)",
            presented
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        (Err(err), _) => Err(anyhow::Error::from(err).context(format!(
            "the TLS handshake with {coordinator} failed (its certificate must be issued by \
             the pinned CA for the name '{host}', and the CA must be sent in its chain)"
        ))),
        (Ok(_), _) => bail!("the TLS handshake with {coordinator} verified no certificate"),
    }
}

/// PEM text for a DER certificate (tonic takes trust anchors as PEM).
pub fn certificate_pem(der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

#[cfg(test)]
mod tests;
