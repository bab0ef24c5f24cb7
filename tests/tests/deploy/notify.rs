//! systemd's readiness protocol, as `Type=notify` in deploy/systemd/drover-coordinator.service
//! relies on: the real coordinator, started with NOTIFY_SOCKET naming a Unix datagram socket
//! this test bound (standing in for systemd), sends READY=1 once it is ready (at that
//! moment /readyz answers 200) and STOPPING=1 when SIGTERM starts its shutdown.

use std::time::Duration;

use drover_tests::{CoordinatorBuilder, http};
use tokio::net::UnixDatagram;

/// Reads datagrams until one carries `line`; returns every line read so far.
async fn wait_for(socket: &UnixDatagram, line: &str, seen: &mut Vec<String>) {
    let mut buffer = vec![0u8; 4096];
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let len = socket.recv(&mut buffer).await.expect("recv");
            let text = String::from_utf8_lossy(&buffer[..len]).into_owned();
            let has = text.lines().any(|l| l == line);
            seen.extend(text.lines().map(str::to_string));
            if has {
                return;
            }
        }
    })
    .await;
    assert!(found.is_ok(), "no {line} within 30 s; received: {seen:?}");
}

#[tokio::test]
async fn coordinator_sends_ready_when_ready_and_stopping_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let coordinator = CoordinatorBuilder::sqlite(dir.path())
        .env("NOTIFY_SOCKET", path.to_str().unwrap())
        .start()
        .await;

    let mut seen = Vec::new();
    wait_for(&socket, "READY=1", &mut seen).await;
    // Ready was told only once the coordinator is ready: /readyz agrees at that moment
    // (a ready coordinator turns not ready only after two failed store probes).
    let (status, body) = http(coordinator.addresses.http, "GET", "/readyz").await;
    assert_eq!(status, 200, "READY=1 sent while /readyz said {body}");
    assert!(seen.contains(&"STATUS=ready".to_string()), "{seen:?}");
    let before_ready: Vec<_> = seen.iter().take_while(|l| *l != "READY=1").collect();
    assert!(
        before_ready.iter().all(|l| l.starts_with("STATUS=")),
        "{seen:?}"
    );

    let exit = coordinator.terminate().await;
    assert!(exit.success(), "{exit}");
    wait_for(&socket, "STOPPING=1", &mut seen).await;
    assert_eq!(
        seen.iter().filter(|l| *l == "READY=1").count(),
        1,
        "READY=1 once: {seen:?}"
    );
}
