//! Export to JSON Lines, and the strict parser of export files.
//!
//! # Format (`airlock-audit-export-v1`, see `FORMAT.md`)
//! Line 1 is a header object; every further line is one record exactly as stored (the JSON
//! of [`Record`]), in seq order:
//!
//! ```text
//! {"format":"airlock-audit-export-v1","origin":"airlock/audit/…","from":0,"to":41,
//!  "checkpoint":"<signed note text>","prefix":"<base64 frontier>"}
//! {"seq":0,"time":"…","kind":"service.start",…,"prev":"00…00","hash":"…"}
//! …
//! ```
//!
//! - `checkpoint` (optional): the latest signed checkpoint of the log when it was exported.
//!   Records cut off the end of the export are detected against it.
//! - `prefix` (only when `from > 0`): the Merkle frontier (compact range) of records
//!   `0..from`, so that checkpoints inside a partial export can still be checked. A forged
//!   prefix cannot match a signed root.
//!
//! The header is not signed: everything in it is checked against signed checkpoints.
//!
//! # Parser
//! Never panics; lines are bounded by [`MAX_LINE`]; records are parsed with
//! [`Record::from_json`] (unknown fields, duplicate keys and non-canonical encodings are
//! errors).

use std::io::{BufRead, Read, Write};

use serde::{Deserialize, Serialize};

use crate::record::{MAX_FIELD_LEN, Record};
use crate::verify::{Failure, Reason};

/// `format` value of the header line.
pub const EXPORT_FORMAT: &str = "airlock-audit-export-v1";
/// Longest accepted line: a record with every field at its limit is far below this.
pub const MAX_LINE: usize = 4 * MAX_FIELD_LEN;

/// The first line of an export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub format: String,
    pub origin: String,
    /// Seq of the first record in the file.
    pub from: u64,
    /// Seq of the last record in the file (`None` for an empty export).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<u64>,
    /// Latest signed checkpoint (C2SP signed note text) at export time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// Base64 Merkle frontier of records `0..from` (present when `from > 0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// Writes `header` then `records` as JSON Lines.
pub(crate) fn write_export<W: Write>(
    out: &mut W,
    header: &Header,
    records: impl IntoIterator<Item = crate::Result<Vec<u8>>>,
) -> crate::Result<u64> {
    let header_json =
        serde_json::to_vec(header).map_err(|e| crate::Error::Storage(e.to_string()))?;
    out.write_all(&header_json)?;
    out.write_all(b"\n")?;
    let mut n = 0;
    for line in records {
        out.write_all(&line?)?;
        out.write_all(b"\n")?;
        n += 1;
    }
    out.flush()?;
    Ok(n)
}

/// Reads an export: the header, then records one at a time with their line numbers.
#[derive(Debug)]
pub struct ExportReader<R> {
    input: R,
    line: u64,
    buf: Vec<u8>,
}

fn malformed(line: u64, why: impl Into<String>) -> Failure {
    Failure {
        seq: None,
        line: Some(line),
        reason: Reason::Malformed(why.into()),
    }
}

impl<R: BufRead> ExportReader<R> {
    /// Reads and checks the header line.
    pub fn new(input: R) -> Result<(Header, ExportReader<R>), Failure> {
        let mut reader = ExportReader {
            input,
            line: 0,
            buf: Vec::new(),
        };
        if !reader.next_line()? {
            return Err(malformed(1, "empty file: no export header"));
        }
        let header: Header = serde_json::from_slice(&reader.buf)
            .map_err(|e| malformed(1, format!("bad export header: {e}")))?;
        if header.format != EXPORT_FORMAT {
            return Err(malformed(
                1,
                format!("unknown export format {:?}", header.format),
            ));
        }
        Ok((header, reader))
    }

    /// Reads the next line into `buf`; false at end of input. The final line may lack its
    /// newline; empty lines are errors.
    fn next_line(&mut self) -> Result<bool, Failure> {
        self.buf.clear();
        self.line += 1;
        let n = (&mut self.input)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| malformed(self.line, format!("read error: {e}")))?;
        if n == 0 {
            return Ok(false);
        }
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
        } else if self.buf.len() > MAX_LINE {
            return Err(malformed(self.line, "line too long"));
        }
        if self.buf.is_empty() {
            return Err(malformed(self.line, "empty line"));
        }
        Ok(true)
    }

    /// The next record and its line number, `None` at end of input.
    pub fn next_record(&mut self) -> Result<Option<(Record, u64)>, Failure> {
        if !self.next_line()? {
            return Ok(None);
        }
        let line = self.line;
        match Record::from_json(&self.buf) {
            Ok(r) => Ok(Some((r, line))),
            Err(why) => Err(malformed(line, why)),
        }
    }
}

/// Parses a whole export held in memory (the fuzz target's entry point). Never panics.
pub fn parse_export(bytes: &[u8]) -> Result<(Header, Vec<Record>), Failure> {
    let (header, mut reader) = ExportReader::new(bytes)?;
    let mut records = Vec::new();
    while let Some((r, _)) = reader.next_record()? {
        records.push(r);
    }
    Ok((header, records))
}

/// What an export wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportSummary {
    pub from: u64,
    /// Number of records written.
    pub records: u64,
}

impl crate::AuditLog {
    /// Writes durable records `from..=to` (default: all) as an export to `out`.
    ///
    /// Errors: [`crate::Error::NotFound`] when `from` is past the end or `to < from`.
    pub fn export<W: Write>(
        &self,
        out: &mut W,
        from: Option<u64>,
        to: Option<u64>,
    ) -> crate::Result<ExportSummary> {
        let len = self.len();
        let from = from.unwrap_or(0);
        let end = match to {
            Some(t) if t < from => {
                return Err(crate::Error::NotFound(format!(
                    "--to {t} is before --from {from}"
                )));
            }
            Some(t) => t.saturating_add(1).min(len),
            None => len,
        };
        if from > 0 && from >= len {
            return Err(crate::Error::NotFound(format!(
                "--from {from}: the log has {len} records"
            )));
        }
        let shared = self.shared();
        let prefix = if from == 0 {
            None
        } else {
            let mut frontier = crate::merkle::Frontier::new();
            for item in shared
                .records
                .range(crate::layout::seq_key(0)..crate::layout::seq_key(from))
            {
                let (_, v) = item?;
                let r = Record::from_json(&v).map_err(crate::Error::Storage)?;
                frontier
                    .push(crate::merkle::leaf_hash(r.hash.as_bytes()))
                    .map_err(|e| crate::Error::Storage(e.to_string()))?;
            }
            Some(crate::codec::b64(&frontier.to_bytes()))
        };
        let header = Header {
            format: EXPORT_FORMAT.to_string(),
            origin: shared.origin.clone(),
            from,
            to: (end > from).then(|| end - 1),
            // The latest checkpoint, unless the range stops before it (`--to`): a reader
            // would take the missing tail for truncation.
            checkpoint: shared.latest_checkpoint().filter(|note| {
                crate::verify::open_note(&shared.verifier, note.as_bytes())
                    .is_ok_and(|vc| vc.size() <= end)
            }),
            prefix,
        };
        let lines = shared
            .records
            .range(crate::layout::seq_key(from)..crate::layout::seq_key(end))
            .map(|item| item.map(|(_, v)| v.to_vec()).map_err(crate::Error::from));
        let records = write_export(out, &header, lines)?;
        Ok(ExportSummary { from, records })
    }
}
