//! The service side of the audit log (ARCHITECTURE.md §6): the [`AuditHandle`] every component
//! appends through, and the auditor / privacy endpoints.
//!
//! # Fail closed
//! [`AuditHandle::append`] resolves only once the record is flushed to disk. When it fails
//! the caller must refuse the request with 503 (`ApiError::from(AuditUnavailable)` does
//! that), and `/readyz` reports the audit component not ready as soon as the log stops
//! being writable. A handle without a log (`AuditHandle::default()`) refuses every append.
//!
//! # Use from a handler
//! ```ignore
//! let mut event = server::audit::request_event(Kind::InferenceRequest, &req)
//!     .model(model_ref)
//!     .prompt(prompt_bytes);
//! event.subject = server::audit::data_subject(&req)?; // 400 on a bad Airlock-Subject
//! let receipt = state.audit.append(event).await?;      // 503 if not durable
//! // ... only now start generating ...
//! ```
//!
//! # Endpoints
//! - `GET /v1/audit/checkpoint` (auditor): signs a checkpoint over every record so far if
//!   there are new ones, and returns the latest signed checkpoint (C2SP signed note,
//!   `text/plain`). Verify it with the key of `airlock audit pubkey`.
//! - `GET /v1/audit/records?from=N&limit=M` (auditor): records as stored, JSON Lines.
//! - `POST /v1/audit/erase` `{"subject": "..."}` (privacy): crypto-shreds the subject's
//!   sealed content; the `audit.erase` record names the caller. Every model's retained
//!   prompt-prefix caches are dropped too.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::ServiceRequest;
use actix_web::http::header::ContentType;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, ResponseError, web};
use audit::{Actor, AuditLog, Event, Kind, Receipt};
use policy::Policy;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::identity::Identity;
use super::metrics::Metrics;
use super::middleware::RequestId;
use super::routes::read_body;
use super::state::{AppState, ReadinessHandle};

/// Default and largest `limit` of `GET /v1/audit/records`.
pub const DEFAULT_RECORDS_LIMIT: usize = 1000;
/// Largest `limit` of `GET /v1/audit/records` (bounds one response's memory).
pub const MAX_RECORDS_LIMIT: usize = 10_000;

/// A `GET /v1/audit/records` response stops after the record that crosses this size.
pub const MAX_RECORDS_BYTES: usize = 32 << 20;
/// Records read from the store at a time while building a response.
const RECORDS_PAGE: usize = 256;

/// The audit log could not record an event; the request must fail with 503.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the audit log is unavailable")]
pub struct AuditUnavailable;

impl From<AuditUnavailable> for ApiError {
    fn from(_: AuditUnavailable) -> ApiError {
        ApiError::Unavailable {
            message: "the audit log is unavailable; the request was not processed".into(),
            code: "audit_unavailable",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    /// `ok` or `error`.
    result: &'static str,
}

/// `airlock_audit_*` metrics.
#[derive(Debug, Clone)]
struct AuditMetrics {
    appends: Family<ResultLabels, Counter>,
    latency: Histogram,
    records: Gauge,
}

impl AuditMetrics {
    fn register(metrics: &Metrics) -> AuditMetrics {
        // 100 µs .. ~3.3 s: one flush is around a millisecond on a healthy disk.
        let m = AuditMetrics {
            appends: Family::default(),
            latency: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            records: Gauge::default(),
        };
        metrics.register(
            "audit_appends",
            "Audit appends by result (ok: durable on disk)",
            m.appends.clone(),
        );
        metrics.register(
            "audit_append_duration_seconds",
            "Time from submitting an audit event to its flush",
            m.latency.clone(),
        );
        metrics.register(
            "audit_records",
            "Records in the audit log",
            m.records.clone(),
        );
        m
    }
}

/// Appends audit events for the service; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct AuditHandle {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    log: Arc<AuditLog>,
    readiness: ReadinessHandle,
    metrics: AuditMetrics,
}

impl AuditHandle {
    /// A handle on `log`, reporting to `readiness` and registering its metrics. Marks the
    /// component ready if the log is writable.
    pub fn new(log: Arc<AuditLog>, readiness: ReadinessHandle, metrics: &Metrics) -> AuditHandle {
        let inner = Inner {
            log,
            readiness,
            metrics: AuditMetrics::register(metrics),
        };
        let handle = AuditHandle {
            inner: Some(Arc::new(inner)),
        };
        handle.refresh_readiness();
        handle
    }

