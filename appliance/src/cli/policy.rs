//! `airlock policy ...`: policy file tools.
use std::path::PathBuf;

use policy::Policy;

use crate::server;

/// Policy file tools.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  airlock policy check --config /etc/airlock/airlock.toml")]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    Check(CheckArgs),
}

/// Validate a policy file and its TLS material; print the effective policy.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  airlock policy check --config /etc/airlock/airlock.toml\n\n\
Prints the policy with every default filled in and every path resolved. On error, prints\n\
one line naming the file, the key (e.g. identity[2].match.cn) and the reason, and exits 64."
)]
struct CheckArgs {
    /// Policy file.
    #[arg(long, short, env = "AIRLOCK_CONFIG", default_value = super::DEFAULT_CONFIG)]
    config: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::logging::init_stderr();
    match args.command {
        Command::Check(args) => {
            let policy = Policy::load(&args.config)?;
            // Also prove the TLS material is usable (key matches certificate, CA parses,
            // server certificate valid), which the file-existence check cannot.
            server::tls::server_config(&policy.tls)?;
            print!("{}", policy.render_effective()?);
            Ok(())
        }
    }
}
