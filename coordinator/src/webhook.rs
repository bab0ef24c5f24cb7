//! Webhook alerts: a JSON post to every `--webhook URL` when a rollout starts, halts,
//! finishes or rolls back, and when an agent enrols into a group a rollout is updating.
//!
//! The fleet only enqueues, after the transition committed ([`AlertQueue::push`]: a lock and
//! a push, never I/O), so a slow or failing receiver can never slow a rollout. One
//! supervised task delivers, each receiver from its own bounded queue (a dead receiver
//! delays only its own alerts); each post is bounded by a timeout and retried with capped
//! exponential backoff and jitter. A full queue drops its oldest alert and counts it. Alerts still queued at shutdown are
//! lost (they are alerts, not the record: the events in the store are).

use std::{collections::VecDeque, path::Path, sync::Arc, time::Duration};

use parking_lot::Mutex;
use rand::Rng;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    error::{DroverError, Result},
    metrics::Metrics,
};

/// Alerts waiting for delivery before the oldest is dropped.
const QUEUE_CAP: usize = 1024;
const ATTEMPTS: u32 = 5;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    RolloutStarted,
    RolloutHalted,
    RolloutDone,
    RolloutRolledBack,
    /// An agent enrolled into a group the rollout was updating (`joined_after_start`).
    EnrolledDuringRollout,
}

/// The JSON body of one post.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RolloutAlert {
    pub kind: AlertKind,
    pub rollout_id: String,
    pub channel: String,
    pub from: String,
    pub to: String,
    /// RFC 3339, on the rollout clock.
    pub at: String,
    /// A reason code where one applies (`group_halted`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The bounded queues between the fleet and the delivery task, one per receiver (a dead
/// receiver delays only its own alerts). Disabled (pushes are ignored) until webhooks are
/// configured.
pub struct AlertQueue {
    lanes: Mutex<Vec<VecDeque<RolloutAlert>>>,
    ready: Notify,
    metrics: Arc<Metrics>,
}

impl AlertQueue {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            lanes: Mutex::new(Vec::new()),
            ready: Notify::new(),
            metrics,
        }
    }

    /// One queue per receiver; kept if already there (a restarted delivery task).
    pub fn enable(&self, receivers: usize) {
        let mut lanes = self.lanes.lock();
        if lanes.len() != receivers {
            lanes.resize_with(receivers, VecDeque::new);
        }
    }

    /// Never blocks on delivery: a full queue drops its oldest alert.
    pub fn push(&self, alert: RolloutAlert) {
        let mut lanes = self.lanes.lock();
        if lanes.is_empty() {
            return;
        }
        tracing::info!(kind = ?alert.kind, rollout = %alert.rollout_id, "webhook alert queued");
        for lane in lanes.iter_mut() {
            if lane.len() >= QUEUE_CAP {
                lane.pop_front();
                self.metrics.webhook_dropped();
            }
            lane.push_back(alert.clone());
        }
        drop(lanes);
        self.ready.notify_waiters();
    }

    async fn next(&self, lane: usize) -> RolloutAlert {
        loop {
            // Enabled before the check, so a push in between is not missed.
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(alert) = self
                .lanes
                .lock()
                .get_mut(lane)
                .and_then(VecDeque::pop_front)
            {
                return alert;
            }
            notified.await;
        }
    }
}

/// The receivers and the client that posts to them (built once, at start-up).
#[derive(Clone)]
pub struct Webhooks {
    urls: Vec<reqwest::Url>,
    client: reqwest::Client,
}

