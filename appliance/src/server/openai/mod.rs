//! The OpenAI-compatible inference API (ARCHITECTURE.md §4): request parsing and validation,
//! response and streaming shapes. Handlers and the scheduler that joins them to the engine
//! and the audit log live beside these.
pub mod embeddings;
pub mod handlers;
mod json;
pub mod logprobs;
pub mod request;
pub mod response;
pub mod tools;
