//! Checks 1–3 of the [`super`] module docs: sequence, content hash, link.

use super::{Failure, Reason, Report};
use crate::record::{Digest, GENESIS_PREV, Record};

/// Streaming chain checker; see the module docs for the checks and their order.
#[derive(Debug)]
pub(crate) struct ChainVerifier {
    first_seq: u64,
    next_seq: u64,
    prev: Digest,
    /// The record awaiting its look-ahead, with its line number.
    held: Option<(Record, Option<u64>)>,
    checked: u64,
}

impl ChainVerifier {
    /// A verifier for a chain that starts at `first_seq`. For a full log `first_seq` is 0
    /// and `prev` must be the genesis value; a partial export starts wherever it starts and
    /// its first `prev` is taken as given (checkpoints anchor it).
    pub(crate) fn new(first_seq: u64, first_prev: Option<Digest>) -> ChainVerifier {
        ChainVerifier {
            first_seq,
            next_seq: first_seq,
            prev: first_prev.unwrap_or(GENESIS_PREV),
            held: None,
            checked: 0,
        }
    }

    /// Feeds the next record. Returns the record that passed with its line, if any (the
    /// verifier holds one record back for its look-ahead).
    pub(crate) fn push(
        &mut self,
        record: Record,
        line: Option<u64>,
    ) -> Result<Option<(Record, Option<u64>)>, Failure> {
        let held = self.held.replace((record, line));
        match held {
            None => Ok(None),
            Some((r, l)) => {
                let next = self.held.as_ref().map(|(n, _)| n.seq);
                self.check(r, l, next).map(|r| Some((r, l)))
            }
        }
    }

    /// Checks the held record; returns it if it passed.
    pub(crate) fn finish(&mut self) -> Result<Option<(Record, Option<u64>)>, Failure> {
        match self.held.take() {
            None => Ok(None),
            Some((r, l)) => self.check(r, l, None).map(|r| Some((r, l))),
        }
    }

    fn check(
        &mut self,
        r: Record,
        line: Option<u64>,
        next: Option<u64>,
    ) -> Result<Record, Failure> {
        let expected = self.next_seq;
        let fail = |reason| Failure {
            seq: Some(expected),
            line,
            reason,
        };
        if r.seq > expected {
            return Err(fail(if next == Some(expected) {
                Reason::Reordered { found: r.seq }
            } else {
                Reason::Missing { found: r.seq }
            }));
        }
        if r.seq < expected {
            return Err(fail(Reason::Inserted { found: r.seq }));
        }
        if !r.compute_hash().ct_eq(&r.hash) {
            return Err(fail(Reason::Edited));
        }
        // The first record of a partial export has no predecessor here to link to.
        let linked = self.checked == 0 && self.first_seq > 0;
        if !linked && !r.prev.ct_eq(&self.prev) {
            return Err(fail(Reason::BrokenLink));
        }
        self.prev = r.hash;
        self.next_seq += 1;
        self.checked += 1;
        Ok(r)
    }

    pub(crate) fn report(&self, last_checkpoint: Option<u64>) -> Report {
        Report {
            records: self.checked,
            first_seq: self.first_seq,
            head: (self.checked > 0).then_some(self.prev),
            last_checkpoint,
        }
    }
}
