//! Installed models in the state directory: staging, atomic install, the active pointer,
//! and the anti-rollback high-water marks.
//!
//! ```text
//! STATE/models/.staging/<random>/          a bundle being received (removed on failure)
//! STATE/models/NAME/VERSION/manifest.json  the exact signed bytes
//! STATE/models/NAME/VERSION/signatures.json
//! STATE/models/NAME/VERSION/install.json   when, and which trusted keys signed
//! STATE/models/NAME/VERSION/files/...      the payload
//! STATE/models/NAME/active.json            {"version", "previous": [...]} (written, then renamed)
//! STATE/model-sequences/NAME               highest sequence ever installed (decimal)
//! ```
//! The high-water marks live outside `models/` so that deleting a model does not
//! reopen rollback. The effective mark is the larger of the file and every installed
//! version's sequence, so a crash between install and mark update cannot lower it.
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{BundleError, EventError};
use crate::event::{Event, EventSink};
use crate::limits::Limits;
use crate::manifest::{MANIFEST_ENTRY, Manifest, SIGNATURES_ENTRY, Sha256, check_name};
use crate::signature::{parse_signatures, signatures_to_bytes};
use crate::trust::TrustRoot;
use crate::unpack::{CHUNK, Destination, VerifiedBundle, read_bundle};
use crate::verify::{Context, verify_manifest};

const MODELS: &str = "models";
const STAGING: &str = ".staging";
const SEQUENCES: &str = "model-sequences";
const ACTIVE: &str = "active.json";
const INSTALL: &str = "install.json";
const FILES: &str = "files";
/// How many previously active versions `active.json` remembers for rollback.
pub const MAX_HISTORY: usize = 16;

/// The installed models of one state directory.
#[derive(Debug, Clone)]
pub struct ModelStore {
    state: PathBuf,
}

/// The model a name currently serves: what the engine loads on (hot) reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveModel {
    /// Model name.
    pub name: String,
    /// Version.
    pub version: semver::Version,
    /// Sequence of the installed bundle.
    pub sequence: u64,
    /// The bundle's expiry, as signed: past it the model is not served.
    pub expires: Option<OffsetDateTime>,
    /// The `.gguf` file.
    pub path: PathBuf,
    /// Its SHA-256, as signed.
    pub sha256: Sha256,
    /// Its architecture, as signed.
    pub architecture: String,
}

