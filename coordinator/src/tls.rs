//! TLS on both listeners: the coordinator's certificates and the acceptor.
//!
//! - **Certificates.** Unless the operator gives `--tls-cert`/`--tls-key`, the first start
//!   creates `DATA_DIR/tls/`: a CA (`ca.pem`, `ca-key.pem`) and a server key
//!   (`server-key.pem`), all at once (built in a temporary directory, then renamed, so two
//!   replicas starting together never mix two CAs). The server certificate (`server.pem`) is
//!   signed by that CA for the listen addresses, `localhost`, `127.0.0.1`, `::1` and every
//!   `--tls-san`; it is reissued (same key, same CA) when those names change or at a start
//!   when less than `SERVER_RENEW_BEFORE` of its `SERVER_VALIDITY` is left (restart a
//!   coordinator at least once a year). The CA lasts `CA_VALIDITY`. Keys are
//!   mode 0600, the directory 0700. Clients pin the CA: its SHA-256 over the DER, printed
//!   as `sha256:HEX` in the log and the ready file.
//! - **Acceptor.** Each accepted connection (already under the listener's limits) makes its
//!   TLS handshake in its own task, within the listener's handshake timeout, so a slow
//!   client never holds up the accept loop; finished handshakes queue for the server.
//!   ALPN: `h2` for gRPC, `h2` and `http/1.1` for HTTP.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use rustls::ServerConfig;
use rustls_pki_types::{PrivateKeyDer, pem::PemObject};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, server::TlsStream};

mod generated;
use generated::{create_ca, generated};

use crate::{
    error::{DroverError, Result},
    key_files::{fs_error, read_certs},
    listener::{LimitedListener, LimitedStream},
    pki::AgentAuthority,
};

pub use crate::key_files::ensure_data_dir;

/// Where the certificates come from.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// The data directory: generated certificates live in its `tls/`.
    pub data_dir: PathBuf,
    /// Extra names (DNS or IP) for the generated server certificate.
    pub extra_sans: Vec<String>,
    /// The operator's certificate chain and key (PEM) instead of generated ones.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The CA clients should trust (PEM); default: the last certificate of `cert`.
    pub ca: Option<PathBuf>,
    /// How long an agent's client certificate is valid (renewed after two thirds of it).
    pub agent_cert_validity: Duration,
    /// How long after expiry an unrevoked agent certificate may still renew.
    pub expired_renewal_grace: Duration,
}

#[cfg(test)]
impl TlsSettings {
    /// Generated certificates in `data_dir`, hour-long agent certificates (tests).
    pub(crate) fn generated_in(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            extra_sans: vec![],
            cert: None,
            key: None,
            ca: None,
            agent_cert_validity: Duration::from_secs(3600),
            expired_renewal_grace: Duration::from_secs(3600),
        }
    }
}

/// Ready-to-use TLS: one acceptor per listener and what clients must trust.
#[derive(Clone)]
pub struct Tls {
    pub grpc: TlsAcceptor,
    pub http: TlsAcceptor,
    /// The PEM file of the CA clients trust.
    pub ca_file: PathBuf,
    /// `sha256:HEX` of the CA certificate's DER.
    pub ca_pin: String,
    /// The CA file's text, for enrolling updaters.
    pub ca_pem: String,
    /// The DNS names and IP addresses (as text) the server certificate covers, for the
    /// address the admin profile names.
    pub server_names: Vec<String>,
    /// Signs and checks agents' client certificates (always the generated CA in
    /// `DATA_DIR/tls`, even when the operator brings the server certificate).
    pub agents: Arc<AgentAuthority>,
}

/// The pin clients use: `sha256:` and the hex SHA-256 of the certificate's DER.
pub fn pin(der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(der)))
}

/// Loads the operator's certificate, or the generated one (creating it on first start).
/// Blocking file I/O: call it from `spawn_blocking` or before serving.
pub fn load_or_create(settings: &TlsSettings, listen: &[SocketAddr]) -> Result<Tls> {
    ensure_data_dir(&settings.data_dir)?;
    let tls_dir = settings.data_dir.join("tls");
    if !tls_dir.join("ca.pem").exists() {
        create_ca(&settings.data_dir, &tls_dir)?;
    }
    let agents = Arc::new(AgentAuthority::load(
        &tls_dir,
        settings.agent_cert_validity,
        settings.expired_renewal_grace,
    )?);
    let client_verifier = agents.client_verifier()?;
    let (chain, key, ca_file) = match (&settings.cert, &settings.key) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|err| {
                DroverError::invalid(format!(
                    "cannot read a private key from --tls-key {} ({err}); give a PEM key \
                     (PKCS#8, PKCS#1 or SEC1)",
                    key.display()
                ))
            })?;
            (
                chain,
                key,
                settings.ca.clone().unwrap_or_else(|| cert.clone()),
            )
        }
        (None, None) => generated(settings, listen)?,
        _ => {
            return Err(DroverError::invalid(
                "--tls-cert and --tls-key go together: give both, or neither to use the \
                 coordinator's generated certificate",
            ));
        }
    };
    let ca = read_certs(&ca_file)?;
    let ca_der = ca.last().expect("read_certs returns at least one");
    let ca_pin = pin(ca_der);
    let ca_pem = std::fs::read_to_string(&ca_file).map_err(fs_error(&ca_file))?;
    // Client certificates are asked for on the gRPC listener only (updaters); the HTTP API
    // authenticates admins with bearer tokens.
    let config = |alpn: &[&[u8]], clients: bool| -> Result<TlsAcceptor> {
        let builder =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|err| DroverError::Internal(format!("TLS protocol versions: {err}")))?;
        let builder = if clients {
            builder.with_client_cert_verifier(client_verifier.clone())
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|err| {
                DroverError::invalid(format!(
                    "the TLS certificate and key do not make a usable pair ({err}); check that \
                 --tls-key is the key of --tls-cert"
                ))
            })?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(TlsAcceptor::from(Arc::new(config)))
    };
    Ok(Tls {
        grpc: config(&[b"h2"], true)?,
        http: config(&[b"h2", b"http/1.1"], false)?,
        ca_file,
        ca_pin,
        ca_pem,
        server_names: subject_alt_names(&chain[0]),
        agents,
    })
}

