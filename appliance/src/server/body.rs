//! Request bodies read into memory, bounded by the policy.
use actix_web::web::{self, Bytes};
use futures_util::StreamExt;

use super::error::ApiError;
use super::state::AppState;

/// Reads a request body, refusing it past `limits.max_body_bytes` (chunked bodies have no
/// declared length for the middleware pre-check to see).
pub async fn read_body(state: &AppState, mut payload: web::Payload) -> Result<Bytes, ApiError> {
    let limit = state.policy.limits.max_body_bytes;
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| ApiError::BadRequest {
            message: "could not read the request body".into(),
            param: None,
        })?;
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
