//! [`Subject`]: the pseudonymous data-subject id a client names (`Airlock-Subject` header on
//! chat and completions, `{"subject"}` in `POST /v1/audit/erase`), parsed once by one rule.
//!
//! A subject selects the key that seals a request's content and, in an erasure, the keys to
//! destroy: if the two endpoints accepted different spellings, an erasure could miss content.
//! It is stored in every record of the request, so it is bounded.
use actix_web::HttpRequest;

use super::error::ApiError;

/// The request header naming the data subject.
pub const HEADER: &str = "airlock-subject";
/// Longest accepted subject, in bytes (ARCHITECTURE.md, "Bounds on client-supplied values").
pub const MAX_BYTES: usize = 256;

/// A data-subject id: 1 to [`MAX_BYTES`] bytes of UTF-8 without control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subject(String);

impl Subject {
    /// Checks `text` against the one rule; `field` names it in the error.
    pub fn parse(text: &str, field: &str) -> Result<Subject, ApiError> {
        if text.is_empty() || text.len() > MAX_BYTES || text.chars().any(char::is_control) {
            return Err(ApiError::BadRequest {
                message: format!(
                    "{field} must be 1 to {MAX_BYTES} bytes of UTF-8 without control characters"
                ),
                param: Some(field.to_owned()),
            });
        }
        Ok(Subject(text.to_owned()))
    }

    /// The `Airlock-Subject` header: `None` without it, 400 when it breaks the rule.
    pub fn from_request(req: &HttpRequest) -> Result<Option<Subject>, ApiError> {
        let Some(value) = req.headers().get(HEADER) else {
            return Ok(None);
        };
        let text = std::str::from_utf8(value.as_bytes()).map_err(|_| ApiError::BadRequest {
            message: "Airlock-Subject is not UTF-8".into(),
            param: Some("Airlock-Subject".into()),
        })?;
        Subject::parse(text, "Airlock-Subject").map(Some)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn header_is_optional_and_follows_the_one_rule() {
        let req = TestRequest::default().to_http_request();
        assert_eq!(Subject::from_request(&req).expect("none"), None);
        for good in ["case-4711", "Müller, Anna", &"x".repeat(MAX_BYTES)] {
            let req = TestRequest::default()
                .insert_header((HEADER, good))
                .to_http_request();
            let got = Subject::from_request(&req).expect("ok").expect("some");
            assert_eq!(got.as_str(), good);
        }
        for bad in [String::new(), "x".repeat(MAX_BYTES + 1), "a\tb".into()] {
            let req = TestRequest::default()
                .insert_header((HEADER, bad.as_str()))
                .to_http_request();
            let err = Subject::from_request(&req).expect_err(&bad);
            assert!(
                matches!(&err, ApiError::BadRequest { param: Some(p), .. } if p == "Airlock-Subject"),
                "{err:?}"
            );
        }
    }

    #[test]
    fn body_field_is_named_in_the_error() {
        let err = Subject::parse("", "subject").expect_err("empty");
        assert!(matches!(&err, ApiError::BadRequest { param: Some(p), .. } if p == "subject"));
    }
}
