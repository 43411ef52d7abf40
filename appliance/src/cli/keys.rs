//! `airlock keys ...`: publisher signing keys (offline workstation).
use std::io::Write as _;
use std::path::PathBuf;

use airlock_bundle::SigningKey;
use anyhow::Context as _;

/// Publisher signing keys for model bundles.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  airlock keys generate --out ./keys --name security-team")]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    Generate(GenerateArgs),
}

/// Generate an ed25519 publisher key pair.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  airlock keys generate --out ./keys --name security-team\n\n\
Writes DIR/NAME.key (PKCS#8, PEM, mode 0600: keep it on the offline workstation) and\n\
DIR/NAME.pub (base64 of the raw public key: put it, or its path, in the policy's\n\
[[trust.publisher]]). Refuses to overwrite an existing key."
)]
struct GenerateArgs {
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Key name (file names NAME.key and NAME.pub).
    #[arg(long)]
    name: String,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::logging::init_stderr();
    match args.command {
        Command::Generate(a) => {
            let (key, pub_path) = generate(&a.out, &a.name)?;
            println!("key id {}", key.public().id());
            println!("{}", pub_path.display());
            Ok(())
        }
    }
}

/// Writes `DIR/NAME.key` (0600, never overwritten) and `DIR/NAME.pub`.
pub fn generate(dir: &std::path::Path, name: &str) -> anyhow::Result<(SigningKey, PathBuf)> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        || name.starts_with('.')
    {
        anyhow::bail!("key name `{name}` must be letters, digits, `.`, `_` or `-`");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (key, pem) = SigningKey::generate()?;
    let key_path = dir.join(format!("{name}.key"));
    let pub_path = dir.join(format!("{name}.pub"));
    if pub_path.exists() {
        anyhow::bail!("{} exists: refusing to overwrite a key", pub_path.display());
    }
    let mut opts = std::fs::File::options();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&key_path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!("{} exists: refusing to overwrite a key", key_path.display())
        } else {
            anyhow::anyhow!("cannot create {}: {e}", key_path.display())
        }
    })?;
    f.write_all(pem.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", key_path.display()))?;
    std::fs::write(&pub_path, format!("{}\n", key.public().to_base64()))
        .with_context(|| format!("cannot write {}", pub_path.display()))?;
    Ok((key, pub_path))
}
