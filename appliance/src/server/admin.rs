//! Model administration over HTTP (admin role, ARCHITECTURE.md §4; the bundle path is §11):
//! - `POST /v1/admin/bundles[?activate=true]`: the body is a bundle, streamed to a file in
//!   `STATE/models/.incoming/` (at most `trust.max_bundle_bytes`, 413 above), then
//!   verified and installed exactly as `airlock bundle install` does;
//! - `GET /v1/admin/models`: installed versions, the active one;
//! - `POST /v1/admin/models/{name}/activate` `{"version": "1.1.0"}` and
//!   `POST /v1/admin/models/{name}/rollback`.
//!
//! Every verify, install, reject, activation and rollback is an audit record naming the
//! admin's certificate, flushed before the effect (fail closed: 503 without the log).
//! Hot swap: an activation first load-tests the version (a model that does not load is
//! refused and the active one keeps serving), then [`AppState::serve`]s the engine it
//! loaded; requests in flight keep the model they started with.
use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use airlock_bundle::{ActiveModel, BundleError, ModelStore};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;

use super::audit::{AuditUnavailable, actor};
use super::body::read_body;
use super::error::ApiError;
use super::identity::Identity;
use super::models::{LoadTest, Prepared};
use super::state::AppState;
use crate::bundles::{AuditSink, BundleOpError};

/// `?activate=true`
#[derive(Debug, Deserialize)]
pub struct UploadQuery {
    #[serde(default)]
    activate: bool,
}

/// `{"version": "..."}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivateBody {
    version: String,
}

fn bundle_error(e: BundleOpError) -> ApiError {
    match e {
        BundleOpError::Bundle(BundleError::Event(_)) => AuditUnavailable.into(),
        BundleOpError::Bundle(BundleError::Io { .. } | BundleError::CorruptState { .. })
        | BundleOpError::Open { .. } => {
            tracing::error!(error = %e, "model store error");
            ApiError::Internal
        }
        BundleOpError::Bundle(b) => ApiError::BadRequest {
            message: format!("bundle rejected: {b}"),
            param: None,
        },
        BundleOpError::Trust(_) => ApiError::Unavailable {
            message: "bundles cannot be verified: the policy has no valid [trust] section".into(),
            code: "no_trust_policy",
        },
    }
}

fn model_json(m: &ActiveModel, active: bool) -> serde_json::Value {
    json!({
        "name": m.name,
        "version": m.version.to_string(),
        "sequence": m.sequence,
        "sha256": m.sha256.to_string(),
        "architecture": m.architecture,
        "active": active,
    })
}

/// Runs a store operation with an audit sink, off the async workers.
async fn with_store<T: Send + 'static>(
    state: &AppState,
    req: &HttpRequest,
    f: impl FnOnce(&ModelStore, &mut AuditSink<'_>) -> Result<T, BundleOpError> + Send + 'static,
) -> Result<T, ApiError> {
    let log = state.audit.log().cloned().ok_or(AuditUnavailable)?;
    let who = req.conn_data::<Identity>().map(actor);
    let store = crate::bundles::store(&state.policy);
    let result = web::block(move || {
        let mut sink = AuditSink {
            log: &log,
            actor: who,
            via: "http",
        };
        f(&store, &mut sink)
    })
    .await
    .map_err(|_| ApiError::Internal)?;
    result.map_err(bundle_error)
}

/// A blocking `Read` over the chunks of a request body, for the bundle installer on the
/// blocking pool. The handler feeds it as chunks arrive; EOF when the handler drops the
/// sender (end of body, or the upload was cut off).
struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<web::Bytes>,
    chunk: web::Bytes,
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.chunk = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// Chunks in flight between the request body and the installer.
const UPLOAD_CHANNEL_CHUNKS: usize = 16;

