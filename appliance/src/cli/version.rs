//! `airlock version`: what an auditor writes in a change ticket.
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

/// Print the version, source commit, build time, features and this binary's SHA-256.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  airlock version\n  airlock version --json\n\n\
The SBOM is looked for at --sbom, else beside the binary (each installed release keeps\n\
its own: /usr/local/lib/airlock/releases/SHA256/sbom.cdx.json), else in a kit's\n\
share/airlock/; its SHA-256 ties the binary to its bill of materials."
)]
pub struct Args {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// The CycloneDX SBOM of this binary.
    #[arg(long, value_name = "FILE")]
    sbom: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Version {
    name: &'static str,
    version: &'static str,
    /// The source commit (`unknown` when built from a tree without history or pin).
    commit: &'static str,
    /// UTC time fixed by the source (SOURCE_DATE_EPOCH, else the commit's time).
    build_time: String,
    /// Enabled cargo features (GPU backends).
    features: Vec<&'static str>,
    /// The running executable.
    binary: PathBuf,
    binary_sha256: String,
    sbom: Option<PathBuf>,
    sbom_sha256: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the running executable")?;
    let binary_sha256 = sha256_file(&exe)?;
    // Beside the binary (an installed release keeps its own), else where a kit has it.
    let sbom = args.sbom.clone().or_else(|| {
        let dir = exe.parent()?;
        [
            dir.join("sbom.cdx.json"),
            dir.join("../share/airlock/sbom.cdx.json"),
        ]
        .into_iter()
        .find(|p| p.is_file())
    });
    let sbom_sha256 = sbom.as_deref().map(sha256_file).transpose()?;
    let mut features = Vec::new();
    if cfg!(feature = "cuda") {
        features.push("cuda");
    }
    if cfg!(feature = "wgpu") {
        features.push("wgpu");
    }
    let v = Version {
        name: "airlock",
        version: env!("CARGO_PKG_VERSION"),
        commit: env!("AIRLOCK_GIT_COMMIT"),
        build_time: build_time(env!("AIRLOCK_SOURCE_EPOCH")),
        features,
        binary: exe,
        binary_sha256,
        sbom: sbom.map(|p| std::fs::canonicalize(&p).unwrap_or(p)),
        sbom_sha256,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "airlock {} (commit {}, built {})",
            v.version, v.commit, v.build_time
        );
        let features = if v.features.is_empty() {
            "none (CPU only)".to_owned()
        } else {
            v.features.join(", ")
        };
        println!("features: {features}");
        println!("binary: {} sha256 {}", v.binary.display(), v.binary_sha256);
        match (&v.sbom, &v.sbom_sha256) {
            (Some(p), Some(d)) => println!("sbom: {} sha256 {d}", p.display()),
            _ => println!("sbom: not found (pass --sbom FILE)"),
        }
    }
    Ok(())
}

fn build_time(epoch: &str) -> String {
    epoch
        .parse::<i64>()
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

fn sha256_file(path: &Path) -> anyhow::Result<String> {
    crate::kit::sha256_file(path)
        .map(|(_, hex)| hex)
        .with_context(|| format!("cannot read {}", path.display()))
}
