//! `airlock audit ...`: the auditor's offline tools (ARCHITECTURE.md §3, §6).
//!
//! Every command but `pubkey` opens the sled database, which one process at a time may
//! hold: while the service runs they fail with a one-line error pointing at the admin API
//! (`GET /v1/audit/records`, `GET /v1/audit/checkpoint`, `POST /v1/audit/erase`). They
//! never create a state directory or a log: a missing one is an error. `verify --export`
//! needs nothing but the export file and the public key, on any machine.
use std::fs;
use std::io::{BufReader, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use audit::note::Verifier;
use audit::{AuditLog, Options, Reason};
use policy::Policy;

/// Audit log tools: public key, offline verification, export, reports, proofs, erasure,
/// subject access.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example (an auditor, with the service stopped):\n  \
airlock audit pubkey --state /var/lib/airlock > audit.pub\n  \
airlock audit export --state /var/lib/airlock --out audit-2026-11.jsonl\n  \
airlock audit verify --export audit-2026-11.jsonl --key audit.pub\n  \
airlock audit report --export audit-2026-11.jsonl --key audit.pub --out report.html\n\n\
--state is the service's state directory (the log is in STATE/audit/). While the\n\
service runs, use its API instead: GET /v1/audit/checkpoint, GET /v1/audit/records.")]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    Pubkey(PubkeyArgs),
    Verify(VerifyArgs),
    Export(ExportArgs),
    Prove(ProveArgs),
    Erase(EraseArgs),
    Show(ShowArgs),
    Report(ReportArgs),
    Subject(SubjectArgs),
}

/// Print the audit signing key's public half (a C2SP vkey), for auditors to pin.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  airlock audit pubkey --state /var/lib/airlock > audit.pub\n\n\
Prints NAME+KEYID+BASE64 (the C2SP signed-note verifier key). Works while the service\n\
runs: it reads only the key files."
)]
struct PubkeyArgs {
    /// The service's state directory (or its audit/ subdirectory).
    #[arg(long)]
    state: PathBuf,
}

/// Verify a log offline: every hash, link and checkpoint signature.
#[derive(Debug, clap::Args)]
#[command(
    group = clap::ArgGroup::new("source").required(true).args(["state", "export"]),
    after_help = "Examples:\n  airlock audit verify --export audit.jsonl --key audit.pub\n  \
airlock audit verify --state /var/lib/airlock --key audit.pub --since-checkpoint old-checkpoint.txt\n\n\
Prints `OK: N records, head HEX, last checkpoint SIZE` and exits 0, or prints the first\n\
failing record (seq, export line) and why (edited, missing, inserted, reordered,\n\
truncated, bad signature, wrong key) and exits 1."
)]
struct VerifyArgs {
    /// The service's state directory (the service must be stopped).
    #[arg(long)]
    state: Option<PathBuf>,
    /// An export file written by `airlock audit export`.
    #[arg(long)]
    export: Option<PathBuf>,
    /// The pinned public key: a file holding the output of `airlock audit pubkey`, or the
    /// key text itself.
    #[arg(long, value_name = "PUBKEY")]
    key: String,
    /// An older signed checkpoint you kept: the log must extend it.
    #[arg(long, value_name = "FILE")]
    since_checkpoint: Option<PathBuf>,
}

/// Write records (and the checkpoint covering them) as a JSON Lines export.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  \
airlock audit export --state /var/lib/airlock --out audit.jsonl --from 1000 --to 1999\n\n\
Refuses to overwrite FILE. The export verifies on its own with `airlock audit verify\n\
--export FILE --key PUBKEY`; its format is described in audit/FORMAT.md.")]
struct ExportArgs {
    /// The service's state directory (the service must be stopped).
    #[arg(long)]
    state: PathBuf,
    /// Export file to create.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// First seq (default 0).
    #[arg(long, value_name = "SEQ")]
    from: Option<u64>,
    /// Last seq (default: the last record).
    #[arg(long, value_name = "SEQ")]
    to: Option<u64>,
}

