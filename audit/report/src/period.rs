//! The reporting period: whole UTC days, both ends included, either end open.
use std::fmt;

use time::Date;
use time::macros::format_description;

use crate::Error;

/// Days `from..=to` (UTC), parsed once from the auditor's `YYYY-MM-DD` strings; `from <= to`
/// when both are given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Period {
    from: Option<Date>,
    to: Option<Date>,
}

/// Parses `YYYY-MM-DD`; `field` names the argument in the error.
pub fn parse_date(field: &'static str, value: &str) -> Result<Date, Error> {
    Date::parse(value, format_description!("[year]-[month]-[day]")).map_err(|_| Error::BadDate {
        field,
        value: value.to_owned(),
    })
}

impl Period {
    /// Every day.
    pub fn all() -> Period {
        Period::default()
    }

    pub fn new(from: Option<Date>, to: Option<Date>) -> Result<Period, Error> {
        if let (Some(f), Some(t)) = (from, to)
            && f > t
        {
            return Err(Error::EmptyPeriod {
                from: f.to_string(),
                to: t.to_string(),
            });
        }
        Ok(Period { from, to })
    }

    /// From the auditor's strings (`--from`, `--to` or the query's `from=`, `to=`).
    pub fn parse(from: Option<&str>, to: Option<&str>) -> Result<Period, Error> {
        Period::new(
            from.map(|s| parse_date("from", s)).transpose()?,
            to.map(|s| parse_date("to", s)).transpose()?,
        )
    }

    pub fn contains(&self, day: Date) -> bool {
        self.from.is_none_or(|f| day >= f) && self.to.is_none_or(|t| day <= t)
    }

    pub fn from(&self) -> Option<Date> {
        self.from
    }

    pub fn to(&self) -> Option<Date> {
        self.to
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.from, self.to) {
            (None, None) => f.write_str("the whole log"),
            (Some(a), None) => write!(f, "from {a}"),
            (None, Some(b)) => write!(f, "until {b}"),
            (Some(a), Some(b)) => write!(f, "{a} to {b}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_days_and_refuses_the_rest() {
        let p = Period::parse(Some("2026-12-01"), Some("2026-12-07")).unwrap();
        assert!(p.contains(parse_date("d", "2026-12-01").unwrap()));
        assert!(p.contains(parse_date("d", "2026-12-07").unwrap()));
        assert!(!p.contains(parse_date("d", "2026-12-08").unwrap()));
        assert!(!p.contains(parse_date("d", "2026-11-30").unwrap()));
        assert!(Period::all().contains(parse_date("d", "1999-01-01").unwrap()));
        for bad in [
            "2026-13-01",
            "2026-12-1",
            "yesterday",
            "2026-12-01T00:00:00Z",
            "",
        ] {
            let e = Period::parse(Some(bad), None).unwrap_err();
            assert!(e.to_string().starts_with("from: "), "{e}");
        }
        let e = Period::parse(Some("2026-12-08"), Some("2026-12-07")).unwrap_err();
        assert_eq!(e.to_string(), "--from 2026-12-08 is after --to 2026-12-07");
    }
}
