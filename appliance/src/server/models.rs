//! The models the service answers with: each a loaded [`Engine`] with its own decode thread.
//!
//! Hot swap without dropping requests: a request clones the model's `Arc` when it starts and
//! keeps it to the end, so replacing an entry only changes what *new* requests get; the old
//! engine and its decode thread live until the last in-flight request that holds them ends.
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use std::path::Path;

use airlock_bundle::{ActiveModel, ModelStore};
use airlock_engine::{Backend, Engine};
use policy::EngineConfig;

use super::readiness::ReadinessHandle;
use crate::scheduler::{Scheduler, SchedulerConfig, SchedulerMetrics};

/// An engine loaded for an active installed model, not yet serving (see [`LoadedModel::start`]).
#[derive(Debug)]
pub struct Prepared {
    /// What the bundle store says is active.
    pub active: ActiveModel,
    /// The engine on its file.
    pub engine: Arc<Engine>,
}

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bundle store could not be read.
    #[error("cannot read the installed models: {0}")]
    Store(#[from] airlock_bundle::BundleError),
    /// The engine refused the file.
    #[error("cannot load model {name} {version} from {path}: {source}")]
    Engine {
        /// Model name.
        name: String,
        /// Version.
        version: String,
        /// The GGUF file.
        path: String,
        /// Why.
        source: Box<airlock_engine::EngineError>,
    },
    /// The decode thread could not be started.
    #[error("cannot start the decode thread: {0}")]
    Thread(#[from] std::io::Error),
    /// The bundle's signed expiry has passed: it is not served.
    #[error("model {name} {version} is not served: {source}")]
    Expired {
        /// Model name.
        name: String,
        /// Version.
        version: String,
        /// The expiry.
        source: Box<airlock_bundle::BundleError>,
    },
}

/// The load test an activation runs before it swaps the active pointer
/// ([`ModelStore::activate`]): the engine is loaded, and kept to be served, so a
/// version that does not load is refused while the active one keeps serving.
#[derive(Debug)]
pub struct LoadTest<'a> {
    config: &'a EngineConfig,
    /// The loaded model, once the test passed.
    pub prepared: Option<Prepared>,
}

