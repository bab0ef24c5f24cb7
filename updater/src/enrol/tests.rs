//! Enrolment, mTLS and renewal against a small in-process coordinator that does what the
//! real one promises: chain [server, CA], `Enroll` without a client certificate, `Renew` and
//! the updater service only with one, hello.agent_id bound to the certificate.

use std::{collections::HashMap, pin::Pin, sync::Arc, time::Duration};

use drover_proto::v1::{
    self as pb,
    coordinator_message::Kind as Down,
    enrolment_service_server::{EnrolmentService, EnrolmentServiceServer},
    updater_message::Kind as Up,
    updater_service_server::{UpdaterService, UpdaterServiceServer},
};
use futures::Stream;
use parking_lot::Mutex;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::{
    Request, Response, Status, Streaming,
    transport::{Identity, Server, ServerTlsConfig},
};

use super::*;
use crate::{
    address::Coordinators,
    identity::{read_credentials, read_record},
    pin::CaPin,
    shared::{Shared, test_config},
    simulate::{SimulatedEnrolment, SimulationConfig, run_enrolled},
    state::{PersistedState, StateStore},
};

const DEADLINE: Duration = Duration::from_secs(20);
const GOOD_TOKEN: &str = "good-token";

struct Fake {
    ca: CertifiedIssuer<'static, KeyPair>,
    /// Certificates issued (DER) → agent id.
    issued: Mutex<HashMap<Vec<u8>, String>>,
    enrol_lifetime: Duration,
    hellos: mpsc::UnboundedSender<String>,
}

/// The fake as both services (one state).
#[derive(Clone)]
struct Svc(Arc<Fake>);

impl std::ops::Deref for Svc {
    type Target = Fake;
    fn deref(&self) -> &Fake {
        &self.0
    }
}

/// The uncompressed P-256 point of a CSR (what `new_key` makes); enough for this fake.
struct CsrKey(Vec<u8>);

impl rcgen::PublicKeyData for CsrKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

fn timestamp_in(lifetime: Duration) -> Option<prost_types::Timestamp> {
    let ms = now_ms() + lifetime.as_millis() as i64;
    Some(prost_types::Timestamp {
        seconds: ms / 1000,
        nanos: (ms % 1000) as i32 * 1_000_000,
    })
}

impl Fake {
    fn issue(&self, csr: &[u8], agent_id: &str) -> Result<String, Status> {
        // BIT STRING (0x42 bytes, no unused bits) holding an uncompressed point.
        let at = csr
            .windows(4)
            .position(|w| w == [0x03, 0x42, 0x00, 0x04])
            .ok_or_else(|| Status::invalid_argument("not a P-256 signing request"))?;
        let key = CsrKey(csr[at + 3..at + 3 + 65].to_vec());
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, agent_id);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.ca).unwrap();
        self.issued
            .lock()
            .insert(cert.der().to_vec(), agent_id.to_string());
        Ok(cert.pem())
    }

    fn caller<T>(&self, request: &Request<T>) -> Result<String, Status> {
        let certs = request
            .peer_certs()
            .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
        let first = certs
            .first()
            .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
        self.issued
            .lock()
            .get(first.as_ref())
            .cloned()
            .ok_or_else(|| Status::unauthenticated("unknown certificate"))
    }
}

#[tonic::async_trait]
impl EnrolmentService for Svc {
    async fn enroll(
        &self,
        request: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        let request = request.into_inner();
        if request.token != GOOD_TOKEN {
            return Err(Status::permission_denied("the join token is expired"));
        }
        let agent_id = if request.agent_id.is_empty() {
            format!("host-{}", request.hostname)
        } else {
            request.agent_id
        };
        let group = if request.group.is_empty() {
            "default".to_string()
        } else {
            request.group
        };
        Ok(Response::new(pb::EnrollResponse {
            certificate_pem: self.issue(&request.csr_der, &agent_id)?,
            agent_id,
            group,
            ca_pem: self.ca.pem(),
            not_after: timestamp_in(self.enrol_lifetime),
        }))
    }

    async fn renew(
        &self,
        request: Request<pb::RenewRequest>,
    ) -> Result<Response<pb::RenewResponse>, Status> {
        let agent_id = self.caller(&request)?;
        Ok(Response::new(pb::RenewResponse {
            certificate_pem: self.issue(&request.into_inner().csr_der, &agent_id)?,
            not_after: timestamp_in(Duration::from_secs(3600)),
        }))
    }
}

type Outbound = Pin<Box<dyn Stream<Item = Result<pb::CoordinatorMessage, Status>> + Send>>;

#[tonic::async_trait]
impl UpdaterService for Svc {
    type SessionStream = Outbound;

