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
//! event.subject = Subject::from_request(&req)?.map(Subject::into_string); // 400 if bad
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
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use actix_web::dev::ServiceRequest;
use actix_web::http::header::ContentType;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, ResponseError, web};
use audit::{Actor, AuditLog, Event, Kind, Receipt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use serde::Deserialize;
use serde_json::json;

use super::body::read_body;
use super::error::ApiError;
use super::identity::Identity;
use super::metrics::Metrics;
use super::readiness::ReadinessHandle;
use super::request_id::RequestId;
use super::state::AppState;
use super::subject::Subject;

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
    reserve: DiskReserve,
    /// The last append was refused by the reserve (readiness says so until one passes).
    reserve_hit: std::sync::atomic::AtomicBool,
}

/// Free space the audit log leaves on its file system (`[audit] reserve_free_mib`).
///
/// The log is append-only and every record a client causes is kept: without a reserve, a
/// flood of requests fills the disk, after which every request fails and so may the host.
/// With it the service refuses new client-caused records (503, `/readyz` says why) while
/// completing what it admitted.
#[derive(Debug, Clone)]
pub struct DiskReserve {
    dir: PathBuf,
    bytes: u64,
}

impl DiskReserve {
    /// `mib` MiB on the file system holding `dir` (0: none).
    pub fn new(dir: PathBuf, mib: u64) -> DiskReserve {
        DiskReserve {
            dir,
            bytes: mib.saturating_mul(1 << 20),
        }
    }

    /// `Err(reason)` when the file system has less free space than the reserve, or its free
    /// space cannot be read (fail closed).
    fn check(&self) -> Result<(), String> {
        if self.bytes == 0 {
            return Ok(());
        }
        let st = rustix::fs::statvfs(&self.dir)
            .map_err(|e| format!("cannot read the free space of {}: {e}", self.dir.display()))?;
        let free = st.f_bavail.saturating_mul(st.f_frsize);
        if free < self.bytes {
            return Err(format!(
                "the audit log's file system has {} MiB free, below the {} MiB reserve \
                 ([audit] reserve_free_mib): new requests are refused until space is freed",
                free >> 20,
                self.bytes >> 20
            ));
        }
        Ok(())
    }
}

/// Records a client causes by asking: the ones the reserve refuses. The rest complete or
/// report what the service already admitted or does by itself (responses, start/stop,
/// checkpoints, erasure, the operator's bundle and model actions).
fn client_caused(kind: Kind) -> bool {
    matches!(kind, Kind::InferenceRequest | Kind::AccessDenied)
}

impl AuditHandle {
    /// A handle on `log`, reporting to `readiness` and registering its metrics. Marks the
    /// component ready if the log is writable.
    pub fn new(
        log: Arc<AuditLog>,
        readiness: ReadinessHandle,
        metrics: &Metrics,
        reserve: DiskReserve,
    ) -> AuditHandle {
        let inner = Inner {
            log,
            readiness,
            metrics: AuditMetrics::register(metrics),
            reserve,
            reserve_hit: std::sync::atomic::AtomicBool::new(false),
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
        if client_caused(kind) && !self.within_reserve(inner) {
            return Err(AuditUnavailable);
        }
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

    /// Checks the disk reserve, keeping readiness in step: not ready (with the reason) from
    /// the first refusal, ready again from the first append that fits.
    fn within_reserve(&self, inner: &Inner) -> bool {
        use std::sync::atomic::Ordering;
        match inner.reserve.check() {
            Ok(()) => {
                if inner.reserve_hit.swap(false, Ordering::AcqRel) {
                    tracing::info!("audit log disk reserve: space available again");
                    self.refresh_readiness();
                }
                true
            }
            Err(reason) => {
                if !inner.reserve_hit.swap(true, Ordering::AcqRel) {
                    tracing::error!("{reason}");
                }
                inner.readiness.set_not_ready(reason);
                false
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
        if inner.reserve_hit.load(std::sync::atomic::Ordering::Acquire) {
            // The reserve's reason stands until an append fits again.
        } else if inner.log.is_writable() {
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

/// Query of `GET /v1/audit/report`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// First day, `YYYY-MM-DD` (UTC).
    from: Option<String>,
    /// Last day, `YYYY-MM-DD` (UTC).
    to: Option<String>,
    /// `json` (default), `html` or `pdf`.
    format: Option<String>,
}

/// `GET /v1/audit/report?from=YYYY-MM-DD&to=YYYY-MM-DD&format=json|html|pdf`: the audit
/// report of the running service's log, computed in the same pass that verifies every
/// durable record against the log's key and latest checkpoint (`audit_report`). A log that
/// does not verify yields no report: 503 with the first failure.
pub async fn report(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = web::Query::<ReportQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::BadRequest {
            message: format!("bad query: {e}"),
            param: None,
        })?
        .into_inner();
    let format = match query.format.as_deref() {
        None => audit_report::Format::Json,
        Some(name) => {
            audit_report::Format::from_name(name).ok_or_else(|| ApiError::BadRequest {
                message: "format must be json, html or pdf".into(),
                param: Some("format".into()),
            })?
        }
    };
    let period =
        audit_report::Period::parse(query.from.as_deref(), query.to.as_deref()).map_err(|e| {
            ApiError::BadRequest {
                message: e.to_string(),
                param: e.param().map(Into::into),
            }
        })?;
    let log = log_of(&state)?;
    let made = web::block(move || {
        let mut tally = audit_report::Tally::new(period);
        let verified = log.verify_each(&audit::Options::default(), &mut |r| tally.add(r))?;
        let verification = audit_report::Verification::new(
            &verified,
            log.verifier(),
            "the running service's audit log",
            None,
        );
        Ok::<_, audit::Failure>(audit_report::render(&tally.finish(verification), format))
    })
    .await
    .map_err(|_| ApiError::Internal)?;
    let body = match made {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot render the audit report");
            return Err(ApiError::Internal);
        }
        Err(failure) => {
            tracing::error!(%failure, "the audit log does not verify: no report");
            return Err(ApiError::Unavailable {
                message: format!("the audit log does not verify, so no report is made: {failure}"),
                code: "audit_log_invalid",
            });
        }
    };
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::CONTENT_TYPE, format.media_type()))
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
    let subject = Subject::parse(&request.subject, "subject")?;
    let log = log_of(&state)?;
    let who = req.conn_data::<Identity>().map(actor);
    let receipt = blocking(move || log.erase(subject.as_str(), who)).await?;
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

/// Records an `access.denied` event for a request the role guard (403) or the rate limiter
/// (429, the first of a flood) refused. The denial
/// stands whatever happens here; a failed append is logged and makes `/readyz` not ready.
pub async fn record_denial(req: &ServiceRequest, reason: &ApiError) {
    let Some(state) = req.app_data::<web::Data<AppState>>() else {
        return;
    };
    let mut event = request_event(Kind::AccessDenied, req.request())
        .status(reason.status_code().as_u16().to_string())
        .param("method", super::metrics::method_label(req.method()))
        .param("reason", reason.to_string());
    if let Some(route) = req.match_pattern() {
        event = event.param("route", route);
    }
    let _ = state.audit.append(event).await;
}
