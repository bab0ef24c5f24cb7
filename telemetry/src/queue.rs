//! The span processor between the program and the exporter: a bounded queue drained by
//! one thread of its own. `on_end` never blocks: a full queue drops the span and counts
//! it, and so does a batch whose export fails or outlives its timeout, so a missing or
//! slow collector costs the program nothing but lost spans (which `dropped` tells).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc as std_mpsc,
    },
    thread::JoinHandle,
    time::Duration,
};

use opentelemetry::Context;
use opentelemetry_sdk::{
    Resource,
    error::{OTelSdkError, OTelSdkResult},
    trace::{Span, SpanData, SpanExporter, SpanProcessor},
};
use tokio::sync::mpsc;

/// Bounds of the queue and of each export.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueConfig {
    pub max_queue: usize,
    pub max_batch: usize,
    /// How long a span may wait in the queue before its batch is sent.
    pub delay: Duration,
    pub export_timeout: Duration,
}

impl QueueConfig {
    /// The defaults, overridden by the SDK's standard `OTEL_BSP_SCHEDULE_DELAY`,
    /// `OTEL_BSP_EXPORT_TIMEOUT` (milliseconds), `OTEL_BSP_MAX_QUEUE_SIZE` and
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`; unreadable values are ignored.
    pub(crate) fn from_env(env: impl Fn(&str) -> Option<String>) -> Self {
        let number = |name: &str| env(name).and_then(|v| v.trim().parse::<u64>().ok());
        let millis = |name: &str| number(name).map(Duration::from_millis);
        let default = Self::default();
        let max_queue = number("OTEL_BSP_MAX_QUEUE_SIZE").map_or(default.max_queue, |n| n as usize);
        Self {
            max_queue: max_queue.max(1),
            max_batch: number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")
                .map_or(default.max_batch, |n| n as usize)
                .clamp(1, max_queue.max(1)),
            delay: millis("OTEL_BSP_SCHEDULE_DELAY")
                .unwrap_or(default.delay)
                .max(Duration::from_millis(1)),
            export_timeout: millis("OTEL_BSP_EXPORT_TIMEOUT")
                .unwrap_or(default.export_timeout)
                .max(Duration::from_millis(1)),
        }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            max_queue: 2048,
            max_batch: 512,
            delay: Duration::from_secs(5),
            export_timeout: Duration::from_secs(10),
        }
    }
}

enum Control {
    Resource(Resource),
    Flush(std_mpsc::SyncSender<()>),
    Shutdown(std_mpsc::SyncSender<()>),
}

#[derive(Debug)]
pub(crate) struct QueueProcessor {
    spans: mpsc::Sender<SpanData>,
    control: mpsc::UnboundedSender<Control>,
    dropped: Arc<AtomicU64>,
    held: parking_lot::Mutex<crate::held::Held>,
    worker: parking_lot::Mutex<Option<JoinHandle<()>>>,
    flush_timeout: Duration,
}

impl QueueProcessor {
    /// Starts the export thread; `build` makes the exporter inside its runtime (the tonic
    /// and reqwest clients spawn onto the runtime they are built in).
    pub(crate) fn start<E, F>(
        config: QueueConfig,
        dropped: Arc<AtomicU64>,
        build: F,
    ) -> Result<Self, String>
    where
        E: SpanExporter + 'static,
        F: FnOnce() -> Result<E, String> + Send + 'static,
    {
        let (spans, spans_rx) = mpsc::channel(config.max_queue.max(1));
        let (control, control_rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std_mpsc::sync_channel(1);
        let counter = dropped.clone();
        let worker = std::thread::Builder::new()
            .name("drover-span-export".into())
            .spawn(move || {
                // The exporter's own HTTP/gRPC work must never make spans of its own.
                let _suppressed = Context::enter_telemetry_suppressed_scope();
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        let _ = ready_tx.send(Err(format!("cannot start a runtime: {err}")));
                        return;
                    }
                };
                let exporter = {
                    let _entered = runtime.enter();
                    build()
                };
                let exporter = match exporter {
                    Ok(exporter) => {
                        let _ = ready_tx.send(Ok(()));
                        exporter
                    }
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                        return;
                    }
                };
                runtime.block_on(drain(exporter, spans_rx, control_rx, config, counter));
            })
            .map_err(|err| format!("cannot start the span export thread: {err}"))?;
        ready_rx.recv().map_err(|_| {
            "the span export thread stopped while starting (see the panic above)".to_string()
        })??;
        Ok(Self {
            spans,
            control,
            dropped,
            held: parking_lot::Mutex::default(),
            worker: parking_lot::Mutex::new(Some(worker)),
            flush_timeout: config.export_timeout + Duration::from_secs(1),
        })
    }

    fn enqueue(&self, span: SpanData) {
        // Full (a slow collector) or closed (after shutdown): the span is lost, and counted.
        if self.spans.try_send(span).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends a control message and waits for its answer at most `timeout`.
    fn ask(
        &self,
        make: fn(std_mpsc::SyncSender<()>) -> Control,
        timeout: Duration,
    ) -> OTelSdkResult {
        let (reply, answer) = std_mpsc::sync_channel(1);
        self.control
            .send(make(reply))
            .map_err(|_| OTelSdkError::AlreadyShutdown)?;
        answer.recv_timeout(timeout).map_err(|err| match err {
            std_mpsc::RecvTimeoutError::Timeout => OTelSdkError::Timeout(timeout),
            std_mpsc::RecvTimeoutError::Disconnected => OTelSdkError::AlreadyShutdown,
        })
    }
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if span.span_context.is_sampled() {
            self.enqueue(span);
            return;
        }
        // Recorded, not sampled: held until its attempt is known to have failed.
        let released = self.held.lock().offer(span);
        for span in released {
            self.enqueue(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.ask(Control::Flush, self.flush_timeout)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.ask(Control::Shutdown, timeout)?;
        // Answered: the thread is leaving. Unanswered, it is left behind (never waited for).
        if let Some(worker) = self.worker.lock().take() {
            let _ = worker.join();
        }
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        let _ = self.control.send(Control::Resource(resource.clone()));
    }
}

async fn drain<E: SpanExporter>(
    mut exporter: E,
    mut spans: mpsc::Receiver<SpanData>,
    mut control: mpsc::UnboundedReceiver<Control>,
    config: QueueConfig,
    dropped: Arc<AtomicU64>,
) {
    let mut batch = Vec::with_capacity(config.max_batch);
    let mut tick = tokio::time::interval(config.delay);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut drops = DropWarning::default();
    loop {
        tokio::select! {
            // Control first, so the resource is set before the first export.
            biased;
            message = control.recv() => match message {
                Some(Control::Resource(resource)) => exporter.set_resource(&resource),
                Some(Control::Flush(reply)) => {
                    flush_all(&exporter, &mut spans, &mut batch, &config, &dropped).await;
                    let _ = reply.send(());
                }
                Some(Control::Shutdown(reply)) => {
                    spans.close();
                    flush_all(&exporter, &mut spans, &mut batch, &config, &dropped).await;
                    let _ = exporter.shutdown_with_timeout(config.export_timeout);
                    let _ = reply.send(());
                    return;
                }
                None => return,
            },
            span = spans.recv() => {
                let Some(span) = span else { return };
                batch.push(span);
                if batch.len() >= config.max_batch {
                    export(&exporter, &mut batch, &config, &dropped).await;
                }
            }
            _ = tick.tick() => {
                export(&exporter, &mut batch, &config, &dropped).await;
                drops.warn_if_new(dropped.load(Ordering::Relaxed), std::time::Instant::now());
            }
        }
    }
}

/// Lost spans are said in the log, at most once a minute: without it a collector that is
/// down loses every span silently.
#[derive(Debug, Default)]
struct DropWarning {
    told: u64,
    at: Option<std::time::Instant>,
}

impl DropWarning {
    const EVERY: Duration = Duration::from_secs(60);

    /// Whether it warned (tests).
    fn warn_if_new(&mut self, total: u64, now: std::time::Instant) -> bool {
        let due = self
            .at
            .is_none_or(|at| now.duration_since(at) >= Self::EVERY);
        if total <= self.told || !due {
            return false;
        }
        tracing::warn!(
            dropped_spans = total,
            new = total - self.told,
            "spans were dropped: the OTLP collector is unreachable, slow or refusing them; check OTEL_EXPORTER_OTLP_ENDPOINT (updates are not affected)"
        );
        self.told = total;
        self.at = Some(now);
        true
    }
}

async fn flush_all<E: SpanExporter>(
    exporter: &E,
    spans: &mut mpsc::Receiver<SpanData>,
    batch: &mut Vec<SpanData>,
    config: &QueueConfig,
    dropped: &AtomicU64,
) {
    while let Ok(span) = spans.try_recv() {
        batch.push(span);
        if batch.len() >= config.max_batch {
            export(exporter, batch, config, dropped).await;
        }
    }
    export(exporter, batch, config, dropped).await;
}

/// Exports and empties `batch`; a failed or timed-out export counts its spans as dropped.
async fn export<E: SpanExporter>(
    exporter: &E,
    batch: &mut Vec<SpanData>,
    config: &QueueConfig,
    dropped: &AtomicU64,
) {
    if batch.is_empty() {
        return;
    }
    let spans = std::mem::take(batch);
    let count = spans.len() as u64;
    match tokio::time::timeout(config.export_timeout, exporter.export(spans)).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) | Err(_) => {
            dropped.fetch_add(count, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests;
