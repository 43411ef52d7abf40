//! `airlock bundle ...`: create, sign, verify and install signed model bundles.
use std::path::{Path, PathBuf};

use airlock_bundle::{
    CreateOptions, ExpiryEnforcement, Limits, Manifest, NameRule, PublicKey, Signer, SigningKey,
    TrustRoot, TrustedKey,
};
use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use policy::Policy;
use time::OffsetDateTime;

/// Signed model bundles.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example (offline workstation, then appliance):\n  \
airlock keys generate --out keys --name security-team\n  \
airlock bundle create --model smollm2.gguf --name smollm2-135m --version 1.0.0 --sequence 1 \\\n      \
--expires 2027-12-31 --out smollm2-135m-1.0.0.airlock\n  \
airlock bundle sign smollm2-135m-1.0.0.airlock --key keys/security-team.key\n  \
airlock bundle verify smollm2-135m-1.0.0.airlock --trust-key keys/security-team.pub\n  \
airlock bundle install smollm2-135m-1.0.0.airlock --config /etc/airlock/airlock.toml --activate")]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    Create(CreateArgs),
    Sign(SignArgs),
    Verify(VerifyArgs),
    Install(InstallArgs),
}

/// Pack a GGUF model (and LICENSE/README files) into an unsigned bundle.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  airlock bundle create --model smollm2.gguf --name smollm2-135m --version 1.0.0 \\\n      \
--sequence 1 --expires 2027-12-31 --file LICENSE --out smollm2-135m-1.0.0.airlock\n\n\
Reads the GGUF header (architecture, license; a file that is not a valid GGUF is refused),\n\
streams every file through SHA-256, and writes manifest.json, an empty signatures.json and\n\
the files. Sign it with `airlock bundle sign`."
)]
struct CreateArgs {
    /// The GGUF model file.
    #[arg(long)]
    model: PathBuf,
    /// Model name ([a-z0-9._-]).
    #[arg(long)]
    name: String,
    /// Semantic version.
    #[arg(long)]
    version: airlock_bundle::semver::Version,
    /// Anti-rollback sequence: must exceed every sequence installed for this name.
    #[arg(long)]
    sequence: u64,
    /// Expiry: RFC 3339 time or YYYY-MM-DD (midnight UTC).
    #[arg(long, value_parser = parse_time)]
    expires: Option<OffsetDateTime>,
    /// License (default: the GGUF's general.license).
    #[arg(long)]
    license: Option<String>,
    /// Extra file to include (LICENSE, README); repeatable.
    #[arg(long = "file")]
    files: Vec<PathBuf>,
    /// Output bundle.
    #[arg(long)]
    out: PathBuf,
}

/// Append one signature to a bundle.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  airlock bundle sign model.airlock --key keys/security-team.key\n\n\
Signs manifest.json with the ed25519 key and rewrites the bundle (payload copied verbatim).\n\
Refuses a bundle the key has already signed."
)]
struct SignArgs {
    /// The bundle.
    bundle: PathBuf,
    /// Private key (NAME.key from `airlock keys generate`).
    #[arg(long)]
    key: PathBuf,
}

/// Verify a bundle: signatures, name, expiry, (rollback), every file's size and digest.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  airlock bundle verify model.airlock --config /etc/airlock/airlock.toml\n  \
airlock bundle verify model.airlock --trust-key keys/a.pub --trust-key keys/b.pub --threshold 2\n\n\
With --config: the policy's [trust] section, and the appliance's anti-rollback marks.\n\
With --trust-key: those keys only, any name. Prints the manifest and who signed; exits 1\n\
with the reason when the bundle would be refused."
)]
struct VerifyArgs {
    /// The bundle.
    bundle: PathBuf,
    /// Policy file whose [trust] section to verify against.
    #[arg(long, short, env = "AIRLOCK_CONFIG", conflicts_with = "trust_key")]
    config: Option<PathBuf>,
    /// Trusted public key (NAME.pub); repeatable. Ad-hoc check instead of a policy.
    #[arg(long = "trust-key")]
    trust_key: Vec<PathBuf>,
    /// Distinct trusted keys required (default: the policy's, or 1 with --trust-key).
    #[arg(long)]
    threshold: Option<usize>,
    /// With --trust-key: accept a bundle without `expires`.
    #[arg(long)]
    accept_without_expiry: bool,
}

/// Verify and install a bundle into the state directory (service stopped).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  airlock bundle install model.airlock --config /etc/airlock/airlock.toml --activate\n\n\
Verifies signatures, name, expiry and anti-rollback before any payload byte is written,\n\
streams the files into a staging directory (hashing each), then renames them into\n\
STATE/models/NAME/VERSION/. Any failure removes the staging directory. While the service\n\
runs, use POST /v1/admin/bundles instead."
)]
struct InstallArgs {
    /// The bundle.
    bundle: PathBuf,
    /// Policy file.
    #[arg(long, short, env = "AIRLOCK_CONFIG", default_value = super::DEFAULT_CONFIG)]
    config: PathBuf,
    /// Make it the active version once installed.
    #[arg(long)]
    activate: bool,
}

fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &fmt)
        .map(|d| d.midnight().assume_utc())
        .map_err(|_| format!("`{s}` is neither RFC 3339 nor YYYY-MM-DD"))
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// A byte progress bar on stderr (hidden when stderr is not a terminal).
pub(crate) fn progress_bar(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

fn file_len(p: &Path) -> anyhow::Result<u64> {
    Ok(std::fs::metadata(p)
        .with_context(|| format!("cannot read {}", p.display()))?
        .len())
}

/// Prints a manifest and its signers.
pub(crate) fn print_manifest(m: &Manifest, signers: &[Signer]) {
    println!("name:         {}", m.name);
    println!("version:      {}", m.version);
    println!("sequence:     {}", m.sequence);
    println!("created:      {}", rfc3339(m.created));
    println!(
        "expires:      {}",
        m.expires.map(rfc3339).unwrap_or_else(|| "never".into())
    );
    println!("architecture: {}", m.architecture);
    println!("license:      {}", m.license);
    for f in &m.files {
        println!(
            "file:         {} {} bytes sha256 {}",
            f.path, f.size, f.sha256
        );
    }
    for s in signers {
        println!("signed by:    {} ({})", s.name, s.keyid);
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::logging::init_stderr();
    match args.command {
        Command::Create(a) => create(a),
        Command::Sign(a) => {
            let key = SigningKey::from_file(&a.key)?;
            let sig = airlock_bundle::sign_bundle(&a.bundle, &key)?;
            println!("signed {} with key {}", a.bundle.display(), sig.keyid);
            Ok(())
        }
        Command::Verify(a) => verify(a),
        Command::Install(a) => {
            let policy = Policy::load(&a.config)?;
            let bar = progress_bar(file_len(&a.bundle)?, "installing");
            // Activating load-tests the model first, as the service does.
            let mut test = crate::server::models::LoadTest::new(&policy.engine);
            let mut check = |m: &airlock_bundle::ActiveModel| test.check(m);
            let load_test = a
                .activate
                .then_some(&mut check as crate::bundles::LoadTest<'_>);
            let (model, active) = crate::bundles::with_audit(&policy, "cli", |sink| {
                Ok(crate::bundles::install_file(
                    &policy,
                    &a.bundle,
                    load_test,
                    sink,
                    &mut |n| bar.set_position(n),
                )?)
            })?;
            bar.finish_and_clear();
            println!(
                "installed {} {} (sequence {}) at {}{}",
                model.name,
                model.version,
                model.sequence,
                model.path.display(),
                if active { ", active" } else { "" }
            );
            Ok(())
        }
    }
}

fn create(a: CreateArgs) -> anyhow::Result<()> {
    let mut total = file_len(&a.model)?;
    for f in &a.files {
        total += file_len(f)?;
    }
    let bar = progress_bar(2 * total, "hashing and packing");
    let opts = CreateOptions {
        name: a.name,
        version: a.version,
        sequence: a.sequence,
        expires: a.expires,
        license: a.license,
        model: a.model,
        extra: a.files,
        created: OffsetDateTime::now_utc(),
    };
    let m = airlock_bundle::create_bundle(&opts, &a.out, &mut |n| bar.inc(n))?;
    bar.finish_and_clear();
    print_manifest(&m, &[]);
    println!(
        "wrote {} (unsigned: sign it with `airlock bundle sign`)",
        a.out.display()
    );
    Ok(())
}

fn verify(a: VerifyArgs) -> anyhow::Result<()> {
    let (trust, store) = if a.trust_key.is_empty() {
        let config = a
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from(super::DEFAULT_CONFIG));
        let policy = Policy::load(&config)?;
        let mut trust = crate::bundles::trust_root(&policy)?;
        if let Some(k) = a.threshold {
            trust = trust.with_threshold(k)?;
        }
        (trust, Some(crate::bundles::store(&policy)))
    } else {
        let keys = a
            .trust_key
            .iter()
            .map(|p| {
                Ok(TrustedKey {
                    name: p
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_else(|| p.display().to_string()),
                    key: PublicKey::from_file(p)?,
                })
            })
            .collect::<Result<Vec<_>, airlock_bundle::BundleError>>()?;
        let expiry = if a.accept_without_expiry {
            ExpiryEnforcement::UnsafeAllowMissing
        } else {
            ExpiryEnforcement::Required
        };
        let trust = TrustRoot::new(keys, a.threshold.unwrap_or(1), NameRule::Any, expiry)?;
        (trust, None)
    };
    let file = std::fs::File::open(&a.bundle)
        .with_context(|| format!("cannot open {}", a.bundle.display()))?;
    let now = OffsetDateTime::now_utc();
    let reader = std::io::BufReader::with_capacity(airlock_bundle::CHUNK, file);
    let verified = match &store {
        Some(store) => store.verify(reader, &trust, &Limits::default(), now, true)?,
        None => {
            airlock_bundle::verify_stream(reader, &trust, &Limits::default(), now, |_| Ok(None))?
        }
    };
    let h = verified.header();
    print_manifest(h.manifest(), h.signers());
    let ignored = h
        .signed()
        .signatures
        .iter()
        .filter(|s| trust.name_of(&s.keyid).is_none())
        .count();
    if ignored > 0 {
        println!("ignored:      {ignored} signature(s) by untrusted keys");
    }
    println!(
        "OK: {} of threshold {} trusted signatures, every file matches",
        h.signers().len(),
        trust.threshold()
    );
    Ok(())
}
