//! Fuzzes the export reader and the offline verifier, `audit::parse_export` and
//! `audit::verify_export` (JSON Lines header + records, strict record parser, Merkle
//! prefix, embedded checkpoints).
//!
//! The first input byte picks the mode:
//! - even: the rest is a whole export file, parsed and then verified against a fixed key
//!   (header checks, Merkle prefix decoding, record parsing, chain and checkpoint checks);
//! - odd: the rest is one record line, placed after a valid header for a log of the
//!   fixed key, so the fuzzer spends its time in the record parser. Any record accepted
//!   must re-encode to the same bytes (one canonical JSON form per record).
//!
//! Nothing may panic; the property checks below abort on a real bug.
#![no_main]

use std::sync::OnceLock;

use audit::note::Verifier;
use audit::{Options, Record, parse_export, verify_export};
use libfuzzer_sys::fuzz_target;
use ring::signature::{Ed25519KeyPair, KeyPair};

const ORIGIN: &str = "fuzz.example/log";
/// Fixed seed: fuzzing must be reproducible. Not a secret.
const SEED: [u8; 32] = [7; 32];

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        let key_pair = Ed25519KeyPair::from_seed_unchecked(&SEED).expect("seed");
        let public: [u8; 32] = key_pair.public_key().as_ref().try_into().expect("32 bytes");
        Verifier::new(ORIGIN, public).expect("verifier")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let key = verifier();
    if mode & 1 == 0 {
        let parsed = parse_export(rest);
        let verified = verify_export(rest, key, &Options::default());
        // Verification parses with the same reader: it cannot accept what parsing refuses.
        if parsed.is_err() {
            assert!(verified.is_err(), "verified an export that does not parse");
        }
        return;
    }
    let mut export = format!(
        "{{\"format\":\"airlock-audit-export-v1\",\"origin\":\"{ORIGIN}\",\"from\":0,\"to\":0}}\n"
    )
    .into_bytes();
    export.extend_from_slice(rest);
    if let Ok((_, records)) = parse_export(&export) {
        for r in &records {
            let again = Record::from_json(&r.to_json()).expect("re-parse own encoding");
            assert_eq!(&again, r, "record does not round-trip");
        }
    }
    let _ = verify_export(export.as_slice(), key, &Options::default());
});
