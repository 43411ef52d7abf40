//! The report's numbers: a [`Tally`] is shown each verified record and becomes a
//! [`Report`] once verification succeeded.
//!
//! Counting rules (also in the HTML's footnotes, so a reader can recount):
//! - a **request** is an `inference.request` record; its identity is the record's actor
//!   (client certificate fingerprint), its day the record's UTC date;
//! - **tokens** come from `inference.response` records (prompt = in, completion = out),
//!   except refused ones (429, 503), whose prompt never ran;
//! - a **refusal** is an `access.denied` record (403, or 429 for the first request over a
//!   certificate's rate limit) or an `inference.response` whose status is `429` or `503`
//!   (the request was recorded, then refused: queue full, model being replaced);
//! - **erasures** are `audit.erase` records with a subject (shown as the SHA-256 of the
//!   subject, so the report can be handed on); those with `reason = retention` are listed
//!   apart as retention-expired key epochs;
//! - **gaps** are the times between a `service.stop` (or, when the stop is missing, the last
//!   record before the next start) and the next `service.start`.
//!
//! Records outside the period count nowhere; verification always covers the whole input.
use std::collections::BTreeMap;

use audit::note::Verifier;
use audit::{Digest, Kind, Record};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::{Date, Duration, OffsetDateTime};

use crate::Period;

/// `format` of the JSON report.
pub const REPORT_FORMAT: &str = "airlock-audit-report-v1";

/// Days spanned by the per-day series before days without records are left out (a chart of
/// more bars than this is unreadable anyway).
const FILL_DAYS_UP_TO: i64 = 400;

/// Everything a report says. Serialized as is for the JSON output.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub format: &'static str,
    /// When the report was made (RFC 3339 UTC).
    pub generated: String,
    pub period: PeriodView,
    pub verification: Verification,
    pub requests: Requests,
    /// Refused requests by status and reason, most frequent first.
    pub refusals: Vec<Refusal>,
    /// Every `access.denied` record in the period.
    pub denials: Vec<Denial>,
    pub erasures: Vec<Erasure>,
    pub retention: Vec<RetentionErasure>,
    /// Bundle verifications, installs, rejections, activations and rollbacks.
    pub model_events: Vec<ModelEvent>,
    pub policy_loads: Vec<PolicyLoad>,
    /// Installs, upgrades and rollbacks of the binary (`software.install`).
    pub installs: Vec<SoftwareInstall>,
    /// Service starts and stops, with the egress lockdown in force at each start.
    pub service: Vec<ServiceEvent>,
    pub gaps: Vec<Gap>,
}

/// The reporting period as shown.
#[derive(Clone, Debug, Serialize)]
pub struct PeriodView {
    pub from: Option<String>,
    pub to: Option<String>,
    /// "2026-12-01 to 2026-12-07", "the whole log"...
    pub text: String,
    /// Time of the first and last record counted.
    pub first_record: Option<String>,
    pub last_record: Option<String>,
    /// Records counted (in the period).
    pub records: u64,
}

/// The verification that preceded the report.
#[derive(Clone, Debug, Serialize)]
pub struct Verification {
    /// The `OK: ...` line `airlock audit verify` prints for the same input.
    pub line: String,
    /// What was verified: `export audit.jsonl`, `state /var/lib/airlock`, `running service`.
    pub source: String,
    pub records: u64,
    pub first_seq: u64,
    /// Hash of the last record (the chain head).
    pub head: Option<String>,
    /// Size of the largest signed checkpoint that matched.
    pub last_checkpoint: Option<u64>,
    /// Size of the auditor's own older checkpoint (`--since-checkpoint`), which the log was
    /// checked to extend.
    pub since_checkpoint: Option<u64>,
    pub key: KeyInfo,
}

/// The trusted log key the records were verified against.
#[derive(Clone, Debug, Serialize)]
pub struct KeyInfo {
    /// The key's name (the log's origin line).
    pub name: String,
    /// The C2SP signed-note key ID (8 hex digits).
    pub key_id: String,
    /// SHA-256 of the 32-byte Ed25519 public key.
    pub fingerprint: String,
    /// The verifier key as `airlock audit pubkey` prints it.
    pub vkey: String,
}

