//! Airlock policy file (filled in by the service-shell issue).
#![forbid(unsafe_code)]