    async fn session(
        &self,
        request: Request<Streaming<pb::UpdaterMessage>>,
    ) -> Result<Response<Outbound>, Status> {
        let agent_id = self.caller(&request)?;
        let mut inbound = request.into_inner();
        let Some(Up::Hello(hello)) = inbound.message().await?.and_then(|m| m.kind) else {
            return Err(Status::invalid_argument("hello first"));
        };
        if hello.agent_id != agent_id {
            return Err(Status::permission_denied(
                "hello.agent_id is not the certificate's",
            ));
        }
        let _ = self.hellos.send(agent_id);
        let (tx, rx) = mpsc::channel(4);
        let welcome = pb::CoordinatorMessage {
            kind: Some(Down::Welcome(pb::Welcome::default())),
        };
        tx.send(Ok(welcome)).await.ok();
        // Keep the stream open while the updater talks.
        tokio::spawn(async move {
            while let Ok(Some(_)) = inbound.message().await {}
            drop(tx);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_target(
        &self,
        request: Request<pb::GetTargetRequest>,
    ) -> Result<Response<pb::GetTargetResponse>, Status> {
        self.caller(&request)?;
        Ok(Response::new(pb::GetTargetResponse::default()))
    }

    async fn get_release_metadata(
        &self,
        _: Request<pb::GetReleaseMetadataRequest>,
    ) -> Result<Response<pb::ReleaseMetadata>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
}

pub(crate) struct Started {
    pub(crate) address: String,
    pub(crate) pin: CaPin,
    hellos: mpsc::UnboundedReceiver<String>,
}

/// A TLS coordinator whose server certificate names only `127.0.0.1`.
pub(crate) async fn start(enrol_lifetime: Duration) -> Started {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            format!("{}{}", server.pem(), ca.pem()),
            server_key.serialize_pem(),
        ))
        .client_ca_root(tonic::transport::Certificate::from_pem(ca.pem()))
        .client_auth_optional(true);
    let pin = CaPin::of(ca.der());
    let (hellos_tx, hellos) = mpsc::unbounded_channel();
    let fake = Svc(Arc::new(Fake {
        ca,
        issued: Mutex::default(),
        enrol_lifetime,
        hellos: hellos_tx,
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("https://{}", listener.local_addr().unwrap());
    crate::connection::use_ring_crypto();
    let router = Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(EnrolmentServiceServer::new(fake.clone()))
        .add_service(UpdaterServiceServer::new(fake));
    tokio::spawn(router.serve_with_incoming(TcpListenerStream::new(listener)));
    Started {
        address,
        pin,
        hellos,
    }
}

fn options(started: &Started, state_dir: &Path, token: &str) -> EnrolOptions {
    EnrolOptions {
        coordinator: started.address.clone(),
        pin: started.pin,
        state_dir: state_dir.to_path_buf(),
        request: EnrolRequest {
            token: token.into(),
            agent_id: String::new(),
            group: "prod".into(),
            hostname: "box".into(),
        },
        force: false,
    }
}

async fn get_target(run: &RunIdentity, address: &str) -> anyhow::Result<()> {
    let channel = connect(address, run.ca.as_ref(), &run.identity).await?;
    pb::updater_service_client::UpdaterServiceClient::new(channel)
        .get_target(pb::GetTargetRequest::default())
        .await?;
    Ok(())
}

#[tokio::test]
async fn enrols_connects_with_its_certificate_and_renews_in_the_background() {
    let started = start(Duration::from_millis(900)).await;
    let state = tempfile::tempdir().unwrap();
    let record = tokio::time::timeout(
        DEADLINE,
        enrol_state_dir(options(&started, state.path(), GOOD_TOKEN)),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        (record.agent_id.as_str(), record.group.as_str()),
        ("host-box", "prod")
    );
    assert_eq!(
        crate::state::saved_agent_id(state.path()).as_deref(),
        Some("host-box")
    );

    // A second enrolment needs --force.
    let err = enrol_state_dir(options(&started, state.path(), GOOD_TOKEN))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("give --force"), "{err}");

    // `run` takes who it is from the identity and refuses a different flag.
    let resolve = |agent: Option<&str>, group: Option<&str>| {
        RunIdentity::resolve(
            state.path(),
            &Coordinators::parse(&started.address).unwrap(),
            None,
            agent.map(Into::into),
            group.map(Into::into),
        )
    };
    let err = resolve(None, Some("dev")).unwrap_err().to_string();
    assert!(err.contains("--group dev differs from 'prod'"), "{err}");
    let run = resolve(Some("host-box"), Some("prod")).unwrap();
    assert_eq!(run.agent_id.as_deref(), Some("host-box"));
    get_target(&run, &started.address).await.unwrap();
    // Without the certificate the coordinator refuses.
    let anonymous = RunIdentity {
        identity: ClientIdentity::None,
        ..resolve(None, None).unwrap()
    };
    assert!(get_target(&anonymous, &started.address).await.is_err());

    // Two thirds of 900 ms later the renewal task replaces the certificate.
    let dir = identity::identity_dir(state.path());
    let before = read_credentials(&dir).unwrap();
    let mut config = test_config(&started.address, &[]);
    config.coordinator_ca = run.ca.clone();
    config.identity = run.identity.clone();
    let shared = Arc::new(Shared::new(
        config,
        StateStore::Memory {
            agent_id: "host-box".into(),
        },
        PersistedState {
            agent_id: "host-box".into(),
            ..PersistedState::default()
        },
    ));
    let stop = CancellationToken::new();
    let task = tokio::spawn(crate::renewal::run(shared, stop.clone()));
    let renewed = tokio::time::timeout(DEADLINE, async {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tick.tick().await;
            match read_record(&dir) {
                Ok(Some(r)) if r.issued_at_ms != record.issued_at_ms => return r,
                _ => {}
            }
        }
    })
    .await
    .expect("renewed within the deadline");
    stop.cancel();
    task.await.unwrap();
    assert!(renewed.not_after_ms > record.not_after_ms + 3_000_000);
    assert_eq!(renewed.enrolled_at_ms, record.enrolled_at_ms);
    let after = read_credentials(&dir).unwrap();
    assert_ne!(before.0, after.0);
    assert_ne!(before.1, after.1);
    // The renewed certificate works on the next connection.
    get_target(&run, &started.address).await.unwrap();
}

#[tokio::test]
async fn a_refused_token_says_why_and_writes_nothing() {
    let started = start(Duration::from_secs(3600)).await;
    let state = tempfile::tempdir().unwrap();
    let err = enrol_state_dir(options(&started, state.path(), "stale"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("the join token is expired"), "{err}");
    assert!(err.contains("droverctl tokens create"), "{err}");
    assert!(!identity::identity_dir(state.path()).exists());
    // And `run` against https:// without an identity says to enrol first.
    let coordinators = Coordinators::parse(&started.address).unwrap();
    let err = RunIdentity::resolve(state.path(), &coordinators, None, None, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("enrol first: drover-updater enroll"), "{err}");
}

fn simulation(started: &Started, ca: Certificate, count: usize) -> SimulationConfig {
    SimulationConfig {
        coordinator: Coordinators::parse(&started.address).unwrap(),
        coordinator_ca: Some(ca),
        count,
        groups: vec!["dev".into()],
        channel: "stable".into(),
        versions: vec!["1.0.0".into()],
        unhealthy_fraction: 0.0,
        broken_versions: Vec::new(),
        broken_on: None,
        install_time: None,
        id_prefix: "sim".into(),
        ramp_up: Duration::ZERO,
        recheck_interval: None,
        seed: 1,
        sample_interval: None,
        leaky_versions: Vec::new(),
    }
}

#[tokio::test]
async fn simulated_agents_enrol_in_memory_then_connect_with_mtls() {
    let mut started = start(Duration::from_secs(3600)).await;
    let ca_pem = certificate_pem(
        &fetch_pinned_ca(&started.address, started.pin)
            .await
            .unwrap(),
    );
    let stop = CancellationToken::new();
    let kept = tempfile::tempdir().unwrap();
    let fleet = tokio::spawn(run_enrolled(
        simulation(&started, Certificate::from_pem(&ca_pem), 20),
        Some(SimulatedEnrolment {
            token: GOOD_TOKEN.into(),
            keep_in: Some(kept.path().join("ids")),
        }),
        stop.clone(),
    ));
    let mut seen = std::collections::BTreeSet::new();
    tokio::time::timeout(DEADLINE, async {
        while seen.len() < 20 {
            seen.insert(started.hellos.recv().await.unwrap());
        }
    })
    .await
    .expect("every simulated agent said hello within the deadline");
    assert!(seen.contains("sim-00000") && seen.contains("sim-00019"));
    stop.cancel();
    tokio::time::timeout(DEADLINE, fleet)
        .await
        .unwrap()
        .unwrap();
    // Each agent's credentials were kept, privately, for the next run of the same fleet.
    let file = kept.path().join("ids/sim-00019.pem");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("CERTIFICATE") && text.contains("PRIVATE KEY"));

    // A refused token: every agent is skipped and the fleet ends by itself.
    let refused = run_enrolled(
        simulation(&started, Certificate::from_pem(&ca_pem), 3),
        Some(SimulatedEnrolment {
            token: "stale".into(),
            keep_in: None,
        }),
        CancellationToken::new(),
    );
    tokio::time::timeout(DEADLINE, refused).await.unwrap();
}
