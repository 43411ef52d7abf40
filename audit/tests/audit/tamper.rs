//! The tamper matrix. Each mutation of an export or of a state directory must be detected,
//! and the failure must name the first bad seq.

use audit::{AuditLog, Config, Failure, Kind, Options, Reason, Record, verify_state};

use crate::common::{key, populated, test_config, verify};

/// Events in the fixture log; with a checkpoint every 4 and one at close, the log holds
/// `TOTAL` records with checkpoints at seqs 4, 9 and 14 (close() adds none: no event
/// follows the last checkpoint).
const N: u64 = 12;
const TOTAL: u64 = 15;
const CHECKPOINTS: [u64; 3] = [4, 9, 14];

fn lines(export: &[u8]) -> Vec<Vec<u8>> {
    export
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn join(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    out
}

fn fixture() -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let export = populated(dir.path(), N);
    (dir, export)
}

fn fails_at(export: &[u8], seq: u64) -> Failure {
    let key = KEY.with(|k| k.borrow().clone()).expect("fixture key set");
    match verify(export, &key) {
        Ok(report) => panic!("tampered export verified: {report}"),
        Err(f) => {
            assert_eq!(f.seq, Some(seq), "wrong seq named: {f}");
            assert!(f.to_string().contains(&format!("seq {seq}")), "{f}");
            f
        }
    }
}

thread_local! {
    static KEY: std::cell::RefCell<Option<audit::note::Verifier>> =
        const { std::cell::RefCell::new(None) };
}

/// A fixture log and export; its key becomes the trusted key of `fails_at`.
fn setup() -> (tempfile::TempDir, Vec<u8>) {
    let (dir, export) = fixture();
    KEY.with(|k| *k.borrow_mut() = Some(key(dir.path())));
    (dir, export)
}

#[test]
fn untouched_export_verifies() {
    let (dir, export) = setup();
    let report = verify(&export, &key(dir.path())).expect("verify");
    assert_eq!(report.records, TOTAL);
    let lines = lines(&export);
    for seq in CHECKPOINTS {
        let r = Record::from_json(&lines[(seq + 1) as usize]).expect("record");
        assert_eq!(r.kind, Kind::AuditCheckpoint, "seq {seq}");
    }
    let text = report.to_string();
    assert!(
        text.starts_with(&format!("OK: {TOTAL} records, head ")),
        "{text}"
    );
    assert!(text.ends_with("last checkpoint 14"), "{text}");
}

#[test]
fn every_single_byte_flip_in_every_record_is_detected_at_its_seq() {
    let (_dir, export) = setup();
    let original = lines(&export);
    let mut checked = 0;
    for seq in 0..TOTAL {
        let line = (seq + 1) as usize; // line 0 is the header
        for pos in 0..original[line].len() {
            let mut mutated = original.clone();
            mutated[line][pos] ^= 0x01;
            fails_at(&join(&mutated), seq);
            checked += 1;
        }
    }
    assert!(checked > 1000, "only {checked} mutations");
}

#[test]
fn every_field_edit_is_detected_as_an_edit() {
    let (_dir, export) = setup();
    let original = lines(&export);
    for seq in 0..TOTAL {
        let line = (seq + 1) as usize;
        let value: serde_json::Value = serde_json::from_slice(&original[line]).expect("json");
        let fields: Vec<String> = value.as_object().expect("object").keys().cloned().collect();
        for field in fields {
            if field == "seq" {
                continue; // renumbering is the missing/inserted cases below
            }
            let mut v = value.clone();
            mutate(&mut v[&field]);
            let mut mutated = original.clone();
            mutated[line] = serde_json::to_vec(&v).expect("json");
            let f = fails_at(&join(&mutated), seq);
            assert!(
                matches!(f.reason, Reason::Edited | Reason::Malformed(_)),
                "field {field}: {f}"
            );
        }
    }
}

/// Changes a JSON value to another valid value of the same shape.
fn mutate(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::String(s) => {
            // Keep hex strings hex and times well-formed: bump one digit/letter.
            let mut chars: Vec<char> = s.chars().collect();
            let i = chars
                .iter()
                .rposition(|c| c.is_ascii_alphanumeric())
                .expect("alnum");
            chars[i] = match chars[i] {
                '9' => '8',
                'f' => 'e',
                'z' => 'y',
                'Z' => 'Y',
                c => char::from(c as u8 + 1),
            };
            *s = chars.into_iter().collect();
            if s.ends_with('Y') {
                // an RFC 3339 time must end in Z: edit the millisecond digit instead
                s.pop();
                s.push('Z');
                let mut c: Vec<char> = s.chars().collect();
                let n = c.len();
                c[n - 2] = if c[n - 2] == '9' {
                    '8'
                } else {
                    char::from(c[n - 2] as u8 + 1)
                };
                *s = c.into_iter().collect();
            }
        }
        Value::Number(n) => *v = Value::from(n.as_u64().expect("u64") + 1),
        Value::Array(a) => a.push(Value::from("admin")),
        Value::Object(o) => {
            let key = o.keys().next().expect("non-empty").clone();
            mutate(&mut o[&key]);
        }
        other => panic!("unexpected value {other}"),
    }
}