/// `POST /v1/admin/bundles`
pub async fn upload(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<UploadQuery>,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let limit = state
        .policy
        .trust
        .as_ref()
        .map(|t| t.max_bundle_bytes)
        .ok_or_else(|| ApiError::Unavailable {
            message: "bundles cannot be verified: the policy has no [trust] section".into(),
            code: "no_trust_policy",
        })?;
    // The body streams straight into the installer, which verifies the manifest and its
    // signatures from the head of the stream and writes nothing before they pass: an
    // unsigned or wrongly signed upload is refused after its first few KiB, not after the
    // whole (possibly many-GiB) body was spooled to disk.
    let (tx, rx) = tokio::sync::mpsc::channel(UPLOAD_CHANNEL_CHUNKS);
    let policy = Arc::clone(&state.policy);
    let activate = query.activate;
    let install = with_store(&state, &req, move |_, sink| {
        let reader = ChunkReader {
            rx,
            chunk: web::Bytes::new(),
        };
        let mut test = LoadTest::new(&policy.engine);
        let mut check = |m: &ActiveModel| test.check(m);
        let load_test = activate.then_some(&mut check as crate::bundles::LoadTest<'_>);
        let installed = crate::bundles::install_reader(
            &policy,
            std::io::BufReader::with_capacity(airlock_bundle::CHUNK, reader),
            load_test,
            sink,
            &mut |_| {},
        )?;
        Ok((installed, test.prepared))
    });
    let feed = async move {
        let mut received: u64 = 0;
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|_| ApiError::BadRequest {
                message: "could not read the request body".into(),
                param: None,
            })?;
            received += chunk.len() as u64;
            if received > limit {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            if tx.send(chunk).await.is_err() {
                // The installer stopped (refused the bundle): the rest is not read.
                break;
            }
        }
        Ok(())
    };
    use futures_util::future::{Either, select};
    let installed = match select(std::pin::pin!(feed), std::pin::pin!(install)).await {
        // The body ended first: a cut-off or oversized one explains the installer's
        // "truncated" error, so it is the answer; otherwise the installer's result is.
        Either::Left((fed, install)) => {
            fed?;
            install.await
        }
        // The installer finished first, having refused the head: the rest is not read.
        Either::Right((installed, _feed)) => installed,
    };
    let ((model, active), prepared) = installed?;
    serve(&state, prepared)?;
    Ok(HttpResponse::Ok().json(model_json(&model, active)))
}

/// `GET /v1/admin/models`
pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let store = crate::bundles::store(&state.policy);
    let list = web::block(move || store.list())
        .await
        .map_err(|_| ApiError::Internal)?
        .map_err(|e| bundle_error(e.into()))?;
    let models: Vec<serde_json::Value> = list
        .iter()
        .map(|m| {
            let man = &m.manifest;
            json!({
                "name": man.name,
                "version": man.version.to_string(),
                "sequence": man.sequence,
                "active": m.active,
                "installed": m.installed,
                "architecture": man.architecture,
                "license": man.license,
                "signers": m.signers.iter().map(|(n, k)| json!({"name": n, "keyid": k})).collect::<Vec<_>>(),
                "files": man.files.iter().map(|f| json!({"path": f.path, "size": f.size, "sha256": f.sha256.to_string()})).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "object": "list", "data": models })))
}

/// `POST /v1/admin/models/{name}/activate`
pub async fn activate(
    req: HttpRequest,
    state: web::Data<AppState>,
    name: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let bytes = read_body(&state, body).await?;
    let parsed: ActivateBody =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest {
            message: format!("expected {{\"version\": \"SEMVER\"}}: {e}"),
            param: Some("version".into()),
        })?;
    let version = airlock_bundle::semver::Version::parse(&parsed.version).map_err(|e| {
        ApiError::BadRequest {
            message: format!("version: {e}"),
            param: Some("version".into()),
        }
    })?;
    let name = name.into_inner();
    let config = state.policy.engine.clone();
    let (m, prepared) = with_store(&state, &req, move |store, sink| {
        let mut test = LoadTest::new(&config);
        let m = store.activate(
            &name,
            &version,
            time::OffsetDateTime::now_utc(),
            &mut |m| test.check(m),
            sink,
        )?;
        Ok((m, test.prepared))
    })
    .await?;
    serve(&state, prepared)?;
    Ok(HttpResponse::Ok().json(model_json(&m, true)))
}

/// Serves a model an activation loaded. The activation is already durable: failing here
/// (no thread for the decoder) leaves the previous version serving, and `/readyz` says so.
fn serve(state: &AppState, prepared: Option<Prepared>) -> Result<(), ApiError> {
    let Some(prepared) = prepared else {
        return Ok(());
    };
    let name = prepared.active.name.clone();
    state.serve(prepared).map_err(|e| {
        tracing::error!(%name, error = %e, "cannot serve an activated model");
        state.models.failed_to_load(&name, e.to_string());
        ApiError::Internal
    })
}

/// `POST /v1/admin/models/{name}/rollback`
pub async fn rollback(
    req: HttpRequest,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    let config = state.policy.engine.clone();
    let (m, prepared) = with_store(&state, &req, move |store, sink| {
        let mut test = LoadTest::new(&config);
        let now = time::OffsetDateTime::now_utc();
        let m = store.rollback(&name, now, &mut |m| test.check(m), sink)?;
        Ok((m, test.prepared))
    })
    .await?;
    serve(&state, prepared)?;
    Ok(HttpResponse::Ok().json(model_json(&m, true)))
}
