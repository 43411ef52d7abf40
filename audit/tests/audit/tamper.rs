//! The tamper matrix. Each mutation of an export or of a state directory must be detected,
//! and the failure must name the first bad seq.

use audit::{AuditLog, Failure, Reason, verify_export, verify_state};

use crate::common::{populated, test_config};

const N: u64 = 12;

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

fn fails_at(export: &[u8], seq: u64) -> Failure {
    match verify_export(export) {
        Ok(report) => panic!("tampered export verified: {report}"),
        Err(f) => {
            assert_eq!(f.seq, Some(seq), "wrong seq named: {f}");
            assert!(f.to_string().contains(&format!("seq {seq}")), "{f}");
            f
        }
    }
}

#[test]
fn untouched_export_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let export = populated(dir.path(), N);
    let report = verify_export(export.as_slice()).expect("verify");
    assert_eq!(report.records, N);
    assert!(
        report
            .to_string()
            .starts_with(&format!("OK: {N} records, head "))
    );
}

#[test]
fn every_single_byte_flip_in_every_record_is_detected_at_its_seq() {
    let dir = tempfile::tempdir().expect("tempdir");
    let export = populated(dir.path(), N);
    let original = lines(&export);
    let mut checked = 0;
    for seq in 0..N {
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
    let dir = tempfile::tempdir().expect("tempdir");
    let export = populated(dir.path(), N);
    let original = lines(&export);
    for seq in 0..N {
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
    let dir = tempfile::tempdir().expect("tempdir");
    let export = populated(dir.path(), N);
    let original = lines(&export);
    for seq in 0..N - 1 {
        let mut mutated = original.clone();
        mutated.remove((seq + 1) as usize);
        let f = fails_at(&join(&mutated), seq);
        assert_eq!(f.reason, Reason::Missing { found: seq + 1 });
    }
}

#[test]
fn inserting_a_duplicate_record_is_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let export = populated(dir.path(), N);
    let original = lines(&export);
    for seq in 0..N {
        let mut mutated = original.clone();
        let line = (seq + 1) as usize;
        mutated.insert(line + 1, original[line].clone());
        let f = fails_at(&join(&mutated), seq + 1);
        assert_eq!(f.reason, Reason::Inserted { found: seq });
    }
}

#[test]
fn a_forged_record_with_a_valid_hash_breaks_the_next_link() {
    let dir = tempfile::tempdir().expect("tempdir");
    let export = populated(dir.path(), N);
    let original = lines(&export);
    let seq = 4u64;
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
    let dir = tempfile::tempdir().expect("tempdir");
    let export = populated(dir.path(), N);
    let original = lines(&export);
    for seq in 0..N - 1 {
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
        let f = verify_export(input).expect_err("garbage verified");
        assert!(matches!(f.reason, Reason::Malformed(_)), "{f}");
    }
}

// ---- the same attacks on a state directory -------------------------------------------

fn tamper_state(n: u64, attack: impl FnOnce(&sled::Tree)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    populated(dir.path(), n);
    let db = sled::open(dir.path().join("db")).expect("sled");
    let tree = db.open_tree("records").expect("tree");
    attack(&tree);
    db.flush().expect("flush");
    drop(tree);
    drop(db);
    dir
}

fn state_fails_at(dir: &std::path::Path, seq: u64) {
    let f = verify_state(dir).expect_err("tampered state verified");
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
}

fn key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

#[test]
fn state_dir_byte_flips_are_detected() {
    for (seq, pos) in [(0u64, 10usize), (5, 40), (7, 200), (11, 3)] {
        let dir = tamper_state(N, |t| {
            let mut v = t.get(key(seq)).expect("get").expect("present").to_vec();
            v[pos] ^= 0x01;
            t.insert(key(seq), v).expect("insert");
        });
        state_fails_at(dir.path(), seq);
    }
}

#[test]
fn state_dir_deletion_is_detected() {
    let dir = tamper_state(N, |t| {
        t.remove(key(6)).expect("remove");
    });
    state_fails_at(dir.path(), 6);
}

#[test]
fn state_dir_insertion_is_detected() {
    // Shift records 6.. up by one key and put a copy of record 5 at key 6.
    let dir = tamper_state(N, |t| {
        for seq in (6..N).rev() {
            let v = t.get(key(seq)).expect("get").expect("present");
            t.insert(key(seq + 1), v).expect("insert");
        }
        let five = t.get(key(5)).expect("get").expect("present");
        t.insert(key(6), five).expect("insert");
    });
    state_fails_at(dir.path(), 6);
}

#[test]
fn state_dir_swap_is_detected() {
    let dir = tamper_state(N, |t| {
        let a = t.get(key(3)).expect("get").expect("present");
        let b = t.get(key(4)).expect("get").expect("present");
        t.insert(key(3), b).expect("insert");
        t.insert(key(4), a).expect("insert");
    });
    state_fails_at(dir.path(), 3);
}
