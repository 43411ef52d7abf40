//! Integration tests of `airlock-gguf` (one binary; each module's purpose is on its `mod` line).
#![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

/// Shared helpers: seeded RNG, the small valid fixture file, locating the default model.
mod common;
/// Each block type's decoder against a straightforward per-element reference, on random blocks.
mod dequant_reference;
/// One malformed file per error variant (writer + byte surgery), asserting the exact variant.
mod malformed;
/// Random truncations and byte mutations of a valid file: `Ok` or `Err`, never a panic.
mod mutation;
/// The real default model (SmolLM2-135M-Instruct Q4_1): parses, expected shape and types.
mod real_model;
/// Writer → reader round trips: every metadata value type, every tensor type, v2 and v3.
mod round_trip;