    /// The log, if there is one.
    pub fn log(&self) -> Option<&Arc<AuditLog>> {
        self.inner.as_ref().map(|i| &i.log)
    }

    /// Appends `event`; resolves once it is durable. On `Err` the caller answers 503.
    pub async fn append(&self, event: Event) -> Result<Receipt, AuditUnavailable> {
        let Some(inner) = &self.inner else {
            return Err(AuditUnavailable);
        };
        let kind = event.kind;
        let start = Instant::now();
        let result = inner.log.submit(event).await;
        inner.metrics.latency.observe(start.elapsed().as_secs_f64());
        let label = ResultLabels {
            result: if result.is_ok() { "ok" } else { "error" },
        };
        inner.metrics.appends.get_or_create(&label).inc();
        match result {
            Ok(receipt) => {
                inner.metrics.records.set(gauge_value(inner.log.len()));
                Ok(receipt)
            }
            Err(e) => {
                tracing::error!(%kind, error = %e, "audit append failed");
                self.refresh_readiness();
                Err(AuditUnavailable)
            }
        }
    }

    /// Re-reads whether the log is writable into the readiness registry (a failed
    /// background checkpoint makes it unwritable without any caller seeing an error).
    pub fn refresh_readiness(&self) {
        let Some(inner) = &self.inner else {
            return;
        };
        inner.metrics.records.set(gauge_value(inner.log.len()));
        if inner.log.is_writable() {
            inner.readiness.set_ready(format!(
                "writable, {} records, origin {}",
                inner.log.len(),
                inner.log.origin()
            ));
        } else {
            inner
                .readiness
                .set_not_ready("the audit log is not writable (a write failed or it is closed)");
        }
    }
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The audit actor of a verified identity.
pub fn actor(identity: &Identity) -> Actor {
    Actor {
        fingerprint: identity.fingerprint().to_string(),
        subject: identity.subject().to_owned(),
        roles: identity
            .roles()
            .iter()
            .map(|r| r.as_str().to_owned())
            .collect(),
    }
}

/// An event of `kind` about `req`: its caller (actor, peer) and request id.
pub fn request_event(kind: Kind, req: &HttpRequest) -> Event {
    let mut event = Event::new(kind);
    if let Some(id) = req.conn_data::<Identity>() {
        event.actor = Some(actor(id));
        event.peer = id.peer().map(|p| p.to_string());
    }
    event.request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
    event
}

/// Request header naming the data subject (ARCHITECTURE.md §4): a pseudonymous id such as a
/// case number. In sealed mode it selects the key that seals the request's content, so
/// `POST /v1/audit/erase {"subject": ...}` can erase it.
pub const SUBJECT_HEADER: &str = "airlock-subject";
/// Longest accepted `Airlock-Subject`.
pub const MAX_SUBJECT_LEN: usize = 256;

/// The request's data subject: `None` without the header, 400 when it is empty, too long,
/// not UTF-8 or holds control characters (content must never be sealed under a subject
/// other than the one the caller named, or erasure would miss it).
pub fn data_subject(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get(SUBJECT_HEADER) else {
        return Ok(None);
    };
    let bad = || ApiError::BadRequest {
        message: format!(
            "Airlock-Subject must be 1 to {MAX_SUBJECT_LEN} bytes of UTF-8 without control characters"
        ),
        param: Some("Airlock-Subject".into()),
    };
    let text = std::str::from_utf8(value.as_bytes()).map_err(|_| bad())?;
    if text.is_empty() || text.len() > MAX_SUBJECT_LEN || text.chars().any(char::is_control) {
        return Err(bad());
    }
    Ok(Some(text.to_owned()))
}

fn log_of(state: &AppState) -> Result<Arc<AuditLog>, ApiError> {
    state
        .audit
        .log()
        .cloned()
        .ok_or_else(|| AuditUnavailable.into())
}

/// Runs a blocking audit-log call off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> audit::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    match web::block(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "audit log operation failed");
            Err(AuditUnavailable.into())
        }
        Err(_) => Err(ApiError::Internal),
    }
}

