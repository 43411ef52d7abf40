//! Round trips, and each way a sealed value or wrapped key must fail to open:
//! wrong key, wrong additional data, tampering, a wrapped key moved to
//! another subject or epoch. Master key files.

use super::*;
use std::os::unix::fs::PermissionsExt;

const AAD: &[u8] = b"seq=17;field=prompt";

fn ctx(subject: &str, epoch: u64) -> KeyContext<'_> {
    KeyContext { subject, epoch }
}

#[test]
fn seal_open_roundtrip() {
    let k = DataKey::generate().expect("key");
    for msg in [&b""[..], b"x", b"patient reports chest pain", &[0u8; 4096]] {
        let s = seal(&k, msg, AAD).expect("seal");
        assert_eq!(s.ciphertext().len(), msg.len() + TAG_LEN);
        assert_eq!(open(&k, &s, AAD).expect("open").as_slice(), msg);
    }
}

#[test]
fn nonces_are_fresh() {
    let k = DataKey::generate().expect("key");
    let a = seal(&k, b"same", AAD).expect("seal");
    let b = seal(&k, b"same", AAD).expect("seal");
    assert_ne!(a.nonce(), b.nonce());
    assert_ne!(a.ciphertext(), b.ciphertext());
}

#[test]
fn wrong_key_fails() {
    let (k1, k2) = (
        DataKey::generate().expect("key"),
        DataKey::generate().expect("key"),
    );
    let s = seal(&k1, b"secret", AAD).expect("seal");
    assert!(matches!(open(&k2, &s, AAD), Err(SealError::Decrypt)));
}

#[test]
fn wrong_aad_fails() {
    let k = DataKey::generate().expect("key");
    let s = seal(&k, b"secret", AAD).expect("seal");
    assert!(matches!(
        open(&k, &s, b"seq=18;field=prompt"),
        Err(SealError::Decrypt)
    ));
    assert!(matches!(open(&k, &s, b""), Err(SealError::Decrypt)));
}

#[test]
fn tampered_ciphertext_or_nonce_fails() {
    let k = DataKey::generate().expect("key");
    let s = seal(&k, b"secret content", AAD).expect("seal");
    for i in 0..s.ciphertext.len() {
        let mut t = s.clone();
        t.ciphertext[i] ^= 0x01;
        assert!(
            matches!(open(&k, &t, AAD), Err(SealError::Decrypt)),
            "byte {i}"
        );
    }
    let mut t = s.clone();
    t.nonce[0] ^= 0x80;
    assert!(matches!(open(&k, &t, AAD), Err(SealError::Decrypt)));
    let mut t = s.clone();
    t.ciphertext.truncate(TAG_LEN - 1);
    assert!(matches!(
        open(&k, &t, AAD),
        Err(SealError::Malformed { len: 15 })
    ));
    let mut t = s;
    t.ciphertext.pop();
    assert!(matches!(open(&k, &t, AAD), Err(SealError::Decrypt)));
}

#[test]
fn wrap_unwrap_roundtrip_opens_content() {
    let m = MasterKey::generate().expect("master");
    let k = DataKey::generate().expect("key");
    let sealed = seal(&k, b"hello", AAD).expect("seal");
    let w = wrap(&m, &k, ctx("alice@example", 3)).expect("wrap");
    let k2 = unwrap(&m, &w, ctx("alice@example", 3)).expect("unwrap");
    assert_eq!(open(&k2, &sealed, AAD).expect("open").as_slice(), b"hello");
}

#[test]
fn wrapped_key_moved_to_another_subject_or_epoch_fails() {
    let m = MasterKey::generate().expect("master");
    let k = DataKey::generate().expect("key");
    let w = wrap(&m, &k, ctx("alice", 3)).expect("wrap");
    assert!(matches!(
        unwrap(&m, &w, ctx("bob", 3)),
        Err(SealError::Decrypt)
    ));
    assert!(matches!(
        unwrap(&m, &w, ctx("alice", 4)),
        Err(SealError::Decrypt)
    ));
    // Length-prefixed subject: "alice" + epoch cannot be re-read as another split.
    assert!(matches!(
        unwrap(&m, &w, ctx("alic", 3)),
        Err(SealError::Decrypt)
    ));
    let other_master = MasterKey::generate().expect("master");
    assert!(matches!(
        unwrap(&other_master, &w, ctx("alice", 3)),
        Err(SealError::Decrypt)
    ));
}

#[test]
fn wrapped_key_is_not_openable_as_content_and_vice_versa() {
    // Even if a data key equalled the master key, the domain prefixes differ.
    let m = MasterKey::generate().expect("master");
    let same = DataKey(Zeroizing::new(*m.0));
    let k = DataKey::generate().expect("key");
    let w = wrap(&m, &k, ctx("alice", 0)).expect("wrap");
    assert!(matches!(
        open(&same, &w.0, &ctx("alice", 0).aad()),
        Err(SealError::Decrypt)
    ));
}

