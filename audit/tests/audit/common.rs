//! Shared fixtures: logs populated with every kind of record.

use std::path::Path;

use audit::note::Verifier;
use audit::{Actor, AuditLog, Config, Digest, Event, Kind, ModelRef, Options, Report};

pub fn actor(name: &str) -> Actor {
    Actor {
        fingerprint: Digest::of(name.as_bytes()).to_hex(),
        subject: format!("CN={name},OU=radiology,O=Example Hospital"),
        roles: vec!["user".into()],
    }
}

pub fn model() -> ModelRef {
    ModelRef {
        name: "smollm2-135m-instruct".into(),
        version: "1.0.0".into(),
        sha256: Digest::of(b"model bytes"),
    }
}

/// An event of `kind` with every field a record of that kind would carry.
pub fn event(kind: Kind, i: u64) -> Event {
    let base = Event::new(kind)
        .actor(actor(&format!("user{}", i % 3)))
        .peer(format!("127.0.0.1:{}", 40000 + i))
        .request_id(format!("req-{i}"));
    match kind {
        Kind::InferenceRequest => base
            .model(model())
            .prompt(format!("What is the dose for case {i}?"))
            .tokens(12 + i, 0)
            .subject(format!("case-{}", i % 4))
            .status("accepted"),
        Kind::InferenceResponse => base
            .model(model())
            .output(format!("Answer number {i}."))
            .tokens(12 + i, 30)
            .duration_ms(100 + i)
            .subject(format!("case-{}", i % 4))
            .status("ok"),
        Kind::AccessDenied => base.status("403").param("reason", "role user missing"),
        _ => base.param("detail", format!("event {i}")),
    }
}

const CYCLE: [Kind; 6] = [
    Kind::ServiceStart,
    Kind::InferenceRequest,
    Kind::InferenceResponse,
    Kind::AccessDenied,
    Kind::BundleVerify,
    Kind::PolicyLoad,
];

/// Appends `n` varied events.
pub fn fill(log: &AuditLog, n: u64) {
    for i in 0..n {
        let kind = CYCLE[(i % CYCLE.len() as u64) as usize];
        log.append(event(kind, i)).expect("append");
    }
}

/// A checkpoint every 4 records, none by time: positions of checkpoints are predictable.
pub fn test_config() -> Config {
    Config {
        checkpoint_every: 4,
        checkpoint_interval: None,
        ..Config::default()
    }
}

pub fn open(dir: &Path) -> AuditLog {
    AuditLog::open(dir, test_config()).expect("open")
}

/// A closed log with `n` events in `dir`, and its export. The export is taken after a
/// reopen, so the checkpoints (signed by the writer between batches) are all in place.
pub fn populated(dir: &Path, n: u64) -> Vec<u8> {
    let log = open(dir);
    fill(&log, n);
    log.close().expect("close");
    drop(log);
    let log = open(dir);
    let mut out = Vec::new();
    log.export(&mut out, None, None).expect("export");
    out
}

/// The trusted key of the log in `dir`.
pub fn key(dir: &Path) -> Verifier {
    audit::public_key(dir).expect("public key")
}

pub fn verify(export: &[u8], key: &Verifier) -> Result<Report, audit::Failure> {
    audit::verify_export(export, key, &Options::default())
}
