//! A tower layer on the gRPC server that times each call by method (a fixed set of RPC
//! names) and code, for `drover_grpc_request_seconds`. Cheap: one clock read and a label
//! lookup per call. The time is to the response headers: the whole call for a unary RPC
//! that fails (trailers-only), the stream's opening for `Session`; a code sent in trailers
//! after a body is not seen, so such calls count as `ok`.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use axum::http::{Request, Response};

use crate::metrics::{GrpcLabels, Metrics};

/// Every RPC Drover serves; anything else is `other`, so a client making up method names
/// makes no series.
const METHODS: &[&str] = &[
    "Session",
    "GetTarget",
    "Enroll",
    "Renew",
    "ListAgents",
    "GetAgent",
    "GetFleetSummary",
    "ListChannels",
    "SetChannelVersion",
    "SetChannelCritical",
    "GetControlPlaneVersion",
    "SetControlPlaneVersion",
    "ListSchedules",
    "SetSchedule",
    "ClearSchedule",
    "CreateRollout",
    "PlanRollout",
    "GetRolloutStatus",
    "ListRollouts",
    "PauseRollout",
    "ResumeRollout",
    "StartGroup",
    "MarkGroupDone",
    "Rollback",
    "ReleaseStratum",
    "PinAgent",
    "UnpinAgent",
    "ExplainAgent",
    "ListEvents",
    "ListAudit",
    "GetRollout",
    "GetAgentHistory",
    "CreateAdminCredential",
    "ListAdminCredentials",
    "RevokeAdminCredential",
    "CreateJoinToken",
    "ListJoinTokens",
    "RevokeJoinToken",
    "ListAgentIdentities",
    "RevokeAgent",
    "Check",
    "Watch",
    "ServerReflectionInfo",
];

const CODES: &[&str] = &[
    "ok",
    "cancelled",
    "unknown",
    "invalid_argument",
    "deadline_exceeded",
    "not_found",
    "already_exists",
    "permission_denied",
    "resource_exhausted",
    "failed_precondition",
    "aborted",
    "out_of_range",
    "unimplemented",
    "internal",
    "unavailable",
    "data_loss",
    "unauthenticated",
];

#[derive(Clone)]
pub struct TimingLayer {
    metrics: Arc<Metrics>,
}

impl TimingLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> tower_layer::Layer<S> for TimingLayer {
    type Service = Timing<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timing {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Timing<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, RB> tower_service::Service<Request<B>> for Timing<S>
where
    S: tower_service::Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    RB: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let method = method_of(request.uri().path());
        let started = Instant::now();
        let call = self.inner.call(request);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let result = call.await;
            let code = match &result {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<usize>().ok())
                    .map_or("ok", |n| CODES.get(n).copied().unwrap_or("unknown")),
                Err(_) => "unknown",
            };
            metrics.grpc(GrpcLabels { method, code }, started.elapsed());
            result
        })
    }
}

/// `/drover.v1.UpdaterService/Session` → `Session`; unknown → `other`.
fn method_of(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or_default();
    METHODS
        .iter()
        .copied()
        .find(|m| *m == name)
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_known_methods_are_labels() {
        assert_eq!(
            super::method_of("/drover.v1.UpdaterService/Session"),
            "Session"
        );
        assert_eq!(super::method_of("/x.Y/Made-Up-123"), "other");
        assert_eq!(super::CODES[16], "unauthenticated");
    }
}