/// One installed version (`models list`).
#[derive(Debug, Clone)]
pub struct InstalledModel {
    /// The manifest as signed.
    pub manifest: Manifest,
    /// Trusted keys that signed at install time: (policy name, key id).
    pub signers: Vec<(String, String)>,
    /// When it was installed (RFC 3339).
    pub installed: String,
    /// Whether it is the active version of its name.
    pub active: bool,
    /// Its directory.
    pub dir: PathBuf,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct InstallRecord {
    installed: String,
    signers: Vec<SignerRecord>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignerRecord {
    name: String,
    keyid: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivePointer {
    version: semver::Version,
    #[serde(default)]
    previous: Vec<semver::Version>,
}

/// A staging directory removed on drop unless it was renamed into place.
struct Staging {
    path: PathBuf,
    keep: bool,
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.keep
            && let Err(e) = fs::remove_dir_all(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::error!(path = %self.path.display(), error = %e, "cannot remove staging directory");
        }
    }
}

/// An exclusive lock on `models/.lock`, held by install, activate and rollback, so that
/// two concurrent operations (two admin uploads) cannot both pass the anti-rollback check
/// for one name, or race on the active pointer. Released on drop.
struct StoreLock(#[allow(dead_code)] File);

fn fsync_dir(dir: &Path) -> Result<(), BundleError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(BundleError::io(dir))
}

/// Writes `bytes` to `path` atomically: a temp file beside it, fsync, rename, fsync dir.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BundleError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let mut f = File::create(&tmp).map_err(BundleError::io(&tmp))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(BundleError::io(&tmp))?;
    fs::rename(&tmp, path).map_err(BundleError::io(path))?;
    fsync_dir(dir)
}

/// Refuses a bundle whose `expires` has passed at `now`.
fn check_expiry(expires: Option<OffsetDateTime>, now: OffsetDateTime) -> Result<(), BundleError> {
    match expires {
        Some(expires) if expires <= now => Err(BundleError::Expired {
            expires: rfc3339(expires),
        }),
        _ => Ok(()),
    }
}

impl ActiveModel {
    /// `Err` when the bundle has expired at `now`: it must not be served.
    pub fn check_expiry(&self, now: OffsetDateTime) -> Result<(), BundleError> {
        check_expiry(self.expires, now)
    }
}

fn record(sink: &mut dyn EventSink, event: Event) -> Result<(), BundleError> {
    sink.record(&event).map_err(|source| {
        BundleError::Event(EventError {
            kind: event.kind(),
            source,
        })
    })
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

impl ModelStore {
    /// The store of state directory `state` (created on first install).
    pub fn new(state: impl Into<PathBuf>) -> ModelStore {
        ModelStore {
            state: state.into(),
        }
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    fn models(&self) -> PathBuf {
        self.state.join(MODELS)
    }

    fn lock(&self) -> Result<StoreLock, BundleError> {
        let dir = self.models();
        fs::create_dir_all(&dir).map_err(BundleError::io(&dir))?;
        let path = dir.join(".lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(BundleError::io(&path))?;
        f.lock().map_err(BundleError::io(&path))?;
        Ok(StoreLock(f))
    }

    fn version_dir(&self, name: &str, version: &semver::Version) -> PathBuf {
        self.models().join(name).join(version.to_string())
    }

    fn mark_path(&self, name: &str) -> PathBuf {
        self.state.join(SEQUENCES).join(name)
    }

    /// The highest sequence ever installed for `name`, or `None` if never.
    pub fn high_water(&self, name: &str) -> Result<Option<u64>, BundleError> {
        check_name(name)?;
        let path = self.mark_path(name);
        let mark = match fs::read_to_string(&path) {
            Ok(text) => {
                Some(
                    text.trim()
                        .parse::<u64>()
                        .map_err(|e| BundleError::CorruptState {
                            path: path.clone(),
                            reason: format!("not a sequence number: {e}"),
                        })?,
                )
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(BundleError::Io { path, source: e }),
        };
        let installed = self
            .versions(name)?
            .into_iter()
            .map(|m| m.manifest.sequence)
            .max();
        Ok(mark.max(installed))
    }

    /// Verifies a bundle without installing it (`bundle verify`): the header against
    /// `trust` (and this store's high-water marks when `check_rollback`), then every
    /// payload file's size and digest, streamed and discarded.
    pub fn verify<R: Read>(
        &self,
        reader: R,
        trust: &TrustRoot,
        limits: &Limits,
        now: OffsetDateTime,
        check_rollback: bool,
    ) -> Result<VerifiedBundle, BundleError> {
        verify_stream(reader, trust, limits, now, |name| {
            if check_rollback {
                self.high_water(name)
            } else {
                Ok(None)
            }
        })
    }

    /// Verifies and installs a bundle read from `reader` (never activates it). On any
    /// failure the staging directory is removed, nothing is installed, a
    /// [`Event::Reject`] is recorded and the error returned.
    pub fn install<R: Read>(
        &self,
        reader: R,
        trust: &TrustRoot,
        limits: &Limits,
        now: OffsetDateTime,
        sink: &mut dyn EventSink,
        progress: &mut dyn FnMut(u64),
    ) -> Result<ActiveModel, BundleError> {
        let mut name_seen = None;
        let result = self.lock().and_then(|_lock| {
            self.install_inner(reader, trust, limits, now, sink, progress, &mut name_seen)
        });
        if let Err(e) = &result {
            let reject = Event::Reject {
                name: name_seen,
                reason: e.to_string(),
            };
            if let Err(sink_error) = sink.record(&reject) {
                tracing::error!(error = %sink_error, "cannot record bundle.reject");
            }
        }
        result
    }

    #[allow(clippy::too_many_arguments)] // private; the public entry point has six
    fn install_inner<R: Read>(
        &self,
        reader: R,
        trust: &TrustRoot,
        limits: &Limits,
        now: OffsetDateTime,
        sink: &mut dyn EventSink,
        progress: &mut dyn FnMut(u64),
        name_seen: &mut Option<String>,
    ) -> Result<ActiveModel, BundleError> {
        let staging_root = self.models().join(STAGING);
        fs::create_dir_all(&staging_root).map_err(BundleError::io(&staging_root))?;
        let nonce = OffsetDateTime::now_utc().unix_timestamp_nanos();
        let staging = Staging {
            path: staging_root.join(format!("{}-{nonce}", std::process::id())),
            keep: false,
        };
        let files = staging.path.join(FILES);
        fs::create_dir(&staging.path).map_err(BundleError::io(&staging.path))?;
        fs::create_dir(&files).map_err(BundleError::io(&files))?;

        let ctx = Context { trust, limits, now };
        let verify = |manifest: Vec<u8>, sigs: Vec<u8>| {
            let v = verify_manifest(ctx, manifest, &sigs, &mut |name| self.high_water(name))?;
            let m = v.manifest();
            *name_seen = Some(m.name.clone());
            if self.version_dir(&m.name, &m.version).exists() {
                return Err(BundleError::AlreadyInstalled {
                    name: m.name.clone(),
                    version: m.version.to_string(),
                });
            }
            record(
                sink,
                Event::Verify {
                    name: m.name.clone(),
                    version: m.version.to_string(),
                    sequence: m.sequence,
                    signers: v.signers().iter().map(|s| s.name.clone()).collect(),
                },
            )?;
            Ok(v)
        };
        let bundle = read_bundle(
            reader,
            limits,
            verify,
            Destination::Directory(&files),
            progress,
        )?;
        let header = bundle.header();
        let m = header.manifest();

        // The model must be a GGUF of the architecture the publishers signed.
        let model = m.model_file();
        let gguf = airlock_gguf::GgufFile::open(files.join(&model.path)).map_err(|e| {
            BundleError::Model {
                path: model.path.clone(),
                reason: format!("not a valid GGUF: {e}"),
            }
        })?;
        let arch = gguf
            .metadata()
            .get_str("general.architecture")
            .map_err(|e| BundleError::Model {
                path: model.path.clone(),
                reason: e.to_string(),
            })?
            .to_owned();
        drop(gguf);
        if arch != m.architecture {
            return Err(BundleError::Model {
                path: model.path.clone(),
                reason: format!(
                    "architecture `{arch}` differs from the manifest's `{}`",
                    m.architecture
                ),
            });
        }

        let install = InstallRecord {
            installed: rfc3339(now),
            signers: header
                .signers()
                .iter()
                .map(|s| SignerRecord {
                    name: s.name.clone(),
                    keyid: s.keyid.to_string(),
                })
                .collect(),
        };
        let write = |file: &str, bytes: &[u8]| -> Result<(), BundleError> {
            let p = staging.path.join(file);
            let mut f = File::create(&p).map_err(BundleError::io(&p))?;
            f.write_all(bytes)
                .and_then(|()| f.sync_all())
                .map_err(BundleError::io(&p))
        };
        write(MANIFEST_ENTRY, header.manifest_bytes())?;
        write(
            SIGNATURES_ENTRY,
            &signatures_to_bytes(&header.signed().signatures),
        )?;
        // INVARIANT: plain strings always serialise.
        write(
            INSTALL,
            &serde_json::to_vec_pretty(&install).unwrap_or_default(),
        )?;
        fsync_dir(&files)?;
        fsync_dir(&staging.path)?;

        let name_dir = self.models().join(&m.name);
        fs::create_dir_all(&name_dir).map_err(BundleError::io(&name_dir))?;
        let target = self.version_dir(&m.name, &m.version);
        if target.exists() {
            return Err(BundleError::AlreadyInstalled {
                name: m.name.clone(),
                version: m.version.to_string(),
            });
        }
        fs::rename(&staging.path, &target).map_err(BundleError::io(&target))?;
        let mut staging = staging;
        staging.keep = true;
        fsync_dir(&name_dir)?;

        // Raise the high-water mark (never lower it).
        let marks = self.state.join(SEQUENCES);
        fs::create_dir_all(&marks).map_err(BundleError::io(&marks))?;
        let mark = self.high_water(&m.name)?.unwrap_or(0).max(m.sequence);
        write_atomic(&self.mark_path(&m.name), format!("{mark}\n").as_bytes())?;

        record(
            sink,
            Event::Install {
                name: m.name.clone(),
                version: m.version.to_string(),
                sequence: m.sequence,
                sha256: model.sha256,
            },
        )?;
        Ok(self.active_model(m, &target))
    }

    fn active_model(&self, m: &Manifest, dir: &Path) -> ActiveModel {
        let model = m.model_file();
        ActiveModel {
            name: m.name.clone(),
            version: m.version.clone(),
            sequence: m.sequence,
            expires: m.expires,
            path: dir.join(FILES).join(&model.path),
            sha256: model.sha256,
            architecture: m.architecture.clone(),
        }
    }

    /// Reads an installed version's manifest and re-hashes its files (the state
    /// directory is not trusted blindly before a model is activated).
    fn load_checked(
        &self,
        name: &str,
        version: &semver::Version,
    ) -> Result<(Manifest, PathBuf), BundleError> {
        check_name(name)?;
        let dir = self.version_dir(name, version);
        let (m, _) = self.read_installed(&dir).map_err(|e| match e {
            BundleError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                BundleError::NotInstalled(format!("{name} {version}"))
            }
            other => other,
        })?;
        let mut buf = vec![0u8; CHUNK];
        for f in &m.files {
            let path = dir.join(FILES).join(&f.path);
            let mut file = File::open(&path).map_err(BundleError::io(&path))?;
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            let mut size = 0u64;
            loop {
                let n = file.read(&mut buf).map_err(BundleError::io(&path))?;
                if n == 0 {
                    break;
                }
                size += n as u64;
                ctx.update(&buf[..n]);
            }
            let mut got = [0u8; 32];
            got.copy_from_slice(ctx.finish().as_ref());
            if size != f.size || !Sha256(got).ct_eq(&f.sha256) {
                return Err(BundleError::CorruptState {
                    path,
                    reason: "installed file differs from its signed manifest".into(),
                });
            }
        }
        Ok((m, dir))
    }

    fn read_installed(&self, dir: &Path) -> Result<(Manifest, InstallRecord), BundleError> {
        let mp = dir.join(MANIFEST_ENTRY);
        let bytes = fs::read(&mp).map_err(BundleError::io(&mp))?;
        let corrupt = |path: &Path, reason: String| BundleError::CorruptState {
            path: path.to_owned(),
            reason,
        };
        let m =
            Manifest::parse(&bytes, &Limits::default()).map_err(|e| corrupt(&mp, e.to_string()))?;
        let ip = dir.join(INSTALL);
        let text = fs::read(&ip).map_err(BundleError::io(&ip))?;
        let rec: InstallRecord =
            serde_json::from_slice(&text).map_err(|e| corrupt(&ip, e.to_string()))?;
        let sp = dir.join(SIGNATURES_ENTRY);
        let sigs = fs::read(&sp).map_err(BundleError::io(&sp))?;
        parse_signatures(&sigs, usize::MAX).map_err(|e| corrupt(&sp, e.to_string()))?;
        Ok((m, rec))
    }

    fn pointer(&self, name: &str) -> Result<Option<ActivePointer>, BundleError> {
        let path = self.models().join(name).join(ACTIVE);
        match fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| BundleError::CorruptState {
                        path,
                        reason: e.to_string(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BundleError::Io { path, source: e }),
        }
    }

    fn set_pointer(&self, name: &str, p: &ActivePointer) -> Result<(), BundleError> {
        // INVARIANT: plain data always serialises.
        let bytes = serde_json::to_vec_pretty(p).unwrap_or_default();
        write_atomic(&self.models().join(name).join(ACTIVE), &bytes)
    }

    /// Activates an installed version, if it passes, in this order:
    /// 1. its files still hash to the signed manifest;
    /// 2. it has not expired at `now` (an expired bundle is never served);
    /// 3. anti-rollback: its sequence is not below the name's high-water mark (going back
    ///    is [`rollback`](Self::rollback)'s job: explicit, audited, within the retained
    ///    versions);
    /// 4. `check` accepts it: the service load-tests the model here, so a version that
    ///    does not load is refused and the active one keeps serving.
    ///
    /// Only then is the activation recorded and the pointer swapped.
    pub fn activate(
        &self,
        name: &str,
        version: &semver::Version,
        now: OffsetDateTime,
        check: &mut dyn FnMut(&ActiveModel) -> Result<(), String>,
        sink: &mut dyn EventSink,
    ) -> Result<ActiveModel, BundleError> {
        let _lock = self.lock()?;
        let (m, dir) = self.load_checked(name, version)?;
        let old = self.pointer(name)?;
        if old.as_ref().is_some_and(|o| o.version == *version) {
            // Already active: nothing changes, so nothing to check or record.
            return Ok(self.active_model(&m, &dir));
        }
        check_expiry(m.expires, now)?;
        if let Some(high_water) = self.high_water(name)?
            && m.sequence < high_water
        {
            return Err(BundleError::ActivationRollback {
                name: name.to_owned(),
                version: version.to_string(),
                sequence: m.sequence,
                high_water,
            });
        }
        check(&self.active_model(&m, &dir)).map_err(|reason| BundleError::LoadTest {
            name: name.to_owned(),
            version: version.to_string(),
            reason,
        })?;
        let mut previous = Vec::new();
        if let Some(old) = &old {
            previous = old.previous.clone();
            previous.push(old.version.clone());
            let excess = previous.len().saturating_sub(MAX_HISTORY);
            previous.drain(..excess);
        }
        let active = self.active_model(&m, &dir);
        record(
            sink,
            Event::Activate {
                name: name.to_owned(),
                version: version.to_string(),
                previous: old.map(|o| o.version.to_string()),
                sha256: active.sha256,
            },
        )?;
        self.set_pointer(
            name,
            &ActivePointer {
                version: version.clone(),
                previous,
            },
        )?;
        Ok(active)
    }

    /// Explicit rollback: activates the version that was active before the current one,
    /// with the rules of [`activate`](Self::activate) but anti-rollback: the
    /// version must still hash to its manifest, not have expired at `now`, and pass `check`.
    pub fn rollback(
        &self,
        name: &str,
        now: OffsetDateTime,
        check: &mut dyn FnMut(&ActiveModel) -> Result<(), String>,
        sink: &mut dyn EventSink,
    ) -> Result<ActiveModel, BundleError> {
        check_name(name)?;
        let _lock = self.lock()?;
        let Some(mut p) = self.pointer(name)? else {
            return Err(BundleError::NotInstalled(format!(
                "{name} has no active version"
            )));
        };
        let Some(to) = p.previous.pop() else {
            return Err(BundleError::NoPrevious(name.to_owned()));
        };
        let (m, dir) = self.load_checked(name, &to)?;
        // Going back is allowed below the high-water mark, never to an expired bundle.
        check_expiry(m.expires, now)?;
        let active = self.active_model(&m, &dir);
        check(&active).map_err(|reason| BundleError::LoadTest {
            name: name.to_owned(),
            version: to.to_string(),
            reason,
        })?;
        record(
            sink,
            Event::Rollback {
                name: name.to_owned(),
                from: p.version.to_string(),
                to: to.to_string(),
                sha256: active.sha256,
            },
        )?;
        self.set_pointer(
            name,
            &ActivePointer {
                version: to,
                previous: p.previous,
            },
        )?;
        Ok(active)
    }

    /// The active model of `name` (no re-hash: cheap, for hot reload checks).
    pub fn active(&self, name: &str) -> Result<Option<ActiveModel>, BundleError> {
        check_name(name)?;
        let Some(p) = self.pointer(name)? else {
            return Ok(None);
        };
        let dir = self.version_dir(name, &p.version);
        let (m, _) = self.read_installed(&dir)?;
        Ok(Some(self.active_model(&m, &dir)))
    }

    /// Every name's active model, by name.
    pub fn active_all(&self) -> Result<Vec<ActiveModel>, BundleError> {
        let mut out = Vec::new();
        for name in self.names()? {
            if let Some(a) = self.active(&name)? {
                out.push(a);
            }
        }
        Ok(out)
    }

    fn names(&self) -> Result<Vec<String>, BundleError> {
        let models = self.models();
        let rd = match fs::read_dir(&models) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(BundleError::Io {
                    path: models,
                    source: e,
                });
            }
        };
        let mut names: Vec<String> = rd
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| check_name(n).is_ok())
            .collect();
        names.sort();
        Ok(names)
    }

    fn versions(&self, name: &str) -> Result<Vec<InstalledModel>, BundleError> {
        let dir = self.models().join(name);
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(BundleError::Io {
                    path: dir,
                    source: e,
                });
            }
        };
        let active = self.pointer(name)?.map(|p| p.version);
        let mut out = Vec::new();
        for e in rd.filter_map(Result::ok) {
            let path = e.path();
            let is_version = e
                .file_name()
                .to_str()
                .is_some_and(|v| semver::Version::parse(v).is_ok());
            if !path.is_dir() || !is_version {
                continue;
            }
            let (manifest, rec) = self.read_installed(&path)?;
            out.push(InstalledModel {
                active: active.as_ref() == Some(&manifest.version),
                signers: rec.signers.into_iter().map(|s| (s.name, s.keyid)).collect(),
                installed: rec.installed,
                manifest,
                dir: path,
            });
        }
        out.sort_by(|a, b| a.manifest.version.cmp(&b.manifest.version));
        Ok(out)
    }

    /// Every installed version of every name, by name then version.
    pub fn list(&self) -> Result<Vec<InstalledModel>, BundleError> {
        let mut out = Vec::new();
        for name in self.names()? {
            out.extend(self.versions(&name)?);
        }
        Ok(out)
    }

    /// Whether a staging directory is left over (tests; a crash leaves one behind).
    pub fn staging_entries(&self) -> Result<Vec<PathBuf>, BundleError> {
        let dir = self.models().join(STAGING);
        match fs::read_dir(&dir) {
            Ok(rd) => Ok(rd.filter_map(Result::ok).map(|e| e.path()).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(BundleError::Io {
                path: dir,
                source: e,
            }),
        }
    }
}

/// Ad-hoc verification of a bundle stream (no state directory involved).
pub fn verify_stream<R: Read>(
    reader: R,
    trust: &TrustRoot,
    limits: &Limits,
    now: OffsetDateTime,
    mut high_water: impl FnMut(&str) -> Result<Option<u64>, BundleError>,
) -> Result<VerifiedBundle, BundleError> {
    let ctx = Context { trust, limits, now };
    read_bundle(
        reader,
        limits,
        |m, s| verify_manifest(ctx, m, &s, &mut high_water),
        Destination::Discard,
        &mut |_| {},
    )
}
