//! #22 item 4, over TLS: a connection counts for what its requests show, not for its bytes.
//! HTTP/2 connections that only answer pings, and HTTP/1.1 headers trickled a byte at a
//! time, are closed at the handshake timeout; anonymous connections cannot take the share
//! of the cap kept for updaters and admins.

use std::time::{Duration, Instant};

use drover_tests::{CoordinatorBuilder, droverctl_json, eventually, http, simulate, trust_for};
use serde_json::Value;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};

const HANDSHAKE_TIMEOUT_SECS: u64 = 2;

async fn connections(addr: std::net::SocketAddr) -> Value {
    let (status, body) = http(addr, "GET", "/api/v1/stats").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).expect("stats JSON")["connections"].clone()
}

/// A TLS connection to `addr` trusting the coordinator's CA.
async fn tls_to(
    addr: std::net::SocketAddr,
) -> impl AsyncRead + AsyncWrite + Unpin + Send + 'static {
    let tls = trust_for(&addr.to_string()).expect("the harness started it with TLS");
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
    drover_tests::tls_connector(&tls.ca_file)
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}

/// Writes `bytes` one at a time, a byte every 200 ms (the attack's pace), until the
/// server closes the connection; how long that took, or `None` if it outlasted `limit`.
async fn trickle(
    stream: impl AsyncRead + AsyncWrite + Unpin,
    bytes: &[u8],
    limit: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut pace = tokio::time::interval(Duration::from_millis(200));
    let mut next = bytes.iter().cycle();
    let mut heard = [0u8; 1024];
    let closed = async {
        loop {
            tokio::select! {
                _ = pace.tick() => {
                    let byte = [*next.next().expect("cycles")];
                    if writer.write_all(&byte).await.is_err() || writer.flush().await.is_err() {
                        return;
                    }
                }
                read = reader.read(&mut heard) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                },
            }
        }
    };
    tokio::time::timeout(limit, closed)
        .await
        .ok()
        .map(|()| started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_only_answer_pings_are_closed_at_the_handshake_timeout() {
    const IDLE: u64 = 20;
    let dir = tempfile::tempdir().unwrap();
    let c = CoordinatorBuilder::sqlite(dir.path())
        .arg("--handshake-timeout-secs")
        .arg(HANDSHAKE_TIMEOUT_SECS.to_string())
        .start()
        .await;
    let url = c.grpc_url();
    let _fleet = simulate(&url, dir.path(), &["--count", "1", "--id-prefix", "pings"]);

    // HTTP/2 connections that finish TLS and the HTTP/2 handshake, answer the server's
    // SETTINGS and pings, and never make a request.
    let mut silent = Vec::new();
    for _ in 0..IDLE {
        silent.push(c.channel().await);
    }
    let after = eventually(
        "connections without a request are closed",
        Duration::from_secs(HANDSHAKE_TIMEOUT_SECS + 15),
        async || {
            let stats = connections(c.addresses.http).await;
            (stats["timed_out"].as_u64().unwrap() >= IDLE).then_some(stats)
        },
    )
    .await;
    println!("after the handshake timeout: {after}");

    // The updater made its Hello and the admin its request: both stay.
    let summary = eventually(
        "the updater is connected",
        Duration::from_secs(20),
        async || {
            let summary = droverctl_json(&url, &["fleet", "summary"]).await;
            (summary["connected_agents"] == 1).then_some(summary)
        },
    )
    .await;
    assert_eq!(summary["total_agents"], 1, "{summary}");
    assert!(
        connections(c.addresses.http).await["trusted"]
            .as_u64()
            .unwrap()
            >= 1
    );
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_http_headers_are_timed_out() {
    let dir = tempfile::tempdir().unwrap();
    let c = CoordinatorBuilder::sqlite(dir.path())
        .arg("--handshake-timeout-secs")
        .arg(HANDSHAKE_TIMEOUT_SECS.to_string())
        .start()
        .await;
    let limit = Duration::from_secs(HANDSHAKE_TIMEOUT_SECS + 8);

    // A first request whose headers never end.
    let mut first = tls_to(c.addresses.http).await;
    first.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let closed = trickle(first, b"X-Slow: aaaaaaaa\r\n", limit)
        .await
        .expect("a first request trickled a byte at a time is closed");
    println!("trickled first request closed after {closed:?}");

    // A later request on a kept-alive connection, after a complete one.
    let mut kept = tls_to(c.addresses.http).await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: drover\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 512];
    let read = kept.read(&mut answer).await.expect("an answer");
    assert!(
        answer[..read].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer[..read])
    );
    let closed = trickle(kept, b"GET /healthz HTTP/1.1\r\nX-Slow: aaaa\r\n", limit)
        .await
        .expect("a later request trickled a byte at a time is closed");
    println!("trickled later request closed after {closed:?}");

    let stats = connections(c.addresses.http).await;
    assert!(stats["timed_out"].as_u64().unwrap() >= 1, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_connections_leave_updaters_and_admins_their_share() {
    const MAX: u64 = 40;
    let dir = tempfile::tempdir().unwrap();
    let c = CoordinatorBuilder::sqlite(dir.path())
        .arg("--max-connections")
        .arg(MAX.to_string())
        .arg("--handshake-timeout-secs")
        .arg("120")
        .start()
        .await;
    let url = c.grpc_url();

    // Every place taken by a kept-alive connection that made one request, without
    // credentials.
    let mut held = Vec::new();
    for _ in 0..MAX {
        let mut stream = tls_to(c.addresses.http).await;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: drover\r\n\r\n")
            .await
            .unwrap();
        let mut answer = [0u8; 512];
        let read = stream.read(&mut answer).await.expect("an answer");
        assert!(answer[..read].starts_with(b"HTTP/1.1 200"));
        held.push(stream);
    }

    // An admin and an updater still get in, each in place of one still counted pending.
    let asked = Instant::now();
    let summary = droverctl_json(&url, &["fleet", "summary"]).await;
    println!("droverctl answered in {:?}", asked.elapsed());
    assert_eq!(summary["total_agents"], 0, "{summary}");
    let _fleet = simulate(&url, dir.path(), &["--count", "1", "--id-prefix", "share"]);
    eventually(
        "the updater connects beside the anonymous connections",
        Duration::from_secs(20),
        async || {
            let summary = droverctl_json(&url, &["fleet", "summary"]).await;
            (summary["connected_agents"] == 1).then_some(())
        },
    )
    .await;
    let stats = connections(c.addresses.http).await;
    println!("{stats}");
    assert_eq!(stats["anonymous"], MAX - MAX / 4, "{stats}");
    assert!(stats["evicted"].as_u64().unwrap() >= 2, "{stats}");
    drop(held);
}
