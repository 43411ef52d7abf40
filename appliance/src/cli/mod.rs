//! Command line: one module per command group. To add a group, add a variant to
//! [`Command`] with its args struct (and an `after_help` example) and a `run` in its module.
mod audit;
mod bundle;
mod dev;
mod dev_model;
mod doctor;
mod generate;
mod installed;
mod keys;
mod kit;
mod models;
mod pki;
mod policy;
mod serve;
mod version;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: the command failed at run time (I/O, port in use, ...).
pub const EXIT_FAILURE: u8 = 1;
/// Exit status: invalid command line or configuration (`EX_USAGE` of sysexits.h).
pub const EXIT_USAGE: u8 = 64;

/// Default policy path of `serve` and `policy check`.
pub const DEFAULT_CONFIG: &str = "/etc/airlock/airlock.toml";

#[derive(Debug, Parser)]
#[command(
    name = "airlock",
    version,
    about = "Air-gapped LLM inference appliance: OpenAI-compatible API over mutual TLS",
    after_help = "Examples:\n  airlock dev                                   # demo on https://localhost:8443\n  airlock serve --config /etc/airlock/airlock.toml\n\nExit codes: 0 ok, 1 runtime failure, 64 invalid command line or configuration."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Serve(serve::Args),
    Dev(dev::Args),
    Pki(pki::Args),
    Policy(policy::Args),
    Generate(generate::Args),
    Keys(keys::Args),
    Kit(kit::Args),
    Bundle(bundle::Args),
    Models(models::Args),
    Audit(audit::Args),
    Doctor(doctor::Args),
    Version(version::Args),
}

/// Parses arguments, runs the command, maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help / --version
            let _ = e.print();
            return ExitCode::from(EXIT_OK);
        }
        Err(e) => {
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("airlock: {first} (see airlock --help)");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Dev(args) => dev::run(args),
        Command::Pki(args) => pki::run(args),
        Command::Policy(args) => policy::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Keys(args) => keys::run(args),
        Command::Kit(args) => kit::run(args),
        Command::Bundle(args) => bundle::run(args),
        Command::Models(args) => models::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Version(args) => version::run(args),
    };
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) => {
            if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
                eprintln!("airlock: {e:?}");
            } else {
                eprintln!("airlock: {e:#}");
            }
            ExitCode::from(exit_code(&e))
        }
    }
}

/// Configuration mistakes get 64 so scripts and systemd can tell them from failures.
fn exit_code(e: &anyhow::Error) -> u8 {
    let is_config = e.chain().any(|c| {
        c.is::<::policy::PolicyError>()
            || c.is::<crate::error::TlsError>()
            || c.downcast_ref::<crate::bundles::BundleOpError>()
                .is_some_and(crate::bundles::BundleOpError::is_config)
    });
    if is_config { EXIT_USAGE } else { EXIT_FAILURE }
}
