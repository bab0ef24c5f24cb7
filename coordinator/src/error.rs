//! One error type for the whole coordinator, mapped to both gRPC and HTTP codes.
//!
//! Policy: every error a caller can see says what went wrong *and what to do*. Validation
//! errors change nothing. Store errors are logged with their cause and surfaced as
//! `Unavailable` (retry later) without leaking SQL.

use tonic::Code;

#[derive(Debug, thiserror::Error)]
pub enum DroverError {
    /// The request itself is wrong; retrying it unchanged will fail again.
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    /// The request is well formed but the system's state forbids it (e.g. a version constraint).
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unauthenticated(String),
    /// The store could not be reached or refused the operation; nothing was changed.
    #[error("the store is unavailable: {0}; nothing was changed, retry shortly")]
    StoreUnavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = DroverError> = std::result::Result<T, E>;

impl DroverError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidArgument(msg.into())
    }

    pub fn grpc_code(&self) -> Code {
        match self {
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::NotFound(_) => Code::NotFound,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::StoreUnavailable(_) => Code::Unavailable,
            Self::Internal(_) => Code::Internal,
        }
    }

    pub fn http_status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            Self::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::FailedPrecondition(_) => StatusCode::CONFLICT,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<DroverError> for tonic::Status {
    fn from(err: DroverError) -> Self {
        tonic::Status::new(err.grpc_code(), err.to_string())
    }
}

impl axum::response::IntoResponse for DroverError {
    fn into_response(self) -> axum::response::Response {
        let body = axum::Json(serde_json::json!({ "error": self.to_string() }));
        (self.http_status(), body).into_response()
    }
}

impl From<sqlx::Error> for DroverError {
    fn from(err: sqlx::Error) -> Self {
        tracing::error!(error = %err, "store operation failed");
        match err {
            sqlx::Error::RowNotFound => Self::NotFound("no such record".into()),
            other => Self::StoreUnavailable(other.to_string()),
        }
    }
}
