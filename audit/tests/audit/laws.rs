//! Property tests: verify(export(random log)) holds, and any single bit flip in the export
//! makes it fail.

use audit::{Actor, AuditLog, Config, Event, Kind};
use proptest::prelude::*;

use crate::common::verify;

#[derive(Debug, Clone)]
struct Ev {
    kind: usize,
    peer: Option<String>,
    prompt: Option<Vec<u8>>,
    status: Option<String>,
    tokens: Option<(u64, u64)>,
    params: Vec<(String, String)>,
}

const KINDS: [Kind; 11] = [
    Kind::InferenceRequest,
    Kind::InferenceResponse,
    Kind::AccessDenied,
    Kind::BundleVerify,
    Kind::BundleInstall,
    Kind::BundleReject,
    Kind::ModelActivate,
    Kind::ModelRollback,
    Kind::ServiceStart,
    Kind::ServiceStop,
    Kind::PolicyLoad,
];

fn ev() -> impl Strategy<Value = Ev> {
    (
        0..KINDS.len(),
        proptest::option::of("\\PC{0,12}"),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        proptest::option::of("[a-z0-9 ]{0,8}"),
        proptest::option::of((any::<u64>(), any::<u64>())),
        proptest::collection::vec(("[a-z]{1,5}", "\\PC{0,10}"), 0..3),
    )
        .prop_map(|(kind, peer, prompt, status, tokens, params)| Ev {
            kind,
            peer,
            prompt,
            status,
            tokens,
            params,
        })
}

fn to_event(e: &Ev, i: usize) -> Event {
    let mut out = Event::new(KINDS[e.kind]).actor(Actor {
        fingerprint: format!("{i:064x}"),
        subject: format!("CN=user{i}"),
        roles: vec!["user".into()],
    });
    out.peer = e.peer.clone();
    out.prompt = e.prompt.clone();
    out.status = e.status.clone();
    if let Some((p, c)) = e.tokens {
        out = out.tokens(p, c);
    }
    for (k, v) in &e.params {
        out = out.param(k.clone(), v.clone());
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn export_verifies_and_any_bit_flip_fails(
        events in proptest::collection::vec(ev(), 1..24),
        every in 0u64..6,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..8), 16),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config { checkpoint_every: every, checkpoint_interval: None, ..Config::default() };
        let log = AuditLog::open(dir.path(), config.clone()).expect("open");
        for (i, e) in events.iter().enumerate() {
            log.append(to_event(e, i)).expect("append");
        }
        log.close().expect("close");
        drop(log);
        let log = AuditLog::open(dir.path(), config).expect("reopen");
        let mut export = Vec::new();
        log.export(&mut export, None, None).expect("export");
        let key = log.verifier().clone();
        let report = verify(&export, &key).expect("verify(export(log))");
        prop_assert_eq!(report.records, log.len());

        for (index, bit) in flips {
            let mut mutated = export.clone();
            // Any byte but the final newline (dropping it is not a change of content).
            let pos = index.index(mutated.len() - 1);
            mutated[pos] ^= 1 << bit;
            prop_assert!(
                verify(&mutated, &key).is_err(),
                "flip of bit {} at byte {} verified", bit, pos
            );
        }
    }
}
