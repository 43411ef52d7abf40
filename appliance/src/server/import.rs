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
//! # When a file is taken
//! Only `*.airlock` files are considered, and only once no process is writing them: the
//! folder is watched (inotify), and a file is taken after its writer closed it
//! (`IN_CLOSE_WRITE`) or it was renamed into the folder (`IN_MOVED_TO`), never while a
//! write is pending, however long the writer pauses. Files already there when the service
//! started, which no event describes, are taken once their size and modification time stood
//! still for a whole scan interval. The safe protocol for copying tools is the usual one:
//! write `NAME.airlock.part`, then rename it to `NAME.airlock`.
//!
//! A file that is written to again while it is being verified is not moved (the writer
//! would go on writing into `rejected/`): it stays and is taken again once closed.
//! Verification happens before anything is unpacked (the same path as
//! `POST /v1/admin/bundles`), so a bad bundle never touches the models.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;

use super::models::LoadTest;
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
        let mut watch = Watch::new(&root);
        // Size and mtime seen at the previous scan, for files no event describes.
        let mut seen: HashMap<PathBuf, Stamp> = HashMap::new();
        let mut tick = actix_web::rt::time::interval(SCAN_INTERVAL);
        loop {
            tick.tick().await;
            watch.drain();
            for (path, stamp) in candidates(&root) {
                let take = match watch.state(&path) {
                    Some(Writer::Writing) => false,
                    Some(Writer::Closed) => true,
                    None => seen.get(&path) == Some(&stamp) && stamp.quiet_for(SCAN_INTERVAL),
                };
                if take {
                    seen.remove(&path);
                    import_one(&state, &mut watch, path, stamp).await;
                } else {
                    seen.insert(path, stamp);
                }
            }
        }
    });
}

/// What the watch last saw a writer do to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// Created or modified, not closed since.
    Writing,
    /// Closed after writing, or renamed into the folder.
    Closed,
}

/// The folder's inotify watch: which files a writer still holds.
struct Watch {
    inotify: Option<inotify::Inotify>,
    files: HashMap<std::ffi::OsString, Writer>,
}

impl Watch {
    fn new(root: &Path) -> Watch {
        use inotify::{Inotify, WatchMask};
        let mask = WatchMask::CREATE
            | WatchMask::MODIFY
            | WatchMask::CLOSE_WRITE
            | WatchMask::MOVED_TO
            | WatchMask::MOVED_FROM
            | WatchMask::DELETE;
        let inotify = Inotify::init().and_then(|i| {
            i.watches().add(root, mask)?;
            Ok(i)
        });
        let inotify = match inotify {
            Ok(i) => Some(i),
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "import: no inotify watch; files are taken once their size and mtime stand still"
                );
                None
            }
        };
        Watch {
            inotify,
            files: HashMap::new(),
        }
    }

    /// Reads the pending events (non-blocking).
    fn drain(&mut self) {
        use inotify::EventMask;
        let Some(inotify) = self.inotify.as_mut() else {
            return;
        };
        let mut buf = [0u8; 4096];
        loop {
            let events = match inotify.read_events(&mut buf) {
                Ok(events) => events,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!(error = %e, "import: reading the folder's events failed");
                    return;
                }
            };
            let mut any = false;
            for event in events {
                any = true;
                let Some(name) = event.name else { continue };
                if event
                    .mask
                    .intersects(EventMask::DELETE | EventMask::MOVED_FROM)
                {
                    self.files.remove(name);
                } else if event
                    .mask
                    .intersects(EventMask::CLOSE_WRITE | EventMask::MOVED_TO)
                {
                    self.files.insert(name.to_owned(), Writer::Closed);
                } else if event.mask.intersects(EventMask::CREATE | EventMask::MODIFY) {
                    self.files.insert(name.to_owned(), Writer::Writing);
                }
            }
            if !any {
                return;
            }
        }
    }

    /// What the watch knows of `path`; `None` if nothing (no watch, or the file predates it).
    fn state(&self, path: &Path) -> Option<Writer> {
        self.files.get(path.file_name()?).copied()
    }

    fn forget(&mut self, path: &Path) {
        if let Some(name) = path.file_name() {
            self.files.remove(name);
        }
    }
}

