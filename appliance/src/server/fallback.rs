//! Answers for requests no route takes: an unknown path (404) or method (405), in
//! OpenAI's error shape, echoing the request's method and path bounded.
use actix_web::{HttpRequest, HttpResponse};

use super::error::ApiError;
use super::metrics::method_label;

/// Longest part of a request path echoed in a 404.
const MAX_ECHOED_PATH: usize = 128;

/// Default service: unknown route. The method and path are echoed bounded (they are client
/// text of any length).
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let path = req.path();
    let cut = (0..=MAX_ECHOED_PATH.min(path.len()))
        .rev()
        .find(|&i| path.is_char_boundary(i))
        .unwrap_or(0);
    let path = if cut < path.len() {
        format!("{}…", &path[..cut])
    } else {
        path.to_owned()
    };
    Err(ApiError::NotFound {
        method: method_label(req.method()).to_owned(),
        path,
    })
}

pub async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed(
        method_label(req.method()).to_owned(),
    ))
}