#[test]
fn deleting_a_record_is_detected() {
    let (_dir, export) = setup();
    let original = lines(&export);
    for seq in 0..TOTAL - 1 {
        let mut mutated = original.clone();
        mutated.remove((seq + 1) as usize);
        let f = fails_at(&join(&mutated), seq);
        assert_eq!(f.reason, Reason::Missing { found: seq + 1 });
    }
}

#[test]
fn inserting_a_duplicate_record_is_detected() {
    let (_dir, export) = setup();
    let original = lines(&export);
    for seq in 0..TOTAL {
        let mut mutated = original.clone();
        let line = (seq + 1) as usize;
        mutated.insert(line + 1, original[line].clone());
        let f = fails_at(&join(&mutated), seq + 1);
        assert_eq!(f.reason, Reason::Inserted { found: seq });
    }
}

#[test]
fn a_forged_record_with_a_valid_hash_breaks_the_next_link() {
    let (_dir, export) = setup();
    let original = lines(&export);
    let seq = 6u64;
    let mut record = audit::Record::from_json(&original[(seq + 1) as usize]).expect("record");
    record.status = Some("forged".into());
    record.hash = record.compute_hash();
    let mut mutated = original.clone();
    mutated[(seq + 1) as usize] = record.to_json();
    let f = fails_at(&join(&mutated), seq + 1);
    assert_eq!(f.reason, Reason::BrokenLink);
}

#[test]
fn swapping_two_records_is_detected_as_reordering() {
    let (_dir, export) = setup();
    let original = lines(&export);
    for seq in 0..TOTAL - 1 {
        let mut mutated = original.clone();
        mutated.swap((seq + 1) as usize, (seq + 2) as usize);
        let f = fails_at(&join(&mutated), seq);
        assert_eq!(f.reason, Reason::Reordered { found: seq + 1 });
    }
}

#[test]
fn garbage_exports_fail_without_panicking() {
    for input in [
        &b""[..],
        b"\n",
        b"{}",
        b"{\"format\":\"other\",\"origin\":\"x\",\"from\":0}\n",
        b"{\"format\":\"airlock-audit-export-v1\",\"origin\":\"x\",\"from\":0}\n\n",
        b"{\"format\":\"airlock-audit-export-v1\",\"origin\":\"x\",\"from\":0}\n\xff\xfe\n",
    ] {
        let key = audit::note::Verifier::new("x", [7; 32]).expect("verifier");
        let f =
            audit::verify_export(input, &key, &Options::default()).expect_err("garbage verified");
        assert!(matches!(f.reason, Reason::Malformed(_)), "{f}");
    }
}

/// Re-hashes records `from..` after an edit, as an attacker with write access would, so
/// that the chain itself verifies and only the signed checkpoints can object.
fn rehash_from(lines: &mut [Vec<u8>], from: usize) {
    let mut prev = Record::from_json(&lines[from - 1]).map(|r| r.hash).ok();
    for line in lines.iter_mut().skip(from) {
        let mut r = Record::from_json(line).expect("record");
        if let Some(p) = prev {
            r.prev = p;
        }
        r.hash = r.compute_hash();
        prev = Some(r.hash);
        *line = r.to_json();
    }
}

#[test]
fn an_edit_with_the_whole_chain_rehashed_is_caught_by_the_next_checkpoint() {
    let (_dir, export) = setup();
    let original = lines(&export);
    let seq = 6u64; // between the checkpoints at 4 and 9
    let mut mutated = original.clone();
    let mut r = Record::from_json(&mutated[(seq + 1) as usize]).expect("record");
    r.status = Some("edited".into());
    mutated[(seq + 1) as usize] = r.to_json();
    rehash_from(&mut mutated, (seq + 1) as usize);
    let f = fails_at(&join(&mutated), 9);
    assert_eq!(f.reason, Reason::RootMismatch { size: 9, since: 4 });
}

#[test]
fn truncating_after_a_checkpoint_is_detected() {
    let (_dir, export) = setup();
    let original = lines(&export);
    for cp in [4u64, 9] {
        let kept = &original[..(cp + 2) as usize]; // header + records 0..=cp
        let f = fails_at(&join(kept), cp + 1);
        assert_eq!(
            f.reason,
            Reason::Truncated {
                checkpoint_size: 14,
                present: cp + 1
            }
        );
    }
}

