//! Glue between the policy's `[trust]` section and the `airlock-bundle` crate: the trust
//! root, the model store of the state directory, and installing a bundle file. Used by
//! the CLI (`bundle install`, `models ...`, `dev`), the admin endpoints and the drop folder.
use std::path::{Path, PathBuf};

use airlock_bundle::{
    ActiveModel, BundleError, EventSink, ExpiryEnforcement, Limits, ModelStore, NameRule,
    PublicKey, TrustRoot, TrustedKey,
};
use policy::Policy;

/// Why a bundle operation of the appliance failed: what callers branch on (the admin API
/// picks its HTTP status, the CLI its exit code) without downcasting.
#[derive(Debug, thiserror::Error)]
pub enum BundleOpError {
    /// The policy has no usable `[trust]` section: an operator's configuration mistake.
    #[error(transparent)]
    Trust(#[from] policy::PolicyError),
    /// The bundle file cannot be opened.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Verification, installation or activation refused the bundle, or the store failed.
    #[error(transparent)]
    Bundle(#[from] BundleError),
}

impl BundleOpError {
    /// True for configuration mistakes (the CLI exits 64 on them).
    pub fn is_config(&self) -> bool {
        matches!(self, BundleOpError::Trust(_))
    }
}

/// The trust root of `policy`'s `[trust]` section; a missing or invalid section is
/// [`BundleOpError::Trust`].
pub fn trust_root(policy: &Policy) -> Result<TrustRoot, BundleOpError> {
    let (Some(t), Some(keys)) = (&policy.trust, policy.trust_keys()?) else {
        return Err(BundleOpError::Trust(policy::PolicyError::Invalid {
            path: policy.source().to_owned(),
            line: None,
            key: "trust".into(),
            reason: "missing: no bundle can be verified without trusted publisher keys \
                     (see [trust] in airlock.example.toml)"
                .into(),
        }));
    };
    let keys = keys
        .into_iter()
        .map(|k| TrustedKey {
            name: k.name,
            key: PublicKey::from_raw(k.key),
        })
        .collect();
    let expiry = if t.accept_without_expiry {
        ExpiryEnforcement::UnsafeAllowMissing
    } else {
        ExpiryEnforcement::Required
    };
    Ok(TrustRoot::new(
        keys,
        t.threshold,
        NameRule::Only(t.allowed_names.clone()),
        expiry,
    )?)
}

/// What an activation runs on the version before it swaps the pointer (the service's
/// engine load test): `Err(why)` refuses it.
pub type LoadTest<'a> = &'a mut dyn FnMut(&ActiveModel) -> Result<(), String>;

/// The installed models of `policy`'s state directory.
pub fn store(policy: &Policy) -> ModelStore {
    ModelStore::new(&policy.state_dir)
}

/// Verifies and installs the bundle file at `path`, then, with `activate: Some(load_test)`,
/// activates it if the load test passes ([`ModelStore::activate`]).
pub fn install_file(
    policy: &Policy,
    path: &Path,
    activate: Option<LoadTest<'_>>,
    sink: &mut dyn EventSink,
    progress: &mut dyn FnMut(u64),
) -> Result<(ActiveModel, bool), BundleOpError> {
    let file = std::fs::File::open(path).map_err(|source| BundleOpError::Open {
        path: path.to_owned(),
        source,
    })?;
    let reader = std::io::BufReader::with_capacity(airlock_bundle::CHUNK, file);
    install_reader(policy, reader, activate, sink, progress)
}

/// [`install_file`] on a stream (an upload): nothing is written before the manifest and its
/// signatures, at the head of the stream, pass.
pub fn install_reader(
    policy: &Policy,
    reader: impl std::io::Read,
    activate: Option<LoadTest<'_>>,
    sink: &mut dyn EventSink,
    progress: &mut dyn FnMut(u64),
) -> Result<(ActiveModel, bool), BundleOpError> {
    let trust = trust_root(policy)?;
    let store = store(policy);
    let installed = store.install(
        reader,
        &trust,
        &Limits::default(),
        time::OffsetDateTime::now_utc(),
        sink,
        progress,
    )?;
    if let Some(load_test) = activate {
        let active = store.activate(
            &installed.name,
            &installed.version,
            time::OffsetDateTime::now_utc(),
            load_test,
            sink,
        )?;
        return Ok((active, true));
    }
    Ok((installed, false))
}

/// Name of the dev publisher key under `STATE/dev-keys/`.
pub const DEV_KEY_NAME: &str = "dev-publisher";

/// The `[trust]` section of the dev policy: the dev publisher key, any name.
pub const DEV_TRUST_SECTION: &str = "\n[trust]\n\
# Written by `airlock dev`: bundles signed by the dev publisher key in dev-keys/.\n\
threshold = 1\nallowed_names = [\"*\"]\n\n\
[[trust.publisher]]\nname = \"dev-publisher\"\nkey_file = \"dev-keys/dev-publisher.pub\"\n";

/// The default model path: `$AIRLOCK_DEFAULT_MODEL`, else the cache path of
/// `scripts/fetch-default-model.sh`.
pub fn default_model_path() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("AIRLOCK_DEFAULT_MODEL") {
        return Some(p.into());
    }
    let cache = std::env::var_os("AIRLOCK_CACHE")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|c| std::path::PathBuf::from(c).join("airlock"))
        })
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache/airlock"))
        })?;
    Some(cache.join("models/SmolLM2-135M-Instruct.Q4_1.gguf"))
}

