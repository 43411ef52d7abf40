//! The per-request id: random, generated here, never taken from the client.
use actix_web::http::header::HeaderName;
use ring::rand::{SecureRandom, SystemRandom};

/// Header carrying the request id on every response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A per-request random id (128 bits, hex), in the request extensions and the
/// `x-request-id` response header. Generated here, never taken from the client, so log
/// and audit correlation cannot be spoofed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    pub(crate) fn generate() -> RequestId {
        let mut bytes = [0u8; 16];
        // The OS RNG failing is not recoverable; a zero id would still be unique enough
        // for a response header, and we never use it for security.
        let _ = SystemRandom::new().fill(&mut bytes);
        RequestId(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }
}
