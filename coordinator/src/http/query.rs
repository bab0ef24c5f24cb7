//! The query-string extractor every JSON route uses: a malformed or unknown parameter is
//! refused like every other bad request, as `{"error": ...}` with 400.

use axum::extract::Query;

use crate::error::DroverError;

/// `Query`, but a malformed or unknown parameter is an `{"error": ...}` 400 like every
/// other refusal, not axum's plain-text rejection.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S>
    for ApiQuery<T>
{
    type Rejection = DroverError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> std::result::Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| ApiQuery(value))
            .map_err(|rejection| DroverError::invalid(rejection.body_text()))
    }
}
