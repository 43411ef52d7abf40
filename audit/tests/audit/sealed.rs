use std::time::Duration;

use audit::{AuditLog, Config, ContentMode, Kind, Options, verify_state};

use crate::common::{event, key, test_config, verify};

fn sealed_config() -> Config {
    Config {
        content: ContentMode::Sealed,
        ..test_config()
    }
}

#[test]
fn sealed_content_is_readable_then_erased_and_the_chain_still_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(dir.path(), sealed_config()).expect("open");
    let a = log
        .append(
            event(Kind::InferenceRequest, 0)
                .subject("case-A")
                .prompt("secret A"),
        )
        .expect("append");
    let b = log
        .append(
            event(Kind::InferenceRequest, 1)
                .subject("case-B")
                .prompt("secret B"),
        )
        .expect("append");
    let a_out = log
        .append(
            event(Kind::InferenceResponse, 2)
                .subject("case-A")
                .output("answer A"),
        )
        .expect("append");

    // The plaintext is nowhere in the stored record, only its digest and ciphertext.
    let stored = log.record(a.seq()).expect("record");
    assert!(!String::from_utf8_lossy(&stored.to_json()).contains("secret A"));
    assert_eq!(stored.prompt_sha256, Some(audit::Digest::of(b"secret A")));
    assert_eq!(
        stored.sealed.as_ref().expect("sealed").key_subject,
        "case-A"
    );

    let shown = log.show(a.seq()).expect("show");
    assert_eq!(
        shown.prompt.as_deref().map(Vec::as_slice),
        Some(&b"secret A"[..])
    );
    assert!(!shown.erased);
    let shown = log.show(a_out.seq()).expect("show");
    assert_eq!(
        shown.output.as_deref().map(Vec::as_slice),
        Some(&b"answer A"[..])
    );

    let erased = log
        .erase("case-A", Some(crate::common::actor("privacy-officer")))
        .expect("erase");
    let record = log.record(erased.seq()).expect("erase record");
    assert_eq!(record.kind, Kind::AuditErase);
    assert_eq!(record.subject.as_deref(), Some("case-A"));

    for seq in [a.seq(), a_out.seq()] {
        let shown = log.show(seq).expect("show");
        assert!(
            shown.erased && shown.prompt.is_none() && shown.output.is_none(),
            "seq {seq}"
        );
        // Digests stay.
        assert!(shown.record.prompt_sha256.is_some() || shown.record.output_sha256.is_some());
    }
    // Another subject is untouched.
    let shown = log.show(b.seq()).expect("show");
    assert_eq!(
        shown.prompt.as_deref().map(Vec::as_slice),
        Some(&b"secret B"[..])
    );

    let mut export = Vec::new();
    log.export(&mut export, None, None).expect("export");
    let k = log.verifier().clone();
    drop(log);
    verify(&export, &k).expect("export verifies after erasure");
    verify_state(dir.path(), &key(dir.path()), &Options::default()).expect("state verifies");

    // Erasure survives a reopen: the key is gone from disk, not only from memory.
    let log = AuditLog::open(dir.path(), sealed_config()).expect("reopen");
    assert!(log.show(a.seq()).expect("show").erased);
    assert!(!log.show(b.seq()).expect("show").erased);
}

#[test]
fn retention_shreds_old_epochs_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        content: ContentMode::Sealed,
        epoch_length: Duration::from_secs(1),
        retention: Some(Duration::from_secs(1)),
        ..test_config()
    };
    let log = AuditLog::open(dir.path(), config).expect("open");
    let old = log
        .append(event(Kind::InferenceRequest, 0).subject("s").prompt("old"))
        .expect("append");
    assert!(!log.show(old.seq()).expect("show").erased);
    // Two epochs later the old epoch is past retention; the next batch shreds it.
    std::thread::sleep(Duration::from_millis(2100));
    let new = log
        .append(event(Kind::InferenceRequest, 1).subject("s").prompt("new"))
        .expect("append");
    let nudge = log.append(event(Kind::ServiceStart, 2)).expect("append");
    assert!(
        log.show(old.seq()).expect("show").erased,
        "old content not shredded"
    );
    assert!(
        !log.show(new.seq()).expect("show").erased,
        "current epoch shredded"
    );
    let erase_records: Vec<_> = log
        .records(0, 100)
        .expect("records")
        .into_iter()
        .filter(|r| r.kind == Kind::AuditErase)
        .collect();
    assert!(
        !erase_records.is_empty(),
        "no audit.erase record for retention"
    );
    assert_eq!(
        erase_records[0].params.get("reason").map(String::as_str),
        Some("retention")
    );
    let _ = nudge;
}

#[test]
fn digest_mode_keeps_no_content() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(dir.path(), test_config()).expect("open");
    let r = log
        .append(event(Kind::InferenceRequest, 0).prompt("private words"))
        .expect("append");
    let record = log.record(r.seq()).expect("record");
    assert!(record.sealed.is_none());
    assert!(!String::from_utf8_lossy(&record.to_json()).contains("private words"));
    assert!(!dir.path().join("master.key").exists());
    let shown = log.show(r.seq()).expect("show");
    assert!(shown.prompt.is_none() && !shown.erased);
}