impl<'a> LoadTest<'a> {
    pub fn new(config: &'a EngineConfig) -> LoadTest<'a> {
        LoadTest {
            config,
            prepared: None,
        }
    }

    /// Loads `active`; `Err(why)` if it does not.
    pub fn check(&mut self, active: &ActiveModel) -> Result<(), String> {
        let prepared = prepare(active.clone(), self.config).map_err(|e| e.to_string())?;
        self.prepared = Some(prepared);
        Ok(())
    }
}

/// Loads the engine of one active model. Reads files only, so it works under the egress
/// lockdown (hot reload).
pub fn prepare(active: ActiveModel, config: &EngineConfig) -> Result<Prepared, LoadError> {
    active
        .check_expiry(time::OffsetDateTime::now_utc())
        .map_err(|source| LoadError::Expired {
            name: active.name.clone(),
            version: active.version.to_string(),
            source: Box::new(source),
        })?;
    let threads = (config.threads > 0).then_some(config.threads as usize);
    let backend = match config.device {
        policy::Device::Cpu => Backend::Cpu,
        policy::Device::Wgpu => Backend::Wgpu,
        policy::Device::Cuda => Backend::Cuda,
    };
    let engine =
        Engine::load_on(&active.path, threads, backend).map_err(|source| LoadError::Engine {
            name: active.name.clone(),
            version: active.version.to_string(),
            path: active.path.display().to_string(),
            source: Box::new(source),
        })?;
    if let Some(check) = engine.self_check() {
        tracing::info!(backend = %backend, relative = check.relative(), "GPU self-check passed: {check}");
    }
    Ok(Prepared {
        active,
        engine: Arc::new(engine),
    })
}

/// The active models found at start: those that loaded, and why the others did not.
#[derive(Debug, Default)]
pub struct AtStart {
    /// Ready to serve.
    pub loaded: Vec<Prepared>,
    /// Model name and why it cannot be served.
    pub failed: Vec<(String, String)>,
}

/// Loads the engines of every active model in `state_dir` (at start, before the seccomp
/// layer: after it, loading still works, but start-up failures are clearer here).
///
/// A model that does not load does not stop the start: the service serves the others and
/// `/readyz` names it. Exiting instead would turn one bad activation into an appliance
/// that cannot start at all. Only an unreadable bundle store is an error.
pub fn prepare_all(state_dir: &Path, config: &EngineConfig) -> Result<AtStart, LoadError> {
    let store = ModelStore::new(state_dir);
    let mut out = AtStart::default();
    for active in store.active_all()? {
        tracing::info!(name = %active.name, version = %active.version, "loading model");
        let started = std::time::Instant::now();
        let name = active.name.clone();
        match prepare(active, config) {
            Ok(prepared) => {
                tracing::info!(
                    name = %prepared.active.name,
                    ms = started.elapsed().as_millis() as u64,
                    "model loaded"
                );
                out.loaded.push(prepared);
            }
            Err(e) => {
                tracing::error!(%name, error = %e, "model not loaded; serving the others");
                out.failed.push((name, e.to_string()));
            }
        }
    }
    Ok(out)
}

/// KV-cache positions that fit in `mib` for `engine`'s model (keys and values of every
/// layer, f32).
pub fn kv_budget_tokens(engine: &Engine, mib: u64) -> usize {
    let c = engine.model().config();
    let per_token = 2 * c.n_layers * c.kv_dim() * std::mem::size_of::<f32>();
    let bytes = usize::try_from(mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    bytes / per_token.max(1)
}

/// A model ready to serve.
#[derive(Debug)]
pub struct LoadedModel {
    /// The name clients use in `model` (the bundle name).
    pub name: String,
    /// The installed version (the bundle's semver).
    pub version: String,
    /// SHA-256 of the GGUF file, as signed in the bundle.
    pub sha256: audit::Digest,
    /// The engine.
    pub engine: Arc<Engine>,
    /// Its decode thread's queue.
    pub scheduler: Scheduler,
    /// Unix seconds it was loaded (`created` in `/v1/models`).
    pub loaded_at: u64,
    /// The vocabulary indexed for constrained decoding, built by the first request that
    /// needs it (a few hundred milliseconds; most deployments never pay it).
    grammar: OnceLock<Result<airlock_grammar::Vocabulary, airlock_grammar::GrammarError>>,
}

impl LoadedModel {
    /// Starts the decode thread of `prepared`.
    pub fn start(
        prepared: Prepared,
        config: &EngineConfig,
        queue_depth: u32,
        metrics: SchedulerMetrics,
    ) -> Result<LoadedModel, LoadError> {
        let Prepared { active, engine } = prepared;
        let scheduler = Scheduler::start(
            engine.clone(),
            SchedulerConfig {
                queue_depth: queue_depth as usize,
                max_batch: config.max_batch as usize,
                kv_budget_tokens: kv_budget_tokens(&engine, config.kv_cache_mib),
                prefix_cache: config.prefix_cache,
            },
            metrics,
        )?;
        Ok(LoadedModel {
            name: active.name,
            version: active.version.to_string(),
            sha256: audit::Digest(active.sha256.0),
            engine,
            scheduler,
            loaded_at: unix_now(),
            grammar: OnceLock::new(),
        })
    }

    /// The model's vocabulary indexed for constrained decoding (built on first use; blocks,
    /// so call it off the I/O threads).
    pub fn vocabulary(&self) -> Result<airlock_grammar::Vocabulary, airlock_grammar::GrammarError> {
        self.grammar
            .get_or_init(|| airlock_grammar::Vocabulary::new(Arc::clone(&self.engine)))
            .clone()
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Loaded models by name; reports the `model` readiness component. Cheap to clone; clones
/// share the models.
#[derive(Debug, Clone)]
pub struct ModelRegistry {
    models: Arc<RwLock<BTreeMap<String, Arc<LoadedModel>>>>,
    /// Active models that could not be loaded, with why: reported until one loads.
    failed: Arc<RwLock<BTreeMap<String, String>>>,
    readiness: ReadinessHandle,
}

impl ModelRegistry {
    /// An empty registry reporting to `readiness` (not ready until a model is loaded).
    pub fn new(readiness: ReadinessHandle) -> ModelRegistry {
        readiness.set_not_ready("no model is loaded (install and activate a bundle)");
        ModelRegistry {
            models: Arc::new(RwLock::new(BTreeMap::new())),
            failed: Arc::new(RwLock::new(BTreeMap::new())),
            readiness,
        }
    }

    /// The model named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<LoadedModel>> {
        self.read().get(name).cloned()
    }

    /// True when no model is served.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Every model, by name.
    pub fn list(&self) -> Vec<Arc<LoadedModel>> {
        self.read().values().cloned().collect()
    }

    /// Serves `model` under its name from now on, replacing (and returning) the previous
    /// one; requests already running on the previous one finish on it.
    pub fn insert(&self, model: LoadedModel) -> Option<Arc<LoadedModel>> {
        let model = Arc::new(model);
        let name = model.name.clone();
        let previous = self
            .models
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(model.name.clone(), model);
        self.failed
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&name);
        self.report();
        previous
    }

    /// Records that the active version of `name` cannot be served: `/readyz` says so (and is
    /// not ready) until a version of `name` loads.
    pub fn failed_to_load(&self, name: &str, reason: String) {
        self.failed
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), reason);
        self.report();
    }

    /// Stops serving `name`.
    pub fn remove(&self, name: &str) -> Option<Arc<LoadedModel>> {
        let previous = self
            .models
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
        self.report();
        previous
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<LoadedModel>>> {
        self.models.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn report(&self) {
        let loaded: Vec<String> = self
            .read()
            .values()
            .map(|m| format!("{} {}", m.name, m.version))
            .collect();
        let failed: Vec<String> = self
            .failed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(name, why)| format!("{name} not loaded: {why}"))
            .collect();
        let serving = if loaded.is_empty() {
            "no model is loaded (install and activate a bundle)".to_owned()
        } else {
            format!("serving {}", loaded.join(", "))
        };
        if !failed.is_empty() {
            self.readiness
                .set_not_ready(format!("{serving}; {}", failed.join("; ")));
        } else if loaded.is_empty() {
            self.readiness.set_not_ready(serving);
        } else {
            self.readiness.set_ready(serving);
        }
    }
}
