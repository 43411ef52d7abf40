//! Integration tests of airlock-bundle: real ed25519 signatures, real tar streams,
//! real files in a temporary state directory.
mod common;

/// The malicious-bundle suite: one test per attack, each asserting the specific error,
/// that staging is gone and that nothing was installed or activated.
mod attacks;
/// Install, activate, rollback, anti-rollback marks, bounded memory.
mod lifecycle;
/// Publisher tools: create, sign (duplicate refused), verify.
mod publisher;
