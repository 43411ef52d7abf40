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
//! Hot reload: after a successful activation or rollback the [`ModelHooks`] of the
//! [`AppState`] are called with the newly active model; the engine registers one at start
//! and swaps its model there (requests in flight keep the model they started with).
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use actix_web::{HttpRequest, HttpResponse, web};
use airlock_bundle::{ActiveModel, BundleError, ModelStore};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;

use super::audit::{AuditUnavailable, actor};
use super::error::ApiError;
use super::identity::Identity;
use super::routes::read_body;
use super::state::AppState;
use crate::bundles::AuditSink;

/// Called with the newly active model (hot reload).
pub type ActivationHook = Arc<dyn Fn(&ActiveModel) + Send + Sync>;

/// The activation hooks of the service (cheap to clone).
#[derive(Clone, Default)]
pub struct ModelHooks(Arc<RwLock<Vec<ActivationHook>>>);

impl std::fmt::Debug for ModelHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.read().unwrap_or_else(PoisonError::into_inner).len();
        write!(f, "ModelHooks({n} hooks)")
    }
}

impl ModelHooks {
    /// Registers `hook`, called after every activation and rollback.
    pub fn on_activate(&self, hook: ActivationHook) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(hook);
    }

    /// Calls every hook with `model`.
    pub fn activated(&self, model: &ActiveModel) {
        let hooks = self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for hook in hooks {
            hook(model);
        }
    }
}

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

fn bundle_error(e: anyhow::Error) -> ApiError {
    match e.downcast_ref::<BundleError>() {
        Some(BundleError::Event(_)) => AuditUnavailable.into(),
        Some(BundleError::Io { .. }) | Some(BundleError::CorruptState { .. }) => {
            tracing::error!(error = %e, "model store error");
            ApiError::Internal
        }
        Some(b) => ApiError::BadRequest {
            message: format!("bundle rejected: {b}"),
            param: None,
        },
        None if e.chain().any(|c| c.is::<policy::PolicyError>()) => ApiError::Unavailable {
            message: "bundles cannot be verified: the policy has no valid [trust] section".into(),
            code: "no_trust_policy",
        },
        None => {
            tracing::error!(error = %e, "bundle operation failed");
            ApiError::Internal
        }
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
    f: impl FnOnce(&ModelStore, &mut AuditSink<'_>) -> anyhow::Result<T> + Send + 'static,
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

/// Removes an uploaded bundle file when the request ends, whatever the outcome.
struct Upload(PathBuf);

impl Drop for Upload {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

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
    let dir = state.policy.state_dir.join("models").join(".incoming");
    let path = dir.join(format!(
        "{}-{}.airlock",
        std::process::id(),
        time::OffsetDateTime::now_utc().unix_timestamp_nanos()
    ));
    let upload = Upload(path.clone());
    let io_error = |e: std::io::Error| {
        tracing::error!(error = %e, "cannot store an uploaded bundle");
        ApiError::Internal
    };
    std::fs::create_dir_all(&dir).map_err(io_error)?;
    let mut file = std::io::BufWriter::with_capacity(
        airlock_bundle::CHUNK,
        std::fs::File::create(&path).map_err(io_error)?,
    );
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
        file.write_all(&chunk).map_err(io_error)?;
    }
    file.flush().map_err(io_error)?;
    drop(file);
    let policy = Arc::clone(&state.policy);
    let activate = query.activate;
    let (model, active) = with_store(&state, &req, move |_, sink| {
        crate::bundles::install_file(&policy, &upload.0, activate, sink, &mut |_| {})
    })
    .await?;
    if active {
        state.model_hooks.activated(&model);
    }
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
    let m = with_store(&state, &req, move |store, sink| {
        Ok(store.activate(&name, &version, sink)?)
    })
    .await?;
    state.model_hooks.activated(&m);
    Ok(HttpResponse::Ok().json(model_json(&m, true)))
}

/// `POST /v1/admin/models/{name}/rollback`
pub async fn rollback(
    req: HttpRequest,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    let m = with_store(&state, &req, move |store, sink| {
        Ok(store.rollback(&name, sink)?)
    })
    .await?;
    state.model_hooks.activated(&m);
    Ok(HttpResponse::Ok().json(model_json(&m, true)))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn hooks_see_every_activation() {
        let hooks = ModelHooks::default();
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&seen);
        hooks.on_activate(Arc::new(move |m: &ActiveModel| {
            assert_eq!(m.name, "m");
            counter.fetch_add(1, Ordering::SeqCst);
        }));
        let model = ActiveModel {
            name: "m".into(),
            version: airlock_bundle::semver::Version::new(1, 0, 0),
            sequence: 1,
            path: PathBuf::from("/x"),
            sha256: airlock_bundle::Sha256([0; 32]),
            architecture: "llama".into(),
        };
        hooks.activated(&model);
        hooks.clone().activated(&model);
        assert_eq!(seen.load(Ordering::SeqCst), 2);
    }
}