/// `GET /v1/audit/checkpoint`
pub async fn checkpoint(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let log = log_of(&state)?;
    let note = blocking(move || log.checkpoint()).await?;
    state.audit.refresh_readiness();
    let note = note.ok_or(ApiError::Unavailable {
        message: "no checkpoint has been signed yet".into(),
        code: "no_checkpoint",
    })?;
    Ok(HttpResponse::Ok()
        .insert_header(ContentType::plaintext())
        .body(note))
}

/// Query of `GET /v1/audit/records`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordsQuery {
    /// First seq (default 0).
    #[serde(default)]
    from: u64,
    /// Most records returned (default and maximum: see the constants).
    limit: Option<usize>,
}

/// `GET /v1/audit/records?from=N&limit=M`: up to `limit` records from seq `from`, fewer
/// past [`MAX_RECORDS_BYTES`] or at the end of the log.
pub async fn records(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = web::Query::<RecordsQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::BadRequest {
            message: format!("bad query: {e}"),
            param: None,
        })?
        .into_inner();
    let limit = query.limit.unwrap_or(DEFAULT_RECORDS_LIMIT);
    if limit == 0 || limit > MAX_RECORDS_LIMIT {
        return Err(ApiError::BadRequest {
            message: format!("limit must be 1..={MAX_RECORDS_LIMIT}"),
            param: Some("limit".into()),
        });
    }
    let log = log_of(&state)?;
    let from = query.from;
    // Read in small pages and stop past MAX_RECORDS_BYTES (sealed records can be large):
    // the client continues from the last seq it got + 1.
    let body = blocking(move || {
        let mut body = Vec::new();
        let mut next = from;
        let mut left = limit;
        while left > 0 && body.len() < MAX_RECORDS_BYTES {
            let page = log.records(next, left.min(RECORDS_PAGE))?;
            let Some(last) = page.last() else { break };
            next = last.seq + 1;
            left -= page.len();
            for r in &page {
                body.extend_from_slice(&r.to_json());
                body.push(b'\n');
            }
        }
        Ok(body)
    })
    .await?;
    Ok(HttpResponse::Ok()
        .insert_header(ContentType(mime_jsonl()))
        .body(body))
}

fn mime_jsonl() -> actix_web::mime::Mime {
    // A constant, valid media type.
    "application/jsonl; charset=utf-8"
        .parse()
        .unwrap_or(actix_web::mime::APPLICATION_JSON)
}

/// Body of `POST /v1/audit/erase`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EraseRequest {
    subject: String,
}

/// `POST /v1/audit/erase` `{"subject": "..."}`
pub async fn erase(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&state, payload).await?;
    let request: EraseRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest {
            message: format!("expected {{\"subject\": \"...\"}}: {e}"),
            param: Some("subject".into()),
        })?;
    if request.subject.is_empty() || request.subject.len() > 1024 {
        return Err(ApiError::BadRequest {
            message: "subject must be 1 to 1024 bytes".into(),
            param: Some("subject".into()),
        });
    }
    let log = log_of(&state)?;
    let who = req.conn_data::<Identity>().map(actor);
    let subject = request.subject.clone();
    let receipt = blocking(move || log.erase(&subject, who)).await?;
    state.audit.refresh_readiness();
    // The prefix caches hold ended requests' prompt tokens in memory for reuse; drop them all
    // (they are not indexed by subject, and rebuilding them costs one prompt pass).
    for model in state.models.list() {
        model.scheduler.forget_prefixes();
    }
    tracing::info!(seq = receipt.seq(), "audit erase");
    Ok(HttpResponse::Ok().json(json!({
        "subject": request.subject,
        "seq": receipt.seq(),
        "hash": receipt.hash().to_string(),
    })))
}

/// The audit log's directory inside the service's state directory.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join(AUDIT_SUBDIR)
}

/// Name of the audit log's directory inside the state directory.
pub const AUDIT_SUBDIR: &str = "audit";

/// The `audit` crate's configuration for the policy's `[audit]` section.
pub fn config(p: &policy::AuditConfig) -> audit::Config {
    const DAY: Duration = Duration::from_secs(86_400);
    audit::Config {
        content: match p.content {
            policy::AuditContent::Digest => audit::ContentMode::Digest,
            policy::AuditContent::Sealed => audit::ContentMode::Sealed,
        },
        checkpoint_every: p.checkpoint_every,
        checkpoint_interval: (p.checkpoint_interval_secs > 0)
            .then(|| Duration::from_secs(p.checkpoint_interval_secs)),
        origin: p.origin.clone(),
        retention: (p.retention_days > 0)
            .then(|| DAY.saturating_mul(u32::try_from(p.retention_days).unwrap_or(u32::MAX))),
        ..audit::Config::default()
    }
}

