//! Webhook receivers for the tests: an HTTP one (axum) that answers as told, and an HTTPS
//! one with its own CA, each recording every JSON body posted to it.

use std::{sync::Arc, time::Duration};

use axum::{Json, Router, extract::State, http::StatusCode, routing::post};
use parking_lot::Mutex;
use serde_json::Value;

#[derive(Clone, Copy)]
pub enum Behaviour {
    Answer,
    /// 500 to the first N posts, then 200.
    FailFirst(usize),
    Always500,
    /// Accepts the request and never answers.
    Hang,
}

#[derive(Clone)]
pub struct Receiver {
    behaviour: Behaviour,
    /// Every post that arrived (answered or not), in order.
    pub posts: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    pub async fn start(behaviour: Behaviour) -> (Self, String) {
        let receiver = Self {
            behaviour,
            posts: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    pub fn kinds(&self) -> Vec<String> {
        self.posts
            .lock()
            .iter()
            .map(|p| p["kind"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    pub async fn wait_for(&self, kind: &str) -> Value {
        crate::eventually(
            &format!("a {kind} post"),
            Duration::from_secs(60),
            async || {
                let posts = self.posts.lock();
                posts.iter().find(|p| p["kind"] == kind).cloned()
            },
        )
        .await
    }
}

async fn receive(State(r): State<Receiver>, Json(body): Json<Value>) -> StatusCode {
    let seen = {
        let mut posts = r.posts.lock();
        posts.push(body);
        posts.len()
    };
    match r.behaviour {
        Behaviour::Answer => StatusCode::NO_CONTENT,
        Behaviour::FailFirst(n) if seen <= n => StatusCode::INTERNAL_SERVER_ERROR,
        Behaviour::FailFirst(_) => StatusCode::OK,
        Behaviour::Always500 => StatusCode::INTERNAL_SERVER_ERROR,
        Behaviour::Hang => std::future::pending().await,
    }
}

/// An HTTPS receiver with its own CA (written to a PEM file): records each posted JSON body
/// and answers 200. Returns (posts, URL, CA file).
pub async fn https_receiver(dir: &std::path::Path) -> (Arc<Mutex<Vec<Value>>>, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_params = || {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
    };
    let ca = ca_params().self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params(), &ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let ca_file = dir.join("receiver-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let key = rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/hook", listener.local_addr().unwrap());
    let posts: Arc<Mutex<Vec<Value>>> = Arc::default();
    let seen = posts.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut bytes = Vec::new();
                let mut buf = [0u8; 4096];
                // One request per connection: headers, then Content-Length bytes of body.
                loop {
                    let Ok(n) = tls.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    bytes.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&bytes).to_string();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let length = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        seen.lock()
                            .push(serde_json::from_str(body).unwrap_or(Value::Null));
                        let ok =
                            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                        let _ = tls.write_all(ok.as_bytes()).await;
                        let _ = tls.shutdown().await;
                        return;
                    }
                }
            });
        }
    });
    (posts, url, ca_file.to_str().unwrap().to_string())
}
