//! The HTML report: one self-contained page (inline CSS and SVG, no script, no external
//! reference), printable, from `templates/report.html`. Every value is HTML-escaped by the
//! template engine; the chart is the only markup inserted as is, and it is ours.
use minijinja::{AutoEscape, Environment, context};

use crate::summary::Report;
use crate::{Error, chart};

const TEMPLATE: &str = include_str!("../templates/report.html");

/// Rows of a list shown in the page before it says "N more in the JSON report".
pub const MAX_ROWS: usize = 1000;

/// Renders `report` as an HTML document.
pub fn render(report: &Report) -> Result<String, Error> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::Html);
    env.add_template("report.html", TEMPLATE)?;
    let chart = chart::requests_per_day(&report.requests.per_day)?;
    let html = env.get_template("report.html")?.render(context! {
        r => report,
        chart => chart.map(minijinja::Value::from_safe_string),
        max_rows => MAX_ROWS,
    })?;
    Ok(html)
}
