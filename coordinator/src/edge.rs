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
        tonic::Status::new(grpc_code(err.code()), err.client_message())
    }
}

impl axum::response::IntoResponse for DroverError {
    fn into_response(self) -> axum::response::Response {
        let body = axum::Json(serde_json::json!({ "error": self.client_message() }));
        (http_status(self.code()), body).into_response()
    }
}
