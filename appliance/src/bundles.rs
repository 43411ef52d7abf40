//! Glue between the policy's `[trust]` section and the `airlock-bundle` crate: the trust
//! root, the model store of the state directory, and installing a bundle file. Used by
//! the CLI (`bundle install`, `models ...`, `dev`) and, later, the admin endpoints.
use std::path::Path;

use airlock_bundle::{
    ActiveModel, BundleError, EventSink, ExpiryEnforcement, Limits, ModelStore, NameRule,
    PublicKey, TrustRoot, TrustedKey,
};
use policy::Policy;

/// Why the policy cannot verify bundles.
#[derive(Debug, thiserror::Error)]
pub enum TrustSetupError {
    /// No `[trust]` section: fail closed, nothing can be installed.
    #[error("{}: no [trust] section: bundles cannot be verified (see policy/airlock.example.toml)", .0.display())]
    NoTrust(std::path::PathBuf),
    /// The section is invalid.
    #[error(transparent)]
    Policy(#[from] policy::PolicyError),
    /// The keys do not make a trust root.
    #[error(transparent)]
    Bundle(#[from] BundleError),
}

/// The trust root of `policy`'s `[trust]` section.
pub fn trust_root(policy: &Policy) -> Result<TrustRoot, TrustSetupError> {
    let (Some(t), Some(keys)) = (&policy.trust, policy.trust_keys()?) else {
        return Err(TrustSetupError::NoTrust(policy.source().to_owned()));
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

/// The installed models of `policy`'s state directory.
pub fn store(policy: &Policy) -> ModelStore {
    ModelStore::new(&policy.state_dir)
}

/// Verifies and installs the bundle file at `path`, then activates it if asked.
pub fn install_file(
    policy: &Policy,
    path: &Path,
    activate: bool,
    sink: &mut dyn EventSink,
    progress: &mut dyn FnMut(u64),
) -> anyhow::Result<(ActiveModel, bool)> {
    let trust = trust_root(policy)?;
    let file = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    let store = store(policy);
    let installed = store.install(
        std::io::BufReader::with_capacity(airlock_bundle::CHUNK, file),
        &trust,
        &Limits::default(),
        time::OffsetDateTime::now_utc(),
        sink,
        progress,
    )?;
    if activate {
        let active = store.activate(&installed.name, &installed.version, sink)?;
        return Ok((active, true));
    }
    Ok((installed, false))
}
