//! The drop folder: bundles copied into `STATE_DIR/import/` (from removable media) are
//! verified, installed and activated by the running service, then moved to
//! `import/accepted/` or `import/rejected/` (with a `.reason` file beside it).
//!
//! Why inside the service rather than a separate `airlock-import` unit: sled allows one
//! process per database, and every verify/install/reject must be an audit record, so the
//! process that holds the audit log does the import. It only reads and renames files, so it
//! works under the egress lockdown (Landlock leaves the state dir writable; seccomp does not
//! restrict files).
//!
//! A file is taken only once its size is unchanged between two scans, so a copy still in
//! progress is never read half-written. Verification happens before anything is unpacked
//! (the same path as `POST /v1/admin/bundles`), so a bad bundle never touches the models.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;

use super::state::AppState;
use crate::bundles::AuditSink;

/// How often the folder is scanned.
pub const SCAN_INTERVAL: Duration = Duration::from_secs(2);

/// `STATE_DIR/import/`.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("import")
}

/// Creates the folder and scans it every [`SCAN_INTERVAL`] for `*.airlock` files, for the
/// life of the runtime. Does nothing without a `[trust]` section (nothing could verify).
pub fn spawn(state: web::Data<AppState>) {
    if state.policy.trust.is_none() {
        return;
    }
    let root = dir(&state.policy.state_dir);
    for sub in ["accepted", "rejected"] {
        if let Err(e) = std::fs::create_dir_all(root.join(sub)) {
            tracing::error!(dir = %root.display(), error = %e, "cannot create the import folder");
            return;
        }
    }
    actix_web::rt::spawn(async move {
        // Sizes seen at the previous scan: a file is imported when its size did not move.
        let mut seen: HashMap<PathBuf, u64> = HashMap::new();
        let mut tick = actix_web::rt::time::interval(SCAN_INTERVAL);
        loop {
            tick.tick().await;
            for (path, size) in candidates(&root) {
                if seen.get(&path) == Some(&size) {
                    seen.remove(&path);
                    import_one(&state, path).await;
                } else {
                    seen.insert(path, size);
                }
            }
        }
    });
}

/// `*.airlock` regular files directly in `root`, with their sizes.
fn candidates(root: &Path) -> Vec<(PathBuf, u64)> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            let path = e.path();
            (meta.is_file() && path.extension().is_some_and(|x| x == "airlock"))
                .then_some((path, meta.len()))
        })
        .collect()
}

async fn import_one(state: &web::Data<AppState>, path: PathBuf) {
    let Some(log) = state.audit.log().cloned() else {
        tracing::error!(file = %path.display(), "import postponed: the audit log is not open");
        return;
    };
    let policy = Arc::clone(&state.policy);
    let file = path.clone();
    let outcome = web::block(move || {
        let mut sink = AuditSink {
            log: &log,
            actor: None,
            via: "import",
        };
        crate::bundles::install_file(&policy, &file, true, &mut sink, &mut |_| {})
    })
    .await;
    let root = dir(&state.policy.state_dir);
    let name = path.file_name().map(PathBuf::from).unwrap_or_default();
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
    match outcome {
        Ok(Ok((model, _))) => {
            tracing::info!(
                file = %path.display(), name = %model.name, version = %model.version,
                "import: bundle verified, installed and activated"
            );
            move_to(
                &path,
                &root
                    .join("accepted")
                    .join(format!("{stamp}-{}", name.display())),
            );
            state.model_hooks.activated(&model);
        }
        Ok(Err(e)) => {
            let reason = format!("{e:#}");
            tracing::warn!(file = %path.display(), %reason, "import: bundle rejected");
            let target = root
                .join("rejected")
                .join(format!("{stamp}-{}", name.display()));
            move_to(&path, &target);
            let mut reason_file = target.into_os_string();
            reason_file.push(".reason");
            if let Err(e) = std::fs::write(&reason_file, format!("{reason}\n")) {
                tracing::error!(error = %e, "cannot write the rejection reason");
            }
        }
        Err(_) => tracing::error!(file = %path.display(), "import: the worker failed"),
    }
}

fn move_to(from: &Path, to: &Path) {
    if let Err(e) = std::fs::rename(from, to) {
        tracing::error!(from = %from.display(), to = %to.display(), error = %e, "cannot move an imported bundle");
    }
}