/// Replaces the signature bytes of the signed note in `line` (a checkpoint record).
fn forge_signature(note: &str) -> String {
    // The last line is "— <name> <base64(keyid || sig)>"; flip one signature byte.
    let (body, sig_line) = note.trim_end().rsplit_once('\n').expect("signature line");
    let (prefix, b64) = sig_line.rsplit_once(' ').expect("signature");
    use base64::Engine as _;
    let mut raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("b64");
    raw[10] ^= 0x01;
    format!(
        "{body}\n{prefix} {}\n",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

#[test]
fn a_replaced_checkpoint_signature_is_detected() {
    let (_dir, export) = setup();
    let original = lines(&export);
    let cp = 9u64;
    let mut mutated = original.clone();
    let mut r = Record::from_json(&mutated[(cp + 1) as usize]).expect("record");
    let note = r.params["note"].clone();
    r.params.insert("note".into(), forge_signature(&note));
    mutated[(cp + 1) as usize] = r.to_json();
    // Without re-hashing, the edit itself shows.
    assert_eq!(fails_at(&join(&mutated), cp).reason, Reason::Edited);
    // Re-hashed, the signature check catches it.
    rehash_from(&mut mutated, (cp + 1) as usize);
    assert_eq!(fails_at(&join(&mutated), cp).reason, Reason::BadSignature);
}

#[test]
fn a_replaced_header_checkpoint_signature_is_detected() {
    let (dir, export) = setup();
    let mut l = lines(&export);
    let mut header: audit::Header = serde_json::from_slice(&l[0]).expect("header");
    let note = header.checkpoint.clone().expect("checkpoint");
    header.checkpoint = Some(forge_signature(&note));
    l[0] = serde_json::to_vec(&header).expect("json");
    let f = verify(&join(&l), &key(dir.path())).expect_err("forged header verified");
    assert_eq!((f.line, &f.reason), (Some(1), &Reason::BadSignature), "{f}");
}

#[test]
fn verifying_with_the_wrong_key_fails() {
    let (dir, export) = setup();
    // Another log under the same origin name: same key name, different key.
    let other = tempfile::tempdir().expect("tempdir");
    let same_name = AuditLog::open(
        other.path(),
        Config {
            origin: Some(
                audit::public_key(dir.path())
                    .expect("key")
                    .name()
                    .to_string(),
            ),
            ..test_config()
        },
    )
    .expect("open other");
    drop(same_name);
    let f = verify(&export, &key(other.path())).expect_err("wrong key verified");
    assert_eq!(f.reason, Reason::WrongKey, "{f}");
    // A log with another origin: refused before reading records.
    let third = tempfile::tempdir().expect("tempdir");
    populated(third.path(), 1);
    let f = verify(&export, &key(third.path())).expect_err("other log verified");
    assert!(matches!(f.reason, Reason::OtherLog { .. }), "{f}");
}

#[test]
fn an_older_checkpoint_is_extended_and_a_forked_one_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(dir.path(), test_config()).expect("open");
    crate::common::fill(&log, 5);
    let old = log.checkpoint().expect("checkpoint").expect("signed");
    crate::common::fill(&log, 7);
    let mut export = Vec::new();
    log.export(&mut export, None, None).expect("export");
    let key = log.verifier().clone();
    let opts = Options {
        since_checkpoint: Some(old.as_bytes()),
    };
    audit::verify_export(export.as_slice(), &key, &opts).expect("extends the old checkpoint");
    // Consistency proof path (no export needed).
    let proof = log.prove_consistency(6).expect("proof");
    audit::verify_consistency_proof(old.as_bytes(), &proof, &key).expect("consistent");
    // Inclusion proof of a record in the latest checkpoint.
    let inc = log.prove(3, None).expect("prove");
    audit::verify_inclusion_proof(&inc, &key).expect("included");
    let mut bad = inc.clone();
    bad.seq = 2;
    assert!(audit::verify_inclusion_proof(&bad, &key).is_err());
    drop(log);

    // The old checkpoint checked against a log whose early records were rewritten.
    let mut l = lines(&export);
    let mut r = Record::from_json(&l[2]).expect("record");
    r.status = Some("rewritten".into());
    l[2] = r.to_json();
    rehash_from(&mut l, 2);
    let f = audit::verify_export(join(&l).as_slice(), &key, &opts).expect_err("fork verified");
    assert!(
        matches!(
            f.reason,
            Reason::Inconsistent(_) | Reason::RootMismatch { .. }
        ),
        "{f}"
    );
}

// ---- the same attacks on a state directory -------------------------------------------

fn tamper_state(attack: impl FnOnce(&sled::Tree)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    populated(dir.path(), N);
    let db = (0..40)
        .find_map(|_| {
            sled::open(dir.path().join("db"))
                .map_err(|_| std::thread::sleep(std::time::Duration::from_millis(50)))
                .ok()
        })
        .expect("sled");
    let tree = db.open_tree("records").expect("tree");
    attack(&tree);
    db.flush().expect("flush");
    drop(tree);
    drop(db);
    // sled's own flusher thread may hold the lock briefly after drop.
    std::thread::sleep(std::time::Duration::from_millis(600));
    dir
}

fn state_fails_at(dir: &std::path::Path, seq: u64) -> Failure {
    let f = verify_state(dir, &key(dir), &Options::default()).expect_err("tampered state verified");
    assert_eq!(f.seq, Some(seq), "{f}");
    match AuditLog::open(dir, test_config()) {
        Ok(_) => panic!("a corrupt store opened"),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains("corrupt") && msg.contains(&format!("seq {seq}")),
                "{msg}"
            );
        }
    }
    f
}

