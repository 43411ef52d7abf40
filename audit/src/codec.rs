//! Small, strict text codecs shared by the record, export and verify modules.
//!
//! *Parse, don't validate*: every decoder accepts exactly one spelling of a value
//! (lowercase hex, padded standard base64, `YYYY-MM-DDTHH:MM:SS.mmmZ`), so that two
//! different export lines can never decode to the same record. An export whose bytes were
//! edited therefore either fails to parse or decodes to a different record whose hash no
//! longer matches.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Decodes exactly 64 lowercase hex digits.
pub(crate) fn unhex32(text: &str) -> Option<[u8; 32]> {
    let raw = text.as_bytes();
    if raw.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in raw.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Padded standard base64; the engine rejects non-zero trailing bits, so the encoding of a
/// byte string is unique.
pub(crate) fn unb64(text: &str) -> Option<Vec<u8>> {
    STANDARD.decode(text).ok()
}

/// The current time as RFC 3339 UTC with millisecond precision, e.g.
/// `2026-11-25T11:02:24.123Z`.
pub(crate) fn now_rfc3339() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format_rfc3339(since.as_secs(), since.subsec_millis())
}

pub(crate) fn format_rfc3339(unix_secs: u64, millis: u32) -> String {
    let days = unix_secs / 86_400;
    let rem = unix_secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's `civil_from_days`,
/// restricted to non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// True when `text` is exactly the shape [`format_rfc3339`] writes, with field ranges
/// checked (month 1-12, day 1-31, hour < 24, minute < 60, second < 61 for leap seconds).
pub(crate) fn is_rfc3339_millis(text: &str) -> bool {
    let b = text.as_bytes();
    if b.len() != 24 {
        return false;
    }
    let digits_at = |idx: &[usize]| idx.iter().all(|&i| b[i].is_ascii_digit());
    if !digits_at(&[0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22]) {
        return false;
    }
    if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return false;
    }
    if b[19] != b'.' || b[23] != b'Z' {
        return false;
    }
    let num = |i: usize| u32::from(b[i] - b'0') * 10 + u32::from(b[i + 1] - b'0');
    (1..=12).contains(&num(5))
        && (1..=31).contains(&num(8))
        && num(11) < 24
        && num(14) < 60
        && num(17) < 61
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_strictness() {
        let bytes = [0xabu8; 32];
        let text = hex(&bytes);
        assert_eq!(unhex32(&text), Some(bytes));
        assert_eq!(
            unhex32(&text.to_uppercase()),
            None,
            "uppercase is not canonical"
        );
        assert_eq!(unhex32(&text[..62]), None);
    }

    #[test]
    fn base64_is_canonical() {
        assert_eq!(unb64("AQ=="), Some(vec![1]));
        assert_eq!(unb64("AR=="), None, "non-zero trailing bits");
        assert_eq!(unb64("AQ"), None, "padding required");
    }

    #[test]
    fn rfc3339_known_answers() {
        assert_eq!(format_rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (leap day), checked with `date -u -d @SECS`.
        assert_eq!(format_rfc3339(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(
            format_rfc3339(1_795_000_000, 999),
            "2026-11-18T11:06:40.999Z"
        );
        assert!(is_rfc3339_millis(&now_rfc3339()));
        assert!(!is_rfc3339_millis("2026-13-18T08:26:40.999Z"));
        assert!(!is_rfc3339_millis("2026-11-18T08:26:40.999+00:00"));
    }
}