/// Print an RFC 6962 inclusion proof of one record.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  airlock audit prove --state /var/lib/airlock --seq 41 --size 1000\n\n\
Without --size, the tree is that of the latest signed checkpoint (or the whole log when\n\
the record is newer). With --json the proof is printed as JSON."
)]
struct ProveArgs {
    /// The service's state directory (the service must be stopped).
    #[arg(long)]
    state: PathBuf,
    /// The record.
    #[arg(long)]
    seq: u64,
    /// Tree size.
    #[arg(long)]
    size: Option<u64>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Crypto-shred a data subject's sealed content (the chain still verifies).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  airlock audit erase --subject case-4711 --state /var/lib/airlock\n\n\
Destroys the subject's content keys and appends an audit.erase record. The state\n\
directory is --state, else the policy's state_dir (--config). While the service runs,\n\
use POST /v1/audit/erase with a privacy-role certificate instead."
)]
struct EraseArgs {
    /// The data subject (the `Airlock-Subject` header value, or a client fingerprint).
    #[arg(long)]
    subject: String,
    /// The service's state directory (default: the policy's state_dir).
    #[arg(long)]
    state: Option<PathBuf>,
    /// Policy file, read for its state_dir when --state is not given.
    #[arg(long, short, env = "AIRLOCK_CONFIG", default_value = super::DEFAULT_CONFIG)]
    config: PathBuf,
}

/// Print one record, with its sealed content decrypted when its key still exists.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  airlock audit show 41 --state /var/lib/airlock\n\n\
Prints JSON: {\"record\": ..., \"content\": {\"prompt\", \"output\"} | \"erased\" | null}."
)]
struct ShowArgs {
    /// The record's seq.
    seq: u64,
    /// The service's state directory (the service must be stopped).
    #[arg(long)]
    state: PathBuf,
}

/// Verify a log, then write a report of who used the appliance for what (HTML, PDF, JSON).
#[derive(Debug, clap::Args)]
#[command(
    group = clap::ArgGroup::new("source").required(true).args(["state", "export"]),
    after_help = "Examples:\n  \
airlock audit report --export audit.jsonl --key audit.pub --out report.html\n  \
airlock audit report --export audit.jsonl --key audit.pub --from 2026-11-01 --to 2026-11-30 \\\n      \
--since-checkpoint last-quarter.checkpoint --out 2026-11.pdf\n\n\
The log is verified first, exactly as `airlock audit verify` does, in the same read: a log\n\
that fails gets no report (the first failure is printed, exit 1, nothing written). Then\n\
OUT gets requests per day, per identity, role and model, tokens, refusals, denied\n\
accesses, erasures, model and policy changes, service starts with their egress lockdown,\n\
and gaps in service time. The format follows OUT's extension: .html (one self-contained\n\
page: no script, no external reference, printable), .pdf, or .json (the same numbers, for\n\
a SIEM). --from/--to are UTC days, both included; verification always covers the whole\n\
input. Refuses to overwrite OUT."
)]
struct ReportArgs {
    /// An export file written by `airlock audit export`.
    #[arg(long)]
    export: Option<PathBuf>,
    /// The service's state directory instead of an export (the service must be stopped).
    #[arg(long)]
    state: Option<PathBuf>,
    /// The pinned public key: a file holding the output of `airlock audit pubkey`, or the
    /// key text itself.
    #[arg(long, value_name = "PUBKEY")]
    key: String,
    /// An older signed checkpoint you kept: the log must extend it.
    #[arg(long, value_name = "FILE")]
    since_checkpoint: Option<PathBuf>,
    /// First day reported (UTC, YYYY-MM-DD).
    #[arg(long, value_name = "DATE", value_parser = parse_day)]
    from: Option<time::Date>,
    /// Last day reported (UTC, YYYY-MM-DD), included.
    #[arg(long, value_name = "DATE", value_parser = parse_day)]
    to: Option<time::Date>,
    /// The report to create: report.html, report.pdf or report.json.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

fn parse_day(s: &str) -> Result<time::Date, String> {
    audit_report::parse_date("date", s).map_err(|_| format!("{s:?} is not a date (YYYY-MM-DD)"))
}

/// List the records of one data subject, with their sealed content (GDPR Art. 15 access).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  airlock audit subject --subject case-4711 --state /var/lib/airlock > case-4711.json\n\n\
Prints JSON: {\"subject\", \"records\": N, \"entries\": [{\"record\": ..., \"content\":\n\
{\"prompt\", \"output\"} | \"erased\" | null}]}. A record is the subject's when its\n\
`subject` is SUBJECT (the Airlock-Subject header, or the erased subject of audit.erase),\n\
when its content is sealed under SUBJECT's key, or when it has no subject and its client\n\
certificate's fingerprint is SUBJECT. Content is shown while the subject's key exists\n\
(audit.content = \"sealed\"); with digests only, the records are listed without it. The\n\
log is verified when it is opened. The service must be stopped."
)]
struct SubjectArgs {
    /// The data subject (the `Airlock-Subject` header value, or a client fingerprint).
    #[arg(long)]
    subject: String,
    /// The service's state directory (the service must be stopped).
    #[arg(long)]
    state: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::logging::init_stderr();
    match args.command {
        Command::Pubkey(a) => pubkey(a),
        Command::Verify(a) => verify(a),
        Command::Export(a) => export(a),
        Command::Prove(a) => prove(a),
        Command::Erase(a) => erase(a),
        Command::Show(a) => show(a),
        Command::Report(a) => report(a),
        Command::Subject(a) => subject(a),
    }
}