/// A bundle name from a model file name: `SmolLM2-135M-Instruct.Q4_1.gguf` ->
/// `smollm2-135m-instruct.q4_1`.
pub fn dev_model_name(model: &Path) -> String {
    let stem = model
        .file_stem()
        .map(|s| s.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .skip_while(|c| !c.is_ascii_alphanumeric())
        .take(airlock_bundle::MAX_NAME_LEN)
        .collect();
    if name.is_empty() {
        "dev-model".into()
    } else {
        name
    }
}

/// `airlock dev`: packs `model` into a bundle signed with the dev key (`STATE/dev-keys/`),
/// then has `install` install and activate it (the CLI runs `airlock bundle install` in a
/// child process: the audit log's threads must not exist in the process that applies the
/// Landlock lockdown). Idempotent: when the active model of that name already has the
/// file's digest nothing is done; otherwise the sequence is the high-water mark + 1.
pub fn dev_install(
    policy: &Policy,
    model: &Path,
    install: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<(ActiveModel, bool)> {
    use anyhow::Context as _;
    let name = dev_model_name(model);
    let store = store(policy);
    let key_path = policy
        .state_dir
        .join("dev-keys")
        .join(format!("{DEV_KEY_NAME}.key"));
    let key = airlock_bundle::SigningKey::from_file(&key_path)?;
    let digest = sha256_file(model)?;
    if let Some(active) = store.active(&name)?
        && active.sha256 == digest
    {
        return Ok((active, false));
    }
    let sequence = store.high_water(&name)?.unwrap_or(0) + 1;
    let now = time::OffsetDateTime::now_utc();
    let opts = airlock_bundle::CreateOptions {
        name: name.clone(),
        version: airlock_bundle::semver::Version::parse(&format!("1.0.0-dev.{sequence}"))?,
        sequence,
        expires: Some(now + time::Duration::days(365)),
        // The GGUF's own license (refuses a non-GGUF file), else "unknown".
        license: Some(
            airlock_bundle::inspect_model(model)?
                .1
                .unwrap_or_else(|| "unknown".into()),
        ),
        model: model.to_owned(),
        extra: vec![],
        created: now,
    };
    let tmp = policy
        .state_dir
        .join(format!(".dev-bundle-{}.airlock", std::process::id()));
    let result = (|| {
        airlock_bundle::create_bundle(&opts, &tmp, &mut |_| {})?;
        airlock_bundle::sign_bundle(&tmp, &key)?;
        install(&tmp)
    })();
    let _ = std::fs::remove_file(&tmp);
    result.with_context(|| format!("installing dev model {}", model.display()))?;
    let active = store
        .active(&name)?
        .ok_or_else(|| anyhow::anyhow!("dev model {name} was installed but is not active"))?;
    Ok((active, true))
}

fn sha256_file(path: &Path) -> anyhow::Result<airlock_bundle::Sha256> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; airlock_bundle::CHUNK];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    let mut d = [0u8; 32];
    d.copy_from_slice(ctx.finish().as_ref());
    Ok(airlock_bundle::Sha256(d))
}

