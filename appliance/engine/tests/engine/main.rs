//! Integration tests of the engine.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

/// Continuous batching: sequences joining and leaving match their solo runs.
mod batch;
/// Chunk invariance: logits are bitwise the same however a sequence is split into chunks.
mod chunking;
/// Helpers: seeded RNG, synthetic GGUF writer, default model and reference data.
mod common;
/// The fused feed-forward op: bitwise the tensor ops it replaces, and token-invariant.
mod ffn;
/// Real default model against llama.cpp's reference outputs (greedy ids, teacher-forced logits).
mod fidelity;
/// A GPU backend against flex: same logits and greedy tokens (features `wgpu`, `cuda`).
#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod gpu;
/// SIMD kernels against the portable code and an f64 reference on random rows of every type.
mod kernels;
/// Synthetic models of each quantization type (Q4_K_M, ...) against llama.cpp's logits.
mod kquant_fidelity;
/// K-quant kernels with 8-bit super-block activations: SIMD bitwise against the scalar twin.
mod kquant_kernels;
/// The prefix cache: resumed requests match cold runs bit for bit; scopes; eviction.
mod prefix;
/// Models the engine must refuse, with the key or tensor named.
mod refusals;
/// Synthetic GGUF models against a naive f64 forward pass (GQA 1/3/4, tied/untied, all types).
mod synthetic;
