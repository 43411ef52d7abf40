//! `airlock models ...`: installed model versions, activation, explicit rollback.
use super::installed;

/// Installed models.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  airlock models list --config /etc/airlock/airlock.toml\n  \
airlock models activate smollm2-135m 1.1.0\n  airlock models rollback smollm2-135m"
)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    List(installed::ListArgs),
    Activate(installed::ActivateArgs),
    Rollback(installed::RollbackArgs),
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::logging::init_stderr();
    match args.command {
        Command::List(a) => installed::list(a),
        Command::Activate(a) => installed::activate(a),
        Command::Rollback(a) => installed::rollback(a),
    }
}