/// The audit record of a bundle event (ARCHITECTURE.md §6 kinds `bundle.*`, `model.*`).
pub fn audit_event(e: &airlock_bundle::Event, via: &str) -> audit::Event {
    use airlock_bundle::Event as B;
    use audit::{Event, Kind, ModelRef};
    let model = |name: &str, version: &str, sha256: &airlock_bundle::Sha256| ModelRef {
        name: name.to_owned(),
        version: version.to_owned(),
        sha256: audit::Digest(sha256.0),
    };
    let event = match e {
        B::Verify {
            name,
            version,
            sequence,
            signers,
        } => Event::new(Kind::BundleVerify)
            .status("ok")
            .param("name", name.clone())
            .param("version", version.clone())
            .param("sequence", sequence.to_string())
            .param("signers", signers.join(",")),
        B::Install {
            name,
            version,
            sequence,
            sha256,
        } => Event::new(Kind::BundleInstall)
            .status("ok")
            .model(model(name, version, sha256))
            .param("sequence", sequence.to_string()),
        B::Reject { name, reason } => {
            let ev = Event::new(Kind::BundleReject)
                .status("rejected")
                .param("reason", reason.clone());
            match name {
                Some(n) => ev.param("name", n.clone()),
                None => ev,
            }
        }
        B::Activate {
            name,
            version,
            previous,
            sha256,
        } => {
            let ev = Event::new(Kind::ModelActivate)
                .status("ok")
                .model(model(name, version, sha256));
            match previous {
                Some(p) => ev.param("previous", p.clone()),
                None => ev,
            }
        }
        B::Rollback {
            name,
            from,
            to,
            sha256,
        } => Event::new(Kind::ModelRollback)
            .status("ok")
            .model(model(name, to, sha256))
            .param("from", from.clone()),
    };
    event.param("via", via)
}

/// Appends bundle events to the audit log, each flushed before the operation goes on
/// (a failed append aborts the operation). Also logs them with tracing.
#[derive(Debug)]
pub struct AuditSink<'a> {
    /// The open log.
    pub log: &'a audit::AuditLog,
    /// Who acted (the admin's certificate over HTTP; none from the CLI).
    pub actor: Option<audit::Actor>,
    /// `cli`, `http` or `dev`.
    pub via: &'static str,
}

impl EventSink for AuditSink<'_> {
    fn record(&mut self, event: &airlock_bundle::Event) -> Result<(), airlock_bundle::SinkError> {
        let _ = airlock_bundle::TracingSink.record(event);
        let mut e = audit_event(event, self.via);
        e.actor = self.actor.clone();
        self.log.append(e).map(drop).map_err(Into::into)
    }
}

/// Runs `f` with an audit sink on the policy's log (offline commands: the service must
/// be stopped, sled allows one process per database), then closes the log with a final
/// checkpoint. Without a writable audit log nothing is done (fail closed).
pub fn with_audit<T>(
    policy: &Policy,
    via: &'static str,
    f: impl FnOnce(&mut dyn EventSink) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    use anyhow::Context as _;
    let dir = crate::audit_log::dir(&policy.state_dir);
    let log = audit::AuditLog::open(&dir, crate::audit_log::config(&policy.audit)).with_context(
        || {
            format!(
                "cannot open the audit log in {} (while the service runs, use its admin API)",
                dir.display()
            )
        },
    )?;
    let mut sink = AuditSink {
        log: &log,
        actor: None,
        via,
    };
    let result = f(&mut sink);
    if let Err(e) = log.close() {
        tracing::error!(error = %e, "closing the audit log failed");
    }
    result
}
