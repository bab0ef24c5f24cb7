//! Bearer-token authentication for the JSON API: `authorization: Bearer TOKEN`, checked
//! against the cached credentials (no store read). No or an unknown token is 401; a role
//! below the route's is 403 naming the role needed.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use drover_rules::AdminRole;

use crate::{error::DroverError, fleet::Fleet};

type Needs = (Arc<Fleet>, AdminRole);
type Check = fn(
    State<Needs>,
    Request,
    Next,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>>;

/// A layer admitting callers whose role allows `needed`.
pub fn require(
    fleet: Arc<Fleet>,
    needed: AdminRole,
) -> middleware::FromFnLayer<Check, Needs, (State<Needs>, Request)> {
    middleware::from_fn_with_state((fleet, needed), |state, request, next| {
        Box::pin(check(state, request, next))
    })
}

/// Leaves the caller's `Arc<Identity>` in the request for handlers that act in its name.
async fn check(State((fleet, needed)): State<Needs>, mut request: Request, next: Next) -> Response {
    let header = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .map(|value| value.as_bytes());
    match fleet.admins().authenticate(header) {
        Ok(identity) if identity.role.allows(needed) => {
            // A valid token: this connection keeps its place in the reserved share.
            if let Some(conn) = request.extensions().get::<crate::listener::Conn>() {
                conn.trusted();
            }
            request.extensions_mut().insert(identity);
            next.run(request).await
        }
        Ok(identity) => DroverError::PermissionDenied(format!(
            "this route needs the {needed} role; '{}' has the {} role",
            identity.name, identity.role
        ))
        .into_response(),
        Err(err) => err.into_response(),
    }
}
