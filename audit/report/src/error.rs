//! What can go wrong making a report (verification failures are `audit::Failure`s, returned
//! before a report exists).

/// A report could not be made or rendered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `--from`/`--to` is not a `YYYY-MM-DD` date.
    #[error("{field}: {value:?} is not a date (expected YYYY-MM-DD)")]
    BadDate { field: &'static str, value: String },
    /// `--from` is after `--to`.
    #[error("--from {from} is after --to {to}")]
    EmptyPeriod { from: String, to: String },
    /// The HTML template failed to render (a bug: the template is compiled in).
    #[error("cannot render the HTML report: {0}")]
    Template(#[from] minijinja::Error),
    /// The chart could not be drawn.
    #[error("cannot draw the chart: {0}")]
    Chart(String),
    #[error("cannot write the JSON report: {0}")]
    Json(serde_json::Error),
}

impl Error {
    /// The input a client got wrong (`from`, `to`), for an API error's `param`.
    pub fn param(&self) -> Option<&'static str> {
        match self {
            Error::BadDate { field, .. } => Some(field),
            Error::EmptyPeriod { .. } => Some("from"),
            _ => None,
        }
    }
}