/// The audit log directory of a state directory: `STATE/audit`, or `STATE` itself when it
/// is an audit log directory. Creates nothing.
pub fn audit_dir(state: &Path) -> anyhow::Result<PathBuf> {
    if !state.is_dir() {
        bail!("state directory {} does not exist", state.display());
    }
    let sub = crate::audit_log::dir(state);
    if audit::exists(&sub) {
        return Ok(sub);
    }
    if audit::exists(state) {
        return Ok(state.to_path_buf());
    }
    bail!(
        "no audit log in {} (expected {}; has the service started once?)",
        state.display(),
        sub.display()
    )
}

/// The one-line error for a database held by the running service.
fn in_use(dir: &Path) -> anyhow::Error {
    anyhow!(
        "the audit log in {} is in use by the running service (one process at a time); \
         stop it, or use the admin API (GET /v1/audit/records, GET /v1/audit/checkpoint, \
         POST /v1/audit/erase)",
        dir.display()
    )
}

fn open_error(dir: &Path, e: audit::Error) -> anyhow::Error {
    match e {
        audit::Error::Locked { .. } => in_use(dir),
        e => anyhow!(e).context(format!("cannot open the audit log in {}", dir.display())),
    }
}

fn open_read_only(state: &Path) -> anyhow::Result<AuditLog> {
    let dir = audit_dir(state)?;
    AuditLog::open_read_only(&dir).map_err(|e| open_error(&dir, e))
}

/// `--key`: a file holding a vkey, or the vkey itself.
fn read_key(arg: &str) -> anyhow::Result<Verifier> {
    if let Ok(v) = Verifier::from_vkey(arg.trim()) {
        return Ok(v);
    }
    let text = fs::read_to_string(arg)
        .with_context(|| format!("--key {arg}: neither a public key nor a readable file"))?;
    Verifier::from_vkey(text.trim())
        .map_err(|e| anyhow!("--key {arg}: not an audit public key ({e})"))
}

