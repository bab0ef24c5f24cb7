//! A tiny agent for tests and demos. It runs from an installed release directory
//! (`versions/<v>/bin/drover-demo-agent`), takes its version from `../VERSION`, and if a
//! `../BROKEN` file was shipped in the release it starts but reports itself unhealthy, the
//! way a bad release would.
#![forbid(unsafe_code)]

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use axum::{Router, http::StatusCode, routing::get};

fn release_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    exe.parent()
        .and_then(|bin| bin.parent())
        .expect("installed as <release>/bin/<name>")
        .to_path_buf()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let listen: SocketAddr = std::env::args()
        .skip_while(|a| a != "--listen")
        .nth(1)
        .and_then(|a| a.parse().ok())
        .expect("usage: drover-demo-agent --listen 127.0.0.1:PORT");
    let dir = release_dir();
    let version = std::fs::read_to_string(dir.join("VERSION"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    let broken = dir.join("BROKEN").exists();
    // The previous instance may still hold the port for a moment after a restart.
    let mut listener = None;
    for _ in 0..50 {
        match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => {
                listener = Some(l);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let listener = listener.expect("could not bind the agent's port within 5 s");
    eprintln!(
        "drover-demo-agent {version} listening on {listen}{}",
        if broken { " (broken)" } else { "" }
    );
    let health_version = version.clone();
    let app = Router::new()
        .route("/version", get(move || async move { version.clone() }))
        .route(
            "/healthz",
            get(move || async move {
                if broken {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("broken {health_version}"),
                    )
                } else {
                    (StatusCode::OK, format!("ok {health_version}"))
                }
            }),
        );
    axum::serve(listener, app).await.expect("serve");
}