#[test]
fn sealed_serialises_as_base64_json() {
    let k = DataKey::generate().expect("key");
    let s = seal(&k, b"abc", AAD).expect("seal");
    let json = serde_json::to_string(&s).expect("json");
    let v: serde_json::Value = serde_json::from_str(&json).expect("value");
    assert_eq!(v["nonce"].as_str().map(str::len), Some(16));
    assert_eq!(v["ciphertext"].as_str().map(str::len), Some(28)); // 19 bytes
    let back: Sealed = serde_json::from_str(&json).expect("parse");
    assert_eq!(open(&k, &back, AAD).expect("open").as_slice(), b"abc");

    let w = wrap(&MasterKey::generate().expect("m"), &k, ctx("s", 1)).expect("wrap");
    let wj = serde_json::to_string(&w).expect("json");
    assert_eq!(serde_json::from_str::<WrappedKey>(&wj).expect("parse"), w);

    for bad in [
        r#"{"nonce":"AAAA","ciphertext":"AAAA"}"#, // 3-byte nonce
        r#"{"nonce":"AAAAAAAAAAAAAAAA","ciphertext":"!!"}"#,
        r#"{"nonce":"AAAAAAAAAAAAAAAA"}"#,
    ] {
        assert!(serde_json::from_str::<Sealed>(bad).is_err(), "{bad}");
    }
}

#[test]
fn debug_output_is_redacted() {
    assert_eq!(
        format!("{:?}", MasterKey::generate().expect("m")),
        "MasterKey(<redacted>)"
    );
    assert_eq!(
        format!("{:?}", DataKey::generate().expect("k")),
        "DataKey(<redacted>)"
    );
}

#[test]
fn master_key_file_create_load_and_permissions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("master.key");
    let created = MasterKey::create_file(&path).expect("create");
    let meta = std::fs::metadata(&path).expect("meta");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), KEY_LEN as u64);

    // The loaded key unwraps what the created key wrapped.
    let k = DataKey::generate().expect("key");
    let w = wrap(&created, &k, ctx("s", 0)).expect("wrap");
    let loaded = MasterKey::load_file(&path).expect("load");
    assert!(unwrap(&loaded, &w, ctx("s", 0)).is_ok());
    assert!(
        unwrap(
            &MasterKey::load_or_create(&path).expect("load"),
            &w,
            ctx("s", 0)
        )
        .is_ok()
    );

    // Never replaced.
    assert!(matches!(
        MasterKey::create_file(&path),
        Err(SealError::KeyFile(KeyFileError::Io { .. }))
    ));
    // World-readable: refused.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o604)).expect("chmod");
    assert!(matches!(
        MasterKey::load_file(&path),
        Err(SealError::KeyFile(KeyFileError::InsecurePermissions {
            mode: 0o604,
            ..
        }))
    ));
    assert!(matches!(
        MasterKey::load_or_create(&path),
        Err(SealError::KeyFile(KeyFileError::InsecurePermissions { .. }))
    ));
}

#[test]
fn master_key_file_wrong_length_and_first_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let short = dir.path().join("short.key");
    keyfile::create_secret(&short, &[1u8; 31]).expect("write");
    assert!(matches!(
        MasterKey::load_file(&short),
        Err(SealError::BadKeyLength { len: 31, .. })
    ));
    let long = dir.path().join("long.key");
    keyfile::create_secret(&long, &[1u8; 33]).expect("write");
    assert!(matches!(
        MasterKey::load_file(&long),
        Err(SealError::KeyFile(KeyFileError::TooLarge {
            max: KEY_LEN,
            ..
        }))
    ));
    let fresh = dir.path().join("fresh.key");
    let a = MasterKey::load_or_create(&fresh).expect("create");
    let b = MasterKey::load_or_create(&fresh).expect("load");
    assert_eq!(*a.0, *b.0);
}

#[test]
fn byte_forms_roundtrip_and_reject_short_input() {
    let k = DataKey::generate().expect("key");
    let s = seal(&k, b"content", AAD).expect("seal");
    let bytes = s.to_bytes();
    assert_eq!(bytes.len(), 12 + 7 + TAG_LEN);
    let back = Sealed::from_bytes(&bytes).expect("parse");
    assert_eq!(open(&k, &back, AAD).expect("open").as_slice(), b"content");
    assert!(matches!(
        Sealed::from_bytes(&bytes[..12 + TAG_LEN - 1]),
        Err(SealError::Malformed { len: 27 })
    ));
    assert!(matches!(
        Sealed::from_bytes(&[0; 5]),
        Err(SealError::Malformed { len: 5 })
    ));
    // An empty plaintext is nonce + tag only, and still valid.
    let empty = seal(&k, b"", AAD).expect("seal");
    let parsed = Sealed::from_bytes(&empty.to_bytes()).expect("parse");
    assert!(open(&k, &parsed, AAD).expect("open").is_empty());

    let m = MasterKey::generate().expect("master");
    let w = wrap(&m, &k, ctx("s", 9)).expect("wrap");
    let wb = w.to_bytes();
    assert_eq!(wb.len(), 60);
    let w2 = WrappedKey::from_bytes(&wb).expect("parse");
    assert!(unwrap(&m, &w2, ctx("s", 9)).is_ok());
    assert!(matches!(
        WrappedKey::from_bytes(&wb[..59]),
        Err(SealError::Malformed { len: 59 })
    ));
    let mut longer = wb.clone();
    longer.push(0);
    assert!(matches!(
        WrappedKey::from_bytes(&longer),
        Err(SealError::Malformed { len: 61 })
    ));
}
