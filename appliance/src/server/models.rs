//! The models the service answers with: each a loaded [`Engine`] with its own decode thread.
//!
//! Hot swap without dropping requests: a request clones the model's `Arc` when it starts and
//! keeps it to the end, so replacing an entry only changes what *new* requests get; the old
//! engine and its decode thread live until the last in-flight request that holds them ends.
use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use airlock_engine::Engine;

use super::state::ReadinessHandle;
use crate::scheduler::Scheduler;

/// A model ready to serve.
#[derive(Debug)]
pub struct LoadedModel {
    /// The name clients use in `model` (the bundle name).
    pub name: String,
    /// The installed version (the bundle's semver).
    pub version: String,
    /// The engine.
    pub engine: Arc<Engine>,
    /// Its decode thread's queue.
    pub scheduler: Scheduler,
    /// Unix seconds it was loaded (`created` in `/v1/models`).
    pub loaded_at: u64,
}

impl LoadedModel {
    /// A model named `name` at `version` served by `scheduler`.
    pub fn new(name: String, version: String, engine: Arc<Engine>, scheduler: Scheduler) -> Self {
        LoadedModel {
            name,
            version,
            engine,
            scheduler,
            loaded_at: unix_now(),
        }
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Loaded models by name; reports the `model` readiness component.
#[derive(Debug)]
pub struct ModelRegistry {
    models: RwLock<BTreeMap<String, Arc<LoadedModel>>>,
    readiness: ReadinessHandle,
}

impl ModelRegistry {
    /// An empty registry reporting to `readiness` (not ready until a model is loaded).
    pub fn new(readiness: ReadinessHandle) -> ModelRegistry {
        readiness.set_not_ready("no model is loaded (install and activate a bundle)");
        ModelRegistry {
            models: RwLock::new(BTreeMap::new()),
            readiness,
        }
    }

    /// The model named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<LoadedModel>> {
        self.read().get(name).cloned()
    }

    /// Every model, by name.
    pub fn list(&self) -> Vec<Arc<LoadedModel>> {
        self.read().values().cloned().collect()
    }

    /// Serves `model` under its name from now on, replacing (and returning) the previous
    /// one; requests already running on the previous one finish on it.
    pub fn insert(&self, model: LoadedModel) -> Option<Arc<LoadedModel>> {
        let model = Arc::new(model);
        let previous = self
            .models
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(model.name.clone(), model);
        self.report();
        previous
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
        if loaded.is_empty() {
            self.readiness
                .set_not_ready("no model is loaded (install and activate a bundle)");
        } else {
            self.readiness
                .set_ready(format!("serving {}", loaded.join(", ")));
        }
    }
}