/// The DNS names and IP addresses a certificate's subjectAltName lists (clients check the
/// host they connect to against these; the subject's common name does not count).
pub fn subject_alt_names(cert_der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert_der) else {
        return Vec::new();
    };
    let Ok(Some(names)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    let ip = |bytes: &[u8]| -> Option<IpAddr> {
        match bytes.len() {
            4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
            16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
            _ => None,
        }
    };
    names
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(dns.to_string()),
            GeneralName::IPAddress(bytes) => ip(bytes).map(|ip| ip.to_string()),
            _ => None,
        })
        .collect()
}

/// TLS connections after their handshake, for either server.
pub struct TlsIncoming {
    ready: mpsc::Receiver<(TlsStream<LimitedStream>, SocketAddr)>,
    local_addr: SocketAddr,
    /// Cancelled when the accept task ends, for whatever reason (a panic included).
    stopped: tokio_util::sync::CancellationToken,
}

/// Accepts under `listener`'s limits and makes each handshake in its own task within
/// `handshake_timeout`; stops when the returned [`TlsIncoming`] is dropped.
pub fn accept_tls(
    mut listener: LimitedListener,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    local_addr: SocketAddr,
) -> TlsIncoming {
    let (tx, ready) = mpsc::channel(64);
    let last_warning = Arc::new(parking_lot::Mutex::new(None::<tokio::time::Instant>));
    let stopped = tokio_util::sync::CancellationToken::new();
    let guard = stopped.clone().drop_guard();
    tokio::spawn(async move {
        let _stopped_when_this_ends = guard;
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept_limited() => accepted,
                () = tx.closed() => return,
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            let last_warning = last_warning.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send((tls, peer)).await;
                    }
                    Ok(Err(err)) => handshake_failed(&last_warning, peer, &err),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    TlsIncoming {
        ready,
        local_addr,
        stopped,
    }
}

/// A failed handshake is usually a misconfigured client (plaintext, or not trusting this
/// CA): logged as a warning at most every 10 s, otherwise at debug.
fn handshake_failed(
    last_warning: &parking_lot::Mutex<Option<tokio::time::Instant>>,
    peer: SocketAddr,
    err: &std::io::Error,
) {
    let now = tokio::time::Instant::now();
    let mut last = last_warning.lock();
    if last.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(10)) {
        *last = Some(now);
        drop(last);
        tracing::warn!(
            %peer, error = %err,
            "TLS handshake failed: clients must use https:// and trust this coordinator's CA \
             (see the ca_pin logged at start); plaintext works only with --insecure"
        );
    } else {
        tracing::debug!(%peer, error = %err, "TLS handshake failed");
    }
}

impl TlsIncoming {
    /// Cancelled when the accept loop has ended: whoever serves these connections must stop
    /// too (axum's listener cannot say so itself), so a dead loop is never silent.
    pub fn stopped(&self) -> tokio_util::sync::CancellationToken {
        self.stopped.clone()
    }

    /// The connections as a stream, for tonic's `serve_with_incoming_shutdown`.
    pub fn into_stream(
        self,
    ) -> impl futures::Stream<Item = std::result::Result<TlsStream<LimitedStream>, std::io::Error>> + Send
    {
        futures::stream::unfold(self, |mut incoming| async move {
            let (stream, _) = incoming.ready.recv().await?;
            Some((Ok(stream), incoming))
        })
    }
}

impl axum::serve::Listener for TlsIncoming {
    type Io = TlsStream<LimitedStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept task only ends when this receiver is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local_addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_end_of_the_accept_loop_is_announced() {
        let dir = tempfile::tempdir().unwrap();
        let settings = TlsSettings::generated_in(dir.path().join("data"));
        let listen = ["127.0.0.1:0".parse().unwrap()];
        let tls = load_or_create(&settings, &listen).unwrap();
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let connections = crate::listener::Connections::new(8, Default::default());
        let listener = LimitedListener::new(tcp, connections, "test");
        let incoming = accept_tls(listener, tls.http.clone(), Duration::from_secs(1), addr);
        let stopped = incoming.stopped();
        assert!(!stopped.is_cancelled());
        // Dropping the receiver ends the loop, as any end of it would.
        drop(incoming);
        tokio::time::timeout(Duration::from_secs(5), stopped.cancelled())
            .await
            .expect("the loop's end is announced");
    }
}
