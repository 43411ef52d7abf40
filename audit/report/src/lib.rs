//! The audit report (ARCHITECTURE.md §6): what an auditor files for a HIPAA review or a
//! GDPR Art. 30 record, computed from an audit log **in the same pass that verifies it**.
//!
//! # How it is used
//! ```text
//! let mut tally = Tally::new(period);
//! let verified = audit::verify_export_each(file, &key, &options, &mut |r| tally.add(r))?;
//! let report = tally.finish(Verification::new(&verified, &key, source, since));
//! html::render(&report)? / serde_json::to_vec(&report)? / pdf::render(&report)
//! ```
//! A log that fails verification yields no [`Report`]: the tally is dropped with the
//! failure, so no number in a report comes from records that were not verified.
//!
//! # What is in it
//! [`Report`] (`summary.rs`) holds every number and list; the JSON output is exactly its
//! serde form (`airlock-audit-report-v1`), the HTML and PDF present the same values.
//!
//! # Non-goals
//! No I/O but what the caller hands in and gets back (bytes and strings), no HTTP, no CLI.
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

mod chart;
mod error;
pub mod html;
pub mod pdf;
mod period;
mod summary;

pub use error::Error;
pub use period::{Period, parse_date};
pub use summary::{
    Denial, Erasure, Gap, IdentityRow, KeyInfo, ModelEvent, ModelRow, PolicyLoad, REPORT_FORMAT,
    Refusal, Report, Requests, RetentionErasure, RoleRow, ServiceEvent, SoftwareInstall, Tally,
    Verification,
};

/// The output formats, chosen by the output file's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Html,
    Pdf,
}

impl Format {
    /// The format of a file name (`report.html`, `.htm`, `.json`, `.pdf`), if known.
    pub fn from_extension(ext: &str) -> Option<Format> {
        match ext.to_ascii_lowercase().as_str() {
            "json" => Some(Format::Json),
            "html" | "htm" => Some(Format::Html),
            "pdf" => Some(Format::Pdf),
            _ => None,
        }
    }

    /// The format of a `format=` query value.
    pub fn from_name(name: &str) -> Option<Format> {
        Format::from_extension(name)
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Html => "text/html; charset=utf-8",
            Format::Pdf => "application/pdf",
        }
    }
}

/// Renders `report` in `format`.
pub fn render(report: &Report, format: Format) -> Result<Vec<u8>, Error> {
    match format {
        Format::Json => {
            let mut out = serde_json::to_vec_pretty(report).map_err(Error::Json)?;
            out.push(b'\n');
            Ok(out)
        }
        Format::Html => html::render(report).map(String::into_bytes),
        Format::Pdf => pdf::render(report),
    }
}
