//! `airlock kit sign`: the last step of `./install.sh --kit` on the build station.
use std::path::PathBuf;

use anyhow::Context;

/// Sign an offline install kit directory (MANIFEST of every file, MANIFEST.sig).
#[derive(Debug, clap::Args)]
#[command(after_help = "Example (what ./install.sh --kit runs last):\n  \
airlock kit sign --dir airlock-kit-0.1.0 --key keys/site.key\n\n\
Writes DIR/keys/publisher.pub (KEY's public half), DIR/MANIFEST (every file with its size\n\
and SHA-256) and DIR/MANIFEST.sig (ed25519, the key format of `airlock keys generate`).\n\
Refuses a directory that is already signed, or that holds a symlink, a special file or a\n\
name outside [A-Za-z0-9._+@()-]. On the air-gapped host, `sudo ./install.sh --from-kit DIR\n\
--trust-key site.pub` checks it with openssl and sha256sum before anything is copied or\n\
run (docs/offline-kit.md).")]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    Sign(SignArgs),
}

/// Write MANIFEST and MANIFEST.sig for a kit directory.
#[derive(Debug, clap::Args)]
struct SignArgs {
    /// The kit directory.
    #[arg(long)]
    dir: PathBuf,
    /// The publisher's signing key (NAME.key of `airlock keys generate`).
    #[arg(long)]
    key: PathBuf,
    /// The source commit recorded in the manifest (default: this binary's).
    #[arg(long)]
    commit: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::logging::init_stderr();
    match args.command {
        Command::Sign(a) => {
            let commit = a
                .commit
                .unwrap_or_else(|| env!("AIRLOCK_GIT_COMMIT").to_owned());
            anyhow::ensure!(
                !commit.is_empty() && commit.bytes().all(|b| b.is_ascii_graphic()),
                "--commit {commit:?}: one word of printable characters"
            );
            let signed = crate::kit::sign(&a.dir, &a.key, &commit)
                .with_context(|| format!("cannot sign the kit {}", a.dir.display()))?;
            println!(
                "signed {} files ({} bytes) in {}: MANIFEST sha256 {}, signer {}",
                signed.files,
                signed.bytes,
                a.dir.display(),
                signed.manifest_sha256,
                signed.signer
            );
            Ok(())
        }
    }
}
