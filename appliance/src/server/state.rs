//! Shared application state: the policy, readiness, metrics, the audit handle and the
//! models. Components register with [`Readiness`] at start and keep their
//! [`ReadinessHandle`](super::readiness::ReadinessHandle) to report their state.
use std::sync::Arc;

use policy::Policy;

use super::audit::AuditHandle;
use super::metrics::Metrics;
use super::models::{LoadError, LoadedModel, ModelRegistry, Prepared};
use super::ratelimit::RateLimiter;
use super::readiness::{Readiness, component};
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
        }
    }

    /// Starts `prepared`'s decode thread and serves it under its name from now on (hot
    /// swap: requests in flight finish on the version they started with).
    pub fn serve(&self, prepared: Prepared) -> Result<(), LoadError> {
        let model = LoadedModel::start(
            prepared,
            &self.policy.engine,
            self.policy.limits.queue_depth,
            self.scheduler_metrics.clone(),
        )?;
        tracing::info!(name = %model.name, version = %model.version, "serving model");
        self.models.insert(model);
        Ok(())
    }
}