fn pubkey(a: PubkeyArgs) -> anyhow::Result<()> {
    let dir = audit_dir(&a.state)?;
    let key = audit::public_key(&dir).map_err(|e| anyhow!(e))?;
    println!("{}", key.vkey());
    Ok(())
}

fn verify(a: VerifyArgs) -> anyhow::Result<()> {
    let key = read_key(&a.key)?;
    let since = read_since(a.since_checkpoint.as_deref())?;
    let (report, _) = verify_source(
        a.state.as_deref(),
        a.export.as_deref(),
        &key,
        since.as_deref(),
        &mut |_| {},
    )?;
    println!("{report}");
    Ok(())
}

/// `--since-checkpoint FILE`'s bytes.
fn read_since(path: Option<&Path>) -> anyhow::Result<Option<Vec<u8>>> {
    path.map(|p| fs::read(p).with_context(|| format!("--since-checkpoint {}", p.display())))
        .transpose()
}

/// Verifies a stopped log's state directory or an export (exactly one is given), showing
/// `observe` each record once it passed its checks; returns the report and what was
/// verified, for the report's "source" line. A failure is the `FAIL: ...` line.
fn verify_source(
    state: Option<&Path>,
    export: Option<&Path>,
    key: &Verifier,
    since: Option<&[u8]>,
    observe: &mut dyn FnMut(&audit::Record),
) -> anyhow::Result<(audit::Report, String)> {
    let options = Options {
        since_checkpoint: since,
    };
    match (state, export) {
        (Some(state), None) => {
            let dir = audit_dir(state)?;
            let report =
                audit::verify_state_each(&dir, key, &options, observe).map_err(|f| {
                    match f.reason {
                        Reason::Locked(_) => in_use(&dir),
                        _ => anyhow!("{f}"),
                    }
                })?;
            Ok((report, format!("state directory {}", state.display())))
        }
        (None, Some(file)) => {
            let f =
                fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
            let report = audit::verify_export_each(BufReader::new(f), key, &options, observe)
                .map_err(|f| anyhow!("{f}"))?;
            Ok((report, format!("export {}", file.display())))
        }
        // clap's group makes exactly one of them present.
        _ => bail!("give exactly one of --state and --export"),
    }
}

fn export(a: ExportArgs) -> anyhow::Result<()> {
    let log = open_read_only(&a.state)?;
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let written = log.export(&mut out, a.from, a.to).and_then(|s| {
        out.flush()?;
        out.get_ref().sync_all()?;
        Ok(s)
    });
    match written {
        Ok(summary) => {
            let last = (summary.from + summary.records).saturating_sub(1);
            println!(
                "exported {} records (seq {}..={last}) to {}",
                summary.records,
                summary.from,
                a.out.display()
            );
            Ok(())
        }
        Err(e) => {
            drop(out);
            let _ = fs::remove_file(&a.out);
            Err(anyhow!(e).context(format!("export to {} failed", a.out.display())))
        }
    }
}

fn prove(a: ProveArgs) -> anyhow::Result<()> {
    let log = open_read_only(&a.state)?;
    let proof = log.prove(a.seq, a.size).map_err(|e| anyhow!(e))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&proof)?);
    } else {
        print!("{proof}");
    }
    Ok(())
}

fn erase(a: EraseArgs) -> anyhow::Result<()> {
    let state = match a.state {
        Some(s) => s,
        None => Policy::load(&a.config)?.state_dir,
    };
    let dir = audit_dir(&state)?;
    let log =
        AuditLog::open_existing(&dir, audit::Config::default()).map_err(|e| open_error(&dir, e))?;
    let receipt = log.erase(&a.subject, None).map_err(|e| anyhow!(e))?;
    log.close().map_err(|e| anyhow!(e))?;
    println!(
        "erased subject {:?}: audit.erase record seq {}, hash {}",
        a.subject,
        receipt.seq(),
        receipt.hash()
    );
    Ok(())
}

