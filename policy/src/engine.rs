//! `[engine]`: how the service runs its models (backend, threads, batching, KV-cache budget).
//!
//! Plain data; the appliance builds one decode thread per served model from it. Which
//! models are served is not here: that is the bundle store's active pointers.
use serde::{Deserialize, Serialize};

/// Sequences decoded together unless the policy says otherwise.
pub const DEFAULT_MAX_BATCH: u32 = 8;
/// KV-cache budget per model unless the policy says otherwise, in MiB.
pub const DEFAULT_KV_CACHE_MIB: u64 = 1024;

/// `[engine]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Threads for the matrix kernels; 0 = one per CPU core.
    #[serde(default)]
    pub threads: u32,
    /// Most requests decoded together in one step (continuous batching).
    #[serde(default = "d_batch")]
    pub max_batch: u32,
    /// Memory the KV caches of running requests may reserve, per model, in MiB. A request
    /// reserves room for its prompt plus `max_tokens` when it is admitted; requests that do
    /// not fit wait in the queue.
    #[serde(default = "d_kv")]
    pub kv_cache_mib: u64,
    /// Backend the models run on: "cpu" (default), or "wgpu" / "cuda" where the appliance
    /// was built with that feature (a build without it refuses to load the model).
    #[serde(default = "d_device")]
    pub device: String,
    /// Keep each finished request's KV cache so that the same client's next request with the
    /// same prompt prefix (a chat's next turn, a repeated system prompt) resumes from it
    /// instead of recomputing it. Reuse is per client certificate, never across clients;
    /// retained caches count against `kv_cache_mib` and give way to running requests.
    #[serde(default = "d_prefix_cache")]
    pub prefix_cache: bool,
}

/// Backends a policy may name (whether this build has them is the engine's to say).
pub(crate) const DEVICES: [&str; 3] = ["cpu", "wgpu", "cuda"];

fn d_device() -> String {
    DEVICES[0].to_owned()
}

fn d_prefix_cache() -> bool {
    true
}

fn d_batch() -> u32 {
    DEFAULT_MAX_BATCH
}
fn d_kv() -> u64 {
    DEFAULT_KV_CACHE_MIB
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            threads: 0,
            max_batch: DEFAULT_MAX_BATCH,
            kv_cache_mib: DEFAULT_KV_CACHE_MIB,
            device: d_device(),
            prefix_cache: true,
        }
    }
}

impl EngineConfig {
    /// Rules serde cannot express, as (key path, reason).
    pub(crate) fn check(&self) -> Result<(), (String, String)> {
        if self.max_batch == 0 || self.max_batch > 256 {
            return Err((
                "engine.max_batch".into(),
                "must be between 1 and 256".into(),
            ));
        }
        if self.kv_cache_mib == 0 || self.kv_cache_mib > 1 << 20 {
            return Err((
                "engine.kv_cache_mib".into(),
                "must be between 1 and 1048576 (1 TiB)".into(),
            ));
        }
        if !DEVICES.contains(&self.device.as_str()) {
            return Err((
                "engine.device".into(),
                "must be one of \"cpu\", \"wgpu\", \"cuda\"".into(),
            ));
        }
        if self.threads > 1024 {
            return Err(("engine.threads".into(), "must be at most 1024".into()));
        }
        Ok(())
    }
}