impl Webhooks {
    /// Checks the URLs (http or https) and builds the client: system roots, plus the PEM
    /// certificates in `ca_file` if given. `None` when no URL is given.
    pub fn new(urls: &[String], ca_file: Option<&Path>) -> Result<Option<Self>> {
        if urls.is_empty() {
            if ca_file.is_some() {
                return Err(DroverError::invalid(
                    "--webhook-ca-file needs at least one --webhook URL; add one or drop the flag",
                ));
            }
            return Ok(None);
        }
        let mut parsed = Vec::new();
        for url in urls {
            let bad = |why: String| {
                DroverError::invalid(format!(
                    "--webhook '{url}' {why}; give an http:// or https:// URL"
                ))
            };
            let url =
                reqwest::Url::parse(url).map_err(|err| bad(format!("is not a URL ({err})")))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(bad("is not an http or https URL with a host".into()));
            }
            parsed.push(url);
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = ca_file {
            let pem = std::fs::read(path).map_err(|err| {
                DroverError::invalid(format!(
                    "cannot read --webhook-ca-file {} ({err}); give a readable PEM file",
                    path.display()
                ))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|err| {
                DroverError::invalid(format!(
                    "--webhook-ca-file {} holds no usable PEM certificate ({err}); give the \
                     receivers' CA in PEM",
                    path.display()
                ))
            })?;
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder.build().map_err(|err| {
            DroverError::Internal(format!("cannot build the webhook HTTP client: {err}"))
        })?;
        Ok(Some(Self {
            urls: parsed,
            client,
        }))
    }

    pub fn receivers(&self) -> usize {
        self.urls.len()
    }

    /// The delivery task's body (run under the supervisor; the queues outlive restarts):
    /// each receiver's alerts in order, receivers independently.
    pub async fn run(self, queue: Arc<AlertQueue>, shutdown: CancellationToken) {
        queue.enable(self.urls.len());
        let this = &self;
        let lanes = self.urls.iter().enumerate().map(|(lane, url)| {
            let queue = queue.clone();
            async move {
                loop {
                    let alert = queue.next(lane).await;
                    this.deliver(url, &alert, &queue.metrics).await;
                }
            }
        });
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = futures::future::join_all(lanes) => {}
        }
    }

    async fn deliver(&self, url: &reqwest::Url, alert: &RolloutAlert, metrics: &Metrics) {
        for attempt in 0..ATTEMPTS {
            let outcome = match self.client.post(url.clone()).json(alert).send().await {
                Ok(response) if response.status().is_success() => Ok(()),
                Ok(response) => Err(format!("answered {}", response.status())),
                Err(err) => Err(err.without_url().to_string()),
            };
            let Err(why) = outcome else {
                metrics.webhook_delivery("delivered");
                return;
            };
            if attempt + 1 == ATTEMPTS {
                metrics.webhook_delivery("failed");
                tracing::warn!(%url, kind = ?alert.kind, rollout = %alert.rollout_id, error = %why,
                    "webhook alert not delivered after {ATTEMPTS} attempts; dropping it");
                return;
            }
            metrics.webhook_delivery("retried");
            let wait = backoff(attempt);
            tracing::info!(%url, error = %why, retry_in_ms = wait.as_millis() as u64, "webhook post failed; retrying");
            tokio::time::sleep(wait).await;
        }
    }
}

/// Capped exponential backoff with jitter: half the step fixed, half random.
fn backoff(attempt: u32) -> Duration {
    let step = FIRST_BACKOFF
        .saturating_mul(2u32.saturating_pow(attempt))
        .min(MAX_BACKOFF);
    let half = step / 2;
    half + half.mul_f64(rand::rng().random_range(0.0..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(0) <= FIRST_BACKOFF && backoff(0) >= FIRST_BACKOFF / 2);
        assert!(backoff(20) <= MAX_BACKOFF && backoff(20) >= MAX_BACKOFF / 2);
    }

    #[test]
    fn a_full_queue_drops_the_oldest() {
        let queue = AlertQueue::new(Arc::new(Metrics::new()));
        let alert = |id: usize| RolloutAlert {
            kind: AlertKind::RolloutStarted,
            rollout_id: format!("r-{id}"),
            channel: "c".into(),
            from: "1.0.0".into(),
            to: "1.1.0".into(),
            at: "2026-01-01T00:00:00Z".into(),
            reason: None,
            detail: None,
        };
        queue.push(alert(0));
        assert!(queue.lanes.lock().is_empty(), "ignored until enabled");
        queue.enable(2);
        for id in 0..=QUEUE_CAP {
            queue.push(alert(id));
        }
        let lanes = queue.lanes.lock().clone();
        for held in lanes {
            assert_eq!(held.len(), QUEUE_CAP);
            assert_eq!(held[0].rollout_id, "r-1");
        }
    }
}