/// A file's size and modification time, to tell whether it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    size: u64,
    modified: Option<std::time::SystemTime>,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            size: meta.len(),
            modified: meta.modified().ok(),
        }
    }

    /// Not modified within the last `d`.
    fn quiet_for(&self, d: Duration) -> bool {
        self.modified
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age >= d)
    }
}

/// `*.airlock` regular files directly in `root`, with their stamps.
fn candidates(root: &Path) -> Vec<(PathBuf, Stamp)> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            let path = e.path();
            (meta.is_file() && path.extension().is_some_and(|x| x == "airlock"))
                .then(|| (path, Stamp::of(&meta)))
        })
        .collect()
}

/// True when `path` changed after it was taken (a writer came back): it must not be moved.
fn written_since(watch: &mut Watch, path: &Path, taken: Stamp) -> bool {
    watch.drain();
    let now = std::fs::metadata(path).map(|m| Stamp::of(&m)).ok();
    watch.state(path) == Some(Writer::Writing) || now != Some(taken)
}

async fn import_one(state: &web::Data<AppState>, watch: &mut Watch, path: PathBuf, taken: Stamp) {
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
        let mut test = LoadTest::new(&policy.engine);
        let installed = crate::bundles::install_file(
            &policy,
            &file,
            Some(&mut |m| test.check(m)),
            &mut sink,
            &mut |_| {},
        )?;
        Ok::<_, crate::bundles::BundleOpError>((installed.0, test.prepared))
    })
    .await;
    let root = dir(&state.policy.state_dir);
    let name = path.file_name().map(PathBuf::from).unwrap_or_default();
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
    match outcome {
        Ok(Ok((model, prepared))) => {
            watch.forget(&path);
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
            if let Some(prepared) = prepared
                && let Err(e) = state.serve(prepared)
            {
                tracing::error!(name = %model.name, error = %e, "import: cannot serve the model");
                state.models.failed_to_load(&model.name, e.to_string());
            }
        }
        Ok(Err(_)) if written_since(watch, &path, taken) => {
            tracing::warn!(
                file = %path.display(),
                "import: the file was written to while it was verified; left in place, taken again once closed"
            );
        }
        Ok(Err(e)) => {
            watch.forget(&path);
            let reason = format!("{e:#}");
            tracing::warn!(file = %path.display(), %reason, "import: bundle rejected");
            let target = root
                .join("rejected")
                .join(format!("{stamp}-{}", name.display()));
            move_to(&path, &target);
            let mut reason_file = target.into_os_string();
            reason_file.push(".reason");
            if let Err(e) = std::fs::write(&reason_file, format!("{}\n", escape_controls(&reason)))
            {
                tracing::error!(error = %e, "cannot write the rejection reason");
            }
        }
        Err(_) => tracing::error!(file = %path.display(), "import: the worker failed"),
    }
}

/// The reason with control characters escaped (`\u{1b}`, `\n`): it quotes names from the
/// bundle (tar entry names are untrusted bytes), and an operator reads the file in a
/// terminal, where a raw ESC sequence would be executed and a newline could forge a line.
fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn move_to(from: &Path, to: &Path) {
    if let Err(e) = std::fs::rename(from, to) {
        tracing::error!(from = %from.display(), to = %to.display(), error = %e, "cannot move an imported bundle");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_cannot_carry_terminal_escapes_or_lines() {
        let reason = "unsafe entry \"a\u{1b}[2J\nb\": path escapes — ünïcode kept";
        let out = escape_controls(reason);
        assert_eq!(
            out,
            "unsafe entry \"a\\u{1b}[2J\\nb\": path escapes — ünïcode kept"
        );
        assert!(!out.chars().any(char::is_control));
    }
}