impl Verification {
    /// Describes a successful verification of `source` against `key`; `since` is the
    /// auditor's older checkpoint note, if one was given (verification already checked it).
    pub fn new(
        report: &audit::Report,
        key: &Verifier,
        source: impl Into<String>,
        since: Option<&[u8]>,
    ) -> Verification {
        let since_checkpoint = since.and_then(|note| {
            audit::note::open_checkpoint(key.name(), std::slice::from_ref(key), note)
                .ok()
                .map(|c| c.size())
        });
        Verification {
            line: report.to_string(),
            source: source.into(),
            records: report.records,
            first_seq: report.first_seq,
            head: report.head.map(|h| h.to_hex()),
            last_checkpoint: report.last_checkpoint,
            since_checkpoint,
            key: KeyInfo {
                name: key.name().to_owned(),
                key_id: format!("{:08x}", key.key_id()),
                fingerprint: Digest::of(key.public_key()).to_hex(),
                vkey: key.vkey(),
            },
        }
    }
}

/// Requests and what they used.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Requests {
    /// `inference.request` records.
    pub total: u64,
    /// `access.denied` records.
    pub denied: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// `inference.response` records by status (`stop`, `length`, `cancelled`, `429`...).
    pub outcomes: BTreeMap<String, u64>,
    pub per_day: Vec<DayRow>,
    /// Most requests first.
    pub per_identity: Vec<IdentityRow>,
    pub per_role: Vec<RoleRow>,
    pub per_model: Vec<ModelRow>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct DayRow {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    pub requests: u64,
    pub denied: u64,
}

