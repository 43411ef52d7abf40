//! Fuzzes the signed-checkpoint reader, `audit::note::open_checkpoint`.
//!
//! The first input byte picks the mode:
//! - even: the rest is a whole signed note, fed as is (the note grammar,
//!   UTF-8/control-character rules, signature lines, key lookup);
//! - odd: the rest is a note *text*, which the harness signs with a fixed
//!   key so the fuzzer gets past signature verification into the checkpoint
//!   body parser. Any accepted checkpoint must re-encode to the same text
//!   and survive a sign/open round trip.
//!
//! Nothing may panic; the property checks below abort on a real bug.
#![no_main]

use std::sync::OnceLock;

use audit::note::{Checkpoint, Verifier, open_checkpoint};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use libfuzzer_sys::fuzz_target;
use ring::signature::{Ed25519KeyPair, KeyPair};

const ORIGIN: &str = "fuzz.example/log";
/// Fixed seed: fuzzing must be reproducible. Not a secret.
const SEED: [u8; 32] = [7; 32];

struct Harness {
    key_pair: Ed25519KeyPair,
    verifier: Verifier,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let key_pair = Ed25519KeyPair::from_seed_unchecked(&SEED).expect("seed");
        let public: [u8; 32] = key_pair.public_key().as_ref().try_into().expect("32 bytes");
        let verifier = Verifier::new(ORIGIN, public).expect("verifier");
        Harness { key_pair, verifier }
    })
}

fn sign(h: &Harness, text: &str) -> String {
    let mut blob = h.verifier.key_id().to_be_bytes().to_vec();
    blob.extend_from_slice(h.key_pair.sign(text.as_bytes()).as_ref());
    format!("{text}\n\u{2014} {ORIGIN} {}\n", B64.encode(blob))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let h = harness();
    let verifiers = [h.verifier.clone()];
    if mode & 1 == 0 {
        let _ = open_checkpoint(ORIGIN, &verifiers, rest);
        return;
    }
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let note = sign(h, text);
    if let Ok(cp) = open_checkpoint(ORIGIN, &verifiers, note.as_bytes()) {
        // Accepted checkpoints have exactly one encoding.
        assert_eq!(cp.body(), text, "non-canonical checkpoint accepted");
        let rebuilt = cp
            .extensions()
            .iter()
            .try_fold(Checkpoint::new(cp.origin(), cp.size(), *cp.root()).expect("origin"), |c, e| {
                c.with_extension(e)
            })
            .expect("extensions");
        assert_eq!(&rebuilt, cp.checkpoint());
    }
});
