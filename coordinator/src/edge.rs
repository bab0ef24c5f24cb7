//! Where `DroverError` meets the transports: the only place an [`ErrorCode`] becomes a gRPC
//! code or an HTTP status. Both matches are exhaustive, so a new code forces a decision for
//! both. Messages come from `DroverError::client_message`, which never carries store,
//! driver or internal text.

use axum::http::StatusCode;
use tonic::Code;

use crate::error::{DroverError, ErrorCode};

pub fn grpc_code(code: ErrorCode) -> Code {
    match code {
        ErrorCode::InvalidArgument => Code::InvalidArgument,
        ErrorCode::NotFound => Code::NotFound,
        ErrorCode::FailedPrecondition => Code::FailedPrecondition,
        // A concurrent write won: retrying the whole operation is the right reaction.
        ErrorCode::Conflict => Code::Aborted,
        ErrorCode::Unauthenticated => Code::Unauthenticated,
        ErrorCode::PermissionDenied => Code::PermissionDenied,
        ErrorCode::Unavailable => Code::Unavailable,
        ErrorCode::Internal => Code::Internal,
    }
}

pub fn http_status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::FailedPrecondition | ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<DroverError> for tonic::Status {
    fn from(err: DroverError) -> Self {
        let mut status = tonic::Status::new(grpc_code(err.code()), err.client_message());
        if let Some(after) = err.retry_after() {
            with_pushback(&mut status, after);
        }
        status
    }
}

/// UNAVAILABLE "`what`; retry in 2 s", with the pushback the updater honours: the
/// coordinator sheds work it cannot take now.
pub fn busy(what: &str) -> tonic::Status {
    let after = drover_rules::retry::BUSY_RETRY_AFTER;
    let mut status = tonic::Status::unavailable(format!("{what}; retry in {} s", after.as_secs()));
    with_pushback(&mut status, after);
    status
}

fn with_pushback(status: &mut tonic::Status, after: std::time::Duration) {
    let ms = tonic::metadata::MetadataValue::from(after.as_millis() as u64);
    status
        .metadata_mut()
        .insert(drover_rules::retry::PUSHBACK_METADATA, ms);
}

impl axum::response::IntoResponse for DroverError {
    fn into_response(self) -> axum::response::Response {
        let body = axum::Json(serde_json::json!({ "error": self.client_message() }));
        let mut response = (http_status(self.code()), body).into_response();
        if let Some(after) = self.retry_after() {
            let secs = axum::http::HeaderValue::from(after.as_secs().max(1));
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ErrorId, StoreProblem};

    fn busy() -> DroverError {
        DroverError::StoreUnavailable {
            error_id: ErrorId::new(),
            problem: StoreProblem::Busy,
        }
    }

    #[test]
    fn busy_is_unavailable_with_a_pushback_on_both_transports() {
        let status = tonic::Status::from(busy());
        assert_eq!(status.code(), Code::Unavailable);
        let pushback = status
            .metadata()
            .get(drover_rules::retry::PUSHBACK_METADATA)
            .and_then(|v| v.to_str().ok())
            .and_then(drover_rules::retry::parse_pushback);
        assert_eq!(pushback, Some(drover_rules::retry::BUSY_RETRY_AFTER));

        use axum::response::IntoResponse;
        let response = busy().into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers()[axum::http::header::RETRY_AFTER],
            drover_rules::retry::BUSY_RETRY_AFTER.as_secs().to_string()
        );
    }
}