/// One client certificate.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IdentityRow {
    pub fingerprint: String,
    /// The certificate subject (of its latest record).
    pub subject: String,
    pub roles: Vec<String>,
    pub requests: u64,
    pub denied: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct RoleRow {
    pub role: String,
    /// Requests by certificates holding this role (a request counts once per role held).
    pub requests: u64,
    /// Certificates with this role that made a request or were denied.
    pub identities: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ModelRow {
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub requests: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Refusal {
    pub status: String,
    pub reason: String,
    pub count: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Denial {
    pub seq: u64,
    pub time: String,
    pub fingerprint: Option<String>,
    pub subject: Option<String>,
    pub status: Option<String>,
    pub method: Option<String>,
    pub route: Option<String>,
    pub reason: Option<String>,
    pub peer: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Erasure {
    pub seq: u64,
    pub time: String,
    /// SHA-256 of the erased data subject's identifier (the report does not repeat it).
    pub subject_sha256: String,
    /// Who asked: the privacy officer's certificate subject, or `local` (the offline CLI).
    pub by: String,
    /// Data keys destroyed.
    pub keys: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RetentionErasure {
    pub seq: u64,
    pub time: String,
    /// Key epochs before this one were destroyed.
    pub before_epoch: Option<String>,
    pub keys: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ModelEvent {
    pub seq: u64,
    pub time: String,
    /// `bundle.install`, `model.activate`, `model.rollback`, `bundle.reject`, `bundle.verify`.
    pub kind: String,
    pub name: Option<String>,
    pub version: Option<String>,
    pub sha256: Option<String>,
    /// The previous version (activate), the version rolled back from, the rejection reason,
    /// the signers (verify).
    pub detail: Option<String>,
    pub by: String,
    /// `cli`, `http`, `dev`, `drop`...
    pub via: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PolicyLoad {
    pub seq: u64,
    pub time: String,
    pub path: Option<String>,
    pub sha256: Option<String>,
    /// `audit.content` in force: `digest` or `sealed`.
    pub content: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SoftwareInstall {
    pub seq: u64,
    pub time: String,
    /// `install`, `upgrade`, `rollback` (or `malformed` for a receipt that did not parse).
    pub action: String,
    pub version: Option<String>,
    pub binary_sha256: Option<String>,
    pub previous_sha256: Option<String>,
    /// SHA-256 of the offline kit's MANIFEST, when installed from a kit.
    pub kit_manifest_sha256: Option<String>,
    /// The kit's signer (base64 ed25519 public key).
    pub kit_signer: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ServiceEvent {
    pub seq: u64,
    pub time: String,
    /// `start` or `stop`.
    pub event: &'static str,
    pub status: Option<String>,
    pub version: Option<String>,
    /// The egress lockdown layers in force (`service.start`'s `lockdown` param), or `None`
    /// for records written before it was recorded.
    pub lockdown: Option<String>,
    pub error: Option<String>,
}

/// A time the service was not running.
#[derive(Clone, Debug, Serialize)]
pub struct Gap {
    pub from: String,
    pub to: String,
    pub seconds: i64,
    /// `true` after a recorded `service.stop`; `false` when the run before ended without one
    /// (crash, kill, power loss): `from` is then its last record.
    pub clean: bool,
}

/// The running counts; see the module documentation for what is counted where.
#[derive(Debug)]
pub struct Tally {
    period: Period,
    records: u64,
    first: Option<String>,
    last: Option<String>,
    requests: Requests,
    days: BTreeMap<Date, DayRow>,
    identities: BTreeMap<String, IdentityRow>,
    roles: BTreeMap<String, (u64, std::collections::BTreeSet<String>)>,
    models: BTreeMap<(String, String, String), ModelRow>,
    refusals: BTreeMap<(String, String), u64>,
    denials: Vec<Denial>,
    erasures: Vec<Erasure>,
    retention: Vec<RetentionErasure>,
    model_events: Vec<ModelEvent>,
    policy_loads: Vec<PolicyLoad>,
    installs: Vec<SoftwareInstall>,
    service: Vec<ServiceEvent>,
    gaps: Vec<Gap>,
    run: Run,
    last_time: Option<(OffsetDateTime, String)>,
}

/// What the service was doing, as far as the records tell.
#[derive(Debug)]
enum Run {
    Unknown,
    Running,
    StoppedAt(OffsetDateTime, String),
}

fn param(r: &Record, key: &str) -> Option<String> {
    r.params.get(key).cloned()
}

fn by(r: &Record) -> String {
    r.actor
        .as_ref()
        .map_or_else(|| "local".to_owned(), |a| a.subject.clone())
}

impl Tally {
    pub fn new(period: Period) -> Tally {
        Tally {
            period,
            records: 0,
            first: None,
            last: None,
            requests: Requests::default(),
            days: BTreeMap::new(),
            identities: BTreeMap::new(),
            roles: BTreeMap::new(),
            models: BTreeMap::new(),
            refusals: BTreeMap::new(),
            denials: Vec::new(),
            erasures: Vec::new(),
            retention: Vec::new(),
            model_events: Vec::new(),
            policy_loads: Vec::new(),
            installs: Vec::new(),
            service: Vec::new(),
            gaps: Vec::new(),
            run: Run::Unknown,
            last_time: None,
        }
    }

    /// Counts one verified record (in seq order).
    pub fn add(&mut self, r: &Record) {
        // Record times are checked RFC 3339 by the record parser; one that still does not
        // parse is counted only in a report of the whole log.
        let when = OffsetDateTime::parse(&r.time, &Rfc3339).ok();
        let in_period = match when {
            Some(t) => self.period.contains(t.date()),
            None => self.period == Period::all(),
        };
        if !in_period {
            return;
        }
        self.records += 1;
        if self.first.is_none() {
            self.first = Some(r.time.clone());
        }
        self.last = Some(r.time.clone());
        match r.kind {
            Kind::InferenceRequest => self.request(r, when),
            Kind::InferenceResponse => self.response(r),
            Kind::AccessDenied => self.denied(r, when),
            Kind::AuditErase => self.erase(r),
            Kind::BundleVerify
            | Kind::BundleInstall
            | Kind::BundleReject
            | Kind::ModelActivate
            | Kind::ModelRollback => self.model_event(r),
            Kind::PolicyLoad => self.policy_loads.push(PolicyLoad {
                seq: r.seq,
                time: r.time.clone(),
                path: param(r, "path"),
                sha256: param(r, "sha256"),
                content: param(r, "audit.content"),
            }),
            Kind::ServiceStart | Kind::ServiceStop => self.service_event(r, when),
            Kind::SoftwareInstall => self.installs.push(SoftwareInstall {
                seq: r.seq,
                time: r.time.clone(),
                action: r.status.clone().unwrap_or_default(),
                version: param(r, "version"),
                binary_sha256: param(r, "binary_sha256"),
                previous_sha256: param(r, "previous_sha256"),
                kit_manifest_sha256: param(r, "kit_manifest_sha256"),
                kit_signer: param(r, "kit_signer"),
            }),
            _ => {}
        }
        if let Some(t) = when
            && r.kind != Kind::ServiceStart
        {
            self.last_time = Some((t, r.time.clone()));
        }
    }

    fn day(&mut self, when: Option<OffsetDateTime>) -> Option<&mut DayRow> {
        let date = when?.date();
        Some(self.days.entry(date).or_insert_with(|| DayRow {
            day: date.to_string(),
            requests: 0,
            denied: 0,
        }))
    }

    fn identity(&mut self, r: &Record) -> Option<&mut IdentityRow> {
        let actor = r.actor.as_ref()?;
        for role in &actor.roles {
            let entry = self.roles.entry(role.clone()).or_default();
            entry.1.insert(actor.fingerprint.clone());
        }
        let row = self
            .identities
            .entry(actor.fingerprint.clone())
            .or_insert_with(|| IdentityRow {
                fingerprint: actor.fingerprint.clone(),
                ..IdentityRow::default()
            });
        row.subject.clone_from(&actor.subject);
        row.roles.clone_from(&actor.roles);
        Some(row)
    }

    fn request(&mut self, r: &Record, when: Option<OffsetDateTime>) {
        self.requests.total += 1;
        if let Some(d) = self.day(when) {
            d.requests += 1;
        }
        if let Some(row) = self.identity(r) {
            row.requests += 1;
        }
        for role in r.actor.iter().flat_map(|a| &a.roles) {
            self.roles.entry(role.clone()).or_default().0 += 1;
        }
        if let Some(m) = &r.model {
            self.model_row(m).requests += 1;
        }
    }

    fn model_row(&mut self, m: &audit::ModelRef) -> &mut ModelRow {
        let key = (m.name.clone(), m.version.clone(), m.sha256.to_hex());
        self.models.entry(key).or_insert_with(|| ModelRow {
            name: m.name.clone(),
            version: m.version.clone(),
            sha256: m.sha256.to_hex(),
            ..ModelRow::default()
        })
    }

    fn response(&mut self, r: &Record) {
        let status = r.status.clone().unwrap_or_else(|| "none".to_owned());
        let refused = matches!(status.as_str(), "429" | "503");
        if refused {
            let reason = param(r, "reason").unwrap_or_else(|| "refused after recording".into());
            *self.refusals.entry((status.clone(), reason)).or_default() += 1;
        }
        *self.requests.outcomes.entry(status).or_default() += 1;
        // A refused request's prompt was never run: it used no tokens.
        let Some(t) = r.tokens.filter(|_| !refused) else {
            return;
        };
        self.requests.tokens_in += t.prompt;
        self.requests.tokens_out += t.completion;
        if let Some(row) = self.identity(r) {
            row.tokens_in += t.prompt;
            row.tokens_out += t.completion;
        }
        if let Some(m) = &r.model {
            let row = self.model_row(m);
            row.tokens_in += t.prompt;
            row.tokens_out += t.completion;
        }
    }

    fn denied(&mut self, r: &Record, when: Option<OffsetDateTime>) {
        self.requests.denied += 1;
        if let Some(d) = self.day(when) {
            d.denied += 1;
        }
        if let Some(row) = self.identity(r) {
            row.denied += 1;
        }
        let status = r.status.clone().unwrap_or_else(|| "403".to_owned());
        let reason = param(r, "reason").unwrap_or_else(|| "unspecified".to_owned());
        *self.refusals.entry((status, reason)).or_default() += 1;
        self.denials.push(Denial {
            seq: r.seq,
            time: r.time.clone(),
            fingerprint: r.actor.as_ref().map(|a| a.fingerprint.clone()),
            subject: r.actor.as_ref().map(|a| a.subject.clone()),
            status: r.status.clone(),
            method: param(r, "method"),
            route: param(r, "route"),
            reason: param(r, "reason"),
            peer: r.peer.clone(),
        });
    }

    fn erase(&mut self, r: &Record) {
        if param(r, "reason").as_deref() == Some("retention") {
            self.retention.push(RetentionErasure {
                seq: r.seq,
                time: r.time.clone(),
                before_epoch: param(r, "before_epoch"),
                keys: param(r, "keys"),
            });
            return;
        }
        self.erasures.push(Erasure {
            seq: r.seq,
            time: r.time.clone(),
            subject_sha256: r
                .subject
                .as_deref()
                .map_or_else(String::new, |s| Digest::of(s.as_bytes()).to_hex()),
            by: by(r),
            keys: param(r, "keys"),
        });
    }

    fn model_event(&mut self, r: &Record) {
        let detail = match r.kind {
            Kind::ModelActivate => param(r, "previous").map(|p| format!("previous: {p}")),
            Kind::ModelRollback => param(r, "from").map(|f| format!("from version {f}")),
            Kind::BundleReject => param(r, "reason"),
            Kind::BundleVerify => param(r, "signers").map(|s| format!("signed by {s}")),
            _ => param(r, "sequence").map(|s| format!("sequence {s}")),
        };
        self.model_events.push(ModelEvent {
            seq: r.seq,
            time: r.time.clone(),
            kind: r.kind.as_str().to_owned(),
            name: r
                .model
                .as_ref()
                .map(|m| m.name.clone())
                .or_else(|| param(r, "name")),
            version: r
                .model
                .as_ref()
                .map(|m| m.version.clone())
                .or_else(|| param(r, "version")),
            sha256: r.model.as_ref().map(|m| m.sha256.to_hex()),
            detail,
            by: by(r),
            via: param(r, "via"),
        });
    }

    fn service_event(&mut self, r: &Record, when: Option<OffsetDateTime>) {
        let start = r.kind == Kind::ServiceStart;
        self.service.push(ServiceEvent {
            seq: r.seq,
            time: r.time.clone(),
            event: if start { "start" } else { "stop" },
            status: r.status.clone(),
            version: param(r, "version"),
            lockdown: param(r, "lockdown"),
            error: param(r, "error"),
        });
        let Some(now) = when else { return };
        if start {
            let gap = match &self.run {
                Run::StoppedAt(t, text) => Some((*t, text.clone(), true)),
                Run::Running => self.last_time.clone().map(|(t, text)| (t, text, false)),
                Run::Unknown => None,
            };
            if let Some((from, from_text, clean)) = gap {
                self.gaps.push(Gap {
                    from: from_text,
                    to: r.time.clone(),
                    seconds: (now - from).max(Duration::ZERO).whole_seconds(),
                    clean,
                });
            }
            self.run = Run::Running;
        } else {
            self.run = Run::StoppedAt(now, r.time.clone());
        }
    }

    /// The report, once verification succeeded.
    pub fn finish(self, verification: Verification) -> Report {
        let mut requests = self.requests;
        requests.per_day = fill_days(self.days);
        let mut identities: Vec<_> = self.identities.into_values().collect();
        identities.sort_by(|a, b| {
            (b.requests, b.denied)
                .cmp(&(a.requests, a.denied))
                .then_with(|| a.subject.cmp(&b.subject))
        });
        requests.per_identity = identities;
        requests.per_role = self
            .roles
            .into_iter()
            .map(|(role, (requests, ids))| RoleRow {
                role,
                requests,
                identities: ids.len() as u64,
            })
            .collect();
        let mut models: Vec<_> = self.models.into_values().collect();
        models.sort_by_key(|m| std::cmp::Reverse(m.requests));
        requests.per_model = models;
        let mut refusals: Vec<_> = self
            .refusals
            .into_iter()
            .map(|((status, reason), count)| Refusal {
                status,
                reason,
                count,
            })
            .collect();
        refusals.sort_by_key(|r| std::cmp::Reverse(r.count));
        Report {
            format: REPORT_FORMAT,
            generated: OffsetDateTime::now_utc()
                .replace_nanosecond(0)
                .unwrap_or_else(|_| OffsetDateTime::now_utc())
                .format(&Rfc3339)
                .unwrap_or_default(),
            period: PeriodView {
                from: self.period.from().map(|d| d.to_string()),
                to: self.period.to().map(|d| d.to_string()),
                text: self.period.to_string(),
                first_record: self.first,
                last_record: self.last,
                records: self.records,
            },
            verification,
            requests,
            refusals,
            denials: self.denials,
            erasures: self.erasures,
            retention: self.retention,
            model_events: self.model_events,
            policy_loads: self.policy_loads,
            installs: self.installs,
            service: self.service,
            gaps: self.gaps,
        }
    }
}

/// The per-day rows in date order, with the days between them that had no record filled
/// in with zeros (so the chart's time axis is true) unless the span is very long.
fn fill_days(days: BTreeMap<Date, DayRow>) -> Vec<DayRow> {
    let (Some(first), Some(last)) = (days.keys().next().copied(), days.keys().last().copied())
    else {
        return Vec::new();
    };
    if (last - first).whole_days() > FILL_DAYS_UP_TO {
        return days.into_values().collect();
    }
    let mut out = Vec::new();
    let mut day = first;
    while day <= last {
        out.push(days.get(&day).cloned().unwrap_or_else(|| DayRow {
            day: day.to_string(),
            requests: 0,
            denied: 0,
        }));
        match day.next_day() {
            Some(next) => day = next,
            None => break,
        }
    }
    out
}