fn show(a: ShowArgs) -> anyhow::Result<()> {
    let log = open_read_only(&a.state)?;
    let shown = log.show(a.seq).map_err(|e| anyhow!(e))?;
    let out = serde_json::json!({ "record": shown.record, "content": content_json(&shown) });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn report(a: ReportArgs) -> anyhow::Result<()> {
    let format = a
        .out
        .extension()
        .and_then(|e| e.to_str())
        .and_then(audit_report::Format::from_extension)
        .ok_or_else(|| {
            anyhow!(
                "--out {}: the file name must end in .html, .pdf or .json (the report's format)",
                a.out.display()
            )
        })?;
    if a.out.exists() {
        bail!(
            "--out {}: the file exists; remove it or choose another name",
            a.out.display()
        );
    }
    let period = audit_report::Period::new(a.from, a.to)?;
    let key = read_key(&a.key)?;
    let since = read_since(a.since_checkpoint.as_deref())?;
    let mut tally = audit_report::Tally::new(period);
    let (verified, source) = verify_source(
        a.state.as_deref(),
        a.export.as_deref(),
        &key,
        since.as_deref(),
        &mut |r| tally.add(r),
    )
    .context("no report was written")?;
    let report = tally.finish(audit_report::Verification::new(
        &verified,
        &key,
        source,
        since.as_deref(),
    ));
    let bytes = audit_report::render(&report, format)?;
    write_new(&a.out, &bytes)?;
    println!("{verified}");
    println!(
        "report of {} ({} records): {} requests by {} identities, {} denied, {} erasures, \
         {} model events; written to {}",
        report.period.text,
        report.period.records,
        report.requests.total,
        report.requests.per_identity.len(),
        report.requests.denied,
        report.erasures.len(),
        report.model_events.len(),
        a.out.display()
    );
    Ok(())
}

/// Writes `bytes` to a new file `path` whole or not at all: into a temporary file beside it,
/// flushed, then linked to `path`, which fails if `path` appeared meanwhile.
fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .map_or_else(|| "report".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    let written = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::hard_link(&tmp, path)
    })();
    let _ = fs::remove_file(&tmp);
    written.with_context(|| format!("cannot write {}", path.display()))
}

fn subject(a: SubjectArgs) -> anyhow::Result<()> {
    let log = open_read_only(&a.state)?;
    let id = a.subject.as_str();
    let is_subjects = |r: &audit::Record| {
        r.subject.as_deref() == Some(id)
            || r.sealed.as_ref().is_some_and(|s| s.key_subject == id)
            || (r.subject.is_none() && r.actor.as_ref().is_some_and(|x| x.fingerprint == id))
    };
    let mut entries = Vec::new();
    let mut next = 0;
    loop {
        let page = log.records(next, 1000).map_err(|e| anyhow!(e))?;
        let Some(last) = page.last() else { break };
        next = last.seq + 1;
        for r in page.into_iter().filter(|r| is_subjects(r)) {
            let content = if r.sealed.is_some() {
                content_json(&log.show(r.seq).map_err(|e| anyhow!(e))?)
            } else {
                serde_json::Value::Null
            };
            entries.push(serde_json::json!({ "record": r, "content": content }));
        }
    }
    let out = serde_json::json!({
        "subject": id,
        "records": entries.len(),
        "entries": entries,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// `{"prompt", "output"}`, `"erased"` or `null` for a shown record.
fn content_json(shown: &audit::Shown) -> serde_json::Value {
    let text = |b: Option<&Vec<u8>>| b.map(|v| String::from_utf8_lossy(v).into_owned());
    if shown.erased {
        serde_json::json!("erased")
    } else if shown.prompt.is_some() || shown.output.is_some() {
        serde_json::json!({
            "prompt": text(shown.prompt.as_deref()),
            "output": text(shown.output.as_deref()),
        })
    } else {
        serde_json::Value::Null
    }
}