fn skey(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

#[test]
fn state_dir_byte_flips_are_detected() {
    for (seq, pos) in [
        (0u64, 10usize),
        (5, 40),
        (7, 200),
        (9, 150),
        (11, 3),
        (14, 60),
    ] {
        let dir = tamper_state(|t| {
            let mut v = t.get(skey(seq)).expect("get").expect("present").to_vec();
            v[pos] ^= 0x01;
            t.insert(skey(seq), v).expect("insert");
        });
        state_fails_at(dir.path(), seq);
    }
}

#[test]
fn state_dir_deletion_is_detected() {
    let dir = tamper_state(|t| {
        t.remove(skey(6)).expect("remove");
    });
    assert_eq!(
        state_fails_at(dir.path(), 6).reason,
        Reason::Missing { found: 7 }
    );
}

#[test]
fn state_dir_insertion_is_detected() {
    // Shift records 6.. up by one key and put a copy of record 5 at key 6.
    let dir = tamper_state(|t| {
        for seq in (6..TOTAL).rev() {
            let v = t.get(skey(seq)).expect("get").expect("present");
            t.insert(skey(seq + 1), v).expect("insert");
        }
        let five = t.get(skey(5)).expect("get").expect("present");
        t.insert(skey(6), five).expect("insert");
    });
    state_fails_at(dir.path(), 6);
}

#[test]
fn state_dir_swap_is_detected() {
    let dir = tamper_state(|t| {
        let a = t.get(skey(2)).expect("get").expect("present");
        let b = t.get(skey(3)).expect("get").expect("present");
        t.insert(skey(2), b).expect("insert");
        t.insert(skey(3), a).expect("insert");
    });
    // In a state directory the key says which seq a value should be.
    let f = state_fails_at(dir.path(), 2);
    assert!(
        matches!(&f.reason, Reason::Malformed(m) if m.contains("key seq 2 but says seq 3")),
        "{f}"
    );
}

#[test]
fn state_dir_truncated_after_a_checkpoint_is_detected() {
    let dir = tamper_state(|t| {
        for seq in 10..TOTAL {
            t.remove(skey(seq)).expect("remove");
        }
    });
    let f = state_fails_at(dir.path(), 10);
    assert_eq!(
        f.reason,
        Reason::Truncated {
            checkpoint_size: 14,
            present: 10
        }
    );
}

#[test]
fn state_dir_rehashed_edit_and_forged_signature_are_detected() {
    let dir = tamper_state(|t| {
        let mut lines: Vec<Vec<u8>> = (0..TOTAL)
            .map(|s| t.get(skey(s)).expect("get").expect("present").to_vec())
            .collect();
        let mut r = Record::from_json(&lines[9]).expect("checkpoint record");
        let note = r.params["note"].clone();
        r.params.insert("note".into(), forge_signature(&note));
        lines[9] = r.to_json();
        rehash_from(&mut lines, 9);
        for (s, l) in lines.into_iter().enumerate() {
            t.insert(skey(s as u64), l).expect("insert");
        }
    });
    assert_eq!(state_fails_at(dir.path(), 9).reason, Reason::BadSignature);
}

#[test]
fn state_dir_with_the_wrong_key_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    populated(dir.path(), N);
    let other = tempfile::tempdir().expect("tempdir");
    drop(
        AuditLog::open(
            other.path(),
            Config {
                origin: Some(key(dir.path()).name().to_string()),
                ..test_config()
            },
        )
        .expect("open"),
    );
    let f =
        verify_state(dir.path(), &key(other.path()), &Options::default()).expect_err("wrong key");
    assert_eq!(f.reason, Reason::WrongKey, "{f}");
}
