//! `airlock models list|activate|rollback`: installed model versions in the state
//! directory (the offline side of the admin endpoints).
use std::path::PathBuf;

use policy::Policy;

/// Which policy (and so which state directory).
#[derive(Debug, clap::Args)]
pub struct Where {
    /// Policy file.
    #[arg(long, short, env = "AIRLOCK_CONFIG", default_value = super::DEFAULT_CONFIG)]
    config: PathBuf,
    /// State directory of `airlock dev` (uses STATE/airlock.toml; overrides --config).
    #[arg(long)]
    state: Option<PathBuf>,
}

impl Where {
    fn policy(&self) -> anyhow::Result<Policy> {
        let path = match &self.state {
            Some(s) => s.join("airlock.toml"),
            None => self.config.clone(),
        };
        Ok(Policy::load(&path)?)
    }
}

/// List installed versions: sequence, signers, digests, which is active.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  airlock models list --config /etc/airlock/airlock.toml")]
pub struct ListArgs {
    #[command(flatten)]
    at: Where,
}

/// Make an installed version the active one (re-checks its files first).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  airlock models activate smollm2-135m 1.1.0 --config /etc/airlock/airlock.toml"
)]
pub struct ActivateArgs {
    /// Model name.
    name: String,
    /// Installed version.
    version: airlock_bundle::semver::Version,
    #[command(flatten)]
    at: Where,
}

/// Go back to the previously active version (the only way back; audited).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  airlock models rollback smollm2-135m --config /etc/airlock/airlock.toml"
)]
pub struct RollbackArgs {
    /// Model name.
    name: String,
    #[command(flatten)]
    at: Where,
}

/// `models list`
pub fn list(a: ListArgs) -> anyhow::Result<()> {
    let store = crate::bundles::store(&a.at.policy()?);
    let list = store.list()?;
    if list.is_empty() {
        println!("no models installed in {}", store.state_dir().display());
    }
    for m in list {
        let man = &m.manifest;
        let signers: Vec<&str> = m.signers.iter().map(|(n, _)| n.as_str()).collect();
        println!(
            "{} {} sequence {}{} signed by {} installed {}",
            man.name,
            man.version,
            man.sequence,
            if m.active { " ACTIVE" } else { "" },
            signers.join(", "),
            m.installed
        );
        for f in &man.files {
            println!("  {} {} bytes sha256 {}", f.path, f.size, f.sha256);
        }
    }
    Ok(())
}

/// `models activate`
pub fn activate(a: ActivateArgs) -> anyhow::Result<()> {
    let policy = a.at.policy()?;
    let store = crate::bundles::store(&policy);
    // The same rules as the service's activation: expiry, anti-rollback, a load test.
    let mut test = crate::server::models::LoadTest::new(&policy.engine);
    let m = crate::bundles::with_audit(&policy, "cli", |sink| {
        Ok(store.activate(
            &a.name,
            &a.version,
            time::OffsetDateTime::now_utc(),
            &mut |m| test.check(m),
            sink,
        )?)
    })?;
    println!("active: {} {} ({})", m.name, m.version, m.path.display());
    Ok(())
}

/// `models rollback`
pub fn rollback(a: RollbackArgs) -> anyhow::Result<()> {
    let policy = a.at.policy()?;
    let store = crate::bundles::store(&policy);
    let mut test = crate::server::models::LoadTest::new(&policy.engine);
    let m = crate::bundles::with_audit(&policy, "cli", |sink| {
        let now = time::OffsetDateTime::now_utc();
        Ok(store.rollback(&a.name, now, &mut |m| test.check(m), sink)?)
    })?;
    println!(
        "rolled back: {} {} is active ({})",
        m.name,
        m.version,
        m.path.display()
    );
    Ok(())
}
