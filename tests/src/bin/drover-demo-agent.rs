//! A tiny agent for tests and demos. It runs from an installed release directory
//! (`versions/<v>/bin/drover-demo-agent`), takes its version from `../VERSION`, and if a
//! `../BROKEN` file was shipped in the release it starts but reports itself unhealthy, the
//! way a bad release would. A `../LEAK` file (a number of MiB per second) makes it leak
//! memory while it stays healthy: the quiet failure only a health verdict catches.
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
    if let Some(mib_per_sec) = std::fs::read_to_string(dir.join("LEAK"))
        .ok()
        .and_then(|t| t.trim().parse::<usize>().ok())
    {
        tokio::spawn(leak(mib_per_sec));
    }
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

/// Grows the heap by `mib_per_sec` every second, touching every page so it is resident, up
/// to 256 MiB.
async fn leak(mib_per_sec: usize) {
    let mut kept: Vec<Vec<u8>> = Vec::new();
    while kept.len() < 256 {
        for _ in 0..mib_per_sec {
            kept.push(vec![1u8; 1 << 20]);
        }
        std::hint::black_box(&kept);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    std::future::pending::<()>().await
}
