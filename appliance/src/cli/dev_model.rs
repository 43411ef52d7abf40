//! `airlock dev`'s model: a dev publisher key in `STATE/dev-keys/`, a `[trust]` section
//! trusting it, and the default model packed, signed, installed and activated.
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use policy::Policy;

use crate::bundles::{DEV_KEY_NAME, DEV_TRUST_SECTION};

/// Creates `STATE/dev-keys/dev-publisher.{key,pub}` unless it exists.
pub fn ensure_dev_key(state: &Path) -> anyhow::Result<()> {
    let dir = state.join("dev-keys");
    if dir.join(format!("{DEV_KEY_NAME}.key")).exists() {
        return Ok(());
    }
    super::keys::generate(&dir, DEV_KEY_NAME)?;
    Ok(())
}

/// Appends the dev `[trust]` section to a dev policy written before it existed.
pub fn ensure_trust_section(policy: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(policy)
        .with_context(|| format!("cannot read {}", policy.display()))?;
    if text.lines().any(|l| l.trim() == "[trust]") {
        return Ok(());
    }
    std::fs::OpenOptions::new()
        .append(true)
        .open(policy)
        .and_then(|mut f| f.write_all(DEV_TRUST_SECTION.as_bytes()))
        .with_context(|| format!("cannot write {}", policy.display()))
}

/// Installs the model (explicit path, `$AIRLOCK_DEFAULT_MODEL`, or the cache path). A
/// missing default model is a warning (the service then has no model and is not ready);
/// a missing explicit one is an error.
pub fn install_model(policy: &Policy, explicit: Option<PathBuf>) -> anyhow::Result<()> {
    let model = match explicit {
        Some(p) => p,
        None => match crate::bundles::default_model_path() {
            Some(p) if p.is_file() => p,
            other => {
                eprintln!(
                    "airlock: warning: default model not found{}: run scripts/fetch-default-model.sh \
                     or pass --model FILE.gguf; serving without a model",
                    other
                        .map(|p| format!(" at {}", p.display()))
                        .unwrap_or_default()
                );
                return Ok(());
            }
        },
    };
    let (active, installed) = crate::bundles::dev_install(policy, &model, |bundle| {
        // A child process: opening the audit log starts threads, and the lockdown that
        // `serve` applies next needs a single-threaded process.
        let exe = std::env::current_exe().context("cannot find the airlock executable")?;
        let out = std::process::Command::new(exe)
            .arg("bundle")
            .arg("install")
            .arg(bundle)
            .arg("--config")
            .arg(policy.source())
            .arg("--activate")
            .env_remove("RUST_BACKTRACE")
            .output()
            .context("cannot run airlock bundle install")?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let line = err
                .lines()
                .find(|l| l.starts_with("airlock: "))
                .unwrap_or("airlock bundle install failed");
            anyhow::bail!("{}", line.trim_start_matches("airlock: "));
        }
        Ok(())
    })?;
    println!(
        "Model {} {} ({}) {}, signed by the dev publisher key.",
        active.name,
        active.version,
        active.sha256,
        if installed {
            "installed and active"
        } else {
            "already active"
        }
    );
    Ok(())
}
