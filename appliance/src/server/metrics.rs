//! Prometheus metrics (OpenMetrics text via `prometheus-client`).
//!
//! The route label is the matched route *pattern* (`/v1/models`), never the raw path, so
//! a client cannot grow the label set; unmatched requests share the label `unmatched`.
use std::sync::{Mutex, PoisonError};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

/// The methods that get their own label value.
pub const METHODS: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"];

/// The metric label (and access-log value) of a request method: a standard method's name,
/// `other` for anything else, so clients cannot mint label values.
pub fn method_label(method: &actix_web::http::Method) -> &'static str {
    METHODS
        .into_iter()
        .find(|m| *m == method.as_str())
        .unwrap_or("other")
}

/// Labels of `airlock_http_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Route pattern or `unmatched`.
    pub route: String,
    /// HTTP method: one of [`METHODS`] or `other` ([`method_label`]).
    pub method: String,
    /// Status code.
    pub status: u16,
    /// The caller's roles as the policy names them, comma-joined in `Role::ALL` order
    /// (`user`, `admin,operator`); `none` for a certificate without a role. Bounded: at
    /// most one value per subset of the five roles.
    pub role: String,
}

/// Labels of `airlock_http_request_duration_seconds`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Route pattern or `unmatched`.
    pub route: String,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The registry and the HTTP metrics every request updates.
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn latency_histogram() -> Histogram {
    // 1 ms .. ~65 s: health checks to long generations.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Metrics {
    /// A registry with the HTTP metrics registered.
    pub fn new() -> Metrics {
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let mut registry = Registry::with_prefix("airlock");
        registry.register(
            "http_requests",
            "HTTP requests by route, method, status and the caller's role",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            requests,
            latency,
        }
    }

    /// Registers another part's metric (name gets the `airlock_` prefix).
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .register(name, help, metric);
    }

    /// Counts one finished request.
    pub fn observe_request(
        &self,
        route: &str,
        method: &'static str,
        status: u16,
        role: &str,
        seconds: f64,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status,
                role: role.to_owned(),
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    /// The registry in OpenMetrics text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        prometheus_client::encoding::text::encode(&mut out, &registry)?;
        Ok(out)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_route_status_and_role() {
        let m = Metrics::new();
        m.observe_request("/healthz", "GET", 200, "user", 0.002);
        m.observe_request("/healthz", "GET", 200, "user", 0.004);
        m.observe_request("/healthz", "GET", 200, "none", 0.004);
        let text = m.encode().expect("encode");
        assert!(
            text.contains(
                r#"airlock_http_requests_total{route="/healthz",method="GET",status="200",role="user"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"airlock_http_requests_total{route="/healthz",method="GET",status="200",role="none"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE airlock_http_request_duration_seconds histogram"));
        assert!(
            text.contains(r#"airlock_http_request_duration_seconds_count{route="/healthz"} 3"#)
        );
    }
}
