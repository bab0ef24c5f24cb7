//! Admin-command and API-read latency during a storm's phase (`storm.rs`): an admin write
//! on another channel and an authenticated agent-list read, each sampled back to back.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use drover_proto::v1 as pb;
use drover_tests::{CoordinatorProcess, admin_request};
use serde_json::json;

use crate::{ms, stats};

/// An admin client over the harness's channel.
pub type Admin = pb::admin_service_client::AdminServiceClient<tonic::transport::Channel>;

/// Admin-command and API-read latency, sampled back to back while a phase runs.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    admin: tokio::task::JoinHandle<Vec<Duration>>,
    read: tokio::task::JoinHandle<Vec<Duration>>,
}

pub struct Samples {
    admin: Vec<Duration>,
    read: Vec<Duration>,
}

impl Sampler {
    pub fn start(coordinator: &CoordinatorProcess, mut admin: Admin) -> Self {
        let url = coordinator.grpc_url();
        let stop = Arc::new(AtomicBool::new(false));
        let admin_stop = stop.clone();
        let admin = tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut critical = false;
            while !admin_stop.load(Ordering::Relaxed) {
                critical = !critical;
                let t = Instant::now();
                // An admin write on another channel: it must not queue behind the storm.
                let request = pb::SetChannelCriticalRequest {
                    name: "other".into(),
                    critical,
                    ..Default::default()
                };
                let _ = admin
                    .set_channel_critical(admin_request(&url, request))
                    .await;
                samples.push(t.elapsed());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            samples
        });
        let http = coordinator.addresses.http;
        let read_stop = stop.clone();
        let read = tokio::spawn(async move {
            let mut samples = Vec::new();
            while !read_stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let _ = drover_tests::http(http, "GET", "/api/v1/agents?limit=50&group=prod").await;
                samples.push(t.elapsed());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            samples
        });
        Self { stop, admin, read }
    }

    pub async fn stop(self) -> Samples {
        self.stop.store(true, Ordering::Relaxed);
        Samples {
            admin: self.admin.await.unwrap_or_default(),
            read: self.read.await.unwrap_or_default(),
        }
    }
}

impl Samples {
    fn summary(samples: &[Duration]) -> (usize, Duration, Duration) {
        let mut s = samples.to_vec();
        let n = s.len();
        (
            n,
            stats::percentile(&mut s, 50.0),
            stats::percentile(&mut s, 99.0),
        )
    }

    pub fn admin_json(&self) -> serde_json::Value {
        let (n, p50, p99) = Self::summary(&self.admin);
        json!({ "samples": n, "p50_ms": ms(p50), "p99_ms": ms(p99) })
    }

    pub fn read_json(&self) -> serde_json::Value {
        let (n, p50, p99) = Self::summary(&self.read);
        json!({ "samples": n, "p50_ms": ms(p50), "p99_ms": ms(p99) })
    }

    pub fn text(&self) -> String {
        let (an, a50, a99) = Self::summary(&self.admin);
        let (rn, r50, r99) = Self::summary(&self.read);
        format!(
            "admin command p50 {:.1} ms p99 {:.1} ms ({an} samples), API read p50 {:.1} ms p99 {:.1} ms ({rn} samples)",
            ms(a50),
            ms(a99),
            ms(r50),
            ms(r99)
        )
    }
}
