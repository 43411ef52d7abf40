//! Readiness for `/readyz`: a registry of components (model, audit, egress), each reporting
//! through its own handle; the service is ready only when every one is.
use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use serde::Serialize;

/// Names of the readiness components `/readyz` reports.
pub mod component {
    /// The inference engine with an active model.
    pub const MODEL: &str = "model";
    /// The audit log (writable).
    pub const AUDIT: &str = "audit";
    /// The egress lockdown layers.
    pub const EGRESS: &str = "egress";
}

/// One component's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComponentStatus {
    /// Whether it is ready.
    pub ready: bool,
    /// Human-readable detail (what is loaded, or what is missing).
    pub detail: String,
}

/// Registry of components whose readiness makes up `/readyz`. Cheap to clone; all clones
/// share the same state. The service is ready only when every registered component is.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    inner: Arc<RwLock<BTreeMap<&'static str, ComponentStatus>>>,
}

impl Readiness {
    /// Registers (or re-registers) `name`, initially **not** ready with `detail`.
    pub fn register(&self, name: &'static str, detail: impl Into<String>) -> ReadinessHandle {
        self.set(name, false, detail.into());
        ReadinessHandle {
            name,
            registry: self.clone(),
        }
    }

    /// A handle for an already registered component (e.g. to hand to its owner later).
    pub fn handle(&self, name: &'static str) -> Option<ReadinessHandle> {
        self.read().contains_key(name).then(|| ReadinessHandle {
            name,
            registry: self.clone(),
        })
    }

    /// Whether every component is ready, and each one's status.
    pub fn snapshot(&self) -> (bool, BTreeMap<&'static str, ComponentStatus>) {
        let map = self.read().clone();
        (map.values().all(|c| c.ready), map)
    }

    fn set(&self, name: &'static str, ready: bool, detail: String) {
        // A poisoned lock only means a writer panicked mid-insert of a plain map entry:
        // the map is still consistent, so keep serving rather than fail /readyz forever.
        self.inner
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name, ComponentStatus { ready, detail });
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<&'static str, ComponentStatus>> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The right to report one component's readiness.
#[derive(Debug, Clone)]
pub struct ReadinessHandle {
    name: &'static str,
    registry: Readiness,
}

impl ReadinessHandle {
    /// Marks the component ready.
    pub fn set_ready(&self, detail: impl Into<String>) {
        self.registry.set(self.name, true, detail.into());
    }

    /// Marks the component not ready.
    pub fn set_not_ready(&self, detail: impl Into<String>) {
        self.registry.set(self.name, false, detail.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_component_is() {
        let r = Readiness::default();
        assert!(r.snapshot().0, "vacuously ready with no component");
        let model = r.register("model", "loading");
        let audit = r.register("audit", "opening");
        assert!(!r.snapshot().0);
        model.set_ready("smollm2 0.1.2");
        assert!(!r.snapshot().0);
        audit.set_ready("writable");
        let (ready, map) = r.snapshot();
        assert!(ready);
        assert_eq!(map["model"].detail, "smollm2 0.1.2");
        r.handle("audit")
            .expect("registered")
            .set_not_ready("disk full");
        assert!(!r.snapshot().0);
        assert!(r.handle("nope").is_none());
    }
}
