//! Integration tests of the audit crate: one binary, one module per property.
//! Every test uses a real sled database in a temporary directory and real keys.

mod common;
/// SIGKILL during appends loses no acknowledged record; failing writes are refused cleanly.
mod crash;
/// Laws: verify(export(log)) holds for random logs; any single bit flip breaks it.
mod laws;
/// Sealed content: readable with the key, erased by crypto-shredding, chain intact.
mod sealed;
/// Concurrent appends, receipts, reopen and continuation.
mod store;
/// Every kind of tampering with an export or a state directory is detected at its seq.
mod tamper;
