//! `airlock pki ...`: certificates.
use std::path::PathBuf;

/// Certificate tools.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  airlock pki dev --out ./pki")]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    Dev(DevArgs),
}

/// Create a development PKI: a CA, a localhost server certificate, one client
/// certificate per role, and a client certificate from a different CA.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  airlock pki dev --out ./pki\n  \
curl --cert pki/user.crt --key pki/user.key --cacert pki/ca.crt https://localhost:8443/healthz\n\n\
Writes ca.crt/.key, server.crt/.key (localhost, 127.0.0.1, ::1), user, auditor, admin,\n\
operator, privacy .crt/.key (CN = role), foreign-ca.crt and foreign.crt/.key (signed by\n\
another CA, for negative tests). Keys are ECDSA P-256, mode 0600. For development only.")]
struct DevArgs {
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::logging::init_stderr();
    match args.command {
        Command::Dev(args) => {
            for path in crate::pki::generate(&args.out, args.force)? {
                println!("{}", path.display());
            }
            Ok(())
        }
    }
}