/// Opens (creating on first start) the log in `STATE_DIR/audit` and records
/// `service.start` and `policy.load`. A store that does not verify, an unwritable
/// directory or a failed append is an error: the service must not start without its log.
pub fn open(policy: &Policy) -> audit::Result<Arc<AuditLog>> {
    let log = Arc::new(AuditLog::open(
        dir(&policy.state_dir),
        config(&policy.audit),
    )?);
    log.append(
        Event::new(Kind::ServiceStart)
            .status("ok")
            .param("version", env!("CARGO_PKG_VERSION"))
            .param("pid", std::process::id().to_string()),
    )?;
    let mut load = Event::new(Kind::PolicyLoad)
        .status("ok")
        .param("path", policy.source().display().to_string())
        .param(
            "audit.content",
            match policy.audit.content {
                policy::AuditContent::Digest => "digest",
                policy::AuditContent::Sealed => "sealed",
            },
        );
    // The digest pins which policy text was in force (the file may change later).
    if let Ok(bytes) = std::fs::read(policy.source()) {
        load = load.param("sha256", audit::Digest::of(&bytes).to_string());
    }
    log.append(load)?;
    Ok(log)
}

/// Records `service.stop` and closes the log with a final signed checkpoint. Errors are
/// logged: the process is exiting either way.
pub fn record_stop(log: &AuditLog, server_error: Option<&std::io::Error>) {
    let mut event = Event::new(Kind::ServiceStop).status(if server_error.is_some() {
        "error"
    } else {
        "ok"
    });
    if let Some(e) = server_error {
        event = event.param("error", e.to_string());
    }
    if let Err(e) = log.append(event) {
        tracing::error!(error = %e, "cannot record service.stop in the audit log");
    }
    match log.close() {
        Ok(()) => tracing::info!(records = log.len(), "audit log closed"),
        Err(e) => tracing::error!(error = %e, "closing the audit log failed"),
    }
}

/// Records an `access.denied` event for a request the role guard refused. The denial
/// stands whatever happens here; a failed append is logged and makes `/readyz` not ready.
pub async fn record_denial(req: &ServiceRequest, reason: &ApiError) {
    let Some(state) = req.app_data::<web::Data<AppState>>() else {
        return;
    };
    let mut event = request_event(Kind::AccessDenied, req.request())
        .status(reason.status_code().as_u16().to_string())
        .param("method", req.method().as_str())
        .param("reason", reason.to_string());
    if let Some(route) = req.match_pattern() {
        event = event.param("route", route);
    }
    let _ = state.audit.append(event).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn data_subject_is_optional_and_validated() {
        let req = TestRequest::default().to_http_request();
        assert_eq!(data_subject(&req).expect("none"), None);
        let req = TestRequest::default()
            .insert_header(("Airlock-Subject", "case-4711"))
            .to_http_request();
        assert_eq!(
            data_subject(&req).expect("ok").as_deref(),
            Some("case-4711")
        );
        for bad in [
            String::new(),
            "x".repeat(MAX_SUBJECT_LEN + 1),
            "a\tb".into(),
        ] {
            let req = TestRequest::default()
                .insert_header(("Airlock-Subject", bad.as_str()))
                .to_http_request();
            assert!(data_subject(&req).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn policy_section_maps_to_the_log_config() {
        let p = policy::AuditConfig {
            content: policy::AuditContent::Sealed,
            checkpoint_every: 5,
            checkpoint_interval_secs: 0,
            retention_days: 2,
            origin: Some("h.example/audit".into()),
        };
        let c = config(&p);
        assert_eq!(c.content, audit::ContentMode::Sealed);
        assert_eq!(c.checkpoint_every, 5);
        assert_eq!(c.checkpoint_interval, None);
        assert_eq!(c.retention, Some(Duration::from_secs(2 * 86_400)));
        assert_eq!(c.origin.as_deref(), Some("h.example/audit"));
        assert_eq!(config(&policy::AuditConfig::default()).retention, None);
    }
}
