//! Llama-family inference on burn with weights kept quantized.
//!
//! # Layers
//! * [`QWeight`] borrows a weight matrix from the memory-mapped GGUF, still encoded.
//! * [`kernels`]: fused decode-and-multiply kernels (portable reference, AVX2 chosen at run
//!   time) with rows split over rayon; [`ops`] plugs them into burn as a backend extension
//!   for flex.
//! * [`model`]: the `llama` architecture on burn tensors, batch-aware (each sequence has its
//!   own KV-cache slot and position), and `qwen2` (the same graph with Q/K/V biases and NEOX
//!   RoPE); [`config`] reads the hyper-parameters from metadata and describes each supported
//!   architecture ([`config::Architecture`]).
//! * [`sampling`], [`Batch`] (step-wise continuous batching), [`generate()`] (one prompt,
//!   streamed text, timing), [`Engine`] (model + tokenizer + chat template, `Send + Sync`).
//!
//! * [`device`]: the backend (flex on the CPU; with the `wgpu`/`cuda` features a cubecl GPU
//!   runtime, see `cube/`, which implements every extension op as CubeCL kernels).
//!
//! # Non-goals
//! No HTTP, no scheduling policy (the server builds that on [`Batch`]), no training, no
//! architectures other than `llama` and `qwen2` (others are refused by name), no bias tensor
//! the architecture's llama.cpp graph would add but ours does not (refused by name).
#![deny(unsafe_code)]

pub mod batch;
pub mod config;
pub mod constraint;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod cube;
pub mod device;
pub mod embed;
mod engine;
mod error;
pub mod fused;
pub mod fused_ffn;
pub mod generate;
pub mod kernels;
pub mod kv_cache;
pub mod logprobs;
pub mod model;
pub mod ops;
pub mod prefix;
mod qweight;
pub mod sampling;
pub mod step;
pub mod trace;
pub mod verify;

pub use airlock_gguf;
pub use airlock_tokenizer;
pub use batch::{Batch, FinishReason, SeqId, SeqRequest, StepToken};
pub use config::LlamaConfig;
pub use constraint::{TokenConstraint, TokenMask};
pub use device::{Backend, Probe};
pub use embed::Pooling;
pub use engine::{ChatPrompt, Engine, SelfCheck};
pub use error::{EngineError, Result};
pub use generate::{GenerateRequest, Generation, StopReason, Timing, generate};
pub use kv_cache::KvCache;
pub use logprobs::TokenLogprobs;
pub use model::{Llama, Logits, SeqInput};
pub use prefix::{CacheScope, PrefixCacheConfig};
pub use qweight::QWeight;
pub use sampling::{Sampler, SamplingParams};
