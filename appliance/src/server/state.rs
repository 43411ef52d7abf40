//! Shared application state: the policy, the readiness registry and the metrics registry.
//!
//! The model registry, the audit log and the egress lockdown each hold a
//! [`ReadinessHandle`] of a component registered with [`Readiness::register`] and report
//! their state through it; components register their metrics with
//! [`crate::server::metrics::Metrics::register`]. A new component does the same and adds its
//! field to [`AppState`].
use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use policy::Policy;
use serde::Serialize;

use super::audit::AuditHandle;
use super::metrics::Metrics;
use super::models::ModelRegistry;
use super::ratelimit::RateLimiter;
use crate::scheduler::SchedulerMetrics;

/// State shared by every worker (handlers get it as `web::Data<AppState>`).
#[derive(Debug)]
pub struct AppState {
    /// The loaded policy.
    pub policy: Arc<Policy>,
    /// What is and is not ready, for `/readyz`.
    pub readiness: Readiness,
    /// Prometheus registry and the HTTP metrics.
    pub metrics: Metrics,
    /// Per-certificate request rate limit.
    pub rate_limiter: RateLimiter,
    /// The audit log (fail closed: without one every append is refused).
    pub audit: AuditHandle,
    /// The models being served, with their decode threads.
    pub models: ModelRegistry,
    /// Metrics shared by every model's scheduler.
    pub scheduler_metrics: SchedulerMetrics,
    /// Called after a model activation or rollback (the engine's hot reload).
    pub model_hooks: super::admin::ModelHooks,
}

impl AppState {
    /// State for `policy`, with the three `/readyz` components of ARCHITECTURE.md §4
    /// registered as not ready; the model registry reports through the handle it keeps, and
    /// `server::run` registers the audit log's and the lockdown's reports over the others.
    pub fn new(policy: Arc<Policy>) -> AppState {
        let readiness = Readiness::default();
        let models =
            ModelRegistry::new(readiness.register(component::MODEL, "no model is loaded yet"));
        readiness.register(component::AUDIT, "the audit log is not open");
        readiness.register(component::EGRESS, "egress lockdown not reported yet");
        let metrics = Metrics::new();
        let scheduler_metrics = SchedulerMetrics::default();
        scheduler_metrics.register(&metrics);
        AppState {
            models,
            scheduler_metrics,
            rate_limiter: RateLimiter::new(policy.limits.requests_per_minute),
            policy,
            readiness,
            metrics,
            audit: AuditHandle::default(),
            model_hooks: super::admin::ModelHooks::default(),
        }
    }
}

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
